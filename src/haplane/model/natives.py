"""Natives: the raw HAProxy lines an admin puts in a Thalassa frontend or backend. PURE.

A native is checked as HAProxy will read it: split with HAProxy's own tokenisation
(``model.cfgtokens.split_line``: quotes, escapes, comments, variables), then held to an ALLOWLIST of the
directives HAProxy 2.6 takes in the section that owns it (``ALLOWED``), and to rules that keep it off the
host: it may not open a section (``"global"``, ``\\x67lobal``), expand an environment variable, name a
``global``-only directive (``stats socket``, ``lua-load``, ``program``), read a file (``errorfile``, ``return
... file``, ``-f`` pattern files, ``map(...)`` files, ``crt``/``ca-file``), run code (``lua.*``, ``filter``,
``external-check``), read the process environment (``env(...)``), log to a path, or change what haplane owns
(``bind``, ``server``, ``mode``). An admin token stays an admin of the load balancer, never root on the host.
What passes is then checked with the whole config by real ``haproxy -c`` before it is stored.

``docs/migrating.md`` ("Natives") lists the same rules for operators.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from haplane.errors import MISSING, ValidationError
from haplane.model.cfgtokens import LineError, split_line

Section = Literal["frontend", "backend"]
MAX_LENGTH = 2048

_FE: frozenset[Section] = frozenset({"frontend"})
_BE: frozenset[Section] = frozenset({"backend"})
_BOTH: frozenset[Section] = _FE | _BE

# directive → the sections whose natives may hold it (HAProxy 2.6 proxy keywords, less what reaches the host or
# what haplane renders from a field)
ALLOWED: dict[str, frozenset[Section]] = {
    "acl": _BOTH, "http-request": _BOTH, "http-response": _BOTH, "http-after-response": _BOTH,
    "tcp-request": _BOTH, "redirect": _BOTH, "option": _BOTH, "timeout": _BOTH, "log": _BOTH, "log-tag": _BOTH,
    "compression": _BOTH, "stick-table": _BOTH, "stats": _BOTH, "http-error": _BOTH, "description": _BOTH,
    "maxconn": _FE, "backlog": _FE, "rate-limit": _FE, "use_backend": _FE, "default_backend": _FE,
    "capture": _FE, "declare": _FE, "log-format": _FE, "log-format-sd": _FE, "error-log-format": _FE,
    "unique-id-format": _FE, "unique-id-header": _FE, "monitor-uri": _FE, "monitor": _FE,
    "tcp-response": _BE, "use-server": _BE, "balance": _BE, "hash-type": _BE, "hash-balance-factor": _BE,
    "retries": _BE, "retry-on": _BE, "http-reuse": _BE, "http-check": _BE, "tcp-check": _BE, "fullconn": _BE,
    "stick": _BE, "persist": _BE, "force-persist": _BE, "ignore-persist": _BE, "http-send-name-header": _BE,
    "max-keep-alive-queue": _BE,
}

# option NAME → sections (``no option NAME`` and ``default option NAME`` too)
OPTIONS: dict[str, frozenset[Section]] = {
    **{o: _BOTH for o in (
        "forwardfor", "originalto", "http-server-close", "httpclose", "http-keep-alive", "http-buffer-request",
        "http-no-delay", "nolinger", "splice-auto", "splice-request", "splice-response", "independent-streams",
        "http-pretend-keepalive", "httplog", "tcplog", "http-ignore-probes", "contstats")},
    **{o: _FE for o in (
        "dontlognull", "dontlog-normal", "log-separate-errors", "logasap", "socket-stats", "clitcpka",
        "tcp-smart-accept", "http-use-proxy-header", "accept-invalid-http-request", "h1-case-adjust-bogus-client",
        "disable-h2-upgrade", "http-restrict-req-hdr-names", "idle-close-on-response")},
    **{o: _BE for o in (
        "httpchk", "ssl-hello-chk", "smtpchk", "mysql-check", "pgsql-check", "redis-check", "ldap-check",
        "tcp-check", "spop-check", "log-health-checks", "redispatch", "persist", "prefer-last-server",
        "abortonclose", "allbackups", "checkcache", "srvtcpka", "tcp-smart-connect", "accept-invalid-http-response",
        "h1-case-adjust-bogus-server")},
}

STATS_ALLOWED = frozenset({"enable", "uri", "realm", "auth", "refresh", "hide-version", "show-legends",
                           "show-node", "show-desc", "scope", "admin", "http-request"})
# actions whose arguments may name a file to answer with
_ANSWERING = frozenset({"return", "deny", "tarpit"})
_FILE_WORDS = frozenset({"file", "lf-file", "errorfile", "errorfiles"})
# words that name a file or a certificate wherever they stand
_FILE_ARGS = frozenset({"-f", "-M", "crt", "crt-list", "ca-file", "crl-file"})
# sample fetches / converters / actions that read a file, the process environment, or run Lua
_REACHES_HOST = re.compile(r"(?<![A-Za-z0-9_-])(?:(?:map(?:_[a-z0-9_]+)?|set-map|del-map|add-acl|del-acl|env)\("
                           r"|lua\.)")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_PORT = re.compile(r"[0-9]{1,5}")
DOC = "see docs/migrating.md, Natives"


def native_line(value: Any, field: str, section: Section) -> str:
    """One raw HAProxy directive for a ``section`` (frontend or backend), as the admin wrote it (stripped).
    Raises ``ValidationError(field, value, rule)`` naming the rule it breaks."""
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    stripped = value.strip(" \t")
    if not stripped:
        raise ValidationError(field, value, "must be one non-empty line")
    if len(value) > MAX_LENGTH:
        raise ValidationError(field, value, f"is longer than {MAX_LENGTH} characters")
    if not _PRINTABLE.fullmatch(value.strip("\t")) or "\t" in stripped:
        raise ValidationError(field, value, "must be one line of printable ASCII: no control character, no "
                                            "non-ASCII character (write one as HAProxy's '\\xHH' escape)")
    try:
        line = split_line(stripped)
    except LineError as exc:
        raise ValidationError(field, value, f"is not a line HAProxy reads ({exc})") from None
    if line.scope:
        raise ValidationError(field, value, "may not start a '[scope]' line")
    if line.env:
        raise ValidationError(field, value, f"may not expand an environment variable (${line.env[0]}): it "
                                            "reads the host's environment; escape a literal '$' as '\\$'")
    words = line.words
    if not words:
        raise ValidationError(field, value, "holds no directive (only a comment)")
    for word in words:
        if not _PRINTABLE.fullmatch(word):
            raise ValidationError(field, value, f"has the word {word!r}: an escape may not make a control or "
                                                "non-ASCII character")
    _allowed(words, field, value, section)
    return stripped


def _allowed(words: tuple[str, ...], field: str, value: str, section: Section) -> None:
    def refuse(rule: str) -> ValidationError:
        return ValidationError(field, value, f"{rule} ({DOC})")

    if words[0] in ("no", "default"):
        if len(words) < 2 or words[1] not in ("option", "log"):
            raise refuse(f"may not use '{words[0]}' except before 'option' or 'log'")
        words = words[1:]
    directive = words[0]
    from haplane.model.values import SECTION_KEYWORDS  # the one list of section keywords

    if directive in SECTION_KEYWORDS:
        raise refuse(f"may not open a new section: {directive!r} is a section keyword")
    sections = ALLOWED.get(directive)
    if sections is None:
        raise refuse(f"has the directive {directive!r}, which is not allowed in natives (a frontend's or a "
                     "backend's proxy keywords only; nothing global, nothing that binds, adds servers, reads "
                     "files or runs code)")
    if section not in sections:
        raise refuse(f"has the directive {directive!r}, which is not allowed in a {section}'s natives")
    for word in words:
        if word in _FILE_ARGS:
            raise refuse(f"may not use {word!r}: it names a file on the host")
        if _REACHES_HOST.search(word):
            raise refuse(f"may not use {word!r}: map files, ACL files, env() and Lua reach the host")
    if directive == "option":
        name = words[1] if len(words) > 1 else ""
        allowed_in = OPTIONS.get(name)
        if allowed_in is None or section not in allowed_in:
            raise refuse(f"has 'option {name}', which is not allowed in a {section}'s natives")
    elif directive == "stats":
        sub = words[1] if len(words) > 1 else ""
        if sub not in STATS_ALLOWED:
            raise refuse(f"has 'stats {sub}', which is not allowed in natives (stats socket is global-only)")
    elif directive == "log":
        _log_target(words, refuse)
    elif directive == "http-error" or (directive in ("http-request", "http-response", "http-after-response")
                                       and len(words) > 1 and words[1] in _ANSWERING):
        hit = next((w for w in words if w in _FILE_WORDS), None)
        if hit is not None:
            raise refuse(f"may not answer with {hit!r}: it reads a file on the host (use 'string' or "
                         "'lf-string')")


def _log_target(words: tuple[str, ...], refuse: Any) -> None:
    """``log global`` or ``log IPv4[:PORT] ...`` / ``log stdout|stderr ...``: never a path, a socket or a
    name to resolve."""
    target = words[1] if len(words) > 1 else ""
    if target in ("global", "stdout", "stderr") or (len(words) == 1):
        return
    host, _, port = target.partition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise refuse(f"may log only to 'global', stdout, stderr or an IPv4 address[:port], not {target!r}"
                     ) from None
    if port and not _PORT.fullmatch(port):
        raise refuse(f"may log only to 'global', stdout, stderr or an IPv4 address[:port], not {target!r}")
