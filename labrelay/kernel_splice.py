# -*- test-case-name: tests.unit.test_kernel_splice,tests.integration.test_kernel_splice -*-
"""
Relaying between two plain TCP sockets inside the kernel, with splice(2).

When both ends of a splice are plain TCP connections and nothing has to
change the bytes (no TLS on the link, no per-proxy encryption or
compression; in practice ``tcp_mux = false`` with ``tls_enable = false``),
:func:`make_splice` returns a :class:`KernelSplice`: bytes move socket →
pipe → socket without ever being copied into Python, which halves the CPU
per byte (frp gets the same from Go's ``io.Copy``).  Anything else gets the
ordinary :class:`~labrelay.relay.Splice`.

How the switch is made safe:

* it happens only when Twisted holds no outgoing bytes for either socket and
  no producer is registered on either; bytes Twisted had already read are
  handed over as *pending* and written first;
* Twisted's transports stop reading and writing, and one descriptor per
  socket (:class:`_End`) takes their place in the reactor; the transports
  stay the sockets' owners, so when the splice is over it hands both back
  with ``loseConnection`` (or ``abortConnection`` after an error) and the
  protocols see the ordinary ``connectionLost``: counters, logs and limits
  work as for any connection;
* a pipe is borrowed from a small pool only while bytes are in flight in one
  direction: an idle connection holds none, and a direction whose reader is
  slow holds one (at most :data:`PIPE_SIZE` bytes) and stops reading its
  source until the pipe drains;
* an end of input is passed on as ``shutdown(SHUT_WR)`` once the pipe is
  empty, and the other direction keeps flowing (half-close); any other
  error closes both sides.

``LABRELAY_KERNEL_SPLICE=0`` in the environment turns it off (to compare).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from twisted.internet.error import ConnectionAborted
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import ICountedSink
from .relay import Splice, set_no_delay
from .writethrough import socket_is_idle

#: bytes a pipe holds (F_SETPIPE_SZ; the default of 64 KiB costs about a
#: third of the throughput)
PIPE_SIZE = 1 << 20

#: fcntl's command that sizes a pipe (Linux); Python's fcntl names it
#: since 3.10, and PyPy's (Python 3.9) does not
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

#: idle pipes kept for the next borrower
POOL_SIZE = 16

#: pipes lent out at once in the whole process: beyond it a direction
#: reads 64 KiB at a time into memory instead (so at most
#: PIPE_SIZE * MAX_LENT bytes of pipe buffers, whatever peers do)
MAX_LENT = 256

#: bytes read into memory per turn when no pipe can be had
MEMORY_READ = 1 << 16

#: splice() calls in one direction per reactor event (each moves up to
#: PIPE_SIZE bytes), so that one busy connection does not starve the others
ROUNDS = 4

_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


def enabled() -> bool:
    """Whether this platform has splice(2) and the environment allows it."""
    return hasattr(os, "splice") and os.environ.get("LABRELAY_KERNEL_SPLICE") != "0"


def can_take_over(transport) -> bool:
    """Whether *transport* is a plain TCP socket Twisted holds nothing for
    and that no producer is registered on."""
    return socket_is_idle(transport) and transport.producer is None


def make_splice(a, b, *, a_codec=None, b_codec=None, on_close=None, description=""):
    """
    A :class:`KernelSplice` between protocols *a* and *b* when both run on
    plain TCP and no codec is needed, else a :class:`~labrelay.relay.Splice`.
    Either is started with ``start(a_pending, b_pending)``.
    """
    if (
        a_codec is None
        and b_codec is None
        and enabled()
        and can_take_over(a.transport)
        and can_take_over(b.transport)
    ):
        return KernelSplice(a, b, on_close=on_close, description=description)
    return Splice(
        a,
        b,
        a_codec=a_codec,
        b_codec=b_codec,
        on_close=on_close,
        description=description,
    )


class PipePool:
    """
    Pipes of :data:`PIPE_SIZE` bytes, lent while bytes are in flight and
    kept for reuse while idle (up to *size*); at most *limit* are lent at
    once.
    """

    def __init__(self, size: int = POOL_SIZE, limit: int = MAX_LENT):
        self._idle = []
        self._size = size
        self.limit = limit
        self.lent = 0

    def take(self):
        """
        A ``(read_fd, write_fd)`` pair, or None when *limit* pipes are lent
        or no pipe can be made (out of descriptors).
        """
        if self.lent >= self.limit:
            return None
        if self._idle:
            pipe = self._idle.pop()
        else:
            try:
                pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                fcntl.fcntl(pipe[1], F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # over the user's pipe budget: a smaller pipe still works
        self.lent += 1
        return pipe

    def give_back(self, pipe) -> None:
        """An empty pipe, for the next borrower (closed when the pool is full)."""
        self.lent -= 1
        if len(self._idle) < self._size:
            self._idle.append(pipe)
        else:
            self._close(pipe)

    def discard(self, pipe) -> None:
        """A pipe that may still hold bytes: closed."""
        self.lent -= 1
        self._close(pipe)

    @staticmethod
    def _close(pipe) -> None:
        for fd in pipe:
            os.close(fd)


_pipes = PipePool()


class _Direction:
    """Bytes from one socket to the other: pending bytes, then the pipe."""

    __slots__ = ("src", "dst", "pending", "pipe", "in_pipe", "eof", "done", "count")

    def __init__(self, src, dst, pending: bytes):
        self.src = src
        self.dst = dst
        self.pending = pending
        self.pipe = None
        self.in_pipe = 0
        self.eof = False
        self.done = False
        self.count = 0


class _End:
    """The reactor's view of one socket while the kernel splice owns it."""

    def __init__(self, splice, transport):
        self.splice = splice
        self.transport = transport
        self.fd = transport.fileno()
        self.out = None  # the direction that reads this socket
        self.into = None  # the direction that writes to it
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return self.fd

    def watch_reads(self, on: bool) -> None:
        """Have the reactor call :meth:`doRead` (or stop)."""
        if on != self.reading:
            self.reading = on
            reactor = self.splice._reactor
            (reactor.addReader if on else reactor.removeReader)(self)

    def watch_writes(self, on: bool) -> None:
        """Have the reactor call :meth:`doWrite` (or stop)."""
        if on != self.writing:
            self.writing = on
            reactor = self.splice._reactor
            (reactor.addWriter if on else reactor.removeWriter)(self)

    def logPrefix(self) -> str:
        return "KernelSplice"

    def doRead(self):
        self.splice._pump(self.out)

    def doWrite(self):
        self.splice._pump(self.into)

    def connectionLost(self, reason):
        """The reactor drops this descriptor (it is shutting down)."""
        self.splice._fail(reason)


