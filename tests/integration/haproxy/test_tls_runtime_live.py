"""Certificates changed through the Runtime API of a real HAProxy 2.6, with no reload: the ssl command
sequences of haplane.tls.runtime, checked by a TLS client that verifies the served chain against a test CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hx_support import StartHAProxy, free_port, tls_served

from haplane.errors import RuntimeCommandError
from haplane.testing_tls import TestCA
from haplane.tls import runtime as ssl
from haplane.tls.crtlist import CertFiles

pytestmark = pytest.mark.integration


def _config(state_dir: Path, files: CertFiles, port: int) -> str:
    return f"""global
    stats socket {state_dir}/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend https
    bind 127.0.0.1:{port} ssl crt {files.default_path} crt-list {files.crt_list_path} alpn h2,http/1.1
    http-request return status 200 content-type text/plain string ok
"""


async def _served(port: int, sni: str, ca: TestCA | None, tmp: Path) -> int:
    cafile = ca.write_root(tmp / "ca.pem") if ca else None
    return (await asyncio.to_thread(tls_served, port, sni, cafile=cafile)).serial


async def test_add_replace_remove_without_reload(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    ca = TestCA()
    files = CertFiles(state_dir)
    default = files.ensure_default()
    port = free_port()
    hp = await start_haproxy(_config(state_dir, files, port))
    reloads = (await hp.master.show_proc()).reloads
    lst = str(files.crt_list_path)
    path = files.path_of("web")

    first = ca.issue(["web.example.test"], serial=0x1001)
    ran = await ssl.install_cert(hp.runtime, path, first.pem, lst)
    assert ran == [f"new ssl cert {path}", f"set ssl cert {path} <<", f"commit ssl cert {path}",
                   f"add ssl crt-list {lst} {path}"]
    assert await _served(port, "web.example.test", ca, state_dir) == 0x1001
    # a name nothing covers gets the default certificate
    assert await _served(port, "other.example.test", None, state_dir) == int(default.info.serial, 16)

    second = ca.issue(["web.example.test"], serial=0x1002)
    ran = await ssl.install_cert(hp.runtime, path, second.pem, lst)
    assert ran == [f"set ssl cert {path} <<", f"commit ssl cert {path}"]  # in the list already: not added twice
    assert await _served(port, "web.example.test", ca, state_dir) == 0x1002
    state = await ssl.read_state(hp.runtime, lst, [path])
    assert state.listed == (path,) and state.transaction is None
    assert state.fingerprints[path] == second.cert.fingerprint(__import__("cryptography.hazmat.primitives.hashes",
                                                                          fromlist=["SHA1"]).SHA1()).hex().upper()

    assert await ssl.remove_cert(hp.runtime, path, lst) == [f"del ssl crt-list {lst} {path}",
                                                           f"del ssl cert {path}"]
    assert await _served(port, "web.example.test", None, state_dir) == int(default.info.serial, 16)
    assert await ssl.remove_cert(hp.runtime, path, lst) == []  # already gone
    assert (await hp.master.show_proc()).reloads == reloads


async def test_a_refused_commit_leaves_no_transaction_and_no_store(start_haproxy: StartHAProxy,
                                                                   state_dir: Path) -> None:
    ca = TestCA()
    files = CertFiles(state_dir)
    files.ensure_default()
    port = free_port()
    hp = await start_haproxy(_config(state_dir, files, port))
    lst = str(files.crt_list_path)
    a, b = ca.issue(["a.test"]), ca.issue(["b.test"])
    mismatched = a.chain_pem + b.key_pem  # only parse_bundle stands between this and HAProxy: check HAProxy too
    path = files.path_of("a")
    with pytest.raises(RuntimeCommandError) as err:
        await ssl.install_cert(hp.runtime, path, mismatched, lst)
    assert err.value.command == f"commit ssl cert {path}" and "inconsistencies" in err.value.message
    state = await ssl.read_state(hp.runtime, lst)
    assert state.transaction is None and path not in state.files and state.listed == ()

    # a replacement refused the same way keeps the old certificate serving
    await ssl.install_cert(hp.runtime, path, a.pem, lst)
    with pytest.raises(RuntimeCommandError):
        await ssl.install_cert(hp.runtime, path, mismatched, lst)
    state = await ssl.read_state(hp.runtime, lst)
    assert state.transaction is None and path in state.files
    assert await _served(port, "a.test", ca, state_dir) == a.serial


async def test_a_transaction_left_open_is_aborted_first(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    """HAProxy 2.6 has one certificate transaction: a 'set' for B while A's is open lands in A's. A crash
    between set and commit leaves one open; the next sequence aborts it before its own set."""
    ca = TestCA()
    files = CertFiles(state_dir)
    files.ensure_default()
    port = free_port()
    hp = await start_haproxy(_config(state_dir, files, port))
    lst = str(files.crt_list_path)
    a, b = ca.issue(["a.test"]), ca.issue(["b.test"])
    pa, pb = files.path_of("a"), files.path_of("b")
    await ssl.install_cert(hp.runtime, pa, a.pem, lst)
    # the behaviour the guard is for: B's payload into A's open transaction
    texts = await hp.runtime.execute([ssl.set_ssl_cert(pa, a.pem), ssl.new_ssl_cert(pb), ssl.set_ssl_cert(pb, b.pem)])
    assert texts[2].strip() == f"Transaction updated for certificate {pa}!"
    assert ssl.ssl_answer_error(f"set ssl cert {pb} <<", texts[2]) is not None
    await hp.runtime.execute([ssl.del_ssl_cert(pb)])
    assert (await ssl.read_state(hp.runtime, lst)).transaction == pa
    ran = await ssl.install_cert(hp.runtime, pb, b.pem, lst)
    assert ran[0] == f"abort ssl cert {pa}"
    assert await _served(port, "b.test", ca, state_dir) == b.serial
    assert await _served(port, "a.test", ca, state_dir) == a.serial


async def test_files_on_disk_load_the_same_set_after_a_reload(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    ca = TestCA()
    files = CertFiles(state_dir)
    files.ensure_default()
    port = free_port()
    config = _config(state_dir, files, port)
    hp = await start_haproxy(config)
    lst = str(files.crt_list_path)
    certs = {f"c{i}": ca.issue([f"c{i}.test"]) for i in range(3)}
    for name, c in certs.items():
        await ssl.install_cert(hp.runtime, files.path_of(name), c.pem, lst)
        files.put(name, c.pem, [n for n in certs if n <= name])
    await hp.reload(config)
    for name, c in certs.items():
        assert await _served(port, f"{name}.test", ca, state_dir) == c.serial
    assert files.listed() == sorted(certs)
