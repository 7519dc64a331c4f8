# -*- test-case-name: tests.integration.test_smuggling -*-
"""
Request smuggling through the HTTP vhost, table-driven, on real sockets:
a relay, a client with two ``type = http`` proxies on one domain (``/``,
and ``/admin`` behind ``http_user``/``http_pwd``) and, behind both, a
deliberately naive backend that frames requests by Content-Length only
(it ignores Transfer-Encoding, reads ``int()`` of the last
Content-Length, and keeps connections alive).

Each case sends one attack on its own connection, with a smuggled request
hidden in its body, then a second user (the victim) sends a request
carrying a secret cookie.  Whatever the case, the backend must never see
the smuggled request (``/admin`` without credentials, or ``/capture``
whose body would swallow the victim's request), the victim must get its
own answer, and neither may read the admin page.  Cases marked refused
must also be answered 400 and closed by the relay.
"""

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from ..support.harness import async_test, connect_user, listen, within
from ..support.vhost import VhostRelay, http_proxy, start_client

HOST = b"app.example.org"
SECRET = b"victim-secret-"
ADMIN_PAGE = b"ADMIN-SECRET"

#: The smuggled requests: one reaching the protected location, one whose
#: declared body swallows the next request on the same backend connection
#: (a chunked body re-framed by the relay ends with these 7 bytes:
#: ``\r\n0\r\n\r\n``, which the first one's Content-Length absorbs).
#: A request pipelined after a refused one: it must not be served.
AFTER = b"GET /after HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n"

PAYLOADS = {
    "admin": b"GET /admin HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 7\r\n\r\n",
    "capture": b"POST /capture HTTP/1.1\r\nHost: "
    + HOST
    + b"\r\nContent-Length: 300\r\n\r\n",
}


# -- the naive backend ----------------------------------------------------------


class Seen:
    """One request as the naive backend read it."""

    def __init__(self, method, target, headers, body):
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"<{self.method!r} {self.target!r} body={self.body[:60]!r}>"


class NaiveBackend(Factory):
    """Keeps every request read (:attr:`seen`) and every request line it
    could not read (:attr:`garbage`)."""

    def __init__(self):
        self.seen = []
        self.garbage = []

    def buildProtocol(self, addr):
        return NaiveConnection(self)


class NaiveConnection(Protocol):
    """Frames by Content-Length only; answers ``naive <target>`` (plus the
    admin page under /admin, the body under /capture); a line that is not
    a request line gets a 400 and the connection closed."""

    def __init__(self, factory):
        self.factory = factory
        self.buffer = b""
        self.pending = None  # (method, target, headers, length)
        self.done = False

    def dataReceived(self, data):
        self.buffer += data
        for _ in range(100):
            if self.done or not self._step():
                return

    def _step(self) -> bool:
        if self.pending is None:
            while self.buffer.startswith(b"\r\n"):
                self.buffer = self.buffer[2:]
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self.factory.garbage.append(lines[0])
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\n"
                    b"Content-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                self.transport.loseConnection()
                self.done = True
                return False
            headers, length = [], 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                headers.append((name, value.strip()))
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        length = 0
            self.pending = (parts[0], parts[1], headers, max(length, 0))
        method, target, headers, length = self.pending
        if len(self.buffer) < length:
            return False
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        self.pending = None
        self.factory.seen.append(Seen(method, target, headers, body))
        answer = b"naive " + target
        if target.startswith(b"/admin"):
            answer += b" " + ADMIN_PAGE
        if target.startswith(b"/capture"):
            answer += b" body=" + body
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
        )
        return True


# -- attacks --------------------------------------------------------------------


def request(lines, body=b"", line=b"POST / HTTP/1.1", eol=b"\r\n"):
    """A raw request: *line*, Host, then header *lines*, then *body*."""
    head = [line, b"Host: " + HOST] + list(lines)
    return eol.join(head) + eol + eol + body


