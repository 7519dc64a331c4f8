# -*- test-case-name: tests.test_config -*-
"""
The frp legacy INI dialect and its template pass, below labrelay.config.

This module owns the text-level rules, and nothing about what keys mean:

* :func:`render_template`: the part of Go ``text/template`` frp applies to
  every config file before parsing it: ``{{ .Envs.NAME }}``, string literals,
  comments and ``{{- -}}`` trimming.  Any other construct is refused.
* :class:`IniDocument`: gopkg.in/ini.v1 as frp configures it (case-sensitive
  names, ``=`` or ``:``, inline comments kept, boolean keys, triple-quoted and
  backslash-continued values, duplicate keys last-wins, duplicate sections
  merged, dotted parent sections).
* value syntaxes: Go booleans and integers (:func:`parse_go_bool`,
  :func:`parse_go_int`), comma lists (:func:`split_list`) and port range
  lists (:class:`PortSet`, :func:`parse_port_ranges`).

Every problem is an :class:`IniError` (a ``ValueError``) with a one-line
message; labrelay.config turns it into a ``ConfigError``.
"""

from __future__ import annotations

import functools
import re
from typing import Mapping, Optional

import attrs

#: The section that keys written before any section header land in.
DEFAULT_SECTION = "DEFAULT"

_GO_TRUE = frozenset("1 t T true TRUE True y yes YES Yes on ON On".split())
_GO_FALSE = frozenset("0 f F false FALSE False n no NO No off OFF Off".split())
_INT_SHAPE = re.compile(r"[+-]?[0-9A-Za-z_]+\Z")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# Whitespace as Go's text/template lexer sees it (trim markers, actions).
_TEMPLATE_SPACE = " \t\r\n"
_ENV_ACTION = re.compile(r"\.Envs\.([^\W\d]\w*)\Z")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                   "t": "\t", "v": "\v", "\\": "\\", '"': '"'}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class IniError(ValueError):
    """A syntax problem in a config text; the message is one line."""


