"""Validators for every value that can end up in a haproxy.cfg.

Each validator takes the raw value and the field path it came from, and returns the normalised value or
raises ``ValidationError(field, value, rule)``. The rules are written so that an accepted value can never
leave its token in a config line: no whitespace, no quotes, no ``#``, no backslash, no control character,
nothing HAProxy's tokenizer or environment-variable expansion would act on. ``ALPHABETS`` below is the one
table of what each kind of field may hold. The property test in ``tests/unit/model/test_fields_stay_one_word.py``
holds the renderer to that promise: it splits the rendered config with HAProxy's own tokenisation
(``haplane.model.cfgtokens``) and checks each value is one word in its own place, and runs real ``haproxy -c``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

from haplane.errors import MISSING, ValidationError


@dataclass(frozen=True, slots=True)
class Alphabet:
    """The characters a kind of field may hold: ``chars`` (a regex character class body) and ``says`` (the
    words an error and the docs use for it)."""

    chars: str
    says: str


# THE table of field alphabets (docs/api.md "Field alphabets" refers to it). Everything that reaches haproxy.cfg
# or the wire is ASCII: HTTP paths and host names are ASCII on the wire (RFC 3986 percent-encodes the rest), so
# a pattern holding U+00A0 or U+2028 could never match a request and is refused, never passed on.
ALPHABETS: dict[str, Alphabet] = {
    # service, backend, frontend, server id, source, table, zone. HAProxy allows [A-Za-z0-9_.:-] in proxy and
    # server names; ':' is dropped (it separates host:port) and a name starts alphanumeric (never an option).
    "name": Alphabet(r"A-Za-z0-9_.-", "1-100 of A-Z a-z 0-9 _ . -, starting with a letter or digit"),
    "host_name": Alphabet(r"A-Za-z0-9.\-", "RFC 1123 labels of A-Z a-z 0-9 -, dot-separated, ASCII"),
    # RFC 3986 pchar minus what HAProxy's tokenizer treats specially (quotes, '#', '\\', '$') and whitespace
    "path": Alphabet(r"A-Za-z0-9._~!&()*+,;=:@%/\-", "RFC 3986 ASCII characters only, no spaces, quotes, '#', "
                     "'$', '\\' or '//'"),
    "cookie": Alphabet(r"A-Za-z0-9_.\-", "1-64 of A-Z a-z 0-9 _ . -"),
    "version": Alphabet(r"A-Za-z0-9._+\-", "1-64 of A-Z a-z 0-9 . _ + -"),
    "header_name": Alphabet(r"A-Za-z0-9\-", "an HTTP header name: A-Z a-z 0-9 -, starting with a letter or digit"),
    "match_value": Alphabet(r"A-Za-z0-9._~!&()*+,;=:@%/?\-", "URL characters only (ASCII), no spaces, quotes, "
                            "'#', '$' or '\\'"),
    # a regex goes inside single quotes, where HAProxy interprets nothing: printable ASCII but the quote
    "regex": Alphabet(r"\x20-\x26\x28-\x7e", "1-1024 printable ASCII characters, no single quote (a "
                      "non-ASCII character never reaches HAProxy in a path or host: percent-encode it)"),
    # a native line: printable ASCII (HAProxy's own quoting and escapes; see native_line)
    "native": Alphabet(r"\x20-\x7e", "printable ASCII (quote or escape with HAProxy's own rules)"),
}


def _re(kind: str, first: str | None = None, size: str = "") -> re.Pattern[str]:
    chars = ALPHABETS[kind].chars
    return re.compile((f"[{first}]" if first else "") + f"[{chars}]{size}")


_NAME = _re("name", "A-Za-z0-9", "{0,99}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PATH = re.compile("/" + _re("path", size="{0,1023}").pattern)
_COOKIE = _re("cookie", size="{1,64}")
_VERSION = _re("version", "A-Za-z0-9", "{0,63}")
_HEADER_NAME = _re("header_name", "A-Za-z0-9", "{0,63}")
_MATCH_VALUE = _re("match_value", size="{1,1024}")
_REGEX = _re("regex", size="{1,1024}")
# a label inet_aton reads as a number (HAProxy's libc resolves '0x7f.1' to 127.0.0.1 without any DNS)
_NUMERIC_LABEL = re.compile(r"(0[xX][0-9A-Fa-f]*|[0-9]+)")
_ASCII_DIGITS = re.compile(r"[0-9]{1,30}")

BALANCE_ALGORITHMS = ("roundrobin", "static-rr", "leastconn", "first", "source", "uri", "random")
HASH_BALANCES = frozenset({"source", "uri"})
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
HTTP_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
# Section keywords a native line may never start with (as HAProxy splits it): a native belongs to its section.
SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "program",
    "mailers", "cache", "ring", "http-errors", "fcgi-app", "dynamic-update", "log-forward",
})


def _require_str(value: Any, field: str) -> str:
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in JSON): no text at all
            raise ValidationError(field, value, "is not valid Unicode text (a lone surrogate)") from None
    return value


def name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _NAME.fullmatch(s):
        raise ValidationError(field, value, f"is not a valid name ({ALPHABETS['name'].says})")
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
        raise ValidationError(field, value, f"is not a valid URL path ({ALPHABETS['path'].says})")
    return s


def cookie_name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _COOKIE.fullmatch(s):
        raise ValidationError(field, value, f"is not a valid cookie name ({ALPHABETS['cookie'].says})")
    return s


def version(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _VERSION.fullmatch(s):
        raise ValidationError(field, value, f"is not a valid version ({ALPHABETS['version'].says})")
    return s


def header_name(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _HEADER_NAME.fullmatch(s):
        raise ValidationError(field, value, "is not a valid HTTP header name")
    return s.lower()


def regex(value: Any, field: str) -> str:
    s = _require_str(value, field)
    if not _REGEX.fullmatch(s):
        raise ValidationError(field, value, f"is not an acceptable regex ({ALPHABETS['regex'].says})")
    try:
        re.compile(s)
    except re.error as exc:
        raise ValidationError(field, value, f"is not a valid regex ({exc})") from None
    return s


def match_value(value: Any, field: str) -> str:
    """A literal value matched by a rule (url, path, header domain): a single token, no specials."""
    s = _require_str(value, field)
    if not _MATCH_VALUE.fullmatch(s):
        raise ValidationError(field, value, f"is not a valid match value ({ALPHABETS['match_value'].says})")
    return s


def address(value: Any, field: str) -> str:
    """An IPv4 or IPv6 address (normalised), or a DNS host name, as HAProxy reads a server address (also at
    ``set server ... addr``): no IPv6 scope (``fe80::1%eth0``: HAProxy refuses it), no name libc would read as
    a number (``0x7f.1``)."""
    s = _require_str(value, field)
    raw = s[1:-1] if s.startswith("[") and s.endswith("]") else s
    if "%" in raw:
        raise ValidationError(field, value, "is not a valid address (an IPv6 scope such as '%eth0' is not "
                                            "accepted: HAProxy refuses it)")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    labels = raw.rstrip(".").split(".")
    if raw.isascii() and all(_NUMERIC_LABEL.fullmatch(label) for label in labels if label):
        raise ValidationError(field, value, "is not a valid IPv4 address")
    try:
        return host_name(raw, field)
    except ValidationError:
        raise ValidationError(field, value, "is not a valid address (IPv4, IPv6 or DNS name)") from None


def integer(value: Any, field: str, lo: int, hi: int, what: str = "integer") -> int:
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if isinstance(value, bool):
        raise ValidationError(field, _shown(value), f"must be an {what} from {lo} to {hi}")
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value.strip()):  # not '²' (isdigit), not 5,000 digits
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(field, _shown(value), f"must be an {what} from {lo} to {hi}")
    return value


def _shown(value: Any) -> Any:
    """``value`` as an error shows it: an integer too long to print (Python refuses ``repr`` past 4,300 digits,
    which would turn a 422 into a 500) is said by its size; a long string is cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, str) and len(value) > 100:
        return value[:100] + f"... ({len(value)} characters)"
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


def native_line(value: Any, field: str, section: Literal["frontend", "backend"] = "backend") -> str:
    """One raw HAProxy directive for the ``section`` it is placed in, split as HAProxy splits it and held to
    the natives' allowlist (``model.natives``); checked by ``haproxy -c`` with the whole config before it is
    stored."""
    from haplane.model.natives import native_line as check

    return check(value, field, section)


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
        raise ValidationError(field, _shown(value), f"must be a number of seconds from {lo:g} to {hi:g}")
    return float(value)
