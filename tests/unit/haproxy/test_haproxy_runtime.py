"""RuntimeClient and MasterClient against fake UNIX-socket servers that speak like HAProxy 2.6's CLIs
(framing, pipelining, early close, errors). Real HAProxy: tests/integration/haproxy."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import haproxy_samples as S
import pytest

from haplane.errors import HAProxyUnavailable, ReloadFailed, RuntimeCommandError
from haplane.haproxy.master import MasterClient
from haplane.haproxy.runtime import (
    RuntimeClient,
    add_map_command,
    del_map_command,
    set_map_command,
    set_server_commands,
    validate_command,
)

Answerer = Callable[[str], str | None]  # command → answer text (None: close the connection)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="hxu")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def fake_cli(path: Path, answer: Answerer, *, chunk: int = 0) -> AsyncIterator[list[str]]:
    """A prompt-mode CLI: answers ``text`` + ``\\n\\n> `` (HAProxy's framing); ``chunk`` > 0 dribbles bytes."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                cmd = line.decode().rstrip("\n")
                seen.append(cmd)
                if cmd == "prompt":
                    out = "\n> "
                else:
                    text = answer(cmd)
                    if text is None:
                        break
                    out = (text + "\n\n> ") if text and not text.endswith("garbage") else (text + "\n> ")
                data = out.encode()
                if chunk:
                    for i in range(0, len(data), chunk):
                        writer.write(data[i:i + chunk])
                        await writer.drain()
                else:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


def haproxy_like(cmd: str) -> str | None:
    if cmd == "show servers state":
        return S.SERVERS_STATE.rstrip("\n")
    if cmd == "show stat":
        return S.SHOW_STAT.rstrip("\n")
    if cmd == "show info":
        return S.SHOW_INFO.rstrip("\n")
    if cmd.startswith("show map "):
        return S.SHOW_MAP.rstrip("\n")
    if cmd == "set server b/s1 weight abc":
        return "Empty weight string empty or preceded by garbage"  # HAProxy omits the blank line here
    if cmd.startswith("set server b/nope"):
        return "No such server."
    if cmd.startswith("set map") and " nokey " in cmd:
        return "entry not found."
    if cmd == "close":
        return None
    return ""


async def test_execute_pipelines_one_answer_per_command(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        client = RuntimeClient(path)
        cmds = ["set server b/s1 weight 3", "show servers state", "set server b/s1 weight abc", "show info",
                "set server b/nope weight 1", "set server b/s1 state ready"]
        answers = await client.execute(cmds)
    assert seen == ["prompt", *cmds]
    assert answers[0] == "" and answers[1] == S.SERVERS_STATE.rstrip("\n")
    assert answers[2] == "Empty weight string empty or preceded by garbage" and answers[3].startswith("Name: HAProxy")
    assert answers[4] == "No such server." and answers[5] == ""


async def test_run_judges_each_answer(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like, chunk=7):  # answers arrive in tiny pieces
        client = RuntimeClient(path)
        res = await client.run(["set server b/s1 weight 3", "set server b/nope weight 1", "set server b/s1 weight 4"])
        assert [a.ok for a in res] == [True, False, True]
        assert res[1].error == "No such server." and res[1].command == "set server b/nope weight 1"
        with pytest.raises(RuntimeCommandError) as err:
            await client.run_checked(["set server b/s1 weight 3", "set server b/nope weight 1"])
        assert err.value.command == "set server b/nope weight 1" and err.value.message == "No such server."


async def test_stop_on_error_sends_nothing_after_a_refusal(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        client = RuntimeClient(path)
        res = await client.run(["set server b/nope addr 10.0.0.1", "set server b/nope weight 2",
                                "set server b/nope state ready"], stop_on_error=True)
    assert [a.sent for a in res] == [True, False, False] and not any(a.ok for a in res)
    assert seen == ["prompt", "set server b/nope addr 10.0.0.1"]
    with pytest.raises(RuntimeCommandError, match="not sent"):
        res[1].raise_for_error()


async def test_large_batch_and_large_answers(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    big = "\n".join(f"3 b {i} s{i} 10.0.{i // 256}.{i % 256} 2 0 1 1 0 6 3 4 6 0 0 0 - 80 - 0 0 - - 0"
                    for i in range(1, 5001))
    header = "\n".join(S.SERVERS_STATE.splitlines()[:2])

    def answer(cmd: str) -> str:
        return f"{header}\n{big}" if cmd == "show servers state" else ""

    async with fake_cli(path, answer):
        client = RuntimeClient(path)
        answers = await client.execute(["set server b/s1 weight 1"] * 3000 + ["show servers state"])
        assert len(answers) == 3001 and answers[-1].endswith("- 0 0 - - 0")
        states = await client.servers_state()
        assert len(states) == 5000 and states[-1].name == "s5000"


async def test_reads_and_map_helpers(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        client = RuntimeClient(path)
        assert [s.name for s in await client.servers_state()] == ["s1", "s2", "s3"]
        assert {r.svname for r in await client.stat()} >= {"s1", "BACKEND"}
        assert (await client.info()).pid == 10045
        assert (await client.show_map("/m")) == {"www.example.com": "b", "a.com": "b"}
        await client.put_map("/m", "nokey", "v")  # set refused → add
        await client.set_server("b", "s1", addr="10.0.0.1", port=8080, weight=5, state="ready")
    sent = [c for c in seen if c != "prompt"]
    assert sent[-5:] == ["set map /m nokey v", "add map /m nokey v", "set server b/s1 addr 10.0.0.1 port 8080",
                         "set server b/s1 weight 5", "set server b/s1 state ready"]


async def test_unavailable_socket(sock_dir: Path) -> None:
    client = RuntimeClient(sock_dir / "missing.sock")
    with pytest.raises(HAProxyUnavailable, match="cannot connect"):
        await client.execute(["show info"])
    with pytest.raises(HAProxyUnavailable):
        await client.wait_ready(timeout=0.05)
    assert await client.execute([]) == []


async def test_connection_closed_mid_batch(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like):
        with pytest.raises(HAProxyUnavailable, match="1 of 3"):
            await RuntimeClient(path).execute(["show info", "close", "show info"])


async def test_timeout_is_unavailable(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(silent, str(path))
    try:
        with pytest.raises(HAProxyUnavailable, match="no complete answer"):
            await RuntimeClient(path, timeout=0.1).execute(["show info"])
    finally:
        server.close()


@pytest.mark.parametrize("bad", ["", "  ", "show info\nshow stat", "show info; show stat", "set map a\\;b c",
                                 "add map m <<", "show\x00info", "show info\r"])
def test_validate_command_refuses_injection(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_command(bad)


async def test_unsafe_command_is_never_sent(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        with pytest.raises(ValueError):
            await RuntimeClient(path).execute(["show info", "set server b/s1 weight 1;shutdown sessions"])
    assert seen == []


def test_set_server_commands_order_and_validation() -> None:
    assert set_server_commands("b", "s1", addr="10.0.0.1", port=80, weight=5, state="ready") == [
        "set server b/s1 addr 10.0.0.1 port 80", "set server b/s1 weight 5", "set server b/s1 state ready"]
    assert set_server_commands("b", "s1", addr="2001:db8:0::1") == ["set server b/s1 addr 2001:db8::1"]
    assert set_server_commands("b", "s1", state="maint") == ["set server b/s1 state maint"]
    for kwargs in ({"addr": "example.com"}, {"addr": "10.0.0.1", "port": 70000}, {"addr": "10.0.0.1", "port": 0},
                   {"port": 80}, {"weight": 257}, {"weight": -1}, {"state": "up"}):
        with pytest.raises(ValueError):
            set_server_commands("b", "s1", **kwargs)
    for backend, server in (("b c", "s1"), ("b", "s/1"), ("b;", "s")):
        with pytest.raises(ValueError):
            set_server_commands(backend, server, weight=1)


def test_map_commands() -> None:
    assert add_map_command("/d/hosts.map", "a.example.com", "app") == "add map /d/hosts.map a.example.com app"
    assert set_map_command("#2", "k", "v") == "set map #2 k v"
    assert del_map_command("/d/hosts.map", "k") == "del map /d/hosts.map k"
    for args in (("/m", "a b", "v"), ("/m", "k", "v;x"), ("/m", "k", "")):
        with pytest.raises(ValueError):
            add_map_command(*args)


# --- master CLI ---------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def fake_master(path: Path, script: list[str | None]) -> AsyncIterator[list[str]]:
    """A master CLI: answers one command per connection after the client half-closes. ``show proc`` answers
    come from ``script`` in turn (None: refuse, as while the master re-executes); ``reload`` answers nothing."""
    seen: list[str] = []
    answers = iter(script)
    state = {"last": script[0]}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cmd = (await reader.read()).decode().strip()
        seen.append(cmd)
        if cmd == "show proc":
            text = next(answers, state["last"])
            if text is None:
                writer.close()
                return
            state["last"] = text
            writer.write(text.encode())
        writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


NEW_WORKER = S.SHOW_PROC.replace("0 [failed: 0]", "1 [failed: 0]").replace("10045 ", "10099 ")


async def test_master_reload_confirmed_by_new_worker(sock_dir: Path) -> None:
    path = sock_dir / "master.sock"
    async with fake_master(path, [S.SHOW_PROC, None, S.SHOW_PROC, NEW_WORKER]) as seen:
        after = await MasterClient(path).reload(timeout=2)
    assert after.reloads == 1 and after.worker_pid == 10099
    assert seen[:2] == ["show proc", "reload"]


async def test_master_reload_failure_reported(sock_dir: Path) -> None:
    path = sock_dir / "master.sock"
    failed = S.SHOW_PROC.replace("0 [failed: 0]", "1 [failed: 1]")
    async with fake_master(path, [S.SHOW_PROC, failed]):
        with pytest.raises(ReloadFailed, match="refused the new configuration"):
            await MasterClient(path).reload(timeout=2)


async def test_master_reload_timeout(sock_dir: Path) -> None:
    path = sock_dir / "master.sock"
    async with fake_master(path, [S.SHOW_PROC]):
        with pytest.raises(ReloadFailed, match="no new worker"):
            await MasterClient(path).reload(timeout=0.1)


async def test_master_unreachable(sock_dir: Path) -> None:
    with pytest.raises(HAProxyUnavailable):
        await MasterClient(sock_dir / "nope.sock").show_proc()
    path = sock_dir / "master.sock"
    async with fake_master(path, ["Unknown command.\n"]):
        with pytest.raises(HAProxyUnavailable, match="unexpected answer"):
            await MasterClient(path).show_proc()


# --- a held connection (RuntimeClient(hold=True)) ---------------------------------------------------------

async def test_held_connection_carries_every_batch(sock_dir: Path) -> None:
    """Counted: batches on a held client open one connection and say ``prompt`` once; without ``hold``, one each."""
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        held = RuntimeClient(path, hold=True)
        for i in range(5):
            answers = await held.run([f"set server b/s1 weight {i}", "set server b/nope weight 1"])
            assert [a.ok for a in answers] == [True, False] and answers[1].error == "No such server."
        assert held.connections == 1 and seen.count("prompt") == 1
        assert seen.count("set server b/nope weight 1") == 5  # each command sent once
        fresh = RuntimeClient(path)
        for _ in range(5):
            await fresh.execute(["show info"])
        assert fresh.connections == 5


async def test_held_connection_dropped_is_opened_again(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        held = RuntimeClient(path, hold=True)
        await held.execute(["show info"])
        held.drop()  # the worker changed: the next batch must not go to the old one
        await held.execute(["show info"])
        assert held.connections == 2 and seen.count("prompt") == 2


async def test_held_connection_closed_by_haproxy_is_reopened_and_the_batch_sent_once(sock_dir: Path) -> None:
    """HAProxy closes an idle CLI connection (its stats timeout): the next batch goes over a new one, each command
    once; the retry happens only when nothing of the batch was answered."""
    path = sock_dir / "admin.sock"
    conns: list[asyncio.StreamWriter] = []
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        while line := await reader.readline():
            seen.append(line.decode().rstrip("\n"))
            writer.write(b"\n> ")
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    try:
        held = RuntimeClient(path, hold=True)
        await held.execute(["set server b/s1 weight 1"])
        conns[0].close()  # the idle timeout
        assert await held.execute(["set server b/s1 weight 2"]) == [""]
        assert held.connections == 2 and seen.count("set server b/s1 weight 2") == 1
    finally:
        server.close()


async def test_held_connection_is_not_retried_after_part_of_a_batch(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        held = RuntimeClient(path, hold=True)
        await held.execute(["show info"])
        with pytest.raises(HAProxyUnavailable, match="1 of 3"):
            await held.execute(["set server b/s1 weight 3", "close", "show info"])
        assert seen.count("set server b/s1 weight 3") == 1  # not sent again
        assert await held.execute(["show info"])  # a new connection for the next batch
        assert held.connections == 2


def _answers_slowly_until(release: asyncio.Event) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                               Awaitable[None]]:
    """An admin socket's handler answering every command at once but ``slow``, answered once ``release`` is set."""
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if line.startswith(b"slow"):
                await release.wait()
            writer.write(b"\n> ")
            await writer.drain()
        writer.close()
    return slow


async def test_held_connection_busy_sends_a_batch_over_its_own(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    release = asyncio.Event()

    server = await asyncio.start_unix_server(_answers_slowly_until(release), str(path))
    try:
        held = RuntimeClient(path, hold=True)
        first = asyncio.create_task(held.execute(["slow"]))
        await asyncio.sleep(0.05)
        assert await held.execute(["show info"]) == [""]  # not queued behind the slow batch
        release.set()
        assert await first == [""]
        assert held.connections == 2
        await held.execute(["show info"])
        assert held.connections == 2  # the held one again
    finally:
        server.close()


async def test_held_connection_timed_out_is_not_used_again(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    release = asyncio.Event()

    server = await asyncio.start_unix_server(_answers_slowly_until(release), str(path))
    try:
        held = RuntimeClient(path, hold=True, timeout=0.1)
        with pytest.raises(HAProxyUnavailable, match="no complete answer"):
            await held.execute(["slow"])
        release.set()
        # the late answer to "slow" must not be read as this batch's
        assert await held.execute(["show info"]) == [""]
        assert held.connections == 2
    finally:
        server.close()


async def test_operations_then_reads_go_in_one_batch(sock_dir: Path) -> None:
    """``apply_then``: the operations and the reads after them over one connection, pipelined; each refusal is the
    result of its own operation, and the reads' answers come back apart."""
    from haplane.model.change import Change
    from haplane.model.ops import CertDel, SetState, SetWeight

    c = Change("server-update", "t", "t")
    path = sock_dir / "admin.sock"
    async with fake_cli(path, haproxy_like) as seen:
        client = RuntimeClient(path)
        results, reads = await client.apply_then(
            [SetWeight("b", "nope", 3, c), SetWeight("b", "s1", 300, c), SetState("b", "s1", "ready", c)],
            ["show servers state"])
        assert [(r.ok, r.answer) for r in results] == [
            (False, "No such server."), (False, "not sent: weight 300 is not in 0..256"), (True, "")]
        assert reads == [S.SERVERS_STATE.rstrip("\n")]
        assert client.connections == 1
        assert seen == ["prompt", "set server b/nope weight 3", "set server b/s1 state ready", "show servers state"]
        with pytest.raises(ValueError, match="certificate"):
            await client.apply_then([CertDel("x", "/x.pem", "/l", c)], [])
