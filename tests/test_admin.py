"""
The client's admin API (labrelay.client.admin) and the ``labrelay-client``
command (labrelay.client.cli) that drives it: every route, basic auth, the
status document after a real login, config round trips with the token kept
back, and the command against a real API and a real twistd process.
"""

import base64
import http.client
import io
import json
import socket
import sys

from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from labrelay.client import cli
from labrelay.client.admin import (
    AUTH_FAIL_DELAY, AdminResource, config_for_display, config_to_store)
from labrelay.client.service import RelayClient
from labrelay.client_tap import build_endpoint
from labrelay.config import parse_client_config

from .harness import Relay, async_test, connect_user, echo_server, within
from .processes import (
    REPO_ROOT, child_env, client_ini, free_port, run, start_server, twistd)
from .test_reload import (
    client_text, file_client, proxies, rewrite, running_port, write)


def http_call(port, method, path, body=None, user=None, password=None):
    """One blocking HTTP request to 127.0.0.1:*port*: (status, headers,
    body).  Run it with deferToThread."""
    headers = {}
    if user is not None:
        pair = f"{user}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in
                                  response.getheaders()}, response.read())
    finally:
        connection.close()


def request(port, method, path, body=None, user=None, password=None):
    """:func:`http_call` in a thread, bounded."""
    return within(deferToThread(http_call, port, method, path, body, user,
                                password))


def run_cli(*argv):
    """``labrelay-client ARGV`` in a thread: (exit status, out, err)."""
    out, err = io.StringIO(), io.StringIO()

    def main():
        return cli.main(list(argv), out=out, err=err)

    d = deferToThread(main)
    d.addCallback(lambda code: (code, out.getvalue(), err.getvalue()))
    return within(d, 15)


async def admin_port(client):
    return (await within(client.when_admin_listening())).getHost().port


class _Request(DummyRequest):
    """A DummyRequest with a path and basic-auth credentials."""

    def __init__(self, path, method=b"GET", user=b"", password=b""):
        super().__init__(path.lstrip(b"/").split(b"/"))
        self.path = path
        self.method = method
        self._user, self._password = user, password

    def getUser(self):
        return self._user

    def getPassword(self):
        return self._password


class AuthDelayTests(SynchronousTestCase):
    """The 401 answer is delayed on the injected clock, as frpc does."""

    def resource(self):
        self.clock = Clock()
        config = parse_client_config(client_text(
            extra="admin_user = admin\nadmin_pwd = s3cret\n"))
        client = RelayClient(config, self.clock, object(),
                             exit_on_fatal=False)
        self.addCleanup(lambda: self.assertEqual(
            self.clock.getDelayedCalls(), []))
        return AdminResource(client, self.clock)

    def test_refusal_waits(self):
        """Wrong credentials get nothing before the delay, then 401 with
        the Basic realm challenge."""
        resource = self.resource()
        req = _Request(b"/api/status", user=b"admin", password=b"wrong")
        self.assertEqual(resource.render(req), NOT_DONE_YET)
        self.clock.advance(AUTH_FAIL_DELAY - 0.01)
        self.assertEqual(req.finished, 0)
        self.clock.advance(0.01)
        self.assertEqual((req.finished, req.responseCode), (1, 401))
        self.assertEqual(
            req.responseHeaders.getRawHeaders(b"www-authenticate"),
            [b'Basic realm="Restricted"'])
        self.assertEqual(b"".join(req.written), b"Unauthorized\n")

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
            config_for_display("[common]\n  token = x\n server_port = 7\n"
                               "token=y\n"),
            "[common]\nserver_port = 7\n")

    def test_store_puts_original_token_back(self):
        """Body token lines are dropped and the original file's token line
        follows [common]."""
        original = "[common]\n  token = secret\nserver_port = 1\n"
        body = "[common]\ntoken = evil\n  server_port = 2\n[a]\nlocal_port=3"
        self.assertEqual(config_to_store(body, original),
                         "[common]\ntoken = secret\nserver_port = 2\n[a]\n"
                         "local_port=3")

    def test_store_without_original_token(self):
        """Without a token in the original file none is written."""
        self.assertEqual(config_to_store("[common]\ntoken = evil\nx = 1",
                                         "[common]\n"), "[common]\nx = 1")


