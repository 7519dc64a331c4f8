# -*- test-case-name: tests.unit.test_config -*-
"""
How the config layers report problems: :class:`IniError` (text-level syntax,
from :mod:`.template` and :mod:`.ini`), :class:`ConfigError` (a config
labrelay refuses, naming file, section and key) and :class:`Warnings` (the
one-line warnings of a config labrelay accepts).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional


class IniError(ValueError):
    """A syntax problem in a config text; the message is one line."""


class ConfigError(Exception):
    """
    A config labrelay refuses; str() is one line naming file/section/key.

    :ivar warnings: the warnings found before the error, to show first.
    :ivar parts: ``(source, section, key, what)`` of an error made by
        :func:`fail`, so that a reader of another syntax can name the place
        in its own words; None for the others.
    """

    warnings: tuple[str, ...] = ()
    parts: Optional[tuple[str, Optional[str], Optional[str], str]] = None


def fail(
    source: str, section: Optional[str], key: Optional[str], what: str
) -> ConfigError:
    """The :class:`ConfigError` for *what* is wrong at *section*/*key*."""
    where = "" if section is None else f"[{section}] "
    where += "" if key is None else f"{key}: "
    error = ConfigError(f"{source}: {where}{what}")
    error.parts = (source, section, key, what)
    return error


#: How a warning is written from its parts: (source, section, key, what).
Render = Callable[[str, str, Optional[str], str], str]


def render_ini_warning(source: str, section: str, key: Optional[str], what: str) -> str:
    """A warning as the INI files name places: ``frpc.ini [ssh] type: ...``."""
    if key is not None:
        return f"{source} [{section}] {key}: {what}"
    return f"{source} [{section}]: {what}"


class Warnings:
    """
    Collects one-line warnings, each once, in order.

    :param render: writes a warning from its parts; by default as the INI
        files name places (:func:`render_ini_warning`).
    """

    def __init__(self, render: Optional[Render] = None) -> None:
        self.items: list[str] = []
        self.render = render or render_ini_warning

    def add(self, source: str, section: str, key: Optional[str], what: str) -> None:
        text = self.render(source, section, key, what)
        if text not in self.items:
            self.items.append(text)

    @contextlib.contextmanager
    def kept_on_error(self):
        """A :class:`ConfigError` raised inside carries the warnings so
        far, so they are shown before it."""
        try:
            yield
        except ConfigError as e:
            e.warnings = tuple(self.items)
            raise
