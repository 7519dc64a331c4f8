# -*- test-case-name: tests.unit.test_config_v1 -*-
"""
The text layer of frp's v1 config files (TOML, YAML, JSON), below the
reader that gives keys their meaning (:mod:`.v1read`).

This module owns which format a file is in (:func:`config_format`, by its
extension, as frp), the template pass and the parse by each format's own
library (tomllib, PyYAML's safe loader, json) into plain Python values
(:func:`parse_v1_text`), syntax errors with the parser's line and column,
and finding the line a key is written on (:class:`KeyLines`) for the
messages about it.  Finding a line is a locator, not a second parser: in
YAML and JSON it reads the marks of PyYAML's ``compose()``; in TOML it
reads the key paths of header and ``key =`` lines.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Optional, Union

import attrs
import yaml

from .errors import ConfigError, IniError
from .template import render_template

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

#: file extension -> format, as frp picks it
V1_EXTENSIONS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
#: every format labrelay reads
FORMATS = ("ini", "toml", "yaml", "json")

#: a path in a parsed document: table keys and array indexes
KeyPath = tuple[Union[str, int], ...]


def config_format(path) -> str:
    """``"ini"``, ``"toml"``, ``"yaml"`` or ``"json"``: the format of the
    config file *path*, by its extension (anything else is frp's legacy
    INI)."""
    path = os.fsdecode(os.fspath(getattr(path, "path", path)))
    return V1_EXTENSIONS.get(os.path.splitext(path)[1].lower(), "ini")


@attrs.frozen
class KeyLines:
    """Where each key of a document is written (1-based lines)."""

    lines: Mapping[KeyPath, int] = attrs.Factory(dict)

    def line_of(self, path: KeyPath) -> Optional[int]:
        """The line of *path*, or of its nearest enclosing key that has
        one (a key inside an inline table), or None."""
        path = tuple(path)
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return None


@attrs.frozen
class V1Text:
    """One parsed v1 file."""

    source: str
    format: str
    data: dict
    lines: KeyLines


def parse_v1_text(
    text: str, source: str, fmt: str, environ: Optional[Mapping[str, str]]
) -> V1Text:
    """Render *text*'s templates and parse it as *fmt*; the top level must
    be a table.  Raise :class:`ConfigError` naming *source* and the line."""
    environ = os.environ if environ is None else environ
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        text = render_template(text, environ)
    except IniError as e:
        raise ConfigError(f"{source}: {e}") from None
    data = _PARSERS[fmt](text, source)
    if data is None and fmt == "yaml":
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must hold a table of settings, not {type_name(data)}"
        )
    if fmt == "yaml":
        # frp drops top-level keys starting with "." (YAML anchors' homes)
        data = {k: v for k, v in data.items() if not str(k).startswith(".")}
    lines = _toml_lines(text) if fmt == "toml" else _compose_lines(text)
    return V1Text(source, fmt, data, KeyLines(lines))


def type_name(value) -> str:
    """How a parsed value's type is called in the messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "null"
    return f"a {type(value).__name__} value"


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _parse_toml(text: str, source: str):
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        at = _TOML_AT.search(message)
        if at:
            where = f"line {at.group(1)}, column {at.group(2)}: "
            message = message[: at.start()]
        else:
            where = ""
        raise ConfigError(f"{source}: {where}TOML syntax error: {message}") from None


def _parse_yaml(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (e.context, e.problem) if part)
        raise ConfigError(f"{source}: {where}YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML syntax error: {e}") from None


def _parse_json(text: str, source: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{source}: line {e.lineno}, column {e.colno}: JSON syntax error: {e.msg}"
        ) from None


_PARSERS = {"toml": _parse_toml, "yaml": _parse_yaml, "json": _parse_json}


# -- where keys are written -----------------------------------------------------


def _compose_lines(text: str) -> dict[KeyPath, int]:
    """Key lines from PyYAML's node marks (YAML, and JSON, which PyYAML
    reads as YAML); empty where PyYAML cannot compose the text."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[KeyPath, int] = {}

    def walk(node, path: KeyPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    here = path + (key.value,)
                    lines.setdefault(here, key.start_mark.line + 1)
                    walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault(path + (index,), item.start_mark.line + 1)
                walk(item, path + (index,))

    if root is not None:
        walk(root, ())
    return lines


_TOML_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_TOML_DOTTED = rf"{_TOML_KEY_PART}(?:\s*\.\s*{_TOML_KEY_PART})*"
_TOML_ARRAY_HEADER = re.compile(rf"\s*\[\[\s*({_TOML_DOTTED})\s*\]\]")
_TOML_HEADER = re.compile(rf"\s*\[\s*({_TOML_DOTTED})\s*\]")
_TOML_KEY_LINE = re.compile(rf"\s*({_TOML_DOTTED})\s*=")
_TOML_PART = re.compile(_TOML_KEY_PART)


def _toml_parts(dotted: str) -> tuple[str, ...]:
    parts = []
    for part in _TOML_PART.findall(dotted):
        if part[:1] == '"':
            part = json.loads(part)
        elif part[:1] == "'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _toml_lines(text: str) -> dict[KeyPath, int]:
    """Key lines of a TOML text from its ``[header]``, ``[[header]]`` and
    ``key = value`` lines (inside multi-line values a line may be
    mistaken for a key: the locator only names lines in messages)."""
    lines: dict[KeyPath, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()

    def indexed(parts: tuple[str, ...]) -> KeyPath:
        path: list = []
        for depth in range(len(parts)):
            path.append(parts[depth])
            index = arrays.get(parts[: depth + 1])
            if index is not None and depth < len(parts) - 1:
                path.append(index)
        return tuple(path)

    for number, line in enumerate(text.split("\n"), 1):
        array = _TOML_ARRAY_HEADER.match(line)
        header = None if array else _TOML_HEADER.match(line)
        if array:
            parts = _toml_parts(array.group(1))
            arrays[parts] = arrays.get(parts, -1) + 1
            table = indexed(parts) + (arrays[parts],)
            lines.setdefault(table, number)
            lines.setdefault(indexed(parts), number)
        elif header:
            table = indexed(_toml_parts(header.group(1)))
            lines.setdefault(table, number)
        else:
            key = _TOML_KEY_LINE.match(line)
            if key:
                parts = _toml_parts(key.group(1))
                for depth in range(1, len(parts) + 1):
                    lines.setdefault(table + parts[:depth], number)
    return lines
