# -*- test-case-name: tests.unit.test_logs -*-
"""
Searchable log lines (labrelay.logs, the server's control, tcp proxy and
vhost) in memory: ``key=value`` quoting, the run-time level filter, the
HTTP access log on memory transports (exact lines), and control
characters escaped by the observers (tests.integration.test_logs has the
lines of real logins, proxies and user connections).
"""

import io
import os

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher, textFileLogObserver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import parse_server_config
from labrelay.logs import (
    EscapingObserver,
    LevelFilteredObserver,
    escape_controls,
    kv,
    kv_fields,
    log_observer_for,
    make_log_observer,
    quote,
    set_log_level,
)
from labrelay.protocol import messages
from labrelay.server.vhost import NOT_FOUND_PAGE, Vhost, clf_escape, clf_time
from labrelay.throttle import PasswordThrottle
from labrelay.tracking import ConnectionSet

from ..support.fakes import FakeWork, Stub
from ..support.harness import LogCapture
from ..support.log_lines import ESCAPED, FORGED, assert_one_line_each, fields


class QuoteTests(SynchronousTestCase):
    """How a field value is written after ``key=``."""

    def test_plain_tokens_are_bare(self):
        """Names, addresses, versions and numbers are written as they are."""
        for value in (
            "alice",
            "127.0.0.1:5555",
            "[::1]:80",
            "0.51.3",
            "web.example.test,b.example.test",
            42,
        ):
            self.assertEqual(quote(value), str(value))

    def test_other_values_are_quoted(self):
        """Empty values, spaces, '=', quotes, backslashes and line breaks
        are double-quoted with escapes."""
        self.assertEqual(quote(""), '""')
        self.assertEqual(quote("a b"), '"a b"')
        self.assertEqual(quote("a=b"), '"a=b"')
        self.assertEqual(quote('say "hi"\\'), '"say \\"hi\\"\\\\"')
        self.assertEqual(quote("x\ny\r"), '"x\\x0ay\\x0d"')
        self.assertEqual(quote("x\u2028y"), '"x\\u2028y"')

    def test_a_value_cannot_forge_a_field(self):
        """A client-chosen value holding ``key=value`` text stays one
        quoted value."""
        line = kv(user='x" run_id=forged', version="1")
        self.assertEqual(line, 'user="x\\" run_id=forged" version=1')
        self.assertEqual(fields(line), {"user": 'x\\" run_id=forged', "version": "1"})

    def test_kv_fields_keeps_the_values(self):
        """kv_fields gives the structured fields and their text as kv."""
        self.assertEqual(
            kv_fields(a=1, b="x y"), {"a": 1, "b": "x y", "kv": 'a=1 b="x y"'}
        )


class LevelTests(SynchronousTestCase):
    """The log_level filter, fixed at start and changed at run time."""

    def emit(self, observer, level, text):
        observer(
            {
                "log_level": level,
                "log_namespace": "labrelay.test",
                "log_format": text,
                "log_time": 0.0,
            }
        )

    def test_config_level(self):
        """make_log_observer passes events at the config's level and up."""
        config = parse_server_config("[common]\nlog_level = warn\n")
        out = io.StringIO()
        observer = make_log_observer(config, stream=out)
        self.assertIsInstance(observer, LevelFilteredObserver)
        self.emit(observer, LogLevel.info, "quiet-info")
        self.emit(observer, LogLevel.warn, "loud-warn")
        self.assertNotIn("quiet-info", out.getvalue())
        self.assertIn("loud-warn", out.getvalue())

    def test_set_level(self):
        """set_log_level lowers and raises the threshold of a running
        observer."""
        out = io.StringIO()
        observer = LevelFilteredObserver(textFileLogObserver(out), "info")
        self.emit(observer, LogLevel.debug, "debug-1")
        self.assertTrue(set_log_level(observer, "debug"))
        self.assertEqual(observer.level, "debug")
        self.emit(observer, LogLevel.debug, "debug-2")
        self.assertTrue(set_log_level(observer, "error"))
        self.emit(observer, LogLevel.warn, "warn-3")
        self.emit(observer, LogLevel.error, "error-4")
        text = out.getvalue()
        self.assertNotIn("debug-1", text)
        self.assertIn("debug-2", text)
        self.assertNotIn("warn-3", text)
        self.assertIn("error-4", text)

    def test_other_observers_untouched(self):
        """An observer chosen on twistd's command line has no level to
        change: set_log_level says so."""
        self.assertFalse(set_log_level(lambda event: None, "debug"))
        self.assertFalse(set_log_level(None, "debug"))


