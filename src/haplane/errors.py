"""Every exception haplane raises on purpose.

    HaplaneError
    ├── ValidationError        bad input: names the field, shows the value, states the rule      → 422
    │   ├── PayloadError       a whole document (JSON body, payload file) could not be read      → 400
    │   ├── BadRequest         fields that do not go together (Thalassa answers these with 400)  → 400
    │   ├── Invalid            several items of a batch broke rules: every one named, nothing done → 422
    │   └── TooLarge           a batch past a configured limit (names the setting)               → 413
    │       ├── BodyTooLarge   a request body past the size the API reads (names the setting)    → 413
    │       └── TxnTooLarge    one store transaction past the store's own limit (names it)       → 413
    ├── NotFound               a named object does not exist                                     → 404
    ├── Conflict               another writer won a compare-and-swap                             → 409
    │   ├── PreconditionFailed the caller's If-Match revision is not the current one              → 412
    │   └── NameTaken          a name another record holds in haproxy.cfg (backend, host, ...)    → 409
    ├── Unauthorized           no or unknown bearer token                                        → 401
    ├── TooManyAttempts        wrong tokens from one address, too many: wait Retry-After seconds → 429
    ├── Forbidden              a token whose role is too weak                                    → 403
    │   └── AdminOnly          a field the token's role may not set or change (names it)         → 403
    ├── StoreError             the store failed
    │   ├── StoreUnavailable   it cannot be reached now; try again later                         → 503
    │   └── Compacted          a watch asked for a revision the store no longer keeps: resync
    ├── HAProxyError
    │   ├── HAProxyUnavailable the admin or master socket cannot be reached                      → 503
    │   ├── RuntimeCommandError  HAProxy answered a Runtime API command with an error
    │   ├── ConfigCheckFailed  `haproxy -c` rejected a config; carries HAProxy's own messages    → 422
    │   └── ReloadFailed       the master did not bring up a new worker
    ├── SourceError            a discovery source (docker, aws, consul) failed
    │   └── SourceUnavailable
    ├── AcmeError              an ACME order failed (the CA's own words: validation, rate limit, network)
    └── ConfigurationError     haplane's own settings are wrong, or an optional dependency is missing
        ├── MissingDependency  an optional Python package (boto3, ...) is not installed; names it
        └── MissingImplementation  a name → import-string table names a module or attribute that is not there

This module imports nothing of haplane's, so every layer may import it. Foreign exceptions
(sqlite3, OSError, httpx, botocore) are translated at the adapter that meets them; callers
only ever catch these.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any


class HaplaneError(Exception):
    """Base of every deliberate haplane error."""

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "field": None, "detail": str(self)}


class ValidationError(HaplaneError):
    """A value broke a rule. ``field`` is a dotted path such as ``candidates[1].predicate``."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(self._message())

    def _message(self) -> str:
        if self.value is _MISSING:
            return f"{shorten(self.field)}: {self.rule}"
        return f"{shorten(self.field)}: {shown(self.value)} {self.rule}"

    def at(self, prefix: str) -> ValidationError:
        """The same error with its field path placed under ``prefix``."""
        field = self.field
        if prefix:
            field = f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}" if field else prefix
        err = type(self)(field, self.value, self.rule)
        return err

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "field": self.field, "detail": str(self)}


SHOWN_MAX = 200  # characters of a value (or a field name) an error message echoes; the rest is elided