@implementer(ICountedSink)
class KernelSplice:
    """
    (See the module docstring.)  Same constructor arguments and ``start``
    as :class:`~labrelay.relay.Splice`, without codecs.
    """

    _log = Logger()

    def __init__(self, a, b, *, on_close=None, description="", reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._protocols = (a, b)
        self._on_close = on_close
        self.description = description
        self._lost = set()
        self._closed = False
        self._handed_back = False
        self._a_to_b = self._b_to_a = None

    @property
    def bytes_a_to_b(self) -> int:
        return self._a_to_b.count if self._a_to_b is not None else 0

    @property
    def bytes_b_to_a(self) -> int:
        return self._b_to_a.count if self._b_to_a is not None else 0

    def start(self, a_pending: bytes = b"", b_pending: bytes = b"") -> None:
        """Take both sockets over; write the pending bytes first."""
        a, b = self._protocols
        a.sink = b.sink = self
        ends = []
        for protocol in (a, b):
            transport = protocol.transport
            set_no_delay(transport)
            transport.stopReading()
            transport.stopWriting()
            ends.append(_End(self, transport))
        end_a, end_b = self._ends = ends
        self._a_to_b = _Direction(end_a, end_b, a_pending)
        self._b_to_a = _Direction(end_b, end_a, b_pending)
        self._a_to_b.count = len(a_pending)
        self._b_to_a.count = len(b_pending)
        end_a.out = end_b.into = self._a_to_b
        end_b.out = end_a.into = self._b_to_a
        self._pump(self._a_to_b)
        self._pump(self._b_to_a)

    # -- the pump ------------------------------------------------------------

    def _pump(self, d: _Direction) -> None:
        """Move what can move in direction *d* now, then wait for the event
        that lets it go on."""
        if self._handed_back or d.done:
            return
        try:
            for round in range(ROUNDS):
                if not self._drain(d):
                    self._want(d, write=True)
                    return
                if d.eof:
                    self._end_direction(d)
                    return
                # the pipe is empty here: stop after the last round's drain,
                # never with bytes in it and nobody to write them
                if round == ROUNDS - 1 or self._fill(d) is None:
                    break
            self._want(d, write=False)
        except OSError as e:
            self._fail(Failure(e))

    def _drain(self, d: _Direction) -> bool:
        """Write pending bytes and the pipe's contents; False when the
        destination cannot take more now."""
        dst_fd = d.dst.fd
        while d.pending:
            try:
                sent = os.write(dst_fd, d.pending)
            except OSError as e:
                if e.errno in _AGAIN:
                    return False
                raise
            d.pending = d.pending[sent:]
        while d.in_pipe:
            try:
                moved = os.splice(d.pipe[0], dst_fd, d.in_pipe, flags=_FLAGS)
            except OSError as e:
                if e.errno in _AGAIN:
                    return False
                raise
            d.in_pipe -= moved
        if d.pipe is not None:
            _pipes.give_back(d.pipe)
            d.pipe = None
        return True

    def _fill(self, d: _Direction):
        """Read from the source into a borrowed pipe (or into memory when no
        pipe can be had): the byte count, 0 at the end of input, None when
        there is nothing to read now."""
        src_fd = d.src.fd
        if d.pipe is None:
            d.pipe = _pipes.take()
        try:
            if d.pipe is not None:
                moved = os.splice(src_fd, d.pipe[1], PIPE_SIZE, flags=_FLAGS)
                d.in_pipe += moved
            else:
                data = os.read(src_fd, MEMORY_READ)
                d.pending = data
                moved = len(data)
        except OSError as e:
            if e.errno in _AGAIN:
                if d.pipe is not None and not d.in_pipe:
                    _pipes.give_back(d.pipe)
                    d.pipe = None
                return None
            raise
        if not moved:
            d.eof = True
        d.count += moved
        return moved

    def _want(self, d: _Direction, write: bool) -> None:
        """Wait for the destination to take more (*write*) or for the
        source to have more."""
        d.src.watch_reads(not write)
        d.dst.watch_writes(write)

    def _end_direction(self, d: _Direction) -> None:
        """The source ended and everything reached the destination: pass the
        end on, and finish once both directions are over."""
        d.done = True
        self._stop_watching(d)
        if not d.dst.transport.connected:
            return
        try:
            d.dst.transport.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone; the other direction will see it
        if self._a_to_b.done and self._b_to_a.done:
            self._hand_back(None)

    def _stop_watching(self, d: _Direction) -> None:
        d.src.watch_reads(False)
        d.dst.watch_writes(False)

    def _fail(self, reason: Failure) -> None:
        if not self._handed_back:
            self._log.debug(
                "{splice}: {error}",
                splice=self.description,
                error=reason.getErrorMessage(),
            )
            self._hand_back(reason)

    def _hand_back(self, error) -> None:
        """Give both sockets back to their transports and close them: the
        protocols see connectionLost as usual."""
        if self._handed_back:
            return
        self._handed_back = True
        for d in (self._a_to_b, self._b_to_a):
            self._stop_watching(d)
            if d.pipe is not None:
                _pipes.discard(d.pipe)
                d.pipe = None
        for end in self._ends:
            transport = end.transport
            if not transport.connected:
                continue
            if error is None:
                transport.loseConnection()
            else:
                transport.abortConnection()

    # -- ISink: the transports report their end ------------------------------

    def forward(self, source, data: bytes) -> None:
        """Not reached: the transports do not read while the pump runs."""

    def end_of_input(self, source) -> None:
        """Not reached: see :meth:`forward`."""

    def connection_lost(self, protocol, reason) -> None:
        """One transport closed (after :meth:`_hand_back`, or on its own)."""
        self._lost.add(id(protocol))
        if not self._handed_back:
            self._hand_back(
                reason if reason is not None else Failure(ConnectionAborted())
            )
        if len(self._lost) == 2 and not self._closed:
            self._closed = True
            if self._on_close is not None:
                self._on_close(self)

    def abort(self) -> None:
        """Drop both connections at once (a shutdown)."""
        self._hand_back(Failure(ConnectionAborted()))
