# -*- test-case-name: tests.unit.test_sdnotify,tests.integration.test_sdnotify,tests.system.test_sdnotify -*-
"""
systemd's readiness protocol (``Type=notify``), without libsystemd.

systemd gives a ``Type=notify`` service the address of a unix datagram
socket in ``$NOTIFY_SOCKET`` (a path, or an abstract-namespace name written
with a leading ``@``).  The service sends newline-separated ``KEY=value``
assignments to it:

* ``READY=1`` once it serves (the server: every startup listener is
  listening; the client: its first login succeeded);
* ``RELOADING=1`` (with ``MONOTONIC_USEC``) when a reload starts, then
  ``READY=1`` when it is over, so ``systemctl reload`` returns when the new
  settings apply;
* ``STOPPING=1`` when it begins to stop;
* ``STATUS=...``, one line shown by ``systemctl status``.

Without ``$NOTIFY_SOCKET`` (not under systemd, or another service type)
nothing is sent.  A send that fails (systemd gone, socket full) is logged
once and otherwise ignored: notifications must never stop the relay.
"""

import os
import socket
import time
from collections.abc import Mapping
from typing import Optional

from twisted.logger import Logger


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """
    Sends notifications to one ``$NOTIFY_SOCKET`` address (None: to
    nobody).

    :ivar sent: every message sent, for diagnostics.
    """

    _log = Logger()

    def __init__(self, address: Optional[str]):
        self.address = address or None
        self.sent = []
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> "Notifier":
        """A notifier for ``$NOTIFY_SOCKET`` of *environ* (default:
        ``os.environ``)."""
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _socket_address(self):
        address = self.address
        if address.startswith("@"):
            return "\0" + address[1:]  # the abstract namespace
        return address

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` *assignments* as one datagram; whether it was
        sent."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments)
        try:
            sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
            )
            try:
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8"), self._socket_address())
            finally:
                sock.close()
        except OSError as e:
            if not self._failed:
                self._failed = True
                self._log.warn(
                    "cannot notify systemd at {address}: {error}",
                    address=self.address,
                    error=e,
                )
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1`` (and a status line)."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str = "") -> bool:
        """``RELOADING=1`` with the monotonic time systemd asks for."""
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}", *_status(status)
        )

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``."""
        return self.notify("STOPPING=1", *_status(status))

    def status(self, status: str) -> bool:
        """Only a ``STATUS=`` line."""
        return self.notify(*_status(status))


def _status(text: str) -> tuple:
    # One line: a newline would start another assignment.
    text = " ".join(text.split())
    return (f"STATUS={text}",) if text else ()


__all__ = ["Notifier"]
