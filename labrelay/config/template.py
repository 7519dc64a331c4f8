# -*- test-case-name: tests.unit.test_config -*-
"""
The template pass frp applies to every config file before parsing it.

This module owns :func:`render_template`: the part of Go ``text/template``
frp uses (``{{ .Envs.NAME }}``, string literals, comments and ``{{- -}}``
trimming).  Any other construct is refused with an :class:`IniError`.  It
knows nothing about INI syntax or what keys mean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

from .errors import IniError

# Whitespace as Go's text/template lexer sees it (trim markers, actions).
_TEMPLATE_SPACE = " \t\r\n"
_ENV_ACTION = re.compile(r"\.Envs\.([^\W\d]\w*)\Z")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


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
        if text[inner : inner + 1] == "-" and text[inner + 1 : inner + 2] in tuple(
            _TEMPLATE_SPACE
        ):
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
        if text.startswith("-}}", after + 1) and text[after : after + 1] in tuple(
            _TEMPLATE_SPACE
        ):
            return after + 4, None, True
        raise IniError(f"line {line}: template: comment ends before closing delimiter")
    i = pos
    while i < len(text):
        char = text[i]
        if char in "\"'":
            i = _skip_quoted(text, i, line)
        elif char == "`":
            close = text.find("`", i + 1)
            if close < 0:
                raise IniError(f"line {line}: template: unterminated raw string")
            i = close + 1
        elif text.startswith("}}", i):
            content = text[pos:i]
            trim = (
                len(content) >= 2
                and content[-1] == "-"
                and content[-2] in _TEMPLATE_SPACE
            )
            return i + 2, content[:-2] if trim else content, trim
        else:
            i += 1
    raise IniError(f"line {line}: template: unclosed action (missing '}}}}')")


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
            f"it as frp does, as the text '<no value>')"
        )
    if (
        len(action) >= 2
        and action[0] == "`"
        and action[-1] == "`"
        and action.count("`") == 2
    ):
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
        if shown
        else f"line {line}: template: empty action {{{{ }}}}"
    )


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
        esc = action[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_ESCAPES:
            out.append(
                _code_point(
                    action[i + 2 : i + 2 + _HEX_ESCAPES[esc]], 16, _HEX_ESCAPES[esc]
                )
            )
            i += 2 + _HEX_ESCAPES[esc]
        elif esc and esc in "01234567":
            out.append(_code_point(action[i + 1 : i + 4], 8, 3))
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
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF or (base == 8 and value > 255):
        raise IniError(f"template: invalid escape value {digits!r}")
    return chr(value)
