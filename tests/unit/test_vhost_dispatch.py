# -*- test-case-name: tests.unit.test_vhost_dispatch -*-
"""
labrelay.server.vhost.dispatch: what a request head becomes, without a
connection (the vhost tests cover the same answers on the wire).
"""

import base64

import h11
from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.vhost.dispatch import Answer, Forward, Refusal, dispatch
from labrelay.server.vhost.routes import RouteTable

PAGE = b"<html>not found</html>"


def parsed(head: bytes):
    """The h11 request of *head* (a whole head, CRLF-terminated)."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head)
    return connection.next_event()


class DispatchTests(SynchronousTestCase):
    """Each kind of decision, from a head and a route table."""

    def setUp(self):
        self.routes = RouteTable()
        self.proxy = object()
        self.routes.add([("app.example.test", "", "")], self.proxy)

    def decide(self, head: bytes):
        return dispatch(parsed(head), head, self.routes, PAGE)

    def test_forward(self):
        """A routed request is forwarded with its normalised target and
        its credentials."""
        token = base64.b64encode(b"ann:pw")
        decision = self.decide(
            b"GET /a/../b HTTP/1.1\r\nHost: app.example.test\r\n"
            b"Authorization: Basic " + token + b"\r\n\r\n"
        )
        self.assertIsInstance(decision, Forward)
        self.assertIs(decision.proxy, self.proxy)
        self.assertEqual(
            (
                decision.target,
                decision.host,
                decision.user,
                decision.password,
                decision.absolute,
            ),
            (b"/b", b"app.example.test", "ann", "pw", False),
        )

    def test_absolute_form(self):
        """An absolute-form target gives the Host and an origin-form
        target."""
        decision = self.decide(
            b"GET http://app.example.test/x?q HTTP/1.1\r\n"
            b"Host: other.example.test\r\n\r\n"
        )
        self.assertIsInstance(decision, Forward)
        self.assertEqual(
            (decision.target, decision.host, decision.absolute),
            (b"/x?q", b"app.example.test", True),
        )
        self.assertIn((b"Host", b"app.example.test"), decision.headers)

    def test_no_route(self):
        """No route: 404 with the page, and a log line."""
        decision = self.decide(b"GET / HTTP/1.1\r\nHost: none.example.test\r\n\r\n")
        self.assertIsInstance(decision, Answer)
        self.assertEqual(
            (decision.status, decision.body, decision.user), (404, PAGE, "")
        )
        self.assertEqual(decision.log, "no route for {host}{path}")

    def test_ambiguous_framing(self):
        """Ambiguous body framing is refused (the connection closes)."""
        decision = self.decide(
            b"POST / HTTP/1.1\r\nHost: app.example.test\r\n"
            b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n"
        )
        self.assertIsInstance(decision, Refusal)
        self.assertEqual(decision.status, 400)

    def test_bad_hosts(self):
        """No Host, or a Host with two trailing dots: 400."""
        decision = self.decide(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(
            (type(decision), decision.status, decision.close), (Answer, 400, True)
        )
        decision = self.decide(b"GET / HTTP/1.1\r\nHost: app.example.test..\r\n\r\n")
        self.assertEqual(
            (type(decision), decision.status, decision.close), (Answer, 400, False)
        )
