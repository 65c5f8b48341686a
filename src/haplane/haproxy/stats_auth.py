"""Credentials of HAProxy's own stats page and Prometheus exporter (``haproxy_stats_port``).

HAProxy checks a ``userlist`` password with crypt(3); haplane hashes with the same library HAProxy links
(libcrypt, SHA-512 crypt), so the hash is one HAProxy reads, and the password itself never appears in the
rendered config (which the API shows to read tokens and the activity log diffs). The salt is derived from the
password, so every render of the same settings is the same text (no spurious reload)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import secrets
from pathlib import Path

from haplane.errors import ConfigurationError

PASSWORD_FILE = "haproxy-stats.password"
_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def crypt_sha512(password: str) -> str:
    """``$6$<salt>$<hash>`` of ``password`` through the system's crypt(3)."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise ConfigurationError(f"cannot load libcrypt to hash the stats password: {exc}") from None
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    digest = hashlib.sha256(("haplane-stats-salt|" + password).encode()).digest()
    salt = "".join(_ALPHABET[b % 64] for b in digest[:16])
    out = lib.crypt(password.encode(), f"$6${salt}$".encode())
    if not out or not out.startswith(b"$6$"):
        raise ConfigurationError("the system's crypt(3) does not do SHA-512 crypt")
    return str(out.decode())


def stats_password(state_dir: Path, given: str | None) -> str:
    """The password given in the settings, else the one made once and kept (owner-only) in the state dir."""
    if given:
        return given
    path = state_dir / PASSWORD_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        password = secrets.token_urlsafe(18)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(password + "\n")
        return password
