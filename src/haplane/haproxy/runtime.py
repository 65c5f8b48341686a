"""The Runtime API client: HAProxy's admin UNIX socket (``stats socket ... level admin``).

One ``RuntimeClient`` per socket path. A batch goes over ONE connection in interactive mode: ``prompt`` first,
then every command, pipelined; HAProxy answers each command followed by its ``> `` prompt, and the answers are
split on that. A 1,000-command batch costs about what one command costs with a connection each (see
bench/bench_runtime.py). (Commands joined by ``;`` on one line are answered the same way, a prompt after each:
no fewer round trips than lines pipelined in one write.)

By default a client holds no connection between batches. ``RuntimeClient(path, hold=True)`` keeps its
interactive connection open between batches (the agent's, through ``HAProxyProcess.held``): a batch on it is
one write and its answers, with no connect, accept and ``prompt`` exchange first (measured 0.06 ms against
0.8 ms a batch on an idle HAProxy, far more apart under load). A held connection stays with the worker it was
opened to, and after a reload the old worker, soft-stopping, still answers on it (its changes lost with it)
and lingers as long as the connection is open: whoever changes the worker calls ``drop()`` before and after
(``HAProxyProcess`` does, at start, reload, restart and stop). It is reopened after HAProxy closes it (its
``stats timeout``, a dead worker); a batch whose held connection was found closed before any answer came is sent
once more on a new connection (HAProxy read none of it). One batch at a time uses it: a batch sent while
another is on it goes over a connection of its own, as without ``hold``.

This is the one place that turns the plan's typed operations (``haplane.model.ops``) into command text:
``command_of(op)``, through the validated builders below.

Who calls what:
- the agent's apply step (through its ``HAProxyControl``): ``apply(ops)`` with the plan's operations, and
  reads which ones failed;
- the agent's observe step: ``execute()`` of ``show servers state`` / ``show stat`` / ``show map`` batches;
- the API/UI and ``haplane status``: ``command("show stat")``, ``info()``;
- tests and tools: ``run``, ``set_server``, the map helpers.

A batch is not a transaction: HAProxy runs every command of a pipelined batch even when an earlier one
failed. ``run(..., stop_on_error=True)`` sends one command at a time on the same connection and stops at the
first error (the rest come back as not sent), for sequences such as ``addr`` → ``weight`` → ``state ready``
where a later command must not run when an earlier one failed.

Every command passes ``validate_command``: no newline, no ``;`` (HAProxy's command separator), no
backslash (its escape), no control character, no ``<<`` payload marker. The ``*_command(s)`` builders
validate their arguments further (names, IP addresses, port and weight ranges), and ``command_of`` uses them.

A command that takes a payload (``set ssl cert <file> <<``) is a ``Payload``: its command line passes
``validate_command`` and its payload ``validate_payload`` (no empty line: an empty line ends a payload and
whatever followed would run as commands). On the wire it is ``<command> <<``, the payload's lines, and an
empty line; in interactive mode HAProxy prompts ``+ `` for each payload line, which the answer is stripped of.
An ``Answer`` names only the command line, never the payload (it may hold a private key).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from haplane.errors import HAProxyUnavailable, RuntimeCommandError
from haplane.haproxy.parse import (
    answer_error,
    parse_info,
    parse_map_list,
    parse_servers_state,
    parse_show_map,
    parse_stat,
)
from haplane.model.observed import Info, OpResult, ServerState, StatRow
from haplane.model.ops import (
    CertDel,
    CertPut,
    MapAdd,
    MapDel,
    MapSet,
    RuntimeOp,
    ServerAdminState,
    SetAddress,
    SetState,
    SetWeight,
)

__all__ = [
    "Answer", "Payload", "RuntimeClient", "ServerAdminState", "validate_payload",
    "add_map_command", "command_of", "del_map_command", "set_map_command",
    "set_server_commands", "show_map_command", "validate_command",
]

_PROMPT = b"\n> "
_READ_CHUNK = 1 << 16
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f;\\]")
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # HAProxy proxy and server names
_MAP_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f;\\]+")
_PAYLOAD_FORBIDDEN = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_CONT_PROMPTS = re.compile(r"^(?:\+ )+")
# tune.bufsize (16384) bounds a whole command with its payload; HAProxy refuses more
MAX_PAYLOAD = 16000


def validate_command(command: str) -> str:
    """``command`` if it is one safe Runtime API line; ``ValueError`` otherwise (the injection guard)."""
    if not command or not command.strip():
        raise ValueError("empty Runtime API command")
    m = _FORBIDDEN.search(command)
    if m:
        raise ValueError(f"Runtime API command contains {m.group()!r} (newline, ';', '\\' and control "
                         f"characters are refused): {command!r}")
    if command.rstrip().endswith("<<"):
        raise ValueError(f"Runtime API payload commands ('<<') are not supported: {command!r}")
    return command


def validate_payload(payload: str) -> str:
    """``payload`` if it can follow a ``<<`` command: printable text, no empty line (it would end the payload
    early), no carriage return or control character, within HAProxy's buffer; ``ValueError`` otherwise."""
    body = payload.rstrip("\n")
    if not body:
        raise ValueError("empty Runtime API payload")
    if "\n\n" in body or body.startswith("\n"):
        raise ValueError("a Runtime API payload must not contain an empty line (it ends the payload)")
    m = _PAYLOAD_FORBIDDEN.search(body)
    if m:
        raise ValueError(f"Runtime API payload contains the control character {m.group()!r}")
    if len(body) > MAX_PAYLOAD:
        raise ValueError(f"Runtime API payload of {len(body)} bytes is over {MAX_PAYLOAD} (tune.bufsize)")
    return body


