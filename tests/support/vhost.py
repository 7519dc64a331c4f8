"""
An HTTP vhost relay in this process and its users: a labrelay server with
``vhost_http_port`` on port 0, clients with ``type = http`` proxies, and
HTTP/1.1 users (h11, keep-alive) on 127.0.0.1.
"""

import base64
import json

import h11
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from labrelay.config import parse_server_config
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

from .formats import in_format
from .harness import TOKEN, Client, connect_protocol, within

SUBDOMAIN_HOST = "web.example.test"


class VhostRelay:
    """A labrelay server with an HTTP vhost, both on port 0."""

    def __init__(
        self,
        testcase,
        extra="",
        mux=True,
        subdomain_host=SUBDOMAIN_HOST,
        fmt="ini",
    ):
        text = (
            "[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\ntcp_mux = {str(mux).lower()}\n"
            "vhost_http_port = 8080\n"
            f"subdomain_host = {subdomain_host}\n" + extra
        )
        text, source = in_format(text, "frps.ini", fmt)
        self.config = parse_server_config(text, source=source)
        self.server = RelayServer(
            self.config,
            reactor,
            server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
            vhost_listen="tcp:0:interface=127.0.0.1",
        )
        self.vhost = self.server.vhost
        self.testcase = testcase

    async def start(self):
        self.server.startService()
        self.testcase.addCleanup(self.stop)
        port = await within(self.server.when_listening())
        self.port = port.getHost().port
        http = await within(self.server.when_vhost_listening())
        self.http_port = http.getHost().port
        return self

    def stop(self):
        if self.server.running:
            return self.server.stopService()


def http_proxy(name, local_port, **options):
    """An frpc.ini ``type = http`` section; option names with ``-`` are
    passed as ``header_X_From`` -> ``header_X-From``."""
    lines = [
        f"[{name}]",
        "type = http",
        "local_ip = 127.0.0.1",
        f"local_port = {local_port}",
    ]
    for key, value in options.items():
        if key.startswith("header_"):
            key = "header_" + key[len("header_") :].replace("_", "-")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


async def start_client(
    testcase, relay, proxies, names, extra="", mux=True, tls=False, fmt="ini"
):
    """A client with *proxies*; waits until every one of *names* runs.
    *fmt*: the format of its config (:func:`.formats.in_format`)."""
    client = await Client(
        testcase, relay.port, proxies, extra, mux=mux, tls=tls, fmt=fmt
    ).start()
    for name in names:
        await within(client.client.when_proxy_status(name, "running"))
    return client


async def raw_user(testcase, port, protocol):
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await within(endpoint.connect(Factory.forProtocol(lambda: protocol)))

    def close():
        if protocol.transport.connected:
            protocol.transport.abortConnection()
        return within(protocol.closed)

    testcase.addCleanup(close)
    return protocol


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> last value (str)
        self.raw_headers = []  # (name, value) in order
        self.body = body

    def json(self):
        return json.loads(self.body)


class HttpUser(Protocol):
    """A keep-alive HTTP/1.1 client on one connection (h11)."""

    def __init__(self):
        self.http = h11.Connection(h11.CLIENT)
        self.raw = bytearray()
        self.closed = defer.Deferred()
        self._reply = None
        self._body = []
        self._waiting = None
        self.informational = []

    def dataReceived(self, data):
        self.raw += data
        self.http.receive_data(data)
        self._pump()

    def connectionLost(self, reason):
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.errback(reason)
        self.closed.callback(bytes(self.raw))

    def _pump(self):
        while self._waiting is not None:
            event = self.http.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                return
            if isinstance(event, h11.InformationalResponse):
                self.informational.append(event)
            elif isinstance(event, h11.Response):
                self._reply = Reply(
                    event.status_code,
                    {
                        k.decode().lower(): v.decode()
                        for k, v in event.headers.raw_items()
                    },
                    b"",
                )
                self._reply.raw_headers = list(event.headers.raw_items())
            elif isinstance(event, h11.Data):
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                reply, self._reply = self._reply, None
                reply.body = b"".join(self._body)
                self._body = []
                d, self._waiting = self._waiting, None
                if (
                    self.http.our_state is h11.DONE
                    and self.http.their_state is h11.DONE
                ):
                    self.http.start_next_cycle()
                d.callback(reply)

    def request(self, host, target="/", method="GET", headers=(), body=None):
        """Send one request; a Deferred firing with its :class:`Reply`."""
        hdrs = [("Host", host)] + list(headers)
        if body is not None and not any(
            k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs
        ):
            hdrs.append(("Content-Length", str(len(body))))
        self._waiting = d = defer.Deferred()
        self.transport.write(
            self.http.send(h11.Request(method=method, target=target, headers=hdrs))
        )
        if body:
            self.transport.write(self.http.send(h11.Data(data=body)))
        self.transport.write(self.http.send(h11.EndOfMessage()))
        return within(d, 30)


async def http_user(testcase, port):
    return await connect_protocol(testcase, port, HttpUser())


async def get(testcase, relay, host, target="/", **kw):
    """One request on a new connection."""
    user = await http_user(testcase, relay.http_port)
    return await user.request(host, target, **kw)


def basic(user, password):
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {raw}")
