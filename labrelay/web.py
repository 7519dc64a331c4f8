# -*- test-case-name: tests.unit.test_web,tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin,tests.unit.test_dashboard,tests.integration.test_dashboard -*-
"""
What the two local web APIs, the server's dashboard
(:mod:`labrelay.server.dashboard`) and the client's admin API
(:mod:`labrelay.client.admin`), do the same way on ``twisted.web``:

* :class:`BasicAuth`: the configured Basic-auth pair, checked through the
  password throttle (:mod:`labrelay.throttle`); a request without
  credentials is no guess and is refused after a fixed delay, uncounted;
* :func:`answer_when_decided`: a request held until that check decides,
  then answered, or refused with :func:`refuse_unauthorized`'s 401;
* :class:`QuietSite`: a ``Site`` with no access log, and
  :class:`TrackingFactory`, which keeps its open connections so that
  stopping the API closes them all;
* :func:`plain_text` and :class:`JsonFormat`: the bodies they answer
  with, and :class:`Reply`, how a handler ends with another status.

Which ``Host`` and ``Origin`` they accept is :mod:`labrelay.localweb`.
"""

from __future__ import annotations

import hmac
import json
from typing import Callable, Optional

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web.server import NOT_DONE_YET, Site

from .throttle import PASS
from .tracking import ConnectionSet

#: Seconds before frp answers a request without credentials (200 ms).
AUTH_FAIL_DELAY = 0.2
#: The challenge of a 401, as frp words it.
REALM = b'Basic realm="Restricted"'
TEXT = b"text/plain; charset=utf-8"
#: The body of a 404, as Go's net/http words it (frps, frpc).
PAGE_NOT_FOUND = "404 page not found\n"


class Reply(Exception):
    """Ends a route handler with this status *code* and *text*."""

    def __init__(self, code: int, text: str = ""):
        super().__init__(text)
        self.code = code
        self.text = text


