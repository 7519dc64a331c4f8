# -*- test-case-name: tests.unit.test_admin_v1 -*-
"""
Keeping secrets off the wire when the admin API shows or takes a client
config file written in frp's v1 format (TOML, YAML or JSON).

``GET /api/config`` shows the file as stored with the value of every
secret key (:data:`SECRET_KEYS`, at any depth: ``auth.token``,
``webServer.password``, a proxy's ``httpPassword``, ``secretKey``,
``loadBalancer.groupKey``, a plugin's ``password``) written as
``"<redacted>"``; ``PUT /api/config`` puts the stored value of the same
key back for each, so that no secret has to travel.  The file is
parsed (by the format's own library) only to learn which values are
secrets; the text itself is kept as written, comments and
``{{ .Envs.X }}`` templates included.
"""

from __future__ import annotations

import json
import re

#: v1 keys whose string values are secrets, wherever they are written.
SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "clientSecret",
        "httpPassword",
        "secretKey",
        "groupKey",
    }
)
#: What a secret is shown as (the same word as in an INI file's display).
REDACTED = "<redacted>"
_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.S)


class RedactionError(ValueError):
    """A PUT body whose redacted secrets cannot be put back."""


def _document(text: str, fmt: str):
    """The parsed document, with templates stood in for by ``0`` (a
    template's rendered value is never needed here); None if it does
    not parse."""
    text = _TEMPLATE.sub("0", text)
    try:
        if fmt == "toml":
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                import tomli as tomllib
            return tomllib.loads(text)
        if fmt == "json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception:
        return None


def _secrets(node, found: set) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and isinstance(value, str) and value:
                found.add(value)
            else:
                _secrets(value, found)
    elif isinstance(node, list):
        for item in node:
            _secrets(item, found)


def _pattern(secrets) -> re.Pattern | None:
    """Each secret written as a whole quoted string, or (YAML) as a plain
    scalar after ``key:``, longest first."""
    if not secrets:
        return None
    alternatives = "|".join(
        re.escape(s) for s in sorted(secrets, key=len, reverse=True)
    )
    return re.compile(
        rf"(?P<q>[\"'])(?P<v>{alternatives})(?P=q)"
        rf"|(?<=:[ \t])(?P<plain>{alternatives})(?=[ \t]*(?:#.*)?$)",
        re.M,
    )


def redact(text: str, fmt: str) -> tuple[str, list[str]]:
    """
    *text* with every secret value shown as ``"<redacted>"``, and the
    values replaced, in order.  A file that does not parse is shown with
    every value of a secret-looking key line redacted, so that a broken
    file does not leak either.
    """
    found: set = set()
    document = _document(text, fmt)
    if document is None:
        return _redact_lines(text)
    _secrets(document, found)
    pattern = _pattern(found)
    if pattern is None:
        return text, []
    replaced: list[str] = []

    def hide(match: re.Match) -> str:
        if match.group("plain") is not None:
            replaced.append(match.group("plain"))
            return f'"{REDACTED}"'
        replaced.append(match.group("v"))
        quote = match.group("q")
        return f"{quote}{REDACTED}{quote}"

    return pattern.sub(hide, text), replaced


_SECRET_LINE = re.compile(
    r"^(?P<head>\s*\"?(?:[\w.-]*\.)?(?:"
    + "|".join(sorted(SECRET_KEYS))
    + r")\"?\s*[:=]\s*)(?P<value>.+?)(?P<tail>,?\s*)$",
    re.M,
)


def _redact_lines(text: str) -> tuple[str, list[str]]:
    replaced: list[str] = []

    def hide(match: re.Match) -> str:
        replaced.append(match.group("value"))
        return f'{match.group("head")}"{REDACTED}"{match.group("tail")}'

    return _SECRET_LINE.sub(hide, text), replaced


def restore(body: str, original: str, fmt: str) -> str:
    """
    A PUT *body* with each ``"<redacted>"`` given back the stored value it
    stands for: the *original* file's secret under the same key name,
    counted in order (the second redacted ``password`` of the body gets
    the file's second ``password``).  Values written in full are taken
    as written.  Raises :class:`RedactionError` for a redacted value the
    file has no secret for (it cannot be told which secret was meant).
    """
    stored: dict = {}
    for key, written in _as_written(original, fmt):
        stored.setdefault(key, []).append(written)
    seen: dict = {}

    def put_back(match: re.Match) -> str:
        key = _key_before(body, match.start())
        index = seen[key] = seen.get(key, -1) + 1
        values = stored.get(key, [])
        if index >= len(values):
            raise RedactionError(
                f"the body has {index + 1} redacted {key!r} values where the "
                f"file has {len(values)}; keep each {REDACTED!r} where GET "
                f"/api/config showed it, or write the secret in full"
            )
        return values[index]

    return _REDACTED_VALUE.sub(put_back, body)


_REDACTED_VALUE = re.compile(rf"([\"']){re.escape(REDACTED)}\1")
_KEY_AT_END = re.compile(r"([\w-]+)[\"']?\s*[:=]\s*$")


def _key_before(text: str, position: int) -> str:
    """The key name written just before *position* on its line ("" if
    none is found)."""
    line_start = text.rfind("\n", 0, position) + 1
    match = _KEY_AT_END.search(text, line_start, position)
    return match.group(1) if match else ""


def _as_written(original: str, fmt: str) -> list:
    """The original's secrets as ``(key name, value as written)``, quotes
    included, in order."""
    found: set = set()
    document = _document(original, fmt)
    if document is None:
        matches = [
            (m.start("value"), m.group("value"))
            for m in _SECRET_LINE.finditer(original)
        ]
    else:
        _secrets(document, found)
        pattern = _pattern(found)
        matches = (
            [(m.start(), m.group(0)) for m in pattern.finditer(original)]
            if pattern
            else []
        )
    return [(_key_before(original, start), written) for start, written in matches]
