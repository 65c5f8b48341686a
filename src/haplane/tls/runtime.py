"""Runtime API certificate commands for HAProxy 2.6, and the sequences that change a served certificate with no
reload.

Add a certificate::

    new ssl cert <path>                     (a new, empty certificate store)
    set ssl cert <path> <<                  (a transaction holding the PEM: chain + key)
    <PEM lines, no empty line>
    <empty line>
    commit ssl cert <path>                  (the transaction replaces the store's content)
    add ssl crt-list <crt-list> <path>      (every bind using the crt-list now serves it by SNI)

Replace one: ``set`` + ``commit`` (SNI entries follow the new names). Remove one: ``del ssl crt-list`` then ``del
ssl cert``. On any refusal after ``set``: ``abort ssl cert <path>`` (and ``del ssl cert`` of a store this
sequence created), so no transaction is left open and no half-made store stays behind.

HAProxy 2.6 facts these sequences are built on (measured; docs/haproxy-notes.md "Certificates at runtime"):
- there is ONE certificate transaction per process. ``set ssl cert B`` while a transaction on A is open does
  not fail: it puts B's payload into A's transaction ("Transaction updated for certificate A!"). So a sequence
  first aborts any transaction left open (a crash between ``set`` and ``commit``), checks that ``set`` answered
  for its own path, and sequences run one at a time (the agent holds a lock);
- a failed ``commit`` (key does not match) leaves the transaction open: it must be aborted;
- ``add ssl crt-list`` does not refuse a duplicate (two lines, and ``del ssl crt-list`` then needs a line
  number): a path already in the list is not added again;
- an empty line inside a payload ends it and the rest runs as commands: payloads are canonical PEM
  (``haplane.tls.certs.parse_bundle``) and ``Payload`` refuses an empty line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from haplane.errors import RuntimeCommandError
from haplane.haproxy.runtime import Answer, Payload, RuntimeClient

__all__ = [
    "SslState", "abort_ssl_cert", "add_crt_list", "commit_ssl_cert", "del_crt_list", "del_ssl_cert",
    "install_cert", "new_ssl_cert", "parse_crt_list", "parse_show_ssl_cert", "parse_ssl_cert_detail",
    "read_state", "remove_cert", "set_ssl_cert", "show_crt_list", "show_ssl_cert", "ssl_answer_error",
]

_PATH = re.compile(r"/[A-Za-z0-9_./@+-]{1,1000}")


def _path(path: str) -> str:
    if not _PATH.fullmatch(path) or "/../" in path or path.endswith("/.."):
        raise ValueError(f"certificate path {path!r} must be an absolute path of A-Z a-z 0-9 _ . / @ + - only")
    return path


def new_ssl_cert(path: str) -> str:
    return f"new ssl cert {_path(path)}"


def set_ssl_cert(path: str, pem: str) -> Payload:
    return Payload(f"set ssl cert {_path(path)}", pem)


def commit_ssl_cert(path: str) -> str:
    return f"commit ssl cert {_path(path)}"


def abort_ssl_cert(path: str) -> str:
    return f"abort ssl cert {_path(path)}"


def add_crt_list(crt_list: str, path: str) -> str:
    return f"add ssl crt-list {_path(crt_list)} {_path(path)}"


def del_crt_list(crt_list: str, path: str) -> str:
    return f"del ssl crt-list {_path(crt_list)} {_path(path)}"


def del_ssl_cert(path: str) -> str:
    return f"del ssl cert {_path(path)}"


def show_ssl_cert(path: str | None = None) -> str:
    return "show ssl cert" if path is None else f"show ssl cert {_path(path)}"


def show_crt_list(crt_list: str) -> str:
    return f"show ssl crt-list {_path(crt_list)}"


# What HAProxy 2.6 answers when each command succeeds; anything else is its error. The path in the answer must
# be the command's own (see the module docstring: a "set" can land in another certificate's transaction).
# "add" prints a dot for each bind that uses the crt-list (the HTTPS frontend, Thalassa TLS frontends).
_OK: dict[str, re.Pattern[str]] = {
    "new": re.compile(r"New empty certificate store '(?P<p>[^']+)'!"),
    "set": re.compile(r"Transaction (?:created|updated) for certificate (?P<p>\S+)!"),
    "commit": re.compile(r"Committing (?P<p>\S+?)\.*\nSuccess!"),
    "abort": re.compile(r"Transaction aborted for certificate '(?P<p>[^']+)'!"),
    "add": re.compile(r"Inserting certificate '(?P<p>[^']+)' in crt-list '[^']+'\.*\nSuccess!"),
    "del-list": re.compile(r"Entry '(?P<p>[^']+)' deleted in crtlist '[^']+'!"),
    "del": re.compile(r"Certificate '(?P<p>[^']+)' deleted!"),
}


def _kind(command: str) -> str:
    words = command.split()
    if words[:3] == ["del", "ssl", "crt-list"]:
        return "del-list"
    if words[:3] == ["add", "ssl", "crt-list"]:
        return "add"
    return words[0]


def _target(command: str) -> str:
    words = command.split()
    return words[-2] if words[-1] == "<<" else words[-1]


def ssl_answer_error(command: str, answer: str) -> str | None:
    """HAProxy's error in ``answer`` to an ssl ``command``, or None when it did what was asked."""
    text = answer.strip()
    m = _OK[_kind(command)].fullmatch(text)
    if m is None:
        return text.splitlines()[0] if text else "empty answer"
    if m.group("p") != _target(command):
        return f"HAProxy answered for {m.group('p')}, not {_target(command)}: {text.splitlines()[0]}"
    return None