class AdminAPITests(TestCase):
    """Every route on a real socket, with a client logged in to a real
    relay."""

    timeout = 30

    async def start(self, proxy_text="", extra="", relay=None):
        self.relay = relay or await Relay(self).start()
        self.backend = echo_server(self)
        self.path = write(self, client_text(
            self.relay.port, proxy_text or proxies(("echo", self.backend)),
            extra))
        self.client = file_client(self, self.path, admin=True)
        self.port = await admin_port(self.client)
        return self.client

    @async_test
    async def test_status_after_login(self):
        """/api/status lists the proxies by type, sorted by name, with the
        server's remote address, the local address and start errors."""
        relay = await Relay(self).start()
        backend = echo_server(self)
        text = (f"[zz]\nlocal_port = {backend}\nremote_port = {relay.port}\n"
                f"[aa]\nlocal_port = {backend}\n")
        client = await self.start(text, relay=relay)
        remote = await running_port(client, "aa")
        await within(client.when_proxy_status("zz", "start error"))
        code, headers, body = await request(self.port, "GET", "/api/status")
        self.assertEqual((code, headers["content-type"]),
                         (200, "application/json"))
        document = json.loads(body)
        self.assertEqual(list(document), ["tcp"])
        aa, zz = document["tcp"]
        self.assertEqual(aa, {
            "name": "aa", "type": "tcp", "status": "running", "err": "",
            "local_addr": f"127.0.0.1:{backend}", "plugin": "",
            "remote_addr": f"127.0.0.1:{remote}"})
        self.assertEqual((zz["name"], zz["status"], zz["remote_addr"]),
                         ("zz", "start error", f"127.0.0.1:{relay.port}"))
        self.assertTrue(zz["err"])

    @async_test
    async def test_auth(self):
        """With admin_user/admin_pwd set, a wrong password gets 401 and the
        realm challenge, the right one gets in, /healthz needs none."""
        await self.start(extra="admin_user = admin\nadmin_pwd = s3cret\n")
        code, headers, body = await request(
            self.port, "GET", "/api/status", user="admin", password="nope")
        self.assertEqual((code, headers["www-authenticate"], body),
                         (401, 'Basic realm="Restricted"', b"Unauthorized\n"))
        code, _, _ = await request(self.port, "GET", "/api/status")
        self.assertEqual(code, 401)
        code, _, body = await request(self.port, "GET", "/api/status",
                                      user="admin", password="s3cret")
        self.assertEqual((code, list(json.loads(body))), (200, ["tcp"]))
        self.assertEqual((await request(self.port, "GET", "/healthz"))[::2],
                         (200, b""))

    @async_test
    async def test_reload_route(self):
        """GET /api/reload applies a new proxy (200, empty body); a bad file
        gives 400 with the error text and changes nothing."""
        client = await self.start()
        await running_port(client, "echo")
        rewrite(self.path, client_text(self.relay.port, proxies(
            ("echo", self.backend), ("more", self.backend))))
        self.assertEqual((await request(self.port, "GET", "/api/reload"))
                         [::2], (200, b""))
        port = await running_port(client, "more")
        user = await connect_user(self, port)
        user.transport.write(b"hi")
        self.assertEqual(await within(user.wait_for(2)), b"hi")
        rewrite(self.path, "[common]\nserver_port = nope\n")
        code, _, body = await request(self.port, "GET", "/api/reload")
        self.assertEqual(code, 400)
        self.assertIn(b"server_port", body)
        self.assertEqual(sorted(client.proxies), ["echo", "more"])

    @async_test
    async def test_reload_failure_is_500(self):
        """An unexpected failure while applying a reload is a 500 with the
        error text."""
        client = await self.start()

        def broken():
            raise RuntimeError("disk on fire")
        client.reload = broken
        code, _, body = await request(self.port, "GET", "/api/reload")
        self.assertEqual(code, 500)
        self.assertIn(b"disk on fire", body)
        self.flushLoggedErrors(RuntimeError)

    @async_test
    async def test_config_round_trip(self):
        """GET /api/config shows the rendered file without its token; PUT
        writes the body with the original token line back after [common],
        and the next reload applies it."""
        client = await self.start()
        await running_port(client, "echo")
        code, _, body = await request(self.port, "GET", "/api/config")
        self.assertEqual(code, 200)
        text = body.decode()
        self.assertNotIn("token", text)
        self.assertIn(f"server_port = {self.relay.port}", text)
        new = (text.replace("[common]", "[common]\ntoken = stolen") +
               f"\n  [more]\n  local_port = {self.backend}\n")
        code, _, _ = await request(self.port, "PUT", "/api/config",
                                   body=new.encode())
        self.assertEqual(code, 200)
        stored = FilePath(self.path).getContent().decode()
        self.assertNotIn("stolen", stored)
        self.assertIn("[common]\ntoken = harness-token\n", stored)
        self.assertIn("\n[more]\nlocal_port = ", stored)
        self.assertNotIn("more", client.proxies)  # not applied yet
        self.assertEqual((await request(self.port, "GET", "/api/reload"))[0],
                         200)
        await running_port(client, "more")  # logged in with the kept token
        code, _, body = await request(self.port, "GET", "/api/config")
        self.assertNotIn(b"token", body)

    @async_test
    async def test_config_template_rendered(self):
        """GET /api/config returns the text after the template pass."""
        await self.start(extra='log_level = {{ "debug" }}\n')
        body = (await request(self.port, "GET", "/api/config"))[2]
        self.assertIn(b"log_level = debug\n", body)

    @async_test
    async def test_put_empty_body(self):
        """PUT /api/config with an empty body is a 400 and the file is
        left alone."""
        await self.start()
        before = FilePath(self.path).getContent()
        code, _, body = await request(self.port, "PUT", "/api/config",
                                      body=b"")
        self.assertEqual((code, body), (400, b"body can't be empty"))
        self.assertEqual(FilePath(self.path).getContent(), before)

    @async_test
    async def test_no_config_file(self):
        """A client without a config file answers /api/config with 400."""
        config = parse_client_config(client_text())
        client = RelayClient(config, reactor, build_endpoint(
            reactor, config, None), exit_on_fatal=False,
            admin_listen="tcp:0:interface=127.0.0.1")
        client.startService()
        self.addCleanup(client.stopService)
        port = await admin_port(client)
        for method, body in (("GET", None), ("PUT", b"[common]\n")):
            code, _, text = await request(port, method, "/api/config",
                                          body=body)
            self.assertEqual((code, text), (
                400, b"labrelay-client has no config file path"))

    @async_test
    async def test_stop(self):
        """POST /api/stop answers 200, then the client stops."""
        client = await self.start()
        stopped = defer.Deferred()
        original = client.stop_gracefully

        def stop():
            original()
            stopped.callback(client.running)
        client.stop_gracefully = stop
        code, _, _ = await request(self.port, "POST", "/api/stop")
        self.assertEqual(code, 200)
        self.assertFalse(await within(stopped))

    @async_test
    async def test_unknown_route_and_method(self):
        """An unknown path is a 404 and a known path with the wrong method
        a 405."""
        await self.start()
        self.assertEqual((await request(self.port, "GET", "/nope"))[0], 404)
        self.assertEqual((await request(self.port, "POST", "/api/status"))
                         [0], 405)

    def test_port_taken(self):
        """An admin port already in use fails start-up with one line naming
        it."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = parse_client_config(client_text(
            extra=f"admin_port = {port}\n"))
        client = RelayClient(config, reactor, build_endpoint(
            reactor, config, None), exit_on_fatal=False)
        error = self.assertRaises(SystemExit, client.privilegedStartService)
        self.assertIn(f"admin_addr:admin_port 127.0.0.1:{port}", str(error))
        self.assertNotIsInstance(error, CannotListenError)


class CommandTests(TestCase):
    """``labrelay-client reload|status|stop`` against a real admin API."""

    timeout = 30

    async def start(self, extra=""):
        self.relay = await Relay(self).start()
        self.backend = echo_server(self)
        self.path = write(self, client_text(
            self.relay.port, proxies(("echo", self.backend)), extra))
        self.client = file_client(self, self.path, admin=True)
        self.remote = await running_port(self.client, "echo")
        port = await admin_port(self.client)
        # The command reads its own copy, naming the port bound above.
        self.cli_path = write(self, client_text(
            self.relay.port, extra=extra + f"admin_port = {port}\n"),
            name="cli.ini")
        return self.client

    @async_test
    async def test_status_table(self):
        """status prints a table per proxy type like frpc and exits 0."""
        await self.start()
        code, out, err = await run_cli("status", "-c", self.cli_path)
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[:3], ["Proxy Status...", "", "TCP"])
        self.assertEqual(lines[3].split(), ["Name", "Status", "LocalAddr",
                                            "Plugin", "RemoteAddr", "Error"])
        self.assertEqual(lines[4].split(), [
            "echo", "running", f"127.0.0.1:{self.backend}",
            f"127.0.0.1:{self.remote}"])

    @async_test
    async def test_reload(self):
        """reload applies the file and exits 0; a bad file exits 1 with the
        server's 400 text."""
        await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        rewrite(self.path, client_text(self.relay.port, proxies(
            ("echo", self.backend), ("more", self.backend)),
            "admin_user = a\nadmin_pwd = b\n"))
        self.assertEqual(await run_cli("reload", "-c", self.cli_path),
                         (0, "reload success\n", ""))
        await running_port(self.client, "more")
        rewrite(self.path, "no common section\n")
        code, out, err = await run_cli("reload", "-c", self.cli_path)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("code [400]", err)
        self.assertIn("[common]", err)

    @async_test
    async def test_wrong_password(self):
        """A wrong admin_pwd in the command's file exits 1 with code
        [401]."""
        await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        rewrite(self.cli_path, FilePath(self.cli_path).getContent().decode()
                .replace("admin_pwd = b", "admin_pwd = c"))
        code, _, err = await run_cli("status", "-c", self.cli_path)
        self.assertEqual(code, 1)
        self.assertIn("code [401]", err)

    @async_test
    async def test_no_admin_port(self):
        """Without admin_port the command exits 1 telling to set it."""
        path = write(self, client_text())
        code, out, err = await run_cli("status", "-c", path)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("admin_port is not set", err)

    @async_test
    async def test_unreachable(self):
        """Nothing listening on admin_port exits 1 naming the URL."""
        port = free_port()
        path = write(self, client_text(extra=f"admin_port = {port}\n"))
        code, _, err = await run_cli("reload", "-c", path)
        self.assertEqual(code, 1)
        self.assertIn(f"http://127.0.0.1:{port}/api/reload", err)

    def test_format_status_order(self):
        """Types print in frpc's order (tcp before http), empty ones not
        at all."""
        text = cli.format_status({"http": [{"name": "w"}], "udp": [],
                                  "tcp": [{"name": "t"}]})
        self.assertLess(text.index("TCP"), text.index("HTTP"))
        self.assertNotIn("UDP", text)


class ProcessTests(TestCase):
    """The tap and the command as real processes."""

    timeout = 60

    @async_test
    async def test_twistd_client_status_and_stop(self):
        """A twistd client with admin_port answers the command's status,
        and stop ends the process with status 0."""
        server = await start_server(self)
        backend = echo_server(self)
        port = free_port()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child("frpc.ini").path
        with open(path, "w") as f:
            f.write(client_ini(server.port, [("echo", backend, 0)],
                               extra=f"admin_port = {port}\n"))
        process = twistd(self, "labrelay-client", path)
        await process.wait_for(r"\[echo\] start proxy success")
        command = [sys.executable, "-m", "labrelay.client.cli"]
        status = await run(self, "status", command + ["status", "-c", path],
                           path=REPO_ROOT, env=child_env())
        self.assertEqual(status.exit_code, 0, status.tail())
        self.assertIn("running", status.output)
        stop = await run(self, "stop", command + ["stop", "-c", path],
                         path=REPO_ROOT, env=child_env())
        self.assertEqual(stop.exit_code, 0, stop.tail())
        self.assertEqual(await process.when_exited(10), 0, process.tail())
