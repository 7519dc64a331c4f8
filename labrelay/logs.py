"""
frp's logging keys (``log_file``, ``log_level``, ``log_max_days``) on top of
twistd's logging.

twistd asks its application for an ``ILogObserver`` component before it
falls back to its own ``--logfile``; :func:`install_log_observer` sets that
component when the service joins the application, unless the command line
chose a destination itself (``--logfile``, ``--syslog``, ``--logger``),
which then wins.
"""

import os
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
    predicate = LogLevelFilterPredicate(
        defaultLogLevel=LEVELS.get(config.log_level, LogLevel.info))
    return FilteringLogObserver(textFileLogObserver(output), [predicate])


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
