"""
What both twistd taps do when their config is refused, and with a freshly
built service.

A refused config (:func:`refuse_config`) is the warnings found so far, one
line each, then the error, on stderr, and exit status 1: not twistd's usage
text, which says nothing about the file.

With a freshly built service, while the process is
still in the foreground (twistd daemonises right after ``makeService``):

* log the config file's warnings;
* probe every start-up port (:func:`labrelay.listeners.probe_startup_listeners`),
  so a taken port is one line and exit status 1 in daemon mode too;
* choose where logs go (:func:`labrelay.logs.log_observer_for`): twistd's
  own ``--logfile``/``--syslog``/``--logger`` win; otherwise frp's
  ``log_file``, except that ``log_file = console`` (the default) in daemon
  mode, where there is no console, means twistd's default: ``twistd.log``
  in the working directory.
"""

import sys

from twisted.logger import Logger

from . import VERSION_TEXT
from .listeners import probe_startup_listeners
from .logs import log_observer_for

_log = Logger()


def refuse_config(program: str, error, warnings=(), stream=None) -> SystemExit:
    """
    Write *warnings* (``labrelay-server: warning: ...``) to *stream*
    (stderr); return the ``SystemExit`` to raise, whose text is the one
    error line.
    """
    stream = sys.stderr if stream is None else stream
    for warning in warnings:
        stream.write(f"{program}: warning: {warning}\n")
    stream.flush()
    return SystemExit(f"{program}: {error}")


def tls_section(config) -> str:
    """Where a config's TLS keys are written, in its file's format: for
    messages about them."""
    if getattr(config, "format", "ini") == "ini":
        return "[common]"
    return "transport.tls:"


def daemonising(options) -> bool:
    """Whether twistd will daemonise (no ``-n``/``--nodaemon``)."""
    twistd = getattr(options, "parent", None)
    if twistd is None:
        return False
    try:
        return not twistd.get("nodaemon", True)
    except AttributeError:
        return False


def prepare_service(options, service, config):
    """Warnings, port probes and the log observer for *service*; returns it."""
    _log.info(
        "{version} starting, config {path}", version=VERSION_TEXT, path=config.source
    )
    for warning in config.warnings:
        # not 'warning=': Twisted's legacy observers (trial's, twistd's) take
        # an event with a 'warning' key for a Python warning
        _log.warn("{config_warning}", config_warning=warning)
    probe_startup_listeners(service)
    service.log_observer = log_observer_for(
        options, config, daemon=daemonising(options)
    )
    return service