def chunked(payload: bytes) -> bytes:
    """*payload* as one chunk, then the last chunk."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"


def rechunk_length(payload: bytes) -> bytes:
    """The Content-Length that makes a Content-Length-only reader stop
    right after the chunk-size line the relay writes before *payload*
    (the CL.TE desync against a relay that forwards both headers)."""
    return b"%d" % len(b"%x\r\n" % len(payload))


def cl_te(*te_lines, cl_first=True):
    def build(payload):
        cl = [b"Content-Length: " + rechunk_length(payload)]
        lines = cl + list(te_lines) if cl_first else list(te_lines) + cl
        return request(lines, chunked(payload))

    return build


def te_only(*te_lines, body=chunked):
    def build(payload):
        return request(te_lines, body(payload))

    return build


def cl_only(*cl_values):
    def build(payload):
        return request([b"Content-Length: " + v for v in cl_values], payload)

    return build


def with_length(template):
    """Content-Length lines from *template* (``%d``: the payload's length)."""

    def build(payload):
        lines = [line.replace(b"%d", b"%d" % len(payload)) for line in template]
        return request(lines, payload)

    return build


def bare_lf(payload):
    return request([b"Content-Length: %d" % len(payload)], payload, eol=b"\n")


def mixed_lf(payload):
    return (
        b"POST / HTTP/1.1\r\nHost: " + HOST + b"\nContent-Length: %d"
        b"\r\n\r\n" % len(payload) + payload
    )


def http10_te(payload):
    return request(
        [b"Transfer-Encoding: chunked"], chunked(payload), line=b"POST / HTTP/1.0"
    )


def overflow(payload):
    """A chunk size that wraps to the payload's length in 64 bits."""
    return request(
        [b"Transfer-Encoding: chunked"],
        b"1%016x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n",
    )


def overlong_size(payload):
    return request(
        [b"Transfer-Encoding: chunked"],
        b"1%020x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n",
    )


def chunk_lines_lf(payload):
    return request(
        [b"Transfer-Encoding: chunked"], b"%x\n" % len(payload) + payload + b"\n0\n\n"
    )


REFUSED, SAFE = "refused", "safe"

#: name -> (attack builder, expectation)
CASES = {
    "cl_te": (cl_te(b"Transfer-Encoding: chunked"), REFUSED),
    "te_cl": (cl_te(b"Transfer-Encoding: chunked", cl_first=False), REFUSED),
    "te_obs_fold": (cl_te(b"Transfer-Encoding:", b" chunked"), REFUSED),
    "te_behind_fold": (cl_te(b"X-Pad: a", b"\tTransfer-Encoding: chunked"), REFUSED),
    "fold_only": (with_length([b"X-Pad: a", b" b", b"Content-Length: %d"]), REFUSED),
    "te_capitalised": (cl_te(b"Transfer-Encoding: Chunked"), REFUSED),
    "te_trailing_space": (cl_te(b"Transfer-Encoding: chunked "), REFUSED),
    "te_tab": (cl_te(b"Transfer-Encoding:\tchunked"), REFUSED),
    "te_chunked_identity": (cl_te(b"Transfer-Encoding: chunked, identity"), REFUSED),
    "te_gzip": (cl_te(b"Transfer-Encoding: gzip"), REFUSED),
    "te_gzip_chunked": (cl_te(b"Transfer-Encoding: gzip, chunked"), REFUSED),
    "te_xchunked": (cl_te(b"Transfer-Encoding: xchunked"), REFUSED),
    "te_twice": (
        te_only(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        REFUSED,
    ),
    "te_identity_then_chunked": (
        te_only(b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"),
        REFUSED,
    ),
    "te_underscore": (cl_te(b"Transfer_Encoding: chunked"), REFUSED),
    "te_http10": (http10_te, REFUSED),
    "cl_twice_same": (
        with_length([b"Content-Length: %d", b"Content-Length: %d"]),
        REFUSED,
    ),
    "cl_conflict": (
        with_length([b"Content-Length: 0", b"Content-Length: %d"]),
        REFUSED,
    ),
    "cl_list": (with_length([b"Content-Length: %d, %d"]), REFUSED),
    "cl_plus": (with_length([b"Content-Length: +%d"]), REFUSED),
    "cl_hex": (cl_only(b"0x10"), REFUSED),
    "cl_negative": (cl_only(b"-1"), REFUSED),
    "cl_underscore": (cl_only(b"1_0"), REFUSED),
    "cl_underscore_name": (with_length([b"Content_Length: %d"]), REFUSED),
    "host_twice": (
        with_length([b"Host: other.example.org", b"Content-Length: %d"]),
        REFUSED,
    ),
    "bare_lf": (bare_lf, REFUSED),
    "bare_lf_one_line": (mixed_lf, REFUSED),
    "chunk_size_overflow": (overflow, SAFE),
    "chunk_size_overlong": (overlong_size, SAFE),
    "chunk_lines_bare_lf": (chunk_lines_lf, SAFE),
    "chunked_alone": (te_only(b"Transfer-Encoding: chunked"), SAFE),
    "chunked_capitalised_alone": (te_only(b"Transfer-Encoding: CHUNKED"), SAFE),
}


# -- the tests ------------------------------------------------------------------


def status_of(raw: bytes):
    """The status code of the first response in *raw*, or None."""
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


class SmugglingTests(TestCase):
    timeout = 60

    async def setup(self):
        self.backend = NaiveBackend()
        port = listen(self, self.backend)
        self.relay = await VhostRelay(self).start()
        domain = HOST.decode()
        proxies = http_proxy("web", port, custom_domains=domain) + http_proxy(
            "admin",
            port,
            custom_domains=domain,
            locations="/admin",
            http_user="admin",
            http_pwd="s3cret",
        )
        await start_client(self, self.relay, proxies, ["web", "admin"])

    async def raw(self, data: bytes, half_close: bool, seconds=10):
        """Send *data* on a new connection: ``(received, closed)``, the
        bytes received until the relay closed it, or within *seconds*."""
        user = await connect_user(self, self.relay.http_port)
        user.transport.write(data)
        if half_close:
            user.transport.loseWriteConnection()
        try:
            return await within(user.eof, seconds), True
        except defer.TimeoutError:
            return bytes(user.received), False

    async def victim(self):
        """A second user's request with a secret: the bytes it receives."""
        received, _ = await self.raw(
            b"GET /victim HTTP/1.1\r\nHost: " + HOST + b"\r\n"
            b"Cookie: session=" + SECRET + b"x" * 300 + b"\r\n"
            b"Connection: close\r\n\r\n",
            half_close=False,
        )
        return received

    async def check(self, case: str, payload: str):
        build, expected = CASES[case]
        await self.setup()
        attack = build(PAYLOADS[payload])
        if expected is REFUSED and payload == "admin":
            # a refusal closes: the request pipelined after is not served
            got, closed = await self.raw(attack + AFTER, False, seconds=3)
        else:
            # the attacker stops sending (the relay closes once done)
            got, closed = await self.raw(attack, True)
        mine = await self.victim()
        seen = self.backend.seen
        self.assertEqual(
            [s for s in seen if s.target.startswith((b"/admin", b"/capture"))], []
        )
        self.assertEqual([s for s in seen if SECRET in s.body], [])
        self.assertEqual(mine.count(b"HTTP/1.1 "), 1, mine)
        self.assertEqual(
            (status_of(mine), mine.split(b"\r\n\r\n", 1)[1]), (200, b"naive /victim")
        )
        for received in (got, mine):
            self.assertNotIn(ADMIN_PAGE, received)
        if expected is REFUSED:
            self.assertEqual(
                (status_of(got), got.count(b"HTTP/1.1 "), closed), (400, 1, True), got
            )
            self.assertIn(b"Connection: close\r\n", got)
            self.assertEqual([s.target for s in seen], [b"/victim"])

    @async_test
    async def test_admin_needs_credentials(self):
        """The /admin location answers 401 without credentials (the route
        the attacks try to reach), 200 with them."""
        await self.setup()
        got, _ = await self.raw(
            b"GET /admin HTTP/1.1\r\nHost: " + HOST + b"\r\nConnection: close\r\n\r\n",
            False,
        )
        self.assertEqual(status_of(got), 401)
        got, _ = await self.raw(
            b"GET /admin HTTP/1.1\r\nHost: "
            + HOST
            + b"\r\nAuthorization: Basic YWRtaW46czNjcmV0"
            b"\r\nConnection: close\r\n\r\n",
            False,
        )
        self.assertEqual(status_of(got), 200)
        self.assertIn(ADMIN_PAGE, got)
        self.assertEqual(self.backend.garbage, [])


def _make(case, payload):
    async def test(self):
        await self.check(case, payload)

    test.__name__ = f"test_{case}_{payload}"
    test.__doc__ = f"{case} smuggling {payload}: {CASES[case][1]}."
    return async_test(test)


for _case in CASES:
    for _payload in PAYLOADS:
        _test = _make(_case, _payload)
        setattr(SmugglingTests, _test.__name__, _test)
del _case, _payload, _test