@dataclass(frozen=True, slots=True)
class Payload:
    """A command followed by a payload, e.g. ``Payload("set ssl cert /x.pem", pem)``."""

    command: str
    payload: str

    def __post_init__(self) -> None:
        validate_command(self.command)
        validate_payload(self.payload)

    def __str__(self) -> str:
        return f"{self.command} <<"

    def wire(self) -> str:
        return f"{self.command} <<\n{self.payload.rstrip(chr(10))}\n"


Command = str | Payload


def _wire(cmd: Command) -> str:
    """The text of one command on the wire, without its final newline."""
    return cmd.wire() if isinstance(cmd, Payload) else cmd


def _shown(cmd: Command) -> str:
    return str(cmd)


def _checked(commands: Sequence[Command]) -> list[Command]:
    return [c if isinstance(c, Payload) else validate_command(c) for c in commands]


@dataclass(frozen=True, slots=True)
class Answer:
    """HAProxy's answer to one command of a batch. ``error`` is HAProxy's error line when it refused the
    command; ``sent`` is False for the commands ``stop_on_error`` did not send."""

    command: str
    text: str
    error: str | None = None
    sent: bool = True

    @property
    def ok(self) -> bool:
        return self.sent and self.error is None

    def raise_for_error(self) -> None:
        if not self.sent:
            raise RuntimeCommandError(self.command, "not sent: an earlier command of the batch failed")
        if self.error is not None:
            raise RuntimeCommandError(self.command, self.error)


# --- command builders -----------------------------------------------------------------------------------

def _name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a HAProxy name (letters, digits, '_', '.', ':', '-')")
    return value


def _map_token(value: str, what: str) -> str:
    if not _MAP_TOKEN.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be one word without ';', '\\' or control characters")
    return value


def set_server_commands(backend: str, server: str, *, addr: str | None = None, port: int | None = None,
                        weight: int | None = None, state: ServerAdminState | None = None) -> list[str]:
    """The ``set server`` commands for one server, in the order that never routes to a half-configured
    server: address (and port), then weight, then admin state."""
    target = f"{_name(backend, 'backend')}/{_name(server, 'server')}"
    out: list[str] = []
    if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
        raise ValueError(f"port {port!r} is not in 1..65535 (HAProxy would silently wrap it)")
    if addr is not None:
        ip = ipaddress.ip_address(addr)  # ValueError for anything that is not an IP address
        out.append(f"set server {target} addr {ip.compressed}" + (f" port {port}" if port is not None else ""))
    elif port is not None:
        raise ValueError("a port can only be set together with addr")
    if weight is not None:
        if not (isinstance(weight, int) and 0 <= weight <= 256):
            raise ValueError(f"weight {weight!r} is not in 0..256")
        out.append(f"set server {target} weight {weight}")
    if state is not None:
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state {state!r} is not ready, drain or maint")
        out.append(f"set server {target} state {state}")
    return out


def add_map_command(path: str, key: str, value: str) -> str:
    return f"add map {_map_token(path, 'map')} {_map_token(key, 'key')} {_map_token(value, 'value')}"


