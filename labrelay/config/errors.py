# -*- test-case-name: tests.unit.test_config -*-
"""
How the config layers report problems: :class:`IniError` (text-level syntax,
from :mod:`.template` and :mod:`.ini`), :class:`ConfigError` (a config
labrelay refuses, naming file, section and key) and :class:`Warnings` (the
one-line warnings of a config labrelay accepts).
"""

from __future__ import annotations

import contextlib
from typing import Optional


class IniError(ValueError):
    """A syntax problem in a config text; the message is one line."""


class ConfigError(Exception):
    """
    A config labrelay refuses; str() is one line naming file/section/key.

    :ivar warnings: the warnings found before the error, to show first.
    """

    warnings: tuple[str, ...] = ()


def fail(
    source: str, section: Optional[str], key: Optional[str], what: str
) -> ConfigError:
    """The :class:`ConfigError` for *what* is wrong at *section*/*key*."""
    where = "" if section is None else f"[{section}] "
    where += "" if key is None else f"{key}: "
    return ConfigError(f"{source}: {where}{what}")


class Warnings:
    """Collects one-line warnings, each once, in order."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, source: str, section: str, key: Optional[str], what: str) -> None:
        text = (
            f"{source} [{section}] {key}: {what}"
            if key is not None
            else f"{source} [{section}]: {what}"
        )
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
