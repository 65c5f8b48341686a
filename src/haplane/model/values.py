"""Validators for every value that can end up in a haproxy.cfg.

Each validator takes the raw value and the field path it came from, and returns the normalised value or
raises ``ValidationError(field, value, rule)``. The rules are written so that an accepted value can never
leave its token in a config line: no whitespace, no quotes, no ``#``, no backslash, no control character,
nothing HAProxy's tokenizer or environment-variable expansion would act on. The property test in
``tests/unit/model/test_values_property.py`` holds the renderer to that promise with real ``haproxy -c``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from haplane.errors import MISSING, ValidationError

# A name: service, backend, frontend, server id, source, table, zone. HAProxy allows [A-Za-z0-9_.:-] in
# proxy and server names; we drop ':' (it separates host:port in addresses and keys) and require a leading
# alphanumeric so a name can never look like an option.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Path: RFC 3986 pchar minus the characters HAProxy's config tokenizer treats specially (quotes, '#',
# '\\', '$' for env expansion) and minus whitespace/controls.
_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,;=:@%/-]{0,1023}")
# Cookie names: RFC 6265 token, restricted to what needs no quoting anywhere.
_COOKIE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# A regex goes inside single quotes, where HAProxy interprets nothing; only a quote or a control character
# could break out.
_REGEX_FORBIDDEN = re.compile(r"['\x00-\x1f\x7f]")

BALANCE_ALGORITHMS = ("roundrobin", "static-rr", "leastconn", "first", "source", "uri", "random")
HASH_BALANCES = frozenset({"source", "uri"})
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
HTTP_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
# Section keywords a native line may never start with: a native belongs to the section it is placed in.
SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "program",
    "mailers", "cache", "ring", "http-errors", "fcgi-app", "dynamic-update", "log-forward",
})


def _require_str(value: Any, field: str) -> str:
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    return value


def name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _NAME.fullmatch(s):
        raise ValidationError(field, value, "is not a valid name (1-100 of A-Z a-z 0-9 _ . -, "
                                            "starting with a letter or digit)")
    return s


def host_name(value: Any, field: str) -> str:
    """A DNS host name (RFC 1123), lower-cased. A leading ``*.`` is not allowed: host routing is exact."""
    s = _require_str(value, field)
    candidate = s[:-1] if s.endswith(".") else s
    labels = candidate.split(".")
    if (not candidate or len(candidate) > 253
            or not all(_HOST_LABEL.fullmatch(label) for label in labels)):
        raise ValidationError(field, value, "is not a valid host name")
    return candidate.lower()


def path_prefix(value: Any, field: str) -> str:
    """A URL path prefix. A missing leading ``/`` is added (Lambda-Registry's predicates had none);
    one given is not doubled."""
    s = _require_str(value, field)
    if not s.startswith("/"):
        s = "/" + s
    if not _PATH.fullmatch(s) or "//" in s:
        raise ValidationError(field, value, "is not a valid URL path (RFC 3986 characters only, no spaces, "
                                            "quotes, '#', '$', '\\' or '//')")
    return s


def cookie_name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _COOKIE.fullmatch(s):
        raise ValidationError(field, value, "is not a valid cookie name (1-64 of A-Z a-z 0-9 _ . -)")
    return s


def version(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _VERSION.fullmatch(s):
        raise ValidationError(field, value, "is not a valid version (1-64 of A-Z a-z 0-9 . _ + -)")
    return s


def header_name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _HEADER_NAME.fullmatch(s):
        raise ValidationError(field, value, "is not a valid HTTP header name")
    return s.lower()


def regex(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not s or len(s) > 1024 or _REGEX_FORBIDDEN.search(s):
        raise ValidationError(field, value, "is not an acceptable regex (1-1024 characters, no single quote "
                                            "or control character)")
    try:
        re.compile(s)
    except re.error as exc:
        raise ValidationError(field, value, f"is not a valid regex ({exc})") from None
    return s


def match_value(value: Any, field: str) -> str:
    """A literal value matched by a rule (url, path, header domain): a single token, no specials."""
    s = _require_str(value, field)
    if not re.fullmatch(r"[A-Za-z0-9._~!&()*+,;=:@%/?-]{1,1024}", s):
        raise ValidationError(field, value, "is not a valid match value (URL characters only, no spaces, "
                                            "quotes, '#', '$' or '\\')")
    return s


def address(value: Any, field: str) -> str:
    """An IPv4 or IPv6 address (normalised), or a DNS host name."""
    s = _require_str(value, field)
    raw = s[1:-1] if s.startswith("[") and s.endswith("]") else s
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    if raw.replace(".", "").isdigit():
        raise ValidationError(field, value, "is not a valid IPv4 address")
    try:
        return host_name(raw, field)
    except ValidationError:
        raise ValidationError(field, value, "is not a valid address (IPv4, IPv6 or DNS name)") from None


def integer(value: Any, field: str, lo: int, hi: int, what: str = "integer") -> int:
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if isinstance(value, bool):
        raise ValidationError(field, value, f"must be an {what} from {lo} to {hi}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(field, value, f"must be an {what} from {lo} to {hi}")
    return value


def port(value: Any, field: str) -> int:
    return integer(value, field, 1, 65535, "integer port")


def weight(value: Any, field: str) -> int:
    return integer(value, field, 0, 256, "integer weight")


def address_port(value: Any, field: str, default_port: int | None) -> tuple[str, int]:
    """``"10.0.0.1"``, ``"10.0.0.1:80"``, ``"[::1]:80"``, ``"::1"`` or ``"host:80"`` → (address, port).

    A port inside the value wins over ``default_port``; with neither, the value is rejected."""
    s = _require_str(value, field)
    host, port_text = s, ""
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValidationError(field, value, "is not a valid address (unclosed '[')")
        host, rest = s[: end + 1], s[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValidationError(field, value, "is not a valid address[:port]")
            port_text = rest[1:]
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    addr = address(host, field)
    if port_text:
        return addr, port(port_text, field)
    if default_port is None:
        raise ValidationError(field, value, "has no port, and no port was given for its service")
    return addr, default_port


def choice(value: Any, field: str, options: tuple[str, ...], default: str | None = None) -> str:
    if (value is MISSING or value is None) and default is not None:
        return default
    s = _require_str(value, field)
    low = s.lower() if all(o == o.lower() for o in options) else s
    if low not in options:
        raise ValidationError(field, value, "must be one of: " + ", ".join(options))
    return low


def native_line(value: Any, field: str) -> str:
    """One raw HAProxy directive for the section it is placed in (admin only, and checked by
    ``haproxy -c`` with the whole config before it is stored)."""
    s = _require_str(value, field)
    stripped = s.strip()
    if not stripped or re.search(r"[\x00-\x1f\x7f]", s):
        raise ValidationError(field, value, "must be one non-empty line with no control characters")
    if stripped.split()[0].lower() in SECTION_KEYWORDS:
        raise ValidationError(field, value, "may not open a new section")
    if len(s) > 2048:
        raise ValidationError(field, value, "is longer than 2048 characters")
    return stripped


def ip_or_wildcard_bind(value: Any, field: str) -> tuple[str, int]:
    """One bind address: ``*:80``, ``:80``, ``127.0.0.1:8080``, ``[::1]:80``."""
    s = _require_str(value, field).strip()
    if s.startswith("*:") or s.startswith(":"):
        return "*", port(s.split(":", 1)[1], field)
    addr, p = address_port(s, field, None)
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise ValidationError(field, value, "must bind an IP address or '*', not a host name") from None
    return addr, p


def milliseconds(value: Any, field: str, lo: int = 100, hi: int = 3_600_000) -> int:
    return integer(value, field, lo, hi, "integer number of milliseconds")


def seconds(value: Any, field: str, lo: float = 1, hi: float = 86400 * 7) -> float:
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ValidationError(field, value, f"must be a number of seconds from {lo:g} to {hi:g}")
    return float(value)