class AccessLogTests(SynchronousTestCase):
    """The access-log line of each way a vhost request can end, exactly."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(971186136)  # 10/Oct/2000:13:55:36 UTC
        config = parse_server_config(
            "[common]\nvhost_http_port = 80\nsubdomain_host = w.test\n"
        )
        server = Stub(
            config=config,
            clock=self.clock,
            connections=ConnectionSet(),
            throttle=PasswordThrottle(self.clock),
            log_auth_failure=lambda *args: None,
        )
        self.vhost = Vhost(server)
        self.works = []
        self.proxies = []

        def get():
            self.works.append(FakeWork())
            return defer.succeed(self.works[-1])

        control = Stub(
            login=Stub(pool_count=1), closed=False, pool=Stub(get=get), run_id="r1"
        )
        for name, extra in (
            ("app", {}),
            ("locked", {"http_user": "bob", "http_pwd": "pw"}),
        ):
            proxy = self.vhost.create_proxy(
                control,
                messages.NewProxy(
                    proxy_name=name, proxy_type="http", subdomain=name, **extra
                ),
            )
            proxy.start()
            self.proxies.append(proxy)
        self.user = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 5555))
        self.connection = self.vhost.factory.buildProtocol(None)
        self.connection.makeConnection(self.user)
        self.log = LogCapture(self)

    def tearDown(self):
        self.connection.connectionLost(None)
        for proxy in self.proxies:
            proxy.close()  # idle work connections kept for reuse
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def access_lines(self):
        return self.log.lines(" - ", "duration_ms=")

    def test_clf_helpers(self):
        """Times are UTC with English month names; quotes, backslashes and
        non-ASCII bytes are escaped as nginx does."""
        self.assertEqual(clf_time(971186136), "10/Oct/2000:13:55:36 +0000")
        self.assertEqual(clf_escape(b'a"b\\c \xff\n'), "a\\x22b\\x5Cc \\xFF\\x0A")
        self.assertEqual(clf_escape(b""), "-")

    def test_proxied_request(self):
        """A request answered by the backend: status, body bytes, referer,
        user agent, host, proxy and the time it took."""
        self.connection.dataReceived(
            b"GET /x?y=1 HTTP/1.1\r\nHost: app.w.test\r\n"
            b"Referer: http://r.test/\r\nUser-Agent: ua/2\r\n\r\n"
        )
        [work] = self.works
        self.clock.advance(0.25)
        work.sink.forward(
            work, b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertEqual(
            self.access_lines(),
            [
                '192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 '
                'HTTP/1.1" 201 5 "http://r.test/" "ua/2" host=app.w.test '
                "proxy=app duration_ms=250"
            ],
        )

    def test_access_namespace_and_level(self):
        """Access lines are info events in the labrelay.access namespace."""
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: none.test\r\n\r\n")
        [event] = [e for e in seen if "duration_ms" in e.get("log_format", "")]
        self.assertEqual(
            (event["log_namespace"], event["log_level"], event["status"]),
            ("labrelay.access", LogLevel.info, 404),
        )

    def test_not_found(self):
        """No route: 404, the page's size, and no proxy."""
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: none.test\r\n\r\n")
        self.assertEqual(
            self.access_lines(),
            [
                '192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" '
                f'404 {len(NOT_FOUND_PAGE)} "-" "-" host=none.test proxy=- '
                "duration_ms=0"
            ],
        )

    def test_unauthorized_names_user_and_proxy(self):
        """Wrong credentials: 401 with the user name sent and the proxy,
        after the password throttle's first delay (0.5 s)."""
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: locked.w.test\r\n"
            b"Authorization: Basic Ym9iOm5vcGU=\r\n\r\n"
        )  # bob:nope
        self.assertEqual(self.access_lines(), [])
        self.clock.advance(0.5)
        [line] = self.access_lines()
        self.assertIn(" - bob [", line)
        self.assertIn('" 401 13 ', line)
        self.assertTrue(
            line.endswith("host=locked.w.test proxy=locked duration_ms=500")
        )

    def test_slow_head_is_408_without_request(self):
        """A head cut short by the head timeout: 408 and ``"-"``."""
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: ap")
        self.clock.advance(self.vhost.head_timeout)
        [line] = self.access_lines()
        self.assertIn('"-" 408 ', line)
        self.assertIn('host="" proxy=- ', line)

    def test_user_leaves_before_answer(self):
        """A user gone before any response: 499, with the time waited."""
        self.connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: app.w.test\r\n\r\n")
        self.clock.advance(1.5)
        self.connection.connectionLost(None)
        [line] = self.access_lines()
        self.assertIn('"GET /slow HTTP/1.1" 499 0 ', line)
        self.assertTrue(line.endswith("proxy=app duration_ms=1500"))

    def test_switching_protocols(self):
        """A websocket upgrade is logged when it switches: 101."""
        self.connection.dataReceived(
            b"GET /ws HTTP/1.1\r\nHost: app.w.test\r\nUpgrade: websocket"
            b"\r\nConnection: Upgrade\r\n\r\n"
        )
        [work] = self.works
        work.sink.forward(
            work,
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
        )
        [line] = self.access_lines()
        self.assertIn('"GET /ws HTTP/1.1" 101 0 ', line)
        self.assertIn("proxy=app ", line)

    def test_request_text_escaped(self):
        """Quotes, backslashes and bytes outside ASCII in the target and
        headers cannot break the line's quoting."""
        self.connection.dataReceived(
            b'GET /a"b\\c HTTP/1.1\r\nHost: none.test\r\n'
            b'User-Agent: x" \xc3\xa9\r\n\r\n'
        )
        [line] = self.access_lines()
        self.assertIn('"GET /a\\x22b\\x5Cc HTTP/1.1" 404 ', line)
        self.assertIn('"x\\x22 \\xC3\\xA9"', line)
        self.assertEqual(line.count('"'), 6)

    def test_keep_alive_one_line_each(self):
        """Two requests on one connection give two lines, in order."""
        for path in (b"/one", b"/two"):
            self.connection.dataReceived(
                b"GET " + path + b" HTTP/1.1\r\nHost: none.test\r\n\r\n"
            )
        lines = self.access_lines()
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /one ', lines[0])
        self.assertIn('"GET /two ', lines[1])


