"""
Ending a twistd process with a non-zero exit status.

twistd exits 0 whenever its reactor stops.  A client whose first login is
refused (``login_fail_exit = true``) must exit non-zero so systemd and
scripts see the failure, so :func:`exit_after_stop` stops the reactor
cleanly and arranges for the interpreter to leave with *code* once twistd
has finished its own shutdown (pid file, logs).
"""

import atexit
import os
import sys

_requested = []


def _leave():
    if _requested:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_requested[0])


def exit_after_stop(reactor, code: int) -> None:
    """Stop *reactor*; the process then exits with *code*."""
    if not _requested:
        _requested.append(code)
        atexit.register(_leave)
    if reactor.running:
        reactor.stop()