def shorten(text: str, limit: int = SHOWN_MAX) -> str:
    """``text``, or its head and tail around a note of how much was left out: a 100 MB value sent back in an
    error would cost the server its memory and the caller its patience."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}...<{len(text) - 2 * half} characters elided>...{text[-half:]}"


def shown(value: Any) -> str:
    """How an error message shows a value: its repr, bounded while it is built (``reprlib``: a long string, list
    or dict is shown by its head, so a huge value costs no huge repr), then shortened."""
    return shorten(_REPR.repr(value))


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_MAX
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 30
_REPR.maxlevel = 6


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
MISSING = _MISSING  # the value of a ValidationError for a field that was not given at all


class PayloadError(ValidationError):
    """A whole document could not be parsed (not JSON, not an object)."""


class BadRequest(ValidationError):
    """Fields that contradict each other, e.g. an HTTP/1.1 health check without a host."""


class Invalid(ValidationError):
    """Several items of one batch are bad. A batch is refused whole: ``errors`` names every bad item (each a
    ``ValidationError`` whose field says where), so the caller can fix them all at once."""

    def __init__(self, errors: Sequence[ValidationError], what: str = "items") -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else ValidationError("body", _MISSING, "is invalid")
        super().__init__(first.field, first.value, first.rule)
        self.what = what
        self.args = (f"{len(self.errors)} {what} are invalid; nothing was applied: "
                     + "; ".join(str(e) for e in self.errors[:20]) + (" ..." if len(self.errors) > 20 else ""),)

    def __str__(self) -> str:
        return str(self.args[0])

    def at(self, prefix: str) -> ValidationError:
        return Invalid([e.at(prefix) for e in self.errors], self.what)

    def to_dict(self) -> dict[str, Any]:
        return {"error": "ValidationError", "field": self.field, "detail": str(self),
                "errors": [{"field": e.field, "detail": str(e)} for e in self.errors]}


class TooLarge(ValidationError):
    """A batch larger than a limit the operator set: names the limit and the setting that raises it."""

    def __init__(self, field: str, count: int, limit: int, setting: str) -> None:
        self.count = count
        self.limit: int | None = limit
        self.setting = setting
        super().__init__(field, _MISSING, f"has {count} items, more than the limit of {limit} (setting {setting}, "
                                          f"HAPLANE_{setting.upper()}); split the batch")

    def at(self, prefix: str) -> ValidationError:
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"error": "TooLarge", "field": self.field, "detail": str(self), "limit": self.limit,
                "setting": self.setting}


class BodyTooLarge(TooLarge):
    """A request body (or its headers) larger than the server reads: refused before it is read or parsed."""

    def __init__(self, field: str, size: int | None, limit: int, setting: str) -> None:
        self.count = size if size is not None else limit + 1
        self.limit = limit
        self.setting = setting
        told = f"has {size} bytes" if size is not None else "goes on"
        ValidationError.__init__(self, field, _MISSING, f"{told}, more than the limit of {limit} bytes "
                                 f"(setting {setting}, HAPLANE_{setting.upper()})")


class TxnTooLarge(TooLarge):
    """The store refused one transaction as larger than it takes (etcd's ``--max-txn-ops``, 128 operations by
    default, and ``--max-request-bytes``, 1.5 MiB; DynamoDB's items per transaction): nothing was written. The
    registry splits batches of independent writes when it meets this; a write that must be one transaction (a
    source's whole set) is refused with it, naming the store's limit and how to raise it."""

    def __init__(self, field: str, count: int, limit: int | None, setting: str, what: str = "operations") -> None:
        self.count = count
        self.limit = limit
        self.setting = setting
        self.what = what
        bound = f"the store's limit of {limit}" if limit is not None else "the store's limit"
        ValidationError.__init__(self, field, _MISSING, f"needs one store transaction of {count} {what}, more than "
                                 f"{bound} ({setting}); nothing was written: split it or raise the limit")


class NotFound(HaplaneError):
    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {shown(name)} does not exist")

    def to_dict(self) -> dict[str, Any]:
        return {"error": "NotFound", "field": self.kind, "detail": str(self)}


class Conflict(HaplaneError):
    """A compare-and-swap failed: someone else wrote ``key`` first."""

    def __init__(self, key: str, expected: int | None = None, actual: int | None = None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        detail = f"{key} was changed by another writer"
        if expected is not None:
            detail += f" (expected revision {expected}, found {actual})"
        super().__init__(detail)

    def to_dict(self) -> dict[str, Any]:
        return {"error": "Conflict", "field": self.key, "detail": str(self)}


class PreconditionFailed(Conflict):
    """The revision the caller based its write on (If-Match) is no longer the current one."""

    def to_dict(self) -> dict[str, Any]:
        return {"error": "PreconditionFailed", "field": self.key, "detail": str(self)}


class NameTaken(Conflict):
    """A record claims a name another owner holds in haproxy.cfg (``haplane.model.names``): ``field`` is the
    field that claims it, ``holder`` the other owner (``service:web``, ``haplane:frontend 'http'``) and
    ``holder_words`` it in words."""

    def __init__(self, field: str, space: str, value: str, holder: str, holder_words: str) -> None:
        self.field = field
        self.space = space
        self.value = value
        self.holder = holder
        HaplaneError.__init__(self, f"{field}: {space} {value!r} is already taken by {holder_words}"
                              + _NAME_HINTS.get(space, ""))
        self.key = field
        self.expected = self.actual = None

    def to_dict(self) -> dict[str, Any]:
        return {"error": "NameTaken", "field": self.field, "detail": str(self), "holder": self.holder}


_NAME_HINTS = {
    "backend": " (services and Thalassa backends are all HAProxy backends, one name each; a service's fallback "
               "backend is <service>_fallback)",
    "host": " (host names are compared lower-cased, without a trailing dot)",
}


class Unauthorized(HaplaneError):
    pass


class TooManyAttempts(HaplaneError):
    """Too many wrong tokens from one address: it must wait ``retry_after`` seconds before trying again."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many wrong tokens from this address; try again in {math.ceil(retry_after)} s")


class Forbidden(HaplaneError):
    pass


class AdminOnly(Forbidden):
    """A request whose role may not set, change or remove ``field`` (natives need the admin role)."""

    def __init__(self, field: str, role: str, what: str) -> None:
        self.field = field
        self.role = role
        super().__init__(f"{field}: only the admin role may {what}; the token given has {role}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": "Forbidden", "field": self.field, "detail": str(self)}


class StoreError(HaplaneError):
    pass


class StoreUnavailable(StoreError):
    pass


class Compacted(StoreError):
    """The watch's start revision is older than what the store keeps; the caller must resync."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        self.requested = requested
        self.compact_revision = compact_revision
        super().__init__(f"revision {requested} has been compacted (oldest kept: {compact_revision})")


class HAProxyError(HaplaneError):
    pass


class HAProxyUnavailable(HAProxyError):
    pass


class HAProxyParseError(HAProxyError, ValueError):
    """An answer of HAProxy's that is not what its command answers (``show proc`` without a master line): the one
    error the parsers of ``haplane.haproxy.parse`` raise. Every other malformed line is skipped."""


class RuntimeCommandError(HAProxyError):
    def __init__(self, command: str, message: str) -> None:
        self.command = command
        self.message = message
        super().__init__(f"{command!r}: {message}")


class ConfigCheckFailed(HAProxyError):
    """``haproxy -c`` refused a config. ``messages`` are HAProxy's own lines;
    ``lines`` the config line numbers they name (used to quarantine the owner of a bad line)."""

    def __init__(self, messages: Sequence[str], lines: Sequence[int] = ()) -> None:
        self.messages = list(messages)
        self.lines = list(lines)
        super().__init__("haproxy -c rejected the config:\n" + "\n".join(self.messages))

    def to_dict(self) -> dict[str, Any]:
        return {"error": "ConfigCheckFailed", "field": None, "detail": "\n".join(self.messages)}


class ReloadFailed(HAProxyError):
    pass


class SourceError(HaplaneError):
    pass


class SourceUnavailable(SourceError):
    pass


class AcmeError(HaplaneError):
    """An ACME CA refused or could not be reached; the message is the CA's problem detail."""


class ConfigurationError(HaplaneError):
    pass


class MissingDependency(ConfigurationError):
    def __init__(self, what: str, package: str) -> None:
        self.what = what
        self.package = package
        super().__init__(f"{what} needs the Python package {package!r}; install it (pip install {package})")


class MissingImplementation(ConfigurationError):
    """``target`` (``module`` or ``module:attribute``), which a table names for ``what``, cannot be loaded:
    ``missing`` is the module or attribute that is not there (a broken install, or a table naming a module
    nobody wrote)."""

    def __init__(self, what: str, target: str, missing: str) -> None:
        self.what = what
        self.target = target
        self.missing = missing
        super().__init__(f"{what} cannot be loaded from {target}: {missing} does not exist")
