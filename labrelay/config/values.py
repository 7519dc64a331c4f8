# -*- test-case-name: tests.unit.test_config -*-
"""
From written text to typed values, shared by the frps and frpc parsers.

This module owns reading a config file (:func:`read_file`), rendering and
parsing it into an :class:`IniDocument` (:func:`document`), turning one
written value into its typed value by its kind (:func:`convert`), reading a
``[common]`` section against a :class:`CommonKeys` description (typed values
of the implemented keys, one warning per ignored key) and the checks both
programs' ``[common]`` share (:func:`check_common`).  What each key is lives
in :mod:`labrelay.config.schema` and the models.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping

import attrs

from .errors import ConfigError, IniError, Warnings, fail
from .ini import (
    DEFAULT_SECTION,
    Entry,
    IniDocument,
    Section,
    parse_go_bool,
    parse_go_int,
    parse_port_ranges,
    split_list,
)
from .schema import LOG_LEVELS, NOT_YET_DEFAULTS, OLD_KEYS
from .template import render_template


@attrs.frozen
class CommonKeys:
    """What one program's ``[common]`` section may hold."""

    #: implemented keys (frp's and labrelay's own) -> value kind
    keys: Mapping[str, str]
    #: frp keys not implemented yet -> value kind
    not_yet: Mapping[str, str]
    not_yet_prefixes: tuple[str, ...]
    #: the other program's keys, and its name ("frps", "frpc")
    other_keys: Collection[str]
    other: str
    #: whether meta_* keys are collected
    metas: bool = False


def at_default(key: str, value) -> bool:
    """Whether a not-yet-implemented key's typed *value* is its zero value
    or frp's default (then it changes nothing and needs no warning)."""
    return not value or value == NOT_YET_DEFAULTS.get(key)


def did_you_mean(key: str, known) -> str:
    """`` (did you mean 'server_port'?)`` for a near miss, else ""."""
    close = difflib.get_close_matches(key.lower(), list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def convert(entry: Entry, section: str, key: str, kind: str):
    """Turn one written value into its typed value, or raise ConfigError."""
    value = entry.value
    try:
        if kind == "bool":
            return parse_go_bool(value)
        if kind == "list":
            return split_list(value)
        if kind == "ports":
            return parse_port_ranges(value)
        if kind == "str":
            return value
        number = parse_go_int(value)
    except ValueError as e:
        raise fail(entry.source, section, key, str(e)) from None
    lowest = 1 if kind == "port1" else 0
    if kind in ("port", "port1") and not lowest <= number <= 65535:
        raise fail(
            entry.source, section, key, f"port {number} is out of range {lowest}-65535"
        )
    return number


def read_common(section: Section, common: CommonKeys, warnings: Warnings):
    """Typed values of the keys set in [common], and the meta_* pairs."""
    values: dict = {}
    metas: list[tuple[str, str]] = []
    first_error = None
    for key, entry in section.entries.items():
        # Every key is looked at before a bad value is reported, so the
        # warnings about the others are not lost.
        try:
            _read_common_key(key, entry, common, values, metas, warnings)
        except ConfigError as e:
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return values, tuple(metas)


def _read_common_key(
    key: str,
    entry: Entry,
    common: CommonKeys,
    values: dict,
    metas: list,
    warnings: Warnings,
) -> None:
    if key in common.keys:
        if entry.value != "":
            values[key] = convert(entry, "common", key, common.keys[key])
    elif common.metas and key.startswith("meta_"):
        metas.append((key[len("meta_") :], entry.value))
    elif key in OLD_KEYS:
        warnings.add(entry.source, "common", key, OLD_KEYS[key])
    elif key in common.not_yet or key.startswith(common.not_yet_prefixes):
        value = (
            convert(entry, "common", key, common.not_yet.get(key, "str"))
            if entry.value != ""
            else None
        )
        if not at_default(key, value):
            warnings.add(
                entry.source, "common", key, "not supported by labrelay yet; ignored"
            )
    elif key in common.other_keys:
        warnings.add(
            entry.source, "common", key, f"a {common.other} key, not used here; ignored"
        )
    else:
        warnings.add(
            entry.source,
            "common",
            key,
            "unknown key; ignored" + did_you_mean(key, common.keys),
        )


def check_common(values: dict, source: str) -> None:
    """Checks shared by frps and frpc [common]."""
    method = values.get("authentication_method", "token")
    if method == "oidc":
        raise fail(
            source,
            "common",
            "authentication_method",
            "oidc is not supported by labrelay yet; use token",
        )
    if method != "token":
        raise fail(
            source,
            "common",
            "authentication_method",
            f"invalid value {method!r}; frp accepts token or oidc",
        )
    level = values.get("log_level", "info")
    if level not in LOG_LEVELS:
        raise fail(
            source,
            "common",
            "log_level",
            f"invalid value {level!r}; use one of {', '.join(LOG_LEVELS)}",
        )
    for have, need in (
        ("tls_cert_file", "tls_key_file"),
        ("tls_key_file", "tls_cert_file"),
    ):
        if values.get(have) and not values.get(need):
            raise fail(source, "common", need, f"required when {have} is set")
    values["log_way"] = (
        "console" if values.get("log_file", "console") == "console" else "file"
    )


def warn_outside_sections(doc: IniDocument, warnings: Warnings) -> None:
    """One warning per key written before any section header."""
    section = doc.sections.get(DEFAULT_SECTION)
    for key, entry in section.entries.items() if section else ():
        warnings.add(
            entry.source, DEFAULT_SECTION, key, "written before any section; ignored"
        )


def document(text: str, source: str, environ, doc: IniDocument) -> list[str]:
    """Render and parse ``text`` into ``doc``; return its section headers."""
    environ = os.environ if environ is None else environ
    try:
        return doc.feed(render_template(text, environ), source)
    except IniError as e:
        raise ConfigError(f"{source}: {e}") from None


def common_section(doc: IniDocument, source: str) -> Section:
    """The [common] section of *doc*, which frp requires."""
    if "common" not in doc.sections:
        raise fail(
            source,
            "common",
            None,
            "section is missing; frp requires a [common] section",
        )
    return doc.sections["common"]


def read_file(path) -> tuple[str, str]:
    """(path as str, text) of a config file, or ConfigError."""
    path = os.fsdecode(os.fspath(getattr(path, "path", path)))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return path, data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
