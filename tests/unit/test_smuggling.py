# -*- test-case-name: tests.unit.test_smuggling -*-
"""
What the vhost exchange writes for the framing of each hop, and when it
keeps the work connection, on memory transports
(tests.integration.test_smuggling sends the smuggling attempts through a
real relay).
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.server.vhost.request import framing_problem

from ..support.fakes import MemoryVhostMixin


class ForwardedFramingTests(MemoryVhostMixin, SynchronousTestCase):
    """What the exchange writes for the framing of each hop, and when it
    keeps the work connection, on memory transports."""

    def exchange(self, head: bytes, body: bytes, response: bytes):
        """Send a request, answer *response*: (work connection, bytes the
        backend got, bytes the user got)."""
        self.connection.dataReceived(
            b"POST /up HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
            + head
            + b"\r\n"
            + body
        )
        [work] = self.works
        sent = work.transport.value()
        work.sink.forward(work, response)
        return work, sent, self.user.value()

    def test_length_written_anew_and_kept(self):
        """A Content-Length is forwarded as the number h11 read (one
        header, no leading zeros); a clean exchange keeps the work
        connection."""
        work, sent, _ = self.exchange(
            b"content-length: 007\r\n",
            b"1234567",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )
        self.assertIn(b"\r\nContent-Length: 7\r\n", sent)
        self.assertEqual(sent.lower().count(b"content-length"), 1)
        self.assertTrue(sent.endswith(b"\r\n\r\n1234567"))
        self.assertEqual(self.proxy.idle_work_count, 1)
        self.assertFalse(work.transport.disconnecting)
        self.proxy.close()  # drops it (and its idle timer)

    def test_chunked_rechunked_and_not_kept(self):
        """A chunked body is forwarded in chunks the relay writes; the
        work connection is not kept after it (a backend that ignores
        Transfer-Encoding would read the chunks as requests)."""
        work, sent, got = self.exchange(
            b"Transfer-Encoding: CHUNKED \r\n",
            b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
        self.assertTrue(got.endswith(b"\r\n\r\nok"))
        self.assertEqual(self.proxy.idle_work_count, 0)
        self.assertTrue(work.transport.disconnecting)

    def test_response_framed_both_ways(self):
        """A response with Content-Length and Transfer-Encoding reaches the
        user chunked, without the Content-Length, and the work connection
        is closed after it."""
        work, _, got = self.exchange(
            b"Content-Length: 0\r\n",
            b"",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        self.assertNotIn(b"content-length", got.lower())
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", got)
        self.assertTrue(got.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
        self.assertEqual(self.proxy.idle_work_count, 0)
        self.assertTrue(work.transport.disconnecting)

    def test_framing_problems(self):
        """The head checks, one line each."""
        base = b"POST / HTTP/1.1\r\nHost: h\r\n"
        for extra, problem in [
            (b"Content-Length: 1\r\n", None),
            (b"Transfer-Encoding: chunked\r\n", None),
            (
                b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"Content-Length: 1\r\ncontent-length: 1\r\n",
                "more than one Content-Length",
            ),
            (b"Content-Length: 1, 1\r\n", "Content-Length is not a number"),
            (b"X: a\r\n\tb\r\n", "obsolete line folding"),
            (b"X: a\nY: b\r\n", "bare LF line ending"),
            (b"Content_Length: 1\r\n", "header Content_Length"),
        ]:
            self.assertEqual(
                framing_problem(base + extra + b"\r\n", b"1.1"), problem, extra
            )
        self.assertEqual(
            framing_problem(base + b"Transfer-Encoding: chunked\r\n\r\n", b"1.0"),
            "Transfer-Encoding in an HTTP/1.0 request",
        )
