# -*- test-case-name: tests.unit.test_web -*-
"""
What the dashboard and the admin API share (labrelay.web), in memory: Basic
auth through the password throttle, the held answer and its 401, the
tracked connections, the JSON bodies.  The routes themselves are tested in
test_admin and test_dashboard.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from labrelay.throttle import BASE_DELAY, FAIL, PasswordThrottle
from labrelay.web import (
    BasicAuth,
    Credentials,
    JsonFormat,
    TrackingFactory,
    answer_when_decided,
)


class _Request(DummyRequest):
    """A DummyRequest with basic-auth credentials, from 192.0.2.7."""

    def __init__(self, user=b"", password=b""):
        super().__init__([b"api"])
        self._user, self._password = user, password

    def getUser(self):
        return self._user

    def getPassword(self):
        return self._password

    def getClientAddress(self):
        return IPv4Address("TCP", "192.0.2.7", 50000)


class CredentialsTests(SynchronousTestCase):
    """The configured pair."""

    def test_none_configured(self):
        """Both empty means no authentication; either one set is a pair."""
        self.assertIsNone(Credentials.from_config("", ""))
        self.assertEqual(Credentials.from_config("", "pw"), Credentials(b"", b"pw"))

    def test_match(self):
        """Both the user and the password must match."""
        pair = Credentials.from_config("admin", "s3cret")
        self.assertTrue(pair.match(_Request(b"admin", b"s3cret")))
        self.assertFalse(pair.match(_Request(b"admin", b"wrong")))
        self.assertFalse(pair.match(_Request(b"other", b"s3cret")))


class BasicAuthTests(SynchronousTestCase):
    """Checking a request's credentials through the throttle."""

    def setUp(self):
        self.clock = Clock()
        self.credentials = Credentials.from_config("admin", "s3cret")
        self.refused = []
        self.auth = BasicAuth(
            self.clock,
            PasswordThrottle(self.clock),
            "test",
            lambda: self.credentials,
            lambda request, verdict: self.refused.append(verdict),
            missing_delay=0.2,
        )
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def test_not_required(self):
        """Without credentials configured every request passes at once."""
        self.credentials = None
        self.assertFalse(self.auth.required)
        self.assertIs(self.auth.check(_Request()), True)

    def test_right_credentials(self):
        """The configured pair from a source not in backoff passes now."""
        self.assertIs(self.auth.check(_Request(b"admin", b"s3cret")), True)
        self.assertEqual(self.refused, [])

    def test_wrong_credentials(self):
        """A wrong guess is decided after the throttle's delay, counted,
        and reported with its verdict."""
        decided = self.auth.check(_Request(b"admin", b"guess"))
        self.assertNoResult(decided)
        self.clock.advance(BASE_DELAY)
        self.assertIs(self.successResultOf(decided), False)
        [verdict] = self.refused
        self.assertEqual((verdict.outcome, verdict.failures), (FAIL, 1))
        self.assertEqual(self.auth.throttle.failures_from("test", "192.0.2.7"), 1)

    def test_missing_credentials(self):
        """A request without credentials is no guess: reported without a
        verdict, refused after missing_delay, not counted."""
        decided = self.auth.check(_Request())
        self.assertEqual(self.refused, [None])
        self.clock.advance(0.19)
        self.assertNoResult(decided)
        self.clock.advance(0.01)
        self.assertIs(self.successResultOf(decided), False)
        self.assertEqual(self.auth.throttle.failures_from("test", "192.0.2.7"), 0)
        self.assertEqual(self.auth.pending, set())

    def test_missing_gone(self):
        """A client gone before its refusal leaves no timer."""
        request = _Request()
        self.auth.check(request)
        request.processingFailed(Exception("gone"))
        self.assertEqual(self.auth.pending, set())

    def test_close(self):
        """close() drops the refusals not yet answered."""
        self.auth.check(_Request())
        self.auth.close()
        self.assertEqual(self.auth.pending, set())


class AnswerWhenDecidedTests(SynchronousTestCase):
    """A request held until its credentials are decided."""

    def hold(self, request, decided):
        self.allowed = []
        return answer_when_decided(
            request,
            decided,
            lambda: self.allowed.append(request),
            Logger(),
            "answering",
        )

    def test_passed(self):
        """A pass hands the request to the route."""
        request, decided = _Request(), Deferred()
        self.assertEqual(self.hold(request, decided), NOT_DONE_YET)
        self.assertEqual(self.allowed, [])
        decided.callback(True)
        self.assertEqual(self.allowed, [request])

    def test_refused(self):
        """A refusal is 401 with frp's Basic challenge."""
        request = _Request()
        self.hold(request, succeed(False))
        self.assertEqual((request.finished, request.responseCode), (1, 401))
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"www-authenticate"),
            [b'Basic realm="Restricted"'],
        )
        self.assertEqual(b"".join(request.written), b"Unauthorized\n")

    def test_gone(self):
        """A client gone meanwhile gets nothing."""
        request, decided = _Request(), Deferred()
        self.hold(request, decided)
        request.processingFailed(Exception("gone"))
        decided.callback(False)
        self.assertEqual((self.allowed, request.written), ([], []))


class TrackingFactoryTests(SynchronousTestCase):
    """The open connections of a web API."""

    def test_close_all(self):
        """Connections are kept while open, and close_all() ends them."""
        factory = TrackingFactory(Factory.forProtocol(Protocol), "test API")
        self.assertEqual(factory.logPrefix(), "test API")
        transport = StringTransport()
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        self.assertEqual(len(factory.connections), 1)
        closed = factory.connections.close_all()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(closed)
        protocol.connectionLost(None)
        self.successResultOf(closed)
        self.assertEqual(len(factory.connections), 0)


class JsonFormatTests(SynchronousTestCase):
    """The two APIs' JSON bodies."""

    def test_default(self):
        """Compact, UTF-8, no-store (the dashboard's)."""
        request = _Request()
        body = JsonFormat().body(request, {"a": [1, "é"]})
        self.assertEqual(body, b'{"a":[1,"\\u00e9"]}')
        self.assertEqual(json.loads(body), {"a": [1, "é"]})
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"application/json; charset=utf-8"],
        )
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"]
        )

    def test_other_format(self):
        """Another content type and separators, without no-store (the
        admin API's)."""
        request = _Request()
        body = JsonFormat(b"application/json", (", ", ": "), False).body(
            request, {"a": 1, "b": 2}
        )
        self.assertEqual(body, b'{"a": 1, "b": 2}')
        self.assertIsNone(request.responseHeaders.getRawHeaders(b"cache-control"))
