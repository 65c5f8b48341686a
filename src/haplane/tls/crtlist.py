"""The certificate files HAProxy loads at start and on reload, kept in step with what the Runtime API serves.

In ``<state_dir>/tls/``::

    default.pem     the default certificate (first on the bind line: served when no SNI matches); made once,
                    self-signed, at first start, and kept
    certs/<name>.pem  each certificate: chain then key (mode 600)
    crt-list        one line per certificate file, sorted by name (no SNI filter: the certificate's own names
                    select it)

Every file is replaced atomically (``haplane.haproxy.files.atomic_write``: temp file, fsync, rename), so a
crash leaves the old or the new file, never half of one; a file whose content is already right is not
rewritten (a thousand certificates at start cost a thousand reads, not a thousand fsyncs). The Runtime API
changes HAProxy's memory; these files make the next reload and the next start load the same set.

Who calls it: the agent, after each runtime certificate change (``put``/``remove``) and before a reload or a
start (``sync``). Blocking: call it in a thread from async code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from haplane.haproxy.files import atomic_write
from haplane.tls.certs import CertBundle, make_self_signed, parse_bundle, split_combined, validate_cert_name

__all__ = ["TLS_DIR", "CertFiles"]

TLS_DIR = "tls"
DEFAULT_NAME = "default.pem"
CRT_LIST = "crt-list"
CERTS = "certs"


class CertFiles:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir).absolute() / TLS_DIR
        self.certs_dir = self.dir / CERTS
        self.default_path = self.dir / DEFAULT_NAME
        self.crt_list_path = self.dir / CRT_LIST

    def path_of(self, name: str) -> str:
        """The path HAProxy knows a certificate by (in the crt-list and in ``show ssl cert``)."""
        return str(self.certs_dir / f"{validate_cert_name(name)}.pem")

    def name_of(self, path: str) -> str | None:
        """The certificate name of a path in ``certs/``, or None for any other path (the default certificate)."""
        p = Path(path)
        if p.parent != self.certs_dir or p.suffix != ".pem":
            return None
        return p.stem

    def ensure_default(self, common_name: str = "haplane default certificate") -> CertBundle:
        """The default certificate, made (self-signed, ten years) if there is none or it does not parse."""
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        try:
            text = self.default_path.read_text(encoding="ascii")
            chain, key = split_combined(text)
            return parse_bundle(chain, key, time.time(), allow_expired=True)
        except (OSError, ValueError):
            pass  # missing or unreadable: make one (haplane made the one before, too)
        bundle = make_self_signed(common_name, time.time())
        atomic_write(self.default_path, bundle.pem, mode=0o600)
        if not self.crt_list_path.exists():
            atomic_write(self.crt_list_path, "", mode=0o600)
        return bundle

    def _write_if_changed(self, path: Path, text: str) -> bool:
        try:
            if path.read_text(encoding="ascii") == text:
                return False
        except (OSError, ValueError):
            pass
        atomic_write(path, text, mode=0o600)
        return True

    def crt_list_text(self, names: Iterable[str]) -> str:
        return "".join(f"{self.path_of(n)}\n" for n in sorted(set(names)))

    def put(self, name: str, pem: str, names: Iterable[str]) -> None:
        """Write one certificate's file, then the crt-list naming ``names`` (which includes it)."""
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        self._write_if_changed(Path(self.path_of(name)), pem)
        self._write_if_changed(self.crt_list_path, self.crt_list_text(names))

    def remove(self, name: str, names: Iterable[str]) -> None:
        """Drop a certificate from the crt-list first (a reload must never name a missing file), then its file."""
        self._write_if_changed(self.crt_list_path, self.crt_list_text(names))
        try:
            os.unlink(self.path_of(name))
        except FileNotFoundError:
            pass

    def apply(self, puts: Mapping[str, str], removes: Iterable[str] = ()) -> None:
        """A batch of runtime changes: the files put, the crt-list written once (what it lists, plus the puts,
        minus the removes), then the removed files unlinked."""
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        gone = set(removes) - set(puts)
        for name, pem in puts.items():
            self._write_if_changed(Path(self.path_of(name)), pem)
        names = (set(self.listed()) | set(puts)) - gone
        self._write_if_changed(self.crt_list_path, self.crt_list_text(names))
        for name in gone:
            Path(self.path_of(name)).unlink(missing_ok=True)

    def sync(self, wanted: Mapping[str, str]) -> int:
        """Make the directory hold exactly ``wanted`` (name → PEM) and a crt-list naming them; returns how many
        files were written or removed. Files first, then the list, then stale files: the list on disk never
        names a file that is not there."""
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        changed = sum(self._write_if_changed(Path(self.path_of(n)), pem) for n, pem in wanted.items())
        changed += self._write_if_changed(self.crt_list_path, self.crt_list_text(wanted))
        for entry in self.certs_dir.iterdir():
            name = self.name_of(str(entry))
            if name is not None and name not in wanted:
                entry.unlink(missing_ok=True)
                changed += 1
        return changed

    def listed(self) -> list[str]:
        """The names the crt-list on disk holds."""
        try:
            lines = self.crt_list_path.read_text(encoding="ascii").splitlines()
        except (OSError, ValueError):
            return []
        return [n for n in (self.name_of(line.split()[0]) for line in lines if line.strip()) if n]
