"""A directory of PEM files, watched: for operators who already have a certificate pipeline (certbot, cert-manager
syncs, a vault agent). ADAPTER (disk, store).

Each ``NAME.pem`` is one certificate: the chain and its key in one file (HAProxy's ``crt`` form), or the chain
alone with the key beside it in ``NAME.key`` (as HAProxy looks for it). ``NAME`` is the certificate's name in the
registry. The directory's whole view is written as one source-owned set (``dir:<id>``) in one transaction: a file
added, changed or removed adds, replaces or removes its certificate, and nothing else; a name the API or ACME owns
is left to its owner. A file that does not pass the registry's checks is skipped with a warning naming the file
and the rule (the rest goes ahead), and is tried again when it changes.

Changes are noticed by polling the directory's entries (name, size, mtime) every ``interval`` seconds: a few
``stat`` calls, no dependency, and it works on every filesystem (inotify misses changes on NFS and in some
container mounts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path

from haplane.errors import HaplaneError, ValidationError
from haplane.tls.certs import CertBundle, parse_bundle, split_combined, validate_cert_name
from haplane.tls.store import CertificateStore

log = logging.getLogger("haplane.certs-dir")

__all__ = ["CertDirSource", "scan_dir"]


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    with os.scandir(directory) as it:
        for e in it:
            if e.is_file() and (e.name.endswith(".pem") or e.name.endswith(".key")):
                st = e.stat()
                out.append((e.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def scan_dir(directory: Path, now: float) -> tuple[dict[str, CertBundle], dict[str, str]]:
    """(name → bundle, file → why it was skipped) for the PEM files of ``directory``."""
    bundles: dict[str, CertBundle] = {}
    skipped: dict[str, str] = {}
    for path in sorted(directory.glob("*.pem")):
        if path.name.startswith("."):
            continue
        try:
            name = validate_cert_name(path.stem, "file name")
            text = path.read_text(encoding="ascii")
            chain, key = split_combined(text)
            if key is None:
                key_file = path.with_suffix(".key")
                if not key_file.exists():
                    key_file = Path(str(path) + ".key")  # HAProxy's own rule: <crt>.key
                key = key_file.read_text(encoding="ascii") if key_file.exists() else None
            bundles[name] = parse_bundle(chain, key, now)
        except ValidationError as exc:
            skipped[path.name] = str(exc)
        except (OSError, UnicodeDecodeError) as exc:
            skipped[path.name] = f"cannot be read: {exc}"
    return bundles, skipped


class CertDirSource:
    def __init__(self, directory: str | os.PathLike[str], certs: CertificateStore, interval: float = 2.0) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.certs = certs
        self.interval = interval
        self.source = "dir:" + hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        self.skipped: dict[str, str] = {}
        self.last: tuple[tuple[str, int, int], ...] | None = None

    async def sync_once(self) -> list[str]:
        """Read the directory and write its view; what changed, in words."""
        bundles, skipped = await asyncio.to_thread(scan_dir, self.directory, time.time())
        for name, why in skipped.items():
            if self.skipped.get(name) != why:
                log.warning("certs-dir %s: %s skipped: %s", self.directory, name, why)
        self.skipped = skipped
        _rev, changes = await self.certs.replace_source(self.source, bundles)
        for c in changes:
            log.info("certs-dir %s: %s", self.directory, c)
        return changes

    async def run(self) -> None:
        """Poll forever; a store or disk error is logged and tried again at the next tick."""
        log.info("watching %s for certificates (every %.1fs), as source %s", self.directory, self.interval,
                 self.source)
        while True:
            try:
                seen = await asyncio.to_thread(_fingerprint, self.directory)
                if seen != self.last:
                    await self.sync_once()
                    self.last = seen
            except (OSError, HaplaneError) as exc:
                log.warning("certs-dir %s: %s (trying again)", self.directory, exc)
            await asyncio.sleep(self.interval)
