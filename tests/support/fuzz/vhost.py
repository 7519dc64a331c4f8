"""
One HTTP vhost user connection as a fuzz target, with a stub server and
work connections that answer 200.
"""

import json
import re

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from labrelay.config import parse_server_config
from labrelay.protocol import messages
from labrelay.server.vhost import MAX_HEAD, Vhost
from labrelay.throttle import PasswordThrottle
from labrelay.tracking import ConnectionSet

from .. import vectors
from .core import Target, Wire, bound, chunked, lose

# -- the HTTP vhost ----------------------------------------------------------


class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeWork:
    """A pooled work connection on a Wire; answers each request once."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.transport = Wire(port=50000)
        self.sent = []
        self.alive = True
        self.sink = None
        self.answered = False

    def send(self, message):
        self.sent.append(message)

    def take_early_data(self):
        return b""


_STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")


def parse_responses(data: bytes, closed: bool) -> list:
    """The status codes of the HTTP/1.1 responses in *data*, which must hold
    nothing else (a last response may be cut if the connection closed)."""
    statuses = []
    while data:
        match = _STATUS.match(data)
        if match is None:
            raise AssertionError(f"not an HTTP response: {data[:80]!r}")
        end = data.find(b"\r\n\r\n")
        if end == -1:
            raise AssertionError(f"response head cut: {data[:80]!r}")
        head, data = data[:end], data[end + 4 :]
        lengths = re.findall(rb"\r\ncontent-length: *([0-9]+)", head.lower())
        if len(lengths) != 1:
            raise AssertionError(f"no single Content-Length in {head!r}")
        length = int(lengths[0])
        statuses.append(int(match.group(1)))
        if data.startswith(b"HTTP/1.1 ") or not data:
            continue  # a HEAD response, or a last one without body
        if len(data) < length and not closed:
            raise AssertionError(f"body cut on an open connection: {data!r}")
        data = data[length:]
    return statuses


_REQUESTS = (
    b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: nowhere.example.test\r\n\r\n"
    b"HEAD / HTTP/1.1\r\nHost: nowhere.example.test:80\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"Content-Length: 11\r\n\r\nhello world",
    b"POST / HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://secret.example.test/ HTTP/1.1\r\nHost: x\r\n"
    b"Proxy-Authorization: Basic dTpw\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: secret.example.test\r\nAuthorization: Basic dTpw\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: jupyter.web.example.test\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: jupyter.web.example.test\r\n\r\n",
)


class VhostTarget(Target):
    """
    One vhost user connection (VhostConnection over a Wire, a Clock, a stub
    server with two http proxies whose work connections answer 200): the
    user gets well-formed HTTP responses or a close, never an exception,
    and the connection holds at most one request head.
    """

    name = "vhost"
    tokens = (
        b"\r\n",
        b"\r\n\r\n",
        b"Host: ",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"Upgrade: websocket\r\n",
        b"Expect: 100-continue\r\n",
        b"HTTP/1.1",
        b" ",
        b":",
        b"GET ",
        b"CONNECT ",
        b"0\r\n\r\n",
    )

    def corpus(self):
        captured = json.loads(
            vectors.read_bytes(vectors.PLAIN_NOMUX, "user_side.json")
        )["user_connections"]
        return list(_REQUESTS) + [
            b"".join(_REQUESTS[:3]),
            captured["jupyter"]["request"].encode(),
        ]

    def _world(self):
        clock = Clock()
        config = parse_server_config(
            "[common]\nvhost_http_port = 80\n"
            "subdomain_host = web.example.test\ntoken = t\n"
        )
        server = _Stub(
            config=config,
            clock=clock,
            connections=ConnectionSet(),
            throttle=PasswordThrottle(clock),
            log_auth_failure=lambda *args: None,
        )
        vhost = Vhost(server)
        works = []

        def get():
            works.append(FakeWork())
            return defer.succeed(works[-1])

        control = _Stub(login=_Stub(pool_count=1), closed=False, pool=_Stub(get=get))
        for fields in (
            {"proxy_name": "jupyter", "subdomain": "jupyter"},
            {
                "proxy_name": "secret",
                "http_user": "u",
                "http_pwd": "p",
                "custom_domains": ["secret.example.test"],
            },
        ):
            vhost.create_proxy(
                control, messages.NewProxy(proxy_type="http", **fields)
            ).start()
        return clock, vhost, works

    def _serve(self, works):
        """The reactor's and the backends' part: answer new requests,
        deliver connectionLost to closed work connections."""
        for work in works:
            if work.sink is None:
                continue
            if (
                not work.answered
                and work.transport.value()
                and not work.transport.disconnecting
            ):
                work.answered = True
                work.sink.forward(work, FakeWork.RESPONSE)
            if work.transport.disconnecting and not work.transport.lost:
                work.transport.lost = True
                work.sink.connection_lost(work, Failure(ConnectionDone()))

    def run(self, data, cuts):
        clock, vhost, works = self._world()
        user = Wire()
        connection = vhost.factory.buildProtocol(None)
        connection.makeConnection(user)
        for piece in chunked(data, cuts):
            self._serve(works)
            if not user.reading:
                break
            connection.dataReceived(piece)
            held = len(connection.http.trailing_data[0])
            bound(
                held <= MAX_HEAD + len(piece),
                f"vhost connection holds {held} bytes of request",
            )
        self._serve(works)
        if user.reading and len(data) % 2:
            connection.readConnectionLost()  # the user shuts its write half
        for _ in range(4):  # head, response and linger timeouts
            clock.advance(vhost.response_timeout + vhost.head_timeout + 1)
            self._serve(works)
        closed = user.disconnecting or user.write_closed
        statuses = parse_responses(user.value(), closed)
        lose(connection, user)
        self._serve(works)
        bound(
            clock.getDelayedCalls() == [],
            f"delayed calls left: {clock.getDelayedCalls()}",
        )
        bound(not vhost.connections, "a closed connection is still tracked")
        shown = ",".join(str(s) for s in sorted(set(statuses)))
        return f"{shown or 'no response'}; {'closed' if closed else 'open'}"