# -- control characters in text logs -------------------------------------------


class EscapeTests(SynchronousTestCase):
    """escape_controls and the escaping text observer, on events."""

    def line(self, event):
        out = io.StringIO()
        EscapingObserver(textFileLogObserver(out))(
            dict(
                {
                    "log_time": 0.0,
                    "log_level": LogLevel.info,
                    "log_namespace": "labrelay.test",
                },
                **event,
            )
        )
        return out.getvalue()

    def test_escape_controls(self):
        """C0, DEL, C1, separators and format characters are escaped;
        printable text (non-ASCII included) is not."""
        self.assertEqual(escape_controls("ok é ✓"), "ok é ✓")
        self.assertEqual(
            escape_controls("\t\x00\x7f\x85\x9b\u2028\u202e"),
            "\\x09\\x00\\x7f\\x85\\x9b\\u2028\\u202e",
        )
        self.assertEqual(escape_controls("a\n\x1bb", keep_newlines=True), "a\n\\x1bb")

    def test_field_escaped_format_kept(self):
        """Fields are escaped, whatever their type or conversion; format
        specs and {name()} calls still work; the format's own text is
        kept."""
        text = self.line(
            {
                "log_format": "v={version} r={version!r} n={n:.1f} c={call()}",
                "version": FORGED,
                "n": 2,
                "call": lambda: b"\x1b",
            }
        )
        self.assertEqual(text.count("\n"), 1)
        self.assertIn(f"v={ESCAPED} r='\\n[fake]", text)
        self.assertIn("n=2.0 c=b'\\x1b'", text)

    def test_every_kind_of_value(self):
        """An exception or any object whose str() holds controls is
        escaped too, and so is log_system."""
        text = self.line(
            {"log_format": "{error}", "error": ValueError(FORGED), "log_system": "a\nb"}
        )
        self.assertEqual(text.count("\n"), 1)
        self.assertIn(ESCAPED, text)
        self.assertIn("[a\\x0ab]", text)

    def test_traceback_keeps_its_lines(self):
        """A failure's traceback keeps its line breaks (each continuation
        indented by a tab) and has its other controls escaped."""
        try:
            raise ValueError(FORGED)
        except ValueError:
            failure = Failure()
        text = self.line(
            {"log_format": "boom {x}", "x": FORGED, "log_failure": failure}
        )
        first, *rest = text.split("\n")[:-1]
        self.assertIn(f"boom {ESCAPED}", first)
        self.assertTrue(rest and all(line.startswith("\t") for line in rest))
        self.assertIn("Traceback", text)
        self.assertIn("\\x1b[31m", text)
        self.assertNotIn("\x1b", text)
        assert_one_line_each(self, text)

    def test_legacy_err(self):
        """twisted.python.log.err events (traceback inside log_text) get
        their why escaped and their traceback once."""
        try:
            raise ValueError("x")
        except ValueError:
            failure = Failure()
        text = self.line(
            {
                "log_format": "{log_text}",
                "isError": 1,
                "failure": failure,
                "why": "why" + FORGED,
                "log_text": "why" + FORGED + "\n" + failure.getTraceback(),
            }
        )
        self.assertIn(f"why{ESCAPED}", text)
        self.assertEqual(text.count("Traceback"), 1)
        assert_one_line_each(self, text)

    def test_config_observer_escapes(self):
        """make_log_observer (log_file) writes escaped lines."""
        out = io.StringIO()
        observer = make_log_observer(parse_server_config("[common]\n"), stream=out)
        observer(
            {
                "log_format": "{v}",
                "v": FORGED,
                "log_time": 0.0,
                "log_level": LogLevel.info,
                "log_namespace": "x",
            }
        )
        self.assertIn(ESCAPED, out.getvalue())
        self.assertEqual(out.getvalue().count("\n"), 1)

    def test_twistd_logfile_escapes(self):
        """With twistd's --logfile, the tap's observer is twistd's own file
        observer behind the escaping one."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "twistd.log")

        class Options:
            parent = {
                "logfile": path,
                "syslog": False,
                "logger": None,
                "nodaemon": True,
            }

        observer = log_observer_for(Options(), parse_server_config("[common]\n"))
        self.assertIsInstance(observer, EscapingObserver)
        observer(
            {
                "log_format": "{v}",
                "v": FORGED,
                "log_time": 0.0,
                "log_level": LogLevel.info,
                "log_namespace": "x",
            }
        )
        observer.observer._outFile.close()
        with open(path) as f:
            text = f.read()
        self.assertIn(ESCAPED, text)
        self.assertEqual(text.count("\n"), 1)