def set_map_command(path: str, key: str, value: str) -> str:
    return f"set map {_map_token(path, 'map')} {_map_token(key, 'key')} {_map_token(value, 'value')}"


def del_map_command(path: str, key: str) -> str:
    return f"del map {_map_token(path, 'map')} {_map_token(key, 'key')}"


def show_map_command(path: str) -> str:
    return f"show map {_map_token(path, 'map')}"


def get_map_command(path: str, key: str) -> str:
    """``get map``: HAProxy looks ``key`` up as its rules would (``parse_get_map`` keeps an exact match only)."""
    return f"get map {_map_token(path, 'map')} {_map_token(key, 'key')}"


def command_of(op: RuntimeOp) -> str:
    """The Runtime API command for one of the plan's operations, through the validated builders above.
    ``ValueError`` when a value would not stay one valid argument (an address that is not an IP, a weight
    out of range, a map word with a space...): such an operation is never sent."""
    match op:
        case SetAddress():
            return set_server_commands(op.backend, op.server, addr=op.address, port=op.port)[0]
        case SetWeight():
            return set_server_commands(op.backend, op.server, weight=op.weight)[0]
        case SetState():
            return set_server_commands(op.backend, op.server, state=op.state)[0]
        case MapAdd():
            return add_map_command(op.path, op.key, op.value)
        case MapSet():
            return set_map_command(op.path, op.key, op.value)
        case MapDel():
            return del_map_command(op.path, op.key)
        case CertPut():  # a sequence (see apply); shown by the command that carries the certificate
            from haplane.tls import runtime as ssl

            return str(ssl.set_ssl_cert(op.path, op.pem))
        case CertDel():
            from haplane.tls import runtime as ssl

            return ssl.del_ssl_cert(op.path)


# --- the client -----------------------------------------------------------------------------------------

