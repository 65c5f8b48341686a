"""A TLS prober in its own process, so its handshakes never compete with an in-process agent for the GIL.

    python bench/_tls_probe.py CAFILE [PAUSE_MS]

Reads lines ``PORT SNI SERIAL`` (SERIAL in hex) on stdin; handshakes with 127.0.0.1:PORT, SNI given, the chain
verified against CAFILE, until the leaf presented has SERIAL, then prints the CLOCK_MONOTONIC time
(``time.monotonic()``, comparable across processes on Linux) of that handshake, or ``timeout`` after 30 s. A
pause of 0.5 ms between handshakes, as bench_tls's in-process poller had.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

from cryptography import x509


def main() -> None:
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    pause = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0005
    for line in sys.stdin:
        port, sni, serial_hex = line.split()
        want = int(serial_hex, 16)
        deadline = time.monotonic() + 30
        result = "timeout"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as raw, \
                        ctx.wrap_socket(raw, server_hostname=sni) as tls:
                    der = tls.getpeercert(binary_form=True)
                    at = time.monotonic()
                if der is not None and x509.load_der_x509_certificate(der).serial_number == want:
                    result = repr(at)
                    break
            except (OSError, ssl.SSLError):  # the default certificate (not trusted) or the old one: not yet
                pass
            time.sleep(pause)
        print(result, flush=True)


if __name__ == "__main__":
    main()