def plain_text(request, code: int, text: str) -> bytes:
    """A *code* answer of UTF-8 *text*."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", TEXT)
    return text.encode("utf-8")


@frozen
class JsonFormat:
    """How one API writes its JSON answers (each keeps the bytes it has
    always sent)."""

    content_type: bytes = b"application/json; charset=utf-8"
    #: ``json.dumps`` separators; the default is compact
    separators: tuple = (",", ":")
    #: with ``Cache-Control: no-store`` (live state)
    no_store: bool = True

    def body(self, request, value) -> bytes:
        """*value* as the body of a 200 answer to *request*."""
        request.setHeader(b"content-type", self.content_type)
        if self.no_store:
            request.setHeader(b"cache-control", b"no-store")
        return json.dumps(value, separators=self.separators).encode("utf-8")


def refuse_unauthorized(request) -> None:
    """Answer *request* 401 with the Basic challenge, now."""
    request.setResponseCode(401)
    request.setHeader(b"www-authenticate", REALM)
    request.setHeader(b"content-type", TEXT)
    request.write(b"Unauthorized\n")
    request.finish()


@frozen
class Credentials:
    """The configured Basic-auth pair."""

    user: bytes
    password: bytes

    @classmethod
    def from_config(cls, user: str, password: str) -> Optional[Credentials]:
        """The pair, or None when both are empty (no authentication)."""
        if not (user or password):
            return None
        return cls(user.encode("utf-8"), password.encode("utf-8"))

    def match(self, request) -> bool:
        """Whether *request* carries this pair."""
        # Both compared, always: no early exit that times the user name.
        same_user = hmac.compare_digest(request.getUser(), self.user)
        same_password = hmac.compare_digest(request.getPassword(), self.password)
        return same_user and same_password


class BasicAuth:
    """
    One web API's Basic auth, through the password throttle.

    :param clock: schedules the delayed 401s.
    :param throttle: a :class:`~labrelay.throttle.PasswordThrottle`.
    :param realm: the throttle's realm for these guesses (``dashboard``).
    :param credentials: called for each check (a reload changes them): the
        configured :class:`Credentials`, or None for no authentication.
    :param on_refused: called with ``(request, verdict)`` when credentials
        are refused, *verdict* None for a request that carried none.
    :param missing_delay: seconds before a request without credentials is
        refused.
    """

    def __init__(
        self,
        clock,
        throttle,
        realm: str,
        credentials: Callable[[], Optional[Credentials]],
        on_refused: Callable[[object, object], None],
        missing_delay: float = AUTH_FAIL_DELAY,
    ):
        self._clock = clock
        self.throttle = throttle
        self._realm = realm
        self._credentials = credentials
        self._on_refused = on_refused
        self._missing_delay = missing_delay
        #: refusals of requests without credentials, not yet answered
        self.pending = set()

    @property
    def required(self) -> bool:
        """Whether credentials are configured."""
        return self._credentials() is not None

    def _matches(self, request) -> bool:
        credentials = self._credentials()
        return credentials is None or credentials.match(request)

    def check(self, request):
        """
        True when *request* may be answered now; else a Deferred firing
        with whether it passed, once the throttle has decided (a source in
        backoff waits, right credentials too).  A request without
        credentials is no guess: refused after ``missing_delay``, not
        counted.
        """
        if not self.required:
            return True
        user = request.getUser()
        if not (user or request.getPassword()):
            self._on_refused(request, None)
            return self._refuse_later(request)
        verdicts = []
        decided = self.throttle.check(
            self._realm,
            getattr(request.getClientAddress(), "host", ""),
            user.decode("utf-8", "replace"),
            lambda: self._matches(request),
        )
        decided.addCallback(verdicts.append)
        if verdicts and verdicts[0].outcome == PASS:
            return True

        def outcome(_):
            verdict = verdicts[0]
            if verdict.outcome == PASS:
                return True
            self._on_refused(request, verdict)
            return False

        return decided.addCallback(outcome)

    def _refuse_later(self, request) -> Deferred:
        refused = Deferred()

        def due():
            self.pending.discard(call)
            refused.callback(False)

        def gone(_):
            if call.active():
                call.cancel()
            self.pending.discard(call)

        call = self._clock.callLater(self._missing_delay, due)
        self.pending.add(call)
        request.notifyFinish().addErrback(gone)
        return refused

    def close(self) -> None:
        """Drop the refusals not yet answered (the API is stopping)."""
        for call in list(self.pending):
            if call.active():
                call.cancel()
        self.pending.clear()


def answer_when_decided(
    request, decided: Deferred, allowed: Callable[[], None], log: Logger, what: str
):
    """
    Hold *request* until *decided* (from :meth:`BasicAuth.check`) fires:
    then *allowed* answers it, or a 401 does; nothing if the client went
    away meanwhile.  A failure in between is logged as *what*.  Returns
    ``NOT_DONE_YET``, for ``render``.
    """
    gone = []
    request.notifyFinish().addErrback(gone.append)

    def answer(passed):
        if gone:
            return
        if passed:
            allowed()
        else:
            refuse_unauthorized(request)

    decided.addCallback(answer)
    decided.addErrback(lambda failure: log.failure(what, failure))
    return NOT_DONE_YET


#: Seconds an idle HTTP connection to the dashboard or admin API is kept
#: (twisted.web's own default is 12 hours).
IDLE_TIMEOUT = 120
#: Open connections to one such API, in all and from one address.
MAX_CONNECTIONS = 256
MAX_CONNECTIONS_PER_SOURCE = 32


class QuietSite(Site):
    """A ``Site`` that writes no access log: a page polling every few
    seconds would fill it (the API logs what matters itself).  An idle
    connection is closed after :data:`IDLE_TIMEOUT`."""

    noisy = False

    def __init__(self, resource, *args, timeout=IDLE_TIMEOUT, **kwargs):
        super().__init__(resource, *args, timeout=timeout, **kwargs)

    def log(self, request):
        """Requests are not logged."""


class TrackingFactory(WrappingFactory):
    """
    Keeps the open connections of the wrapped factory (a :class:`QuietSite`)
    in :attr:`connections`, so that stopping the API can close them all.

    A connection beyond *max_connections* in all, or beyond
    *max_per_source* from one address, is refused at accept (closed
    before any byte is read), so no peer can hold the API's sockets.

    :param name: what the log calls it (``admin API starting on 7400``).
    """

    noisy = False

    def __init__(
        self,
        factory,
        name: str,
        max_connections: int = MAX_CONNECTIONS,
        max_per_source: int = MAX_CONNECTIONS_PER_SOURCE,
    ):
        super().__init__(factory)
        self.connections = ConnectionSet()
        self._name = name
        self._max_connections = max_connections
        self._max_per_source = max_per_source
        self._accepted = 0
        self._per_source = {}  # host -> open connections

    def logPrefix(self):
        return self._name

    def buildProtocol(self, addr):
        source = getattr(addr, "host", "")
        if (
            self._accepted >= self._max_connections
            or self._per_source.get(source, 0) >= self._max_per_source
        ):
            return None
        wrapper = super().buildProtocol(addr)
        if wrapper is not None:
            wrapper.api_source = source
            self._accepted += 1
            self._per_source[source] = self._per_source.get(source, 0) + 1
        return wrapper

    def registerProtocol(self, p):
        super().registerProtocol(p)
        self.connections.add(p)

    def unregisterProtocol(self, p):
        super().unregisterProtocol(p)
        self.connections.remove(p)
        source = getattr(p, "api_source", None)
        if source is not None:
            self._accepted -= 1
            left = self._per_source[source] - 1
            if left:
                self._per_source[source] = left
            else:
                del self._per_source[source]


__all__ = [
    "BasicAuth",
    "Credentials",
    "IDLE_TIMEOUT",
    "JsonFormat",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_SOURCE",
    "QuietSite",
    "Reply",
    "TrackingFactory",
    "answer_when_decided",
    "plain_text",
    "refuse_unauthorized",
    "AUTH_FAIL_DELAY",
    "PAGE_NOT_FOUND",
    "REALM",
    "TEXT",
]
