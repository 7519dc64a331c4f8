"""
The pool of idle work connections of one client.

frps asks the client for ``min(pool_count, max_pool_count)`` work
connections at login and one more every time it takes one, so a user
connection rarely waits.  When the pool is empty a user connection asks for
one (ReqWorkConn) and waits up to ``user_conn_timeout``.  Connections beyond
the pool's capacity (``pool_count + 10``, as frp, with pool_count clamped to
``max_pool_count`` by the control) are closed at once, whether the server
asked for them or not: a client cannot make the server hold more idle
connections than that.
"""

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import NoWorkConnection
from ..interfaces import IWorkConnPool


@implementer(IWorkConnPool)
class WorkConnPool:
    """
    :param request_more: called with no arguments to send one ReqWorkConn.
    :param capacity: how many idle connections are kept.
    :param timeout: seconds a :meth:`get` waits before failing.
    """

    _log = Logger()

    def __init__(self, clock, request_more, capacity: int, timeout: float):
        self._clock = clock
        self._request_more = request_more
        self._capacity = capacity
        self._timeout = timeout
        # lists, not deques: an empty deque costs 760 bytes against 56, and
        # most of the many pools of a busy relay are nearly empty (at most
        # capacity entries, so popping the front is cheap)
        self._idle = []
        self._waiters = []
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def put(self, connection) -> None:
        """A work connection arrived: give it to a waiter or keep it."""
        if self._closed:
            connection.discard("the client's control connection is closed")
            return
        while self._waiters:
            waiter = self._waiters.pop(0)
            waiter.callback(connection)
            return
        if len(self._idle) >= self._capacity:
            connection.discard("work connection pool is full")
            return
        self._idle.append(connection)

    def discard(self, connection) -> None:
        """An idle connection went away."""
        try:
            self._idle.remove(connection)
        except ValueError:
            pass

    def get(self) -> Deferred:
        """A work connection, now or within the timeout; replenishes the pool."""
        if self._closed:
            raise NoWorkConnection("the client's control connection is closed")
        if self._idle:
            connection = self._idle.pop(0)
            self._request_more()
            return succeed(connection)

        def cancel(d):
            try:
                self._waiters.remove(d)
            except ValueError:
                pass

        waiter = Deferred(cancel)
        self._waiters.append(waiter)
        self._request_more()
        waiter.addTimeout(self._timeout, self._clock)

        def got(connection):
            self._request_more()
            return connection

        def failed(failure):
            if failure.check(TimeoutError):
                raise NoWorkConnection(f"no work connection within {self._timeout:g}s")
            return failure

        waiter.addCallbacks(got, failed)
        return waiter

    def close(self) -> None:
        """Close every idle connection and fail every waiter."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.discard("the client's control connection is closed")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(NoWorkConnection("the client went away"))
