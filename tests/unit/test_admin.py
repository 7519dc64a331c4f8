# -*- test-case-name: tests.unit.test_admin -*-
"""
The client's admin API (labrelay.client.admin) and the ``labrelay-client``
command (labrelay.client.cli) in memory: the delayed answer to wrong
credentials, the config text shown and stored with the token kept back,
the refusal log, the start-up warning for an API open to the network, and
the status table's order.
"""

import json

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from labrelay.client import cli
from labrelay.client.admin import REFUSAL_LOG_SECONDS, AdminResource
from labrelay.client.admin_config import REDACTED, config_for_display, config_to_store
from labrelay.client.admin_server import exposure_warning
from labrelay.client.service import RelayClient
from labrelay.client_tap import build_endpoint
from labrelay.config import parse_client_config

from ..support.config_files import client_text
from ..support.harness import LogCapture


class _Request(DummyRequest):
    """A DummyRequest with a path and basic-auth credentials."""

    def __init__(self, path, method=b"GET", user=b"", password=b""):
        super().__init__(path.lstrip(b"/").split(b"/"))
        self.path = path
        self.method = method
        self._user, self._password = user, password
        self.requestHeaders.setRawHeaders(b"host", [b"localhost"])

    def getUser(self):
        return self._user

    def getPassword(self):
        return self._password


