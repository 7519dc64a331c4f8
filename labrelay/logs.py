"""
frp's logging keys (``log_file``, ``log_level``, ``log_max_days``) on top of
twistd's logging.

twistd asks its application for an ``ILogObserver`` component before it
falls back to its own ``--logfile``; :func:`install_log_observer` sets that
component when the service joins the application, unless the command line
chose a destination itself (``--logfile``, ``--syslog``, ``--logger``),
which then wins.

The observer's level filter can be changed at run time
(:meth:`LevelFilteredObserver.set_level`): the server's SIGHUP reload
applies a new ``log_level`` without a restart.

Event lines meant to be searched (logins, proxies, user connections) carry
their fields as ``key=value`` pairs in the text, made by :func:`kv_fields`:
a value is written bare when it is a plain token and double-quoted with
escapes otherwise, so a client-chosen name cannot forge a field or a line.
The fields also stay in the event as themselves, for structured observers.
"""

import os
import re
import sys
import time

from twisted.logger import (FilteringLogObserver, ILogObserver,
                            LogLevel, LogLevelFilterPredicate,
                            textFileLogObserver)
from twisted.python.components import Componentized
from twisted.python.logfile import DailyLogFile

LEVELS = {"trace": LogLevel.debug, "debug": LogLevel.debug,
          "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}


class PruningDailyLogFile(DailyLogFile):
    """A daily-rotated log that deletes rotated files older than max_days."""

    def __init__(self, name, directory, max_days: int):
        self.max_days = max_days
        super().__init__(name, directory)

    def rotate(self):
        super().rotate()
        self.prune()

    def prune(self, now=None):
        if self.max_days <= 0:
            return
        now = time.time() if now is None else now
        prefix = os.path.basename(self.path) + "."
        for name in os.listdir(self.directory):
            if not name.startswith(prefix):
                continue
            path = os.path.join(self.directory, name)
            try:
                if now - os.path.getmtime(path) > self.max_days * 86400:
                    os.remove(path)
            except OSError:
                pass


def make_log_observer(config, stream=None):
    """An observer writing *config*'s log destination at its level."""
    if config.log_file == "console":
        output = stream if stream is not None else sys.stdout
    else:
        path = os.path.abspath(config.log_file)
        output = PruningDailyLogFile(os.path.basename(path),
                                     os.path.dirname(path),
                                     config.log_max_days)
        output.prune()
    return LevelFilteredObserver(textFileLogObserver(output),
                                 config.log_level)


class LevelFilteredObserver(FilteringLogObserver):
    """
    A :class:`FilteringLogObserver` passing events at or above one frp
    ``log_level``, which :meth:`set_level` changes while running.
    """

    def __init__(self, observer, level: str = "info"):
        self._predicate = LogLevelFilterPredicate(
            defaultLogLevel=LEVELS.get(level, LogLevel.info))
        self.level = level
        super().__init__(observer, [self._predicate])

    def set_level(self, level: str) -> None:
        """Pass events at frp level *level* (``trace`` ... ``error``) and
        above from now on."""
        threshold = LEVELS.get(level, LogLevel.info)
        self._predicate.defaultLogLevel = threshold
        self._predicate.setLogLevelForNamespace("", threshold)
        self.level = level


def set_log_level(observer, level: str) -> bool:
    """Change *observer*'s level if it is a :class:`LevelFilteredObserver`;
    whether it was (an observer chosen on twistd's command line is not)."""
    if isinstance(observer, LevelFilteredObserver):
        observer.set_level(level)
        return True
    return False


_BARE = re.compile(r"[A-Za-z0-9_.:/@+,\[\]-]+\Z")


def quote(value) -> str:
    """*value* as written after ``key=``: bare when it is a plain token,
    else in double quotes with quotes, backslashes and control characters
    escaped (``""`` for an empty value)."""
    text = str(value)
    if _BARE.match(text):
        return text
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():  # U+2028 and the like: no line breaks
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def kv(**fields) -> str:
    """``key=value`` pairs, in the order given (values :func:`quote`-d)."""
    return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


def kv_fields(**fields) -> dict:
    """Logger keyword arguments: *fields* themselves, plus ``kv`` (their
    :func:`kv` text) for a ``{kv}`` in the format."""
    return dict(fields, kv=kv(**fields))


def command_line_chose_logging(options) -> bool:
    """Whether twistd's own options name a log destination."""
    twistd = getattr(options, "parent", None)
    if twistd is None:
        return False
    try:
        return bool(twistd.get("logfile") or twistd.get("syslog")
                    or twistd.get("logger"))
    except AttributeError:
        return False


def install_log_observer(parent, observer) -> None:
    """Make *observer* twistd's log observer if *parent* is the application."""
    if isinstance(parent, Componentized) and observer is not None:
        parent.setComponent(ILogObserver, observer)
