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

Every text log line goes through :class:`EscapingObserver`, whatever the
call site: each field rendered into a message has its control characters
(CR, LF, ESC, BEL, every other C0 and C1 control, DEL, and other
non-printable characters such as U+2028 or bidi overrides) written as
``\\xNN``/``\\uNNNN`` (:func:`escape_controls`), so text a peer chose (a
Login's ``version``, a request path) cannot start a fake line or drive the
terminal of whoever reads the log.  The format strings are labrelay's and
Twisted's own and are left alone.  A traceback keeps its line breaks (the
text format indents each continuation line with a tab, so none can pass for
an entry) but has its other controls escaped.  This covers labrelay's own
observer (``log_file``) and, through :func:`log_observer_for`, the file or
syslog observer twistd builds for ``--logfile``/``--syslog``.  Not covered:
an observer given with twistd's ``--logger`` (twistd prefers it to the
application's) and the ``twist`` runner, which ignores the application's
observer: use ``twistd`` (as conf/ does) or ``log_file``.
"""

import os
import re
import string
import sys
import time

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.components import Componentized
from twisted.python.logfile import DailyLogFile
from zope.interface import implementer

LEVELS = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


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
        output = PruningDailyLogFile(
            os.path.basename(path), os.path.dirname(path), config.log_max_days
        )
        output.prune()
    return LevelFilteredObserver(
        EscapingObserver(textFileLogObserver(output)), config.log_level
    )


def log_observer_for(options, config, daemon: bool = False):
    """
    The log observer for a tap's service: *config*'s (``log_file``,
    ``log_level``) unless twistd's command line chose a destination, then
    the observer twistd would build for it, behind :class:`EscapingObserver`
    (None for ``--logger``, which twistd uses ahead of any other).  A
    *daemon* has no console: there ``log_file = console`` means twistd's
    own default, ``twistd.log``, at ``log_level``.
    """
    chosen = command_line_chose_logging(options)
    if not chosen and not (daemon and config.log_file == "console"):
        return make_log_observer(config)
    twistd = options.parent
    if twistd.get("logger"):
        return None
    try:
        from twisted.scripts._twistd_unix import UnixAppLogger as AppLogger
    except ImportError:  # Windows
        from twisted.application.app import AppLogger
    observer = AppLogger(twistd)._getLogObserver()
    if not ILogObserver.providedBy(observer):
        observer = LegacyLogObserverWrapper(observer)  # syslog's
    observer = EscapingObserver(observer)
    if not chosen:
        observer = LevelFilteredObserver(observer, config.log_level)
    return observer


#: Namespaces whose info lines say nothing to a relay's operator: the
#: reconnecting service's "Scheduling retry ... <endpoint object at 0x...>"
#: (labrelay logs its own retry line, with the server's address) and
#: factories' "Starting factory <... at 0x...>".
QUIET_NAMESPACES = ("twisted.application._client_service", "twisted.internet.protocol")


class LevelFilteredObserver(FilteringLogObserver):
    """
    A :class:`FilteringLogObserver` passing events at or above one frp
    ``log_level``, which :meth:`set_level` changes while running.
    """

    def __init__(self, observer, level: str = "info"):
        self._predicate = LogLevelFilterPredicate(
            defaultLogLevel=LEVELS.get(level, LogLevel.info)
        )
        super().__init__(observer, [self._predicate])
        self.set_level(level)

    def set_level(self, level: str) -> None:
        """Pass events at frp level *level* (``trace`` ... ``error``) and
        above from now on; Twisted's own chatter (:data:`QUIET_NAMESPACES`)
        only at ``debug`` and ``trace``, or when it warns."""
        threshold = LEVELS.get(level, LogLevel.info)
        self._predicate.defaultLogLevel = threshold
        self._predicate.setLogLevelForNamespace("", threshold)
        quiet = (
            threshold if threshold <= LogLevel.debug else max(threshold, LogLevel.warn)
        )
        for namespace in QUIET_NAMESPACES:
            self._predicate.setLogLevelForNamespace(namespace, quiet)
        self.level = level


def set_log_level(observer, level: str) -> bool:
    """Change *observer*'s level if it is a :class:`LevelFilteredObserver`;
    whether it was (an observer chosen on twistd's command line is not)."""
    if isinstance(observer, LevelFilteredObserver):
        observer.set_level(level)
        return True
    return False


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """
    *text* with every non-printable character written as ``\\xNN``,
    ``\\uNNNN`` or ``\\UNNNNNNNN``: C0 controls (CR, LF, TAB, ESC, BEL ...),
    DEL, C1 controls, line and paragraph separators, format characters such
    as bidi overrides.  With *keep_newlines*, LF is kept (for tracebacks).
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or (keep_newlines and ch == "\n"):
            out.append(ch)
            continue
        code = ord(ch)
        out.append(
            f"\\x{code:02x}"
            if code < 0x100
            else f"\\u{code:04x}"
            if code < 0x10000
            else f"\\U{code:08x}"
        )
    return "".join(out)


class _EscapingFormatter(string.Formatter):
    """``str.format`` with each field's text escaped, and Twisted's
    ``{name()}`` call syntax for a top-level field."""

    def get_value(self, key, args, kwargs):
        if isinstance(key, str) and key.endswith("()"):
            return kwargs[key[:-2]]()
        return kwargs[key]

    def format_field(self, value, format_spec):
        return escape_controls(super().format_field(value, format_spec))


_FORMATTER = _EscapingFormatter()
#: Keys of an event that :func:`escaped_event` replaces by its own text.
_RENDERED = frozenset(
    {
        "log_format",
        "log_flattened",
        "log_failure",
        "log_text",
        "failure",
        "isError",
        "why",
        "format",
        "message",
    }
)


def _message(event) -> str:
    """The message of *event* with every field escaped."""
    format_ = event.get("log_format")
    if format_ is None:
        return ""
    if isinstance(format_, bytes):
        format_ = format_.decode("utf-8", "replace")
    try:
        return _FORMATTER.vformat(format_, (), event)
    except Exception:
        # Twisted's own rendering (attribute calls, or a broken event, which
        # it describes); the whole text escaped, then.
        return escape_controls(formatEvent(event))


def escaped_message(event) -> str:
    """
    What a text log shows for *event*: its message with each field escaped
    (:func:`escape_controls`), then the traceback of its failure, if any,
    with its line breaks kept and its other controls escaped.
    """
    failure = event.get("log_failure")
    if (
        failure is None
        and event.get("isError")
        and "failure" in event
        and event.get("log_format") == "{log_text}"
    ):
        # twisted.python.log.err: log_text is "why\ntraceback"
        failure = event["failure"]
        text = escape_controls(str(event.get("why") or "Unhandled Error"))
    else:
        text = _message(event)
    if failure is not None:
        try:
            traceback = failure.getTraceback()
        except Exception:
            traceback = "(unable to obtain traceback)"
        text = "\n".join(
            (text, escape_controls(traceback.rstrip("\n"), keep_newlines=True))
        )
    return text


def escaped_event(event) -> dict:
    """
    A copy of *event* whose text, as any Twisted text observer (file,
    syslog) renders it, is :func:`escaped_message`; levels, times and the
    other fields are kept.
    """
    copy = {key: value for key, value in event.items() if key not in _RENDERED}
    copy["log_format"] = "{log_escaped_text}"
    copy["log_escaped_text"] = escaped_message(event)
    if "log_system" in copy:
        copy["log_system"] = escape_controls(str(copy["log_system"]))
    return copy


@implementer(ILogObserver)
class EscapingObserver:
    """Passes :func:`escaped_event` of each event to a text observer."""

    def __init__(self, observer):
        self.observer = observer

    def __call__(self, event):
        self.observer(escaped_event(event))


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
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
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
        return bool(
            twistd.get("logfile") or twistd.get("syslog") or twistd.get("logger")
        )
    except AttributeError:
        return False


def install_log_observer(parent, observer) -> None:
    """Make *observer* twistd's log observer if *parent* is the application."""
    if isinstance(parent, Componentized) and observer is not None:
        parent.setComponent(ILogObserver, observer)
