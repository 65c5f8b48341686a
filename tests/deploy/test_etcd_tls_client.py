"""deploy/etcd-tls-client/haproxy.cfg: a real etcd that requires TLS with client certificates (CA, server and client
certificates made here), reached by haplane's etcd store through the local HAProxy TLS client, and directly with the
store's own TLS settings (the two ways docs/deploy.md gives): writes, reads, a watch and a lease go through; without
the client certificate etcd refuses the connection."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.deploy.conftest import DEPLOY
from tests.support.procs import Proc, free_port, short_tmpdir, wait_until

from haplane.store import open_store
from haplane.store.base import Put

CONFIG = DEPLOY / "etcd-tls-client" / "haproxy.cfg"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as etcd and HAProxy read them."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("haplane test etcd CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: list[x509.ObjectIdentifier], san: bool
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                             x509.DNSName("localhost")]), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    # etcd's JSON gateway dials etcd's own gRPC port with the server certificate: it must be a client one too
    server, server_key = leaf("etcd", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], san=True)
    client, client_key = leaf("haplane", [ExtendedKeyUsageOID.CLIENT_AUTH], san=False)
    pem = serialization.Encoding.PEM
    files = {"ca": d / "ca.pem", "server": d / "server.pem", "server_key": d / "server.key",
             "client": d / "client.pem", "client_key": d / "client.key", "client_bundle": d / "client-bundle.pem"}
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["server"].write_bytes(server.public_bytes(pem))
    files["server_key"].write_bytes(_pem_key(server_key))
    files["client"].write_bytes(client.public_bytes(pem))
    files["client_key"].write_bytes(_pem_key(client_key))
    files["client_bundle"].write_bytes(client.public_bytes(pem) + _pem_key(client_key))
    for f in files.values():
        f.chmod(0o600)
    return files


def test_haplane_reaches_a_tls_only_etcd_through_the_local_haproxy(etcd_bin: str, haproxy_bin: str,
                                                                   tmp_path: Path) -> None:
    d = short_tmpdir("etls")
    pki = make_pki(d)
    cport, pport = free_port(), free_port()
    etcd = Proc([etcd_bin, "--name", "tls1", "--data-dir", str(d / "data"),
                 "--listen-client-urls", f"https://127.0.0.1:{cport}",
                 "--advertise-client-urls", f"https://127.0.0.1:{cport}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-cluster", f"tls1=http://127.0.0.1:{pport}",
                 "--cert-file", str(pki["server"]), "--key-file", str(pki["server_key"]),
                 "--trusted-ca-file", str(pki["ca"]), "--client-cert-auth"], d / "etcd.log")
    local = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "LOCAL_BIND": local, "ETCD1": f"127.0.0.1:{cport}", "ETCD2": f"127.0.0.1:{cport}",
           "ETCD3": f"127.0.0.1:{cport}", "ETCD_CA": str(pki["ca"]), "ETCD_CLIENT": str(pki["client_bundle"])}
    proxy: Proc | None = None
    try:
        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
        wait_until(lambda: httpx.get(f"https://127.0.0.1:{cport}/health", verify=with_cert, timeout=1).status_code
                   == 200, 30, what="etcd with TLS")
        # the cluster really wants the client certificate
        without = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"https://127.0.0.1:{cport}/v3/kv/range", json={"key": "eA=="}, verify=without, timeout=3)

        assert Proc([haproxy_bin, "-c", "-f", str(CONFIG)], d / "check.log", env=env).wait(30) == 0
        proxy = Proc([haproxy_bin, "-W", "-db", "-f", str(CONFIG)], d / "proxy.log", env=env)
        wait_until(lambda: httpx.get(f"http://{local}/health", timeout=1).status_code == 200, 30,
                   what="etcd through the local TLS client")
        asyncio.run(_store_round_trip(f"etcd://{local}/tls-test"))
        # the guide's other way: haplane's own TLS settings, straight to the same etcd
        asyncio.run(_store_round_trip(f"etcd://127.0.0.1:{cport}/tls-native", {
            "etcd_cacert": str(pki["ca"]), "etcd_cert": str(pki["client"]), "etcd_key": str(pki["client_key"])}))
    finally:
        if proxy is not None:
            proxy.stop()
        etcd.stop()


async def _store_round_trip(url: str, settings: dict[str, str | None] | None = None) -> None:
    store = open_store(url, settings)
    try:
        start = await store.revision()
        events = store.watch("/", start + 1)
        lease = await store.grant_lease(30)
        rev = await store.txn([], [Put("/services/web", '{"name": "web"}', lease=lease)])
        assert rev > start
        kv = await store.get("/services/web")
        assert kv is not None and kv.value == '{"name": "web"}'
        batch = await asyncio.wait_for(anext(aiter(events)), 10)
        assert [(e.type, e.key) for e in batch] == [("put", "/services/web")]
        await store.keepalive(lease)
        await store.revoke_lease(lease)
        assert await store.get("/services/web") is None  # went with its lease
    finally:
        await store.close()