@dataclass(frozen=True, slots=True)
class SslState:
    """What HAProxy holds: the certificate stores it knows, the open transaction (if any), and the paths in the
    crt-list."""

    files: frozenset[str] = frozenset()
    transaction: str | None = None
    listed: tuple[str, ...] = ()
    fingerprints: dict[str, str] = field(default_factory=dict)  # path → SHA1 of the leaf (when asked for)
    listed_from: str | None = None  # the crt-list ``listed`` was read from


def parse_show_ssl_cert(text: str) -> tuple[frozenset[str], str | None]:
    """``show ssl cert`` → (file names, the file of the open transaction or None)."""
    files: set[str] = set()
    transaction = None
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            section = line
            continue
        if not line:
            continue
        if section == "# transaction":
            transaction = line.lstrip("*")
        else:
            files.add(line)
    return frozenset(files), transaction


def parse_crt_list(text: str) -> tuple[str, ...]:
    """``show ssl crt-list <list>`` → the certificate paths, in order (options and SNI filters dropped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split()[0])
    return tuple(out)


def parse_ssl_cert_detail(text: str) -> dict[str, str]:
    """``show ssl cert <path>`` → its ``Key: value`` lines (Status, Serial, notAfter, SHA1 FingerPrint, ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and key not in out:
            out[key.strip()] = value.strip()
    return out


async def read_state(client: RuntimeClient, crt_list: str | None, fingerprints_of: Sequence[str] = ()
                     ) -> SslState:
    """One connection: the stores, the open transaction, the crt-list's paths, and the leaf SHA1 of
    ``fingerprints_of`` (pipelined: a thousand paths cost milliseconds)."""
    cmds = [show_ssl_cert(), *([show_crt_list(crt_list)] if crt_list else []),
            *(show_ssl_cert(p) for p in fingerprints_of)]
    answers = await client.execute(cmds)
    files, transaction = parse_show_ssl_cert(answers[0])
    listed: tuple[str, ...] = ()
    if crt_list:
        text = answers.pop(1)
        listed = parse_crt_list(text) if not text.startswith("Can't") else ()
    fps = {}
    for path, text in zip(fingerprints_of, answers[1:], strict=True):
        fp = parse_ssl_cert_detail(text).get("SHA1 FingerPrint")
        if fp:
            fps[path] = fp
    return SslState(files, transaction, listed, fps, crt_list)


async def _sequence(client: RuntimeClient, commands: Sequence[str | Payload]) -> list[Answer]:
    """Run ``commands`` one at a time on one connection, judging each with ``ssl_answer_error``; stops at the
    first refusal (the rest come back not sent)."""
    return await client.run(commands, stop_on_error=True, judge=ssl_answer_error)


def _raise_first(answers: Sequence[Answer]) -> None:
    for a in answers:
        if a.sent and a.error is not None:
            raise RuntimeCommandError(a.command, a.error)


async def install_cert(client: RuntimeClient, path: str, pem: str, crt_list: str | None,
                       state: SslState | None = None) -> list[str]:
    """Serve ``pem`` at ``path``: a new store (``new`` + ``set`` + ``commit`` + ``add ssl crt-list``) or a
    replacement (``set`` + ``commit``). Aborts a transaction left open first. On a refusal: ``abort ssl cert``,
    and ``del ssl cert`` of a store it created, then ``RuntimeCommandError`` naming HAProxy's answer. Returns
    the commands that ran (payloads shown as ``<<``)."""
    state = state or await read_state(client, crt_list)
    ran: list[str] = []
    if state.transaction is not None:
        ans = await _sequence(client, [abort_ssl_cert(state.transaction)])
        ran.append(ans[0].command)
    created = path not in state.files
    cmds: list[str | Payload] = []
    if created:
        cmds.append(new_ssl_cert(path))
    cmds += [set_ssl_cert(path, pem), commit_ssl_cert(path)]
    if crt_list is not None and path not in state.listed:
        cmds.append(add_crt_list(crt_list, path))
    answers = await _sequence(client, cmds)
    ran += [a.command for a in answers if a.sent]
    bad = next((a for a in answers if a.sent and a.error is not None), None)
    if bad is None:
        return ran
    cleanup: list[str | Payload] = []
    kind = _kind(bad.command)
    if kind in ("set", "commit"):
        cleanup.append(abort_ssl_cert(path))
    if created and kind != "new":
        cleanup.append(del_ssl_cert(path))
    if cleanup:
        # each on its own: a cleanup step that fails (nothing to abort) must not stop the next
        for c in cleanup:
            ans = await client.run([c], judge=ssl_answer_error)
            ran.append(ans[0].command)
    _raise_first(answers)
    return ran


async def remove_cert(client: RuntimeClient, path: str, crt_list: str | None, state: SslState | None = None
                      ) -> list[str]:
    """Stop serving ``path``: ``del ssl crt-list`` (when listed), then ``del ssl cert``. A path HAProxy does not
    know is already gone (not an error)."""
    state = state or await read_state(client, crt_list)
    cmds: list[str | Payload] = []
    if crt_list is not None and path in state.listed:
        cmds.append(del_crt_list(crt_list, path))
    if path in state.files:
        cmds.append(del_ssl_cert(path))
    if not cmds:
        return []
    answers = await _sequence(client, cmds)
    _raise_first(answers)
    return [a.command for a in answers]