class RuntimeClient:
    """Runtime API over ``socket_path``. ``timeout`` bounds a whole batch (connect + answers)."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 10.0, hold: bool = False) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self.hold = hold
        self.connections = 0  # connections opened (held or not)
        self._held: _Held | None = None
        self._held_lock: asyncio.Lock | None = None
        self._generation = 0  # drop() moves it on: a held connection of an older one is not used again

    def __repr__(self) -> str:
        return f"RuntimeClient({self.socket_path!r})"

    def drop(self) -> None:
        """Forget the held connection (``hold``): the next batch opens a new one. Call when HAProxy's worker
        changes (start, reload, restart, stop): a held connection stays with its worker, and an old worker
        answers on it while it soft-stops, its changes lost. A batch on it meanwhile finishes first."""
        self._generation += 1
        held = self._held
        if held is not None and not (self._held_lock is not None and self._held_lock.locked()):
            self._held = None
            held.close()

    # -- batches ---------------------------------------------------------------------------------------

    async def execute(self, commands: Sequence[Command]) -> list[str]:
        """Send ``commands`` over one connection, pipelined; one answer (HAProxy's text, stripped of the
        trailing blank line) per command, in order. Does not judge the answers: see ``run``.

        Raises ``ValueError`` for an unsafe command (before anything is sent) and ``HAProxyUnavailable`` when
        the socket cannot be reached or the connection ends before every answer came."""
        cmds = _checked(commands)
        if not cmds:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                return await self._pipelined(cmds)
        except TimeoutError:
            raise HAProxyUnavailable(f"{self.socket_path}: no complete answer within {self.timeout:g}s "
                                     f"to a batch of {len(cmds)} command(s)") from None

    async def run(self, commands: Sequence[Command], *, stop_on_error: bool = False,
                  judge: Callable[[str, str], str | None] = answer_error) -> list[Answer]:
        """Like ``execute``, with each answer judged (``Answer.error``, by ``judge(command, answer)``: HAProxy's
        error or None). With ``stop_on_error`` the commands go one at a time (still one connection) and the batch
        stops at the first refused command."""
        cmds = _checked(commands)
        if not stop_on_error:
            texts = await self.execute(cmds)
            return [Answer(_shown(c), t, judge(_shown(c), t)) for c, t in zip(cmds, texts, strict=True)]
        if not cmds:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                return await self._one_by_one(cmds, judge)
        except TimeoutError:
            raise HAProxyUnavailable(f"{self.socket_path}: no answer within {self.timeout:g}s") from None

    async def run_checked(self, commands: Sequence[Command], *, stop_on_error: bool = False) -> list[str]:
        """Run ``commands``; the answers' texts, or ``RuntimeCommandError`` naming the first refused command
        (the others of a pipelined batch have run all the same)."""
        answers = await self.run(commands, stop_on_error=stop_on_error)
        for a in answers:
            a.raise_for_error()
        return [a.text for a in answers]

    async def command(self, command: str) -> str:
        """One command; its answer, or ``RuntimeCommandError``."""
        return (await self.run_checked([command]))[0]

    async def apply(self, ops: Sequence[RuntimeOp]) -> list[OpResult]:
        """The plan's operations, in order; one result each. Single commands go pipelined over one connection;
        a certificate operation is a sequence of its own (``haplane.tls.runtime``: aborted on any refusal, so no
        transaction stays open). An operation ``command_of`` refuses is not sent and comes back failed, with the
        reason; the others run."""
        out: list[OpResult] = []
        batch: list[RuntimeOp] = []
        certs: list[CertPut | CertDel] = []
        for op in ops:
            if isinstance(op, CertPut | CertDel):
                out += (await self._apply_batch(batch))[0]
                batch = []
                certs.append(op)
            else:
                out += await self._apply_certs(certs)
                certs = []
                batch.append(op)
        return out + await self._apply_certs(certs) + (await self._apply_batch(batch))[0]

    async def _apply_certs(self, ops: Sequence[CertPut | CertDel]) -> list[OpResult]:
        """Certificate sequences one after the other, with HAProxy's ssl state read once for the run (and again
        only after a refusal), so a thousand certificates cost their own sequences, not a thousand reads."""
        from dataclasses import replace

        from haplane.tls import runtime as ssl  # tls.runtime builds on this module

        out: list[OpResult] = []
        state: ssl.SslState | None = None
        for op in ops:
            try:
                if state is None or state.listed_from != op.crt_list:
                    state = await ssl.read_state(self, op.crt_list)
                if isinstance(op, CertPut):
                    ran = await ssl.install_cert(self, op.path, op.pem, op.crt_list, state)
                    state = replace(state, files=state.files | {op.path}, transaction=None,
                                    listed=state.listed if op.path in state.listed else (*state.listed, op.path))
                else:
                    ran = await ssl.remove_cert(self, op.path, op.crt_list, state)
                    state = replace(state, files=state.files - {op.path},
                                    listed=tuple(p for p in state.listed if p != op.path))
            except RuntimeCommandError as exc:
                out.append(OpResult(op, exc.command, False, exc.message))
                state = None  # what the cleanup left: read it again
                continue
            except ValueError as exc:
                out.append(OpResult(op, "", False, f"not sent: {exc}"))
                continue
            out.append(OpResult(op, "; ".join(ran) or command_of(op), True, ""))
        return out

    async def apply_then(self, ops: Sequence[RuntimeOp], reads: Sequence[str]) -> tuple[list[OpResult], list[str]]:
        """The plan's operations (no certificate among them), then ``reads``, in ONE pipelined batch (a round trip,
        on a held connection no connect either): one result per operation, as ``apply`` gives them, and the
        reads' answer texts (HAProxy's, not judged). What the operations left, read right after them."""
        if any(isinstance(op, CertPut | CertDel) for op in ops):
            raise ValueError("apply_then takes no certificate operation (a sequence of its own: apply)")
        return await self._apply_batch(ops, reads)

    async def _apply_batch(self, ops: Sequence[RuntimeOp], reads: Sequence[str] = ()
                           ) -> tuple[list[OpResult], list[str]]:
        if not ops and not reads:
            return [], []
        results: list[OpResult | None] = []
        commands: list[str] = []
        for op in ops:
            try:
                commands.append(command_of(op))
                results.append(None)
            except ValueError as exc:
                results.append(OpResult(op, "", False, f"not sent: {exc}"))
        answered = await self.run([*commands, *reads])
        answers = iter(answered[:len(commands)])
        out: list[OpResult] = []
        for op, res in zip(ops, results, strict=True):
            if res is None:
                a = next(answers)
                res = OpResult(op, a.command, a.ok, a.text)
            out.append(res)
        return out, [a.text for a in answered[len(commands):]]

    # -- reads -----------------------------------------------------------------------------------------

    async def servers_state(self, backend: str | None = None) -> list[ServerState]:
        cmd = "show servers state" if backend is None else f"show servers state {_name(backend, 'backend')}"
        return parse_servers_state(await self.command(cmd))

    async def stat(self) -> list[StatRow]:
        return parse_stat(await self.command("show stat"))

    async def info(self) -> Info:
        return parse_info(await self.command("show info"))

    async def show_map(self, path: str) -> dict[str, str]:
        """The entries HAProxy holds for the map loaded from ``path`` (key → value)."""
        return parse_show_map(await self.command(show_map_command(path)))

    async def maps(self) -> dict[str, int]:
        """The map files HAProxy has loaded (path → id)."""
        return parse_map_list(await self.command("show map"))

    # -- writes ----------------------------------------------------------------------------------------

    async def set_server(self, backend: str, server: str, *, addr: str | None = None, port: int | None = None,
                         weight: int | None = None, state: ServerAdminState | None = None) -> None:
        """Change one server: address/port, then weight, then state, stopping at the first refusal."""
        cmds = set_server_commands(backend, server, addr=addr, port=port, weight=weight, state=state)
        await self.run_checked(cmds, stop_on_error=True)

    async def add_map(self, path: str, key: str, value: str) -> None:
        await self.command(add_map_command(path, key, value))

    async def set_map(self, path: str, key: str, value: str) -> None:
        await self.command(set_map_command(path, key, value))

    async def del_map(self, path: str, key: str) -> None:
        await self.command(del_map_command(path, key))

    async def put_map(self, path: str, key: str, value: str) -> None:
        """Make ``key`` map to ``value`` whether or not it is there (``set map``, else ``add map``)."""
        answers = await self.run([set_map_command(path, key, value)])
        if answers[0].ok:
            return
        await self.command(add_map_command(path, key, value))

    async def wait_ready(self, timeout: float = 5.0, interval: float = 0.01) -> None:
        """Wait until the socket answers (after a start or a reload); ``HAProxyUnavailable`` at ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.execute(["show info"])
                return
            except HAProxyUnavailable as exc:
                if loop.time() >= deadline:
                    raise HAProxyUnavailable(f"{self.socket_path}: not answering after {timeout:g}s: {exc}") from exc
            await asyncio.sleep(interval)

    async def wait_worker(self, pid: int, timeout: float = 10.0, interval: float = 0.005) -> None:
        """Wait until the socket is answered by worker ``pid`` (``show info`` Pid). Right after a reload the
        old worker may still hold the admin socket for a moment; a command it takes is lost with it. Call
        this with the new worker's pid (from ``show proc``) before sending Runtime API changes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: int | None = None
        while True:
            try:
                texts = await self.execute(["show info"])
                seen = parse_info(texts[0]).pid
                if seen == pid:
                    return
            except HAProxyUnavailable:
                pass
            if loop.time() >= deadline:
                raise HAProxyUnavailable(f"{self.socket_path}: worker {pid} does not answer within {timeout:g}s "
                                         f"(last answered by {seen})")
            await asyncio.sleep(interval)

    # -- the wire --------------------------------------------------------------------------------------

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            conn = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise HAProxyUnavailable(f"{self.socket_path}: cannot connect: {exc.strerror or exc}") from exc
        self.connections += 1
        return conn

    async def _pipelined(self, cmds: list[Command]) -> list[str]:
        if self.hold:
            lock = self._held_lock
            if lock is None:
                lock = self._held_lock = asyncio.Lock()
            if not lock.locked():  # else a batch is on it: this one goes over a connection of its own
                async with lock:
                    return await self._on_held(cmds)
        reader, writer = await self._connect()
        try:
            return await self._exchange(reader, writer, _Frames(), cmds, prompt=True)
        finally:
            await _close(writer)

    async def _on_held(self, cmds: list[Command]) -> list[str]:
        held = self._held
        if held is not None and (held.generation != self._generation or held.reader.at_eof()
                                 or held.writer.is_closing()):
            self._held = None
            held.close()
            held = None
        reused = held is not None
        if held is None:
            held = await self._open_held()
        try:
            return await self._exchange(held.reader, held.writer, held.frames, cmds, prompt=False)
        except HAProxyUnavailable:
            self._held = None
            held.close()
            if not reused or held.frames.received:
                raise
        except BaseException:  # cancelled (the batch's timeout) or a bug: the stream's state is unknown
            self._held = None
            held.close()
            raise
        # HAProxy had closed the held connection (its stats timeout, a worker gone) before answering any of the
        # batch: it read none of it. Once more, on a new connection
        held = await self._open_held()
        try:
            return await self._exchange(held.reader, held.writer, held.frames, cmds, prompt=False)
        except BaseException:
            self._held = None
            held.close()
            raise

    async def _open_held(self) -> _Held:
        reader, writer = await self._connect()
        held = _Held(reader, writer, _Frames(), self._generation)
        try:
            writer.write(b"prompt\n")
            await held.frames.read(reader, 1, self.socket_path)  # the (empty) answer to "prompt"
        except OSError as exc:
            held.close()
            raise HAProxyUnavailable(f"{self.socket_path}: connection failed: {exc.strerror or exc}") from exc
        except BaseException:
            held.close()
            raise
        held.frames.received = 0
        self._held = held
        return held

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: _Frames,
                        cmds: list[Command], *, prompt: bool) -> list[str]:
        """Send ``cmds`` (after ``prompt`` on a new connection) and read one answer each."""
        payload = (("prompt\n" if prompt else "") + "\n".join(_wire(c) for c in cmds) + "\n").encode()

        async def send() -> None:
            writer.write(payload)
            await writer.drain()

        frames.received = 0
        sender = asyncio.create_task(send())
        try:
            if prompt:
                await frames.read(reader, 1, self.socket_path)  # the (empty) answer to "prompt"
            answers = await frames.read(reader, len(cmds), self.socket_path)
            await sender
            return [_CONT_PROMPTS.sub("", a) if isinstance(c, Payload) else a for c, a in zip(cmds, answers,
                                                                                              strict=True)]
        except OSError as exc:
            raise HAProxyUnavailable(f"{self.socket_path}: connection failed: {exc.strerror or exc}") from exc
        finally:
            if not sender.done():
                sender.cancel()
            elif not sender.cancelled():
                sender.exception()  # retrieved: the failure to read says what happened

    async def _one_by_one(self, cmds: list[Command], judge: Callable[[str, str], str | None]) -> list[Answer]:
        reader, writer = await self._connect()
        out: list[Answer] = []
        try:
            frames = _Frames()
            writer.write(b"prompt\n")
            await frames.read(reader, 1, self.socket_path)
            failed = False
            for cmd in cmds:
                if failed:
                    out.append(Answer(_shown(cmd), "", None, sent=False))
                    continue
                writer.write(_wire(cmd).encode() + b"\n")
                text = (await frames.read(reader, 1, self.socket_path))[0]
                if isinstance(cmd, Payload):
                    text = _CONT_PROMPTS.sub("", text)
                answer = Answer(_shown(cmd), text, judge(_shown(cmd), text))
                failed = answer.error is not None
                out.append(answer)
            return out
        except OSError as exc:
            raise HAProxyUnavailable(f"{self.socket_path}: connection failed: {exc.strerror or exc}") from exc
        finally:
            await _close(writer)


class _Frames:
    """Splits the interactive-mode stream into answers: each ends at the next ``\\n> `` prompt.

    HAProxy ends an answer with an empty line and then the prompt (``text\\n\\n> ``; an empty answer is just
    ``\\n> ``), but a few error answers lack the empty line (``Empty weight string empty or preceded by
    garbage\\n> ``), so the prompt alone is the delimiter. No answer of a command haplane sends has a line
    starting with ``> ``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.start = 0  # where the next answer begins in buf
        self.scan = 0  # where to look for the next prompt
        self.received = 0  # bytes read since it was last set to 0

    async def read(self, reader: asyncio.StreamReader, count: int, where: str) -> list[str]:
        out: list[str] = []
        buf = self.buf
        while len(out) < count:
            i = buf.find(_PROMPT, self.scan)
            if i >= 0:
                out.append(buf[self.start:i].decode("utf-8", "replace").rstrip("\n"))
                self.start = self.scan = i + len(_PROMPT)
                continue
            del buf[:self.start]  # compact only before reading more: one move per chunk, not per answer
            self.start = 0
            self.scan = max(0, len(buf) - len(_PROMPT) + 1)
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                raise HAProxyUnavailable(f"{where}: HAProxy closed the connection before answering "
                                         f"({len(out)} of {count} answers)")
            buf += chunk
            self.received += len(chunk)
        return out


@dataclass(slots=True)
class _Held:
    """A held interactive connection (``RuntimeClient(hold=True)``), opened at ``generation``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: _Frames
    generation: int

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: its event loop is closed already
            self.writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except OSError:
        pass
