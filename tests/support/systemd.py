"""
A fake systemd for the notify protocol: a ``$NOTIFY_SOCKET`` (a unix
datagram socket with a short path) in the test's reactor.
"""

import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol

from .harness import within


def short_dir(testcase) -> str:
    """A fresh directory with a short path, removed after the test."""
    path = tempfile.mkdtemp(prefix="lrsd-")
    testcase.addCleanup(shutil.rmtree, path, True)
    return path


class _Datagrams(DatagramProtocol):
    def __init__(self):
        self.queue = defer.DeferredQueue()

    def datagramReceived(self, data, addr=None):
        self.queue.put(data.decode("utf-8"))


class FakeSystemd:
    """A ``$NOTIFY_SOCKET`` in the test's reactor; :meth:`next` waits for
    the next datagram."""

    def __init__(self, testcase):
        self.path = os.path.join(short_dir(testcase), "notify")
        self._protocol = _Datagrams()
        port = reactor.listenUNIXDatagram(self.path, self._protocol)
        testcase.addCleanup(port.stopListening)

    def next(self, seconds=10):
        return within(self._protocol.queue.get(), seconds)
