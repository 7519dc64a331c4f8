# -*- test-case-name: tests.unit.test_config -*-
"""
The frp legacy INI dialect and its value syntaxes, below the config models.

This module owns the text-level rules, and nothing about what keys mean:

* :class:`IniDocument`: gopkg.in/ini.v1 as frp configures it (case-sensitive
  names, ``=`` or ``:``, inline comments kept, boolean keys, triple-quoted and
  backslash-continued values, duplicate keys last-wins, duplicate sections
  merged, dotted parent sections).
* value syntaxes: Go booleans and integers (:func:`parse_go_bool`,
  :func:`parse_go_int`), comma lists (:func:`split_list`) and port range
  lists (:class:`PortSet`, :func:`parse_port_ranges`).

Every problem is an :class:`IniError` (a ``ValueError``) with a one-line
message; the parsers in :mod:`labrelay.config` turn it into a
``ConfigError``.  The template pass that runs first is
:mod:`labrelay.config.template`.
"""

from __future__ import annotations

import functools
import re
from typing import Optional

import attrs

from .errors import IniError

#: The section that keys written before any section header land in.
DEFAULT_SECTION = "DEFAULT"

_GO_TRUE = frozenset("1 t T true TRUE True y yes YES Yes on ON On".split())
_GO_FALSE = frozenset("0 f F false FALSE False n no NO No off OFF Off".split())
_INT_SHAPE = re.compile(r"[+-]?[0-9A-Za-z_]+\Z")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def parse_go_bool(text: str) -> bool:
    """Parse a boolean with Go's spellings (``1 t true yes on`` ...)."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise IniError(
        f"expected a boolean (true/false, yes/no, on/off, 1/0), got {text!r}"
    )


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
def _merged(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
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
            low <= port <= high for low, high in self._spans()
        )

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
            raise ValueError(
                f"invalid port range {item.strip()!r}: the end is below the start"
            )
        ranges.append((bounds[0], bounds[-1]))
    return PortSet(tuple(ranges))


def _port_number(text: str, item: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"invalid port {text!r} in {item.strip()!r}")
    if int(text) > 65535:
        raise ValueError(f"port {int(text)} is out of range 0-65535")
    return int(text)


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
                raise IniError(f"missing closing key quote in {line.strip()!r}")
            delimiter = re.search("[=:]", line[close + len(quote) :])
            if delimiter is None:
                return "", None
            end = close + len(quote) + delimiter.start()
            return line[len(quote) : close].strip(), line[end + 1 :]
        delimiter = re.search("[=:]", line)
        if delimiter is None:
            return "", None
        if delimiter.start() == 0:
            raise IniError(f"empty key name in {line.strip()!r}")
        return line[: delimiter.start()].strip(), line[delimiter.start() + 1 :]

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
            body = line[len(quote) :]
            close = body.rfind(quote)
            if close < 0:
                return self._read_multiline(body, quote)
            return body[:close]
        line = line.strip()
        if line.endswith("\\"):
            return self._read_continuation(line[:-1])
        if (
            len(line) >= 2
            and line[0] == line[-1]
            and line[0] in "'\""
            and line.count(line[0]) == 2
        ):
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
