"""A real ACME server for tests and benchmarks, on loopback only. No pytest in here.

- ``LoopbackDNS``: a DNS server (``dnslib``) on 127.0.0.1 that answers every A query with 127.0.0.1 (and AAAA
  with nothing), so pebble's HTTP-01 validation of any test name comes back to HAProxy on this machine.
- ``Pebble``: Debian's ``pebble`` (Let's Encrypt's test ACME server) on free loopback ports, with its own TLS
  certificate from a ``haplane.testing_tls.TestCA`` (``ca_file`` is what an ACME client must trust),
  ``-dnsserver`` pointed at a ``LoopbackDNS``, ``httpPort`` at the port HAProxy serves plain HTTP on, no
  validation sleeps and no nonce rejections (``PEBBLE_VA_NOSLEEP=1``, ``PEBBLE_WFE_NONCEREJECT=0``), and no
  reuse of valid authorizations (``PEBBLE_AUTHZREUSE=0``: a renewal validates again). ``root_pem()`` is the
  root of the certificates it issues (new at every start), fetched from its management interface.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import urllib.request
from pathlib import Path

from support.procs import Proc, free_port

__all__ = ["LoopbackDNS", "Pebble"]


class LoopbackDNS:
    """Every name resolves to 127.0.0.1. UDP and TCP on one free loopback port."""

    def __init__(self) -> None:
        from dnslib import QTYPE, RR, A
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        class _Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request, handler):  # type: ignore[no-untyped-def]
                reply = request.reply()
                q = request.q
                if q.qtype in (QTYPE.A, QTYPE.ANY):
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=1))
                return reply

        self.port = free_port()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._udp = DNSServer(_Resolver(), port=self.port, address="127.0.0.1", logger=quiet)
        self._tcp = DNSServer(_Resolver(), port=self.port, address="127.0.0.1", tcp=True, logger=quiet)
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LoopbackDNS:
        self._udp.start_thread()
        self._tcp.start_thread()
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.stop()
            server.server.server_close()


class Pebble:
    def __init__(self, pebble_bin: str, base_dir: Path, http_port: int, dns: LoopbackDNS) -> None:
        from haplane.testing_tls import TestCA

        self.bin = pebble_bin
        self.dir = base_dir
        self.http_port = http_port
        self.dns = dns
        self.port = free_port()
        self.mgmt_port = free_port()
        ca = TestCA("pebble listener CA")
        listener = ca.issue(["localhost"])
        self.ca_file = str(base_dir / "listener-ca.pem")
        ca.write_root(self.ca_file)
        (base_dir / "cert.pem").write_text(listener.chain_pem)
        (base_dir / "key.pem").write_text(listener.key_pem)
        self.config = base_dir / "pebble-config.json"
        self.config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(base_dir / "cert.pem"), "privateKey": str(base_dir / "key.pem"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}))
        self.proc: Proc | None = None

    @property
    def directory_url(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def start(self, timeout: float = 20.0) -> Pebble:
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.proc = Proc([self.bin, "-config", str(self.config), "-dnsserver", self.dns.address],
                         self.dir / "pebble.log", env=env, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._get(self.directory_url)
                return self
            except OSError as exc:
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"pebble did not start: {exc}\n{self.proc.log_tail()}") from exc
                time.sleep(0.05)

    def _get(self, url: str) -> bytes:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if "localhost" not in url:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the management interface's own certificate: same listener cert
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            data: bytes = r.read()
            return data

    def root_pem(self) -> str:
        """The root of the chains pebble issues (pebble makes a new one at every start)."""
        return self._get(f"https://localhost:{self.mgmt_port}/roots/0").decode()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)
            self.proc = None