class AuthDelayTests(SynchronousTestCase):
    """The 401 answer is delayed on the injected clock, as frpc does."""

    def resource(self):
        self.clock = Clock()
        config = parse_client_config(
            client_text(extra="admin_user = admin\nadmin_pwd = s3cret\n")
        )
        client = RelayClient(config, self.clock, object(), exit_on_fatal=False)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))
        return AdminResource(client, self.clock)

    def test_refusal_waits(self):
        """Wrong credentials get nothing before the password throttle's
        delay (labrelay.throttle, as every password check), then 401 with
        the Basic realm challenge."""
        from labrelay.throttle import BASE_DELAY

        resource = self.resource()
        req = _Request(b"/api/status", user=b"admin", password=b"wrong")
        self.assertEqual(resource.render(req), NOT_DONE_YET)
        self.clock.advance(BASE_DELAY - 0.01)
        self.assertEqual(req.finished, 0)
        self.clock.advance(0.01)
        self.assertEqual((req.finished, req.responseCode), (1, 401))
        self.assertEqual(
            req.responseHeaders.getRawHeaders(b"www-authenticate"),
            [b'Basic realm="Restricted"'],
        )
        self.assertEqual(b"".join(req.written), b"Unauthorized\n")

    def test_guesses_back_off(self):
        """Each wrong guess from one source waits longer (0.5, 1, 2 ... s),
        parallel guesses included; the right password from that source
        still gets in once its turn comes."""
        resource = self.resource()
        guesses = [
            _Request(b"/api/status", user=b"admin", password=b"guess%d" % i)
            for i in range(4)
        ]
        for req in guesses:
            self.assertEqual(resource.render(req), NOT_DONE_YET)
        answered, times = [], []
        for _ in range(200):  # 20 s in 0.1 s steps
            self.clock.advance(0.1)
            for req in guesses:
                if req.finished and req not in answered:
                    answered.append(req)
                    times.append(self.clock.seconds())
        self.assertEqual([req.responseCode for req in answered], [401] * 4)
        # held one after another, not answered together
        self.assertEqual(len(set(times)), 4, times)
        self.assertGreaterEqual(times[-1], 3.5, times)
        self.assertEqual(resource.throttle.failures_from("admin", ""), 4)
        right = _Request(b"/api/status", user=b"admin", password=b"s3cret")
        self.assertEqual(resource.render(right), NOT_DONE_YET)
        self.clock.advance(8)
        self.assertEqual((right.finished, right.responseCode), (1, 200))

    def test_disconnect_cancels_answer(self):
        """A client gone before its 401 leaves no timer behind."""
        resource = self.resource()
        req = _Request(b"/api/reload")
        resource.render(req)
        req.processingFailed(Exception("gone"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_healthz_needs_no_auth(self):
        """/healthz answers 200 at once even with credentials configured."""
        resource = self.resource()
        req = _Request(b"/healthz")
        self.assertEqual(resource.render(req), b"")
        self.assertEqual(req.responseCode, 200)

    def test_right_credentials(self):
        """The configured user and password open /api/status."""
        resource = self.resource()
        req = _Request(b"/api/status", user=b"admin", password=b"s3cret")
        self.assertEqual(json.loads(resource.render(req)), {})
        self.assertEqual(req.responseCode, 200)


class ConfigTextTests(SynchronousTestCase):
    """The text transformations of GET and PUT /api/config."""

    def test_display_trims_and_hides_token(self):
        """Lines are trimmed and every line starting with token is left
        out."""
        self.assertEqual(
            config_for_display("[common]\n  token = x\n server_port = 7\ntoken=y\n"),
            "[common]\nserver_port = 7\n",
        )

    def test_store_puts_original_token_back(self):
        """Body token lines are dropped and the original file's token line
        follows [common]."""
        original = "[common]\n  token = secret\nserver_port = 1\n"
        body = "[common]\ntoken = evil\n  server_port = 2\n[a]\nlocal_port=3"
        self.assertEqual(
            config_to_store(body, original),
            "[common]\ntoken = secret\nserver_port = 2\n[a]\nlocal_port=3",
        )

    def test_store_without_original_token(self):
        """Without a token in the original file none is written."""
        self.assertEqual(
            config_to_store("[common]\ntoken = evil\nx = 1", "[common]\n"),
            "[common]\nx = 1",
        )


class RefusalLogTests(SynchronousTestCase):
    """A page sending requests in a loop cannot flood the log."""

    def test_one_line_per_period(self):
        """Refused Host/Origin requests log one line per
        REFUSAL_LOG_SECONDS, the next one counting those not logged."""
        clock = Clock()
        client = RelayClient(
            parse_client_config(client_text()), clock, object(), exit_on_fatal=False
        )
        resource = AdminResource(client, clock)
        logs = LogCapture(self)
        for _ in range(50):
            request = _Request(b"/api/stop", method=b"POST")
            request.requestHeaders.setRawHeaders(b"host", [b"evil.example"])
            self.assertEqual(
                resource.render(request), b"421 Misdirected Request: unknown Host\n"
            )
        self.assertEqual(len(logs.lines("admin API", "refused")), 1)
        clock.advance(REFUSAL_LOG_SECONDS)
        resource.render(request)
        [_, line] = logs.lines("admin API", "refused")
        self.assertIn("49 more refused", line)


class SecretTextTests(SynchronousTestCase):
    """Secrets other than the token in GET and PUT /api/config."""

    ORIGINAL = (
        "[common]\ntoken = t0k\nadmin_user = a\nadmin_pwd = pw1\n"
        "[web]\ntype = http\nhttp_pwd = pw2\n"
        "[sec]\ntype = stcp\nsk : pw3\n"
    )

    def test_display_redacts_secrets(self):
        """admin_pwd, http_pwd and sk values are shown as REDACTED, with
        their sections, and no secret value appears."""
        text = config_for_display(self.ORIGINAL)
        self.assertIn(f"admin_pwd = {REDACTED}", text)
        self.assertIn(f"http_pwd = {REDACTED}", text)
        self.assertIn(f"sk : {REDACTED}", text)
        for secret in ("t0k", "pw1", "pw2", "pw3"):
            self.assertNotIn(secret, text)

    def test_round_trip_keeps_secrets(self):
        """PUT of what GET showed stores the original secrets, each in its
        own section; a changed value is taken as written."""
        shown = config_for_display(self.ORIGINAL)
        self.assertEqual(config_to_store(shown, self.ORIGINAL), self.ORIGINAL)
        changed = shown.replace(f"http_pwd = {REDACTED}", "http_pwd = new")
        stored = config_to_store(changed, self.ORIGINAL)
        self.assertIn("[web]\ntype = http\nhttp_pwd = new", stored)
        self.assertIn("sk : pw3", stored)

    def test_redacted_secret_of_a_new_section_is_dropped(self):
        """A REDACTED value with nothing stored for its section and key is
        left out, never written as the marker nor taken from elsewhere."""
        body = f"[common]\n[other]\nhttp_pwd = {REDACTED}\n"
        stored = config_to_store(body, self.ORIGINAL)
        self.assertNotIn("http_pwd", stored)


class ExposureWarningTests(SynchronousTestCase):
    """The start-up warning for an admin API open to the network."""

    def warning(self, extra):
        return exposure_warning(
            parse_client_config(client_text(extra="admin_port = 7400\n" + extra))
        )

    def test_open_on_the_network(self):
        """No password on a wildcard or a non-loopback address warns."""
        for addr in ("0.0.0.0", "::", "192.0.2.7", "myhost.example"):
            text = self.warning(f"admin_addr = {addr}\n")
            self.assertIsNotNone(text, addr)
            self.assertIn("NO PASSWORD", text)

    def test_quiet_cases(self):
        """The loopback, or a password, does not warn."""
        for extra in (
            "",
            "admin_addr = 127.0.0.2\n",
            "admin_addr = ::1\n",
            "admin_addr = localhost\n",
            "admin_addr = 0.0.0.0\nadmin_pwd = x\n",
        ):
            self.assertIsNone(self.warning(extra), extra)

    def test_logged_at_start(self):
        """A client listening on 0.0.0.0 without a password logs the
        warning as critical when its admin API is built."""
        logs = LogCapture(self)
        config = parse_client_config(
            client_text(extra="admin_addr = 0.0.0.0\nadmin_port = 7400\n")
        )
        reactor = MemoryReactorClock()
        client = RelayClient(
            config,
            reactor,
            build_endpoint(reactor, config, None),
            exit_on_fatal=False,
            admin_listen="tcp:0:interface=127.0.0.1",
        )
        self.assertTrue(logs.lines("NO PASSWORD"))
        self.assertIsNotNone(client.admin)


class StatusTableTests(SynchronousTestCase):
    """How ``labrelay-client status`` prints the proxies."""

    def test_format_status_order(self):
        """Types print in frpc's order (tcp before http), empty ones not
        at all."""
        text = cli.format_status(
            {"http": [{"name": "w"}], "udp": [], "tcp": [{"name": "t"}]}
        )
        self.assertLess(text.index("TCP"), text.index("HTTP"))
        self.assertNotIn("UDP", text)
