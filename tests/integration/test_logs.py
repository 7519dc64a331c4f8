# -*- test-case-name: tests.integration.test_logs -*-
"""
labrelay's log lines on real loopback sockets: the events of logins,
proxies and user connections, and forged fields sent by peers, which
reach the text log as one escaped line.
"""

import io

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from labrelay.config import parse_server_config
from labrelay.logs import make_log_observer
from labrelay.protocol import messages
from labrelay.protocol.framing import encode_message

from ..support.backends import web_backend
from ..support.harness import (
    Client,
    LogCapture,
    Relay,
    async_test,
    connect_user,
    listen,
    tcp_proxy,
    within,
)
from ..support.log_lines import ESCAPED, FORGED, assert_one_line_each, fields
from ..support.vhost import VhostRelay, http_proxy, start_client


class Twice(Protocol):
    """A backend answering every byte twice (so bytes in != bytes out)."""

    def dataReceived(self, data):
        self.transport.write(data * 2)


class EventLineTests(TestCase):
    """Login, logout, proxy and user-connection lines on real sockets."""

    @async_test
    async def test_tcp_lifecycle_lines(self):
        """One info line each for the login, the proxy's start, a user
        connection's close (bytes both ways, duration) and, when the client
        leaves, the proxy's close and the logout, with the fields an admin
        searches for."""
        log = LogCapture(self)
        relay = await Relay(self).start()
        backend = listen(self, Factory.forProtocol(Twice))
        client = await Client(
            self, relay.port, tcp_proxy("echo", backend), extra="user = alice\n"
        ).start()
        [name] = client.client.proxies  # named after the user
        port = await client.running(name)
        run_id = client.client.run_id
        self.assertEqual(list(relay.server.registry.proxies), [name])

        [login] = log.lines("client login ", f"run_id={run_id}")
        found = fields(login)
        self.assertEqual((found["user"], found["run_id"]), ("alice", run_id))
        self.assertRegex(found["client_addr"], r"^127\.0\.0\.1:\d+$")
        self.assertTrue(found["version"])
        [start] = log.lines("proxy start ", f"proxy={name} ")
        self.assertEqual(
            fields(start),
            dict(
                run_id=run_id,
                proxy=name,
                type="tcp",
                remote_port=str(port),
                client_addr=found["client_addr"],
            ),
        )

        user = await connect_user(self, port)
        user.transport.write(b"hello")
        await within(user.wait_for(10))
        user_addr = "127.0.0.1:%d" % user.transport.getHost().port
        mark = log.mark()
        user.transport.loseConnection()
        line = await within(log.when_logged("user connection close", since=mark))
        closed = fields(line)
        self.assertEqual(
            (
                closed["proxy"],
                closed["run_id"],
                closed["user_addr"],
                closed["bytes_in"],
                closed["bytes_out"],
            ),
            (name, run_id, user_addr, "5", "10"),
        )
        self.assertGreaterEqual(int(closed["duration_ms"]), 0)

        mark = log.mark()
        await client.stop()
        logout = fields(await within(log.when_logged("client logout", since=mark)))
        self.assertEqual(
            (logout["run_id"], logout["user"], logout["client_addr"]),
            (run_id, "alice", found["client_addr"]),
        )
        self.assertTrue(logout["reason"])
        [close] = log.lines("proxy close ", f"proxy={name} ", since=mark)
        self.assertEqual(
            (fields(close)["run_id"], fields(close)["remote_port"]), (run_id, str(port))
        )
        # frps's wording is kept at the end of the start line
        self.assertTrue(start.endswith(f"proxy [{name}] (tcp) started at :{port}"))

    @async_test
    async def test_http_proxy_lines_name_domains(self):
        """An http proxy's start and close lines name its domains, and a
        request through it gets an access-log line."""
        log = LogCapture(self)
        relay = await VhostRelay(self).start()
        backend = web_backend(self, "b")
        client = await start_client(
            self, relay, http_proxy("web", backend, subdomain="docs"), ["web"]
        )
        [start] = log.lines("proxy start ", "proxy=web ")
        self.assertEqual(
            (fields(start)["type"], fields(start)["domains"]),
            ("http", "docs.web.example.test"),
        )

        user = await connect_user(self, relay.http_port)
        user.transport.write(
            b"GET /a/b?c=1 HTTP/1.1\r\nHost: docs.web.example.test\r\n"
            b"Referer: http://from.example/\r\nUser-Agent: probe/1.0\r\n"
            b"Connection: close\r\n\r\n"
        )
        await within(user.closed)
        body = bytes(user.received).split(b"\r\n\r\n", 1)[1]
        [line] = log.lines('"GET /a/b?c=1 HTTP/1.1"', "proxy=web")
        self.assertRegex(
            line,
            (
                r"^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
                r'"GET /a/b\?c=1 HTTP/1\.1" 200 %d "http://from\.example/" '
                r'"probe/1\.0" host=docs\.web\.example\.test proxy=web '
                r"duration_ms=\d+$"
            )
            % len(body),
        )

        mark = log.mark()
        await client.stop()
        close = await within(log.when_logged("proxy close ", "proxy=web ", since=mark))
        self.assertEqual(fields(close)["domains"], "docs.web.example.test")


class TextLog:
    """The text log a labrelay process writes (make_log_observer), of
    every event published while a test runs."""

    def __init__(self, testcase):
        self.out = io.StringIO()
        self.observer = make_log_observer(
            parse_server_config("[common]\n"), stream=self.out
        )
        globalLogPublisher.addObserver(self.observer)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.observer)

    def lines(self, *substrings):
        return [
            line
            for line in self.out.getvalue().split("\n")
            if all(s in line for s in substrings)
        ]


class InjectionTests(TestCase):
    """Peer-chosen text in real log lines, on real sockets."""

    timeout = 30

    @async_test
    async def test_wrong_token_login_version(self):
        """A wrong-token Login whose version holds a newline, ESC and BEL
        gives one log line with them escaped."""
        text_log = TextLog(self)  # before LogCapture: written first
        log = LogCapture(self)
        relay = await Relay(self, mux=False).start()
        peer = await connect_user(self, relay.port)
        peer.transport.write(
            encode_message(
                messages.Login(
                    version="0.51.3" + FORGED, privilege_key="0" * 32, timestamp=1
                )
            )
        )
        await within(log.when_logged("wrong token"))
        [line] = text_log.lines("wrong token")
        self.assertIn(f"version=0.51.3{ESCAPED}", line)
        assert_one_line_each(self, text_log.out.getvalue())

    @async_test
    async def test_vhost_no_route_path(self):
        """A vhost request for an unknown host whose path decodes to CR,
        LF, ESC and BEL gives one "no route" line with them escaped."""
        text_log = TextLog(self)
        log = LogCapture(self)
        relay = await VhostRelay(self).start()
        user = await connect_user(self, relay.http_port)
        user.transport.write(
            b"GET /a%0d%0a[fake]%20line%1b[31m%07 HTTP/1.1"
            b"\r\nHost: nowhere.example\r\n\r\n"
        )
        await within(log.when_logged("no route"))
        [line] = text_log.lines("no route")
        # escaped where it is logged (upper-case hex, as nginx writes it)
        self.assertIn("nowhere.example/a\\x0D\\x0A[fake] line\\x1B[31m\\x07", line)
        assert_one_line_each(self, text_log.out.getvalue())