def parse_go_bool(text: str) -> bool:
    """Parse a boolean with Go's spellings (``1 t true yes on`` ...)."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise IniError(f"expected a boolean (true/false, yes/no, on/off, 1/0), "
                   f"got {text!r}")


def parse_go_int(text: str) -> int:
    """
    Parse an integer the way Go's ``strconv.ParseInt(text, 0, 64)`` does:
    ``0x``/``0o``/``0b`` prefixes, a leading ``0`` meaning octal, ``_``
    between digits, and the int64 range.
    """
    if not (text.isascii() and _INT_SHAPE.match(text)):
        raise IniError(f"expected an integer, got {text!r}")
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if len(body) > 1 and body[0] == "0" and body[1] not in "xXoObB":
        body = "0o" + body[1:]
    try:
        value = sign * int(body, 0)
    except ValueError:
        raise IniError(f"expected an integer, got {text!r}") from None
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise IniError(f"integer {text!r} is out of range")
    return value


def split_list(text: str) -> tuple[str, ...]:
    """
    Split a comma list as go-ini's ``Key.Strings(",")`` does (``\\,`` is a
    literal comma), trim each item and drop empty items.
    """
    items: list[str] = []
    current: list[str] = []
    escape = False
    for char in text:
        if escape:
            escape = False
            if char not in "\\,":
                current.append("\\")
            current.append(char)
        elif char == "\\":
            escape = True
        elif char == ",":
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return tuple(item for item in items if item)


@functools.lru_cache(maxsize=64)
def _merged(ranges: tuple[tuple[int, int], ...]
            ) -> tuple[tuple[int, int], ...]:
    """The ranges sorted, with overlapping and adjacent ones joined."""
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return tuple((low, high) for low, high in merged)


@attrs.frozen
class PortSet:
    """
    A set of ports written as ranges (``allow_ports``, range sections).

    The empty set is frp's default "every port": it contains, iterates and
    counts as 1..65535.
    """
    ranges: tuple[tuple[int, int], ...] = ()

    def _spans(self) -> tuple[tuple[int, int], ...]:
        return _merged(self.ranges) if self.ranges else ((1, 65535),)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(
            low <= port <= high for low, high in self._spans())

    def __iter__(self):
        for low, high in self._spans():
            yield from range(low, high + 1)

    def __len__(self) -> int:
        return sum(high - low + 1 for low, high in self._spans())

    def is_all(self) -> bool:
        """True when every port 1..65535 is in the set (the default)."""
        return any(low <= 1 and high >= 65535 for low, high in self._spans())

    def in_order(self) -> list[int]:
        """The ports as written: range by range, repeats kept."""
        return [p for low, high in self.ranges for p in range(low, high + 1)]


def parse_port_ranges(text: str) -> PortSet:
    """Parse ``1000-2000,2001,3000-4000``; raise ValueError if malformed."""
    text = text.strip()
    if not text:
        return PortSet()
    ranges = []
    for item in text.split(","):
        bounds = [_port_number(b, item) for b in item.split("-")]
        if len(bounds) > 2:
            raise ValueError(f"invalid port range {item.strip()!r}")
        if bounds[-1] < bounds[0]:
            raise ValueError(f"invalid port range {item.strip()!r}: "
                             f"the end is below the start")
        ranges.append((bounds[0], bounds[-1]))
    return PortSet(tuple(ranges))


def _port_number(text: str, item: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"invalid port {text!r} in {item.strip()!r}")
    if int(text) > 65535:
        raise ValueError(f"port {int(text)} is out of range 0-65535")
    return int(text)


# -- templates ---------------------------------------------------------------

#: The environment variable that restores frp's rendering of an unset
#: variable as ``<no value>``.
ALLOW_UNSET_ENVS = "LABRELAY_ALLOW_UNSET_ENVS"


def render_template(text: str, environ: Mapping[str, str]) -> str:
    """
    Render ``text`` as frp does with Go ``text/template`` and data
    ``{.Envs: environ}``, for the supported subset of actions.

    A variable that is not set is an error (a config whose token silently
    became ``<no value>`` would let in every client making the same
    mistake), unless *environ* sets :data:`ALLOW_UNSET_ENVS` to ``1``: then
    it renders as ``<no value>``, as in frp.
    """
    out: list[str] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        segment = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            segment = segment.lstrip(_TEMPLATE_SPACE)
        if start < 0:
            out.append(segment)
            return "".join(out)
        inner = start + 2
        if text[inner:inner + 1] == "-" and \
                text[inner + 1:inner + 2] in tuple(_TEMPLATE_SPACE):
            segment = segment.rstrip(_TEMPLATE_SPACE)
            inner += 1
        out.append(segment)
        line = text.count("\n", 0, start) + 1
        pos, content, trim_next = _scan_action(text, inner, line)
        if content is not None:
            out.append(_evaluate(content, environ, line))


def _scan_action(text: str, pos: int, line: int):
    """Find the end of the action starting at ``pos`` (just after ``{{``)."""
    body = pos
    while body < len(text) and text[body] in _TEMPLATE_SPACE:
        body += 1
    if text.startswith("/*", body):
        close = text.find("*/", body + 2)
        if close < 0:
            raise IniError(f"line {line}: template: unclosed comment")
        after = close + 2
        if text.startswith("}}", after):
            return after + 2, None, False
        if text.startswith("-}}", after + 1) and \
                text[after:after + 1] in tuple(_TEMPLATE_SPACE):
            return after + 4, None, True
        raise IniError(f"line {line}: template: comment ends before "
                       f"closing delimiter")
    i = pos
    while i < len(text):
        char = text[i]
        if char in "\"'":
            i = _skip_quoted(text, i, line)
        elif char == "`":
            close = text.find("`", i + 1)
            if close < 0:
                raise IniError(f"line {line}: template: unterminated raw "
                               f"string")
            i = close + 1
        elif text.startswith("}}", i):
            content = text[pos:i]
            trim = len(content) >= 2 and content[-1] == "-" and \
                content[-2] in _TEMPLATE_SPACE
            return i + 2, content[:-2] if trim else content, trim
        else:
            i += 1
    raise IniError(f"line {line}: template: unclosed action "
                   f"(missing '}}}}')")


def _skip_quoted(text: str, pos: int, line: int) -> int:
    """Return the index after the quoted literal starting at ``pos``."""
    quote = text[pos]
    i = pos + 1
    while i < len(text) and text[i] != "\n":
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise IniError(f"line {line}: template: unterminated quoted string")


def _evaluate(content: str, environ: Mapping[str, str], line: int) -> str:
    """Evaluate one supported action."""
    action = content.strip(_TEMPLATE_SPACE)
    env = _ENV_ACTION.match(action)
    if env:
        name = env.group(1)
        value = environ.get(name)
        if value is not None:
            return value
        if environ.get(ALLOW_UNSET_ENVS) == "1":
            return "<no value>"
        raise IniError(
            f"line {line}: {{{{ .Envs.{name} }}}}: environment variable "
            f"{name} is not set (set it; or {ALLOW_UNSET_ENVS}=1 renders "
            f"it as frp does, as the text '<no value>')")
    if len(action) >= 2 and action[0] == "`" and action[-1] == "`" and \
            action.count("`") == 2:
        return action[1:-1].replace("\r", "")
    if action.startswith('"'):
        try:
            literal = _unquote_go(action)
        except IniError as e:
            raise IniError(f"line {line}: {e}") from None
        if literal is not None:
            return literal
    shown = " ".join(action.split())
    if len(shown) > 40:
        shown = shown[:37] + "..."
    raise IniError(
        f"line {line}: template construct {{{{ {shown} }}}} is not "
        f"supported (only {{{{ .Envs.NAME }}}} and string literals are)"
        if shown else f"line {line}: template: empty action {{{{ }}}}")


def _unquote_go(action: str) -> Optional[str]:
    """
    Decode ``action`` if it is exactly one Go interpreted string literal;
    return None if something follows the literal.
    """
    out: list[str] = []
    i = 1
    while i < len(action):
        char = action[i]
        if char == '"':
            return "".join(out) if i == len(action) - 1 else None
        if char != "\\":
            out.append(char)
            i += 1
            continue
        esc = action[i + 1:i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_ESCAPES:
            out.append(_code_point(action[i + 2:i + 2 + _HEX_ESCAPES[esc]],
                                   16, _HEX_ESCAPES[esc]))
            i += 2 + _HEX_ESCAPES[esc]
        elif esc and esc in "01234567":
            out.append(_code_point(action[i + 1:i + 4], 8, 3))
            i += 4
        else:
            escape = "\\" + esc  # repr: it may be a newline
            raise IniError(f"template: invalid escape {escape!r} in a string")
    return None


def _code_point(digits: str, base: int, count: int) -> str:
    """The character for a numeric escape, as Go validates it."""
    allowed = "0123456789abcdefABCDEF" if base == 16 else "01234567"
    if len(digits) != count or any(d not in allowed for d in digits):
        raise IniError(f"template: invalid numeric escape {digits!r}")
    value = int(digits, base)
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF or \
            (base == 8 and value > 255):
        raise IniError(f"template: invalid escape value {digits!r}")
    return chr(value)


# -- the INI dialect ---------------------------------------------------------

@attrs.frozen
class Entry:
    """One key's value, and where it was written."""
    value: str
    source: str
    line: int


@attrs.define
class Section:
    """A section: its keys in first-seen order, and where it first appeared."""
    name: str
    source: str
    line: int
    entries: dict[str, Entry] = attrs.Factory(dict)


class IniDocument:
    """
    Sections parsed from one or more texts fed in order, as if the texts were
    concatenated (so a section may continue into the next text, and sections
    repeated across texts are merged).
    """

    def __init__(self) -> None:
        self.sections: dict[str, Section] = {}
        self._current = DEFAULT_SECTION
        self._lines: list[str] = []
        self._index = 0

    def feed(self, text: str, source: str) -> list[str]:
        """Parse ``text``; return the section headers it contains, in order."""
        if text.startswith("\ufeff"):
            text = text[1:]
        parts = text.split("\n")
        self._lines = [p + "\n" for p in parts[:-1]]
        if parts[-1]:
            self._lines.append(parts[-1])
        self._index = 0
        headers = []
        while self._index < len(self._lines):
            number = self._index + 1
            line = self._lines[self._index].lstrip()
            self._index += 1
            if not line or line[0] in "#;":
                continue
            try:
                if line[0] == "[":
                    headers.append(self._section_header(line, source, number))
                else:
                    self._key_line(line, source, number)
            except IniError as e:
                raise IniError(f"line {number}: {e}") from None
        return headers

    def lookup(self, section: str, key: str) -> Optional[Entry]:
        """``key`` from ``section`` or, failing that, its dotted parents."""
        name = section
        while True:
            found = self.sections.get(name)
            if found is not None and key in found.entries:
                return found.entries[key]
            cut = name.rfind(".")
            if cut < 0:
                return None
            name = name[:cut]

    def _section(self, name: str, source: str, number: int) -> Section:
        if name not in self.sections:
            self.sections[name] = Section(name, source, number)
        return self.sections[name]

    def _section_header(self, line: str, source: str, number: int) -> str:
        close = line.rfind("]")
        if close < 0:
            raise IniError(f"unclosed section header {line.strip()!r}")
        name = line[1:close]
        if not name:
            raise IniError("empty section name []")
        self._section(name, source, number)
        self._current = name
        return name

    def _key_line(self, line: str, source: str, number: int) -> None:
        name, rest = self._key_name(line)
        if rest is None:
            # A key without a delimiter is a boolean key set to true.
            name, value = self._read_value(line), "true"
        else:
            value = self._read_value(rest)
        if not name:
            raise IniError("empty key name")
        section = self._section(self._current, source, number)
        section.entries[name] = Entry(value, source, number)

    @staticmethod
    def _key_name(line: str) -> tuple[str, Optional[str]]:
        """Split off the key name; the rest is None for a boolean key."""
        quote = ""
        if line.startswith('"""') and len(line) > 6:
            quote = '"""'
        elif line[0] in '"`':
            quote = line[0]
        if quote:
            close = line.find(quote, len(quote))
            if close < 0:
                raise IniError(
                    f"missing closing key quote in {line.strip()!r}")
            delimiter = re.search("[=:]", line[close + len(quote):])
            if delimiter is None:
                return "", None
            end = close + len(quote) + delimiter.start()
            return line[len(quote):close].strip(), line[end + 1:]
        delimiter = re.search("[=:]", line)
        if delimiter is None:
            return "", None
        if delimiter.start() == 0:
            raise IniError(f"empty key name in {line.strip()!r}")
        return line[:delimiter.start()].strip(), line[delimiter.start() + 1:]

    def _read_value(self, raw: str) -> str:
        line = raw.lstrip()
        if not line:
            return ""
        quote = ""
        if len(line) > 3 and line.startswith('"""'):
            quote = '"""'
        elif line[0] == "`":
            quote = "`"
        if quote:
            body = line[len(quote):]
            close = body.rfind(quote)
            if close < 0:
                return self._read_multiline(body, quote)
            return body[:close]
        line = line.strip()
        if line.endswith("\\"):
            return self._read_continuation(line[:-1])
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"" and \
                line.count(line[0]) == 2:
            line = line[1:-1]
        return line

    def _read_multiline(self, value: str, quote: str) -> str:
        while self._index < len(self._lines):
            following = self._lines[self._index]
            self._index += 1
            close = following.rfind(quote)
            if close >= 0:
                return value + following[:close]
            value += following
        raise IniError(f"missing closing {quote} of a multi-line value")

    def _read_continuation(self, value: str) -> str:
        while self._index < len(self._lines):
            following = self._lines[self._index].strip()
            self._index += 1
            if not following:
                break
            value += following
            if not value.endswith("\\"):
                break
            value = value[:-1]
        return value
