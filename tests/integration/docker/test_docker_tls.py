"""DOCKER_HOST=tcp://... with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI reads them: the real
dockerd's API behind a TLS listener that demands a client certificate (a byte relay to the daemon's socket,
since the test daemon listens on a unix socket only)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.procs import Dockerd

from haplane.registry import RegistryStore
from haplane.sources.base import StoreSink
from haplane.sources.docker import DockerSource, docker_socket_reachable
from haplane.store.memory import MemoryStore
from haplane.tasks import name, stop_tasks, where

pytestmark = pytest.mark.integration


def _pki(base: Path) -> tuple[Path, Path]:
    """A CA; a server certificate for 127.0.0.1 and a client certificate signed by it. Returns (client dir with
    ca.pem, cert.pem, key.pem; server dir with ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test-ca")).issuer_name(name("test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    dirs = []
    for role in ("client", "server"):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(role)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
        if role == "server":
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        d = base / role
        d.mkdir()
        (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / "key.pem").write_bytes(pem_key(key))
        dirs.append(d)
    return dirs[0], dirs[1]


@contextlib.asynccontextmanager
async def tls_relay(dockerd: Dockerd, server_dir: Path) -> AsyncIterator[int]:
    """127.0.0.1:<port> speaking TLS (client certificate required), relayed to the daemon's unix socket."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(server_dir / "ca.pem"))
    ctx.load_cert_chain(str(server_dir / "cert.pem"), str(server_dir / "key.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, ssl.SSLError):
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        daemon_r, daemon_w = await asyncio.open_unix_connection(str(dockerd.socket))
        await asyncio.gather(pipe(client_r, daemon_w), pipe(daemon_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tcp_with_tls_verify_and_a_client_certificate(tmp_path: Path, dockerd: Dockerd,
                                                             busybox_image: str) -> None:
    client_dir, server_dir = _pki(tmp_path)
    async with tls_relay(dockerd, server_dir) as port:
        host = f"tcp://127.0.0.1:{port}"
        env = {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(client_dir)}
        assert await asyncio.to_thread(docker_socket_reachable, env)
        # no client certificate: refused by the daemon's listener; the watcher retries rather than dying
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "ca.pem").write_bytes((client_dir / "ca.pem").read_bytes())
        assert not await asyncio.to_thread(docker_socket_reachable, {**env, "DOCKER_CERT_PATH": str(bare)})

        await asyncio.to_thread(dockerd.run, "--name", "tls-asteroid", "--label", "haplane.address=127.0.0.9",
                                "-e", "SERVICE_NAME=web", "-e", "PORT=8080", busybox_image, "sleep", "600")
        reg = RegistryStore(MemoryStore())
        refused = DockerSource(name="docker-bare", env={**env, "DOCKER_CERT_PATH": str(bare)}, backoff_cap=0.2)
        source = DockerSource(name="docker-tls", env=env)
        tasks = [asyncio.create_task(s.run(StoreSink(reg))) for s in (refused, source)]
        try:
            await asyncio.wait_for(source.connected.wait(), 30)
            assert [i.id for i, _ in await reg.list_instances("web")] == ["tls-asteroid.tls"]
            await asyncio.to_thread(dockerd.cli, "kill", "tls-asteroid")  # events flow over TLS too
            for _ in range(600):
                if not await reg.list_instances("web"):
                    break
                await asyncio.sleep(0.05)
            assert await reg.list_instances("web") == []
            assert not refused.connected.is_set() and not tasks[0].done()
        finally:
            # bounded: once in a whole-suite run under load one of the two ignored its cancel and the test sat
            # until pytest's 300 s timeout with no stack; now it fails at once, naming where the task sits
            stuck = await stop_tasks(tasks, grace=15)
            assert not stuck, f"did not stop on cancel: {[(name(t), where(t)) for t in stuck]}"
