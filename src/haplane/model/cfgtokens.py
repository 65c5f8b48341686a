"""HAProxy's own split of a haproxy.cfg line into words. PURE.

``split_line`` does what HAProxy 2.6 does to every config line (``readcfgfile`` in src/cfgparse.c, then
``parse_line`` in src/tools.c with ``PARSE_OPT_ENV | DQUOTE | SQUOTE | BKSLASH | SHARP | WORD_EXPAND``):

- leading whitespace is skipped; a line whose first character is then ``[`` is a scope line (``scope``);
- words are separated by runs of unquoted, unescaped whitespace (C ``isspace``: space, \\t, \\v, \\f);
- an unquoted ``#`` starts a comment (``comment``);
- single quotes: everything inside is literal (no escape, no variable);
- double quotes: ``\\``-escapes and environment variables (``$NAME``, ``${NAME}``, ``${NAME-default}``,
  ``${NAME[*]}``, and the pseudo-variables ``.LINE``, ``.FILE``, ``.SECTION``) are expanded;
  a ``$`` outside double quotes is a plain character;
- a backslash outside single quotes: ``\\ `` ``\\\\`` ``\\t`` ``\\n`` ``\\r`` ``\\#`` ``\\'`` ``\\"`` ``\\xHH``
  are escapes (``\\$`` only inside double quotes); any other ``\\c`` is kept as two characters;
- the line ends at the first NUL, CR or LF character.

The words are what HAProxy's keyword parsers see (``words[0]`` the directive). Variables are never read from
this process's environment: ``env`` says which ones HAProxy would expand (their value here is the default
given, or empty), so a caller can refuse a line that reaches the host's environment. The config's renderer is
held to this split by the property test, and natives (``model.values.native_line``) are checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_LINE_ARGS", "CfgLine", "LineError", "split_line"]

MAX_LINE_ARGS = 64  # HAProxy's MAX_LINE_ARGS: a line with more words is refused
_SPACE = " \t\v\f"  # C isspace() less \n and \r (which end the line before they are seen as spaces)
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = {" ": " ", "\\": "\\", "t": "\t", "n": "\n", "r": "\r", "#": "#"}
_PSEUDO = (".LINE", ".FILE", ".SECTION")


class LineError(ValueError):
    """HAProxy refuses the line at the tokeniser (unmatched quote or brace, bad variable name, bad ``\\x``).
    ``position`` is the 0-based index in the line; ``reason`` HAProxy's words for it."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"{reason} at position {position + 1}")


@dataclass(frozen=True, slots=True)
class CfgLine:
    """One config line as HAProxy splits it."""

    words: tuple[str, ...]
    env: tuple[str, ...] = ()  # the environment variables HAProxy would expand (names as written)
    comment: bool = False  # an unquoted '#' ended the line early
    scope: bool = False  # a '[scope]' line (the words are then not split: the raw line minus leading spaces)


def _isalnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def split_line(line: str) -> CfgLine:
    """Split ``line`` as HAProxy 2.6 does (see the module docstring). Raises ``LineError`` where HAProxy
    would refuse the line."""
    i, n = 0, len(line)
    while i < n and line[i] in _SPACE:
        i += 1
    end = len(line)
    for stop in ("\x00", "\n", "\r"):
        at = line.find(stop, i)
        if at >= 0:
            end = min(end, at)
    if i < end and line[i] == "[":
        return CfgLine((line[i:end],), scope=True)
    words: list[str] = []
    env: list[str] = []
    cur: list[str] = []
    squote = dquote = False
    quote_at = -1
    comment = False
    while i < end:
        c = line[i]
        if c == "#" and not squote and not dquote:
            comment = True
            break
        if c == '"' and not squote:
            dquote = not dquote
            quote_at = i if dquote else -1
            i += 1
            continue
        if c == "'" and not dquote:
            squote = not squote
            quote_at = i if squote else -1
            i += 1
            continue
        if c == "\\" and not squote:
            nxt = line[i + 1] if i + 1 < end else ""
            if nxt in _ESCAPES:
                cur.append(_ESCAPES[nxt])
                i += 2
            elif nxt in ("'", '"') or (nxt == "$" and dquote):
                cur.append(nxt)
                i += 2
            elif nxt == "x":
                h = line[i + 2:i + 4]
                if len(h) < 2 or i + 4 > end or h[0] not in _HEX or h[1] not in _HEX:
                    raise LineError(i, "truncated or invalid hexadecimal sequence")
                cur.append(chr(int(h, 16)))
                i += 4
            else:
                cur.append("\\")
                i += 1
            continue
        if c in _SPACE and not squote and not dquote:
            while i < end and line[i] in _SPACE:
                i += 1
            words.append("".join(cur))
            cur = []
            continue
        if c == "$" and dquote:
            i = _variable(line, i + 1, end, cur, words, env)
            continue
        cur.append(c)
        i += 1
    if quote_at >= 0:
        raise LineError(quote_at, "unmatched quote")
    words.append("".join(cur))
    if len(words) > MAX_LINE_ARGS:
        raise LineError(0, f"too many words (more than {MAX_LINE_ARGS})")
    # HAProxy's args after the last word point at the trailing zero: a trailing space leaves an empty last word
    # that no keyword parser reads; drop it so words are what the line says
    while words and words[-1] == "" and len(words) > 1:
        words.pop()
    if words == [""]:
        words = []
    return CfgLine(tuple(words), tuple(env), comment)


def _variable(line: str, i: int, end: int, cur: list[str], words: list[str], env: list[str]) -> int:
    """An environment variable at ``line[i:]`` (just past the ``$``, inside double quotes): record its name,
    emit its default (HAProxy would emit its value), return the index after it."""
    brace = -1
    if i < end and line[i] == "{":
        brace = i
        i += 1
    if i >= end or not (line[i].isascii() and (line[i].isalpha() or line[i] in "_.")):
        raise LineError(i, "forbidden first char in environment variable name")
    start = i
    if line[i] == ".":
        i += 1
    while i < end and (_isalnum(line[i]) or line[i] == "_"):
        i += 1
    name = line[start:i]
    if name.startswith(".") and name not in _PSEUDO:
        raise LineError(start, "forbidden first char in environment variable name")
    env.append(name)
    expand = False
    if i < end and line[i] == "[" and brace >= 0:
        if line[i + 1:i + 3] != "*]":
            raise LineError(i, "truncated or invalid word expansion sequence")
        expand = True
        i += 3
    default = ""
    if brace >= 0:
        if i < end and line[i] == "-":
            close = line.find("}", i, end)
            if close < 0:
                raise LineError(brace, "unmatched brace in environment variable name")
            default = line[i + 1:close]
            i = close
        elif i >= end or line[i] != "}":
            raise LineError(brace, "unmatched brace in environment variable name")
        i += 1
    if expand:
        parts = default.split()
        for k, part in enumerate(parts):
            if k:
                words.append("".join(cur))
                cur.clear()
            cur.append(part)
    else:
        cur.append(default)
    return i
