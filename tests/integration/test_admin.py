# -*- test-case-name: tests.integration.test_admin -*-
"""
The client's admin API (labrelay.client.admin) and the ``labrelay-client``
command (labrelay.client.cli) that drives it, on loopback sockets: every
route, basic auth, the status document after a real login, config round
trips with the token kept back, the Host/Origin/method policy that keeps
web pages out, and the command against a real API.
"""

import io
import json
import os
import socket

from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from labrelay.client import cli
from labrelay.client.admin import STOP_EXIT_CODE
from labrelay.client.service import RelayClient
from labrelay.client_tap import build_endpoint
from labrelay.config import parse_client_config

from ..support.config_files import client_text, proxies, rewrite, write
from ..support.formats import in_format
from ..support.harness import (
    Relay,
    async_test,
    connect_user,
    echo_server,
    file_client,
    running_port,
    within,
)
from ..support.processes import free_port
from ..support.web import request


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


async def listen_web(testcase, resource):
    """Serve *resource* on a free loopback port for the test; the port."""
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


class AdminAPITests(TestCase):
    """Every route on a real socket, with a client logged in to a real
    relay."""

    timeout = 30

    async def start(self, proxy_text="", extra="", relay=None):
        self.relay = relay or await Relay(self).start()
        self.backend = echo_server(self)
        self.path = write(
            self,
            client_text(
                self.relay.port, proxy_text or proxies(("echo", self.backend)), extra
            ),
        )
        self.client = file_client(self, self.path, admin=True)
        self.port = await admin_port(self.client)
        return self.client

    @async_test
    async def test_status_after_login(self):
        """/api/status lists the proxies by type, sorted by name, with the
        server's remote address, the local address and start errors."""
        relay = await Relay(self).start()
        backend = echo_server(self)
        text = (
            f"[zz]\nlocal_port = {backend}\nremote_port = {relay.port}\n"
            f"[aa]\nlocal_port = {backend}\n"
        )
        client = await self.start(text, relay=relay)
        remote = await running_port(client, "aa")
        await within(client.when_proxy_status("zz", "start error"))
        code, headers, body = await request(self.port, "GET", "/api/status")
        self.assertEqual((code, headers["content-type"]), (200, "application/json"))
        document = json.loads(body)
        self.assertEqual(list(document), ["tcp"])
        aa, zz = document["tcp"]
        self.assertEqual(
            aa,
            {
                "name": "aa",
                "type": "tcp",
                "status": "running",
                "err": "",
                "local_addr": f"127.0.0.1:{backend}",
                "plugin": "",
                "remote_addr": f"127.0.0.1:{remote}",
            },
        )
        self.assertEqual(
            (zz["name"], zz["status"], zz["remote_addr"]),
            ("zz", "start error", f"127.0.0.1:{relay.port}"),
        )
        self.assertTrue(zz["err"])

    @async_test
    async def test_auth(self):
        """With admin_user/admin_pwd set, a wrong password gets 401 and the
        realm challenge, the right one gets in, /healthz needs none."""
        await self.start(extra="admin_user = admin\nadmin_pwd = s3cret\n")
        code, headers, body = await request(
            self.port, "GET", "/api/status", user="admin", password="nope"
        )
        self.assertEqual(
            (code, headers["www-authenticate"], body),
            (401, 'Basic realm="Restricted"', b"Unauthorized\n"),
        )
        code, _, _ = await request(self.port, "GET", "/api/status")
        self.assertEqual(code, 401)
        code, _, body = await request(
            self.port, "GET", "/api/status", user="admin", password="s3cret"
        )
        self.assertEqual((code, list(json.loads(body))), (200, ["tcp"]))
        self.assertEqual((await request(self.port, "GET", "/healthz"))[::2], (200, b""))

    @async_test
    async def test_reload_route(self):
        """POST /api/reload applies a new proxy (200, empty body); a bad
        file gives 400 with the error text and changes nothing."""
        client = await self.start()
        await running_port(client, "echo")
        rewrite(
            self.path,
            client_text(
                self.relay.port, proxies(("echo", self.backend), ("more", self.backend))
            ),
        )
        self.assertEqual(
            (await request(self.port, "POST", "/api/reload"))[::2], (200, b"")
        )
        port = await running_port(client, "more")
        user = await connect_user(self, port)
        user.transport.write(b"hi")
        self.assertEqual(await within(user.wait_for(2)), b"hi")
        rewrite(self.path, "[common]\nserver_port = nope\n")
        code, _, body = await request(self.port, "POST", "/api/reload")
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
        code, _, body = await request(self.port, "POST", "/api/reload")
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
        new = (
            text.replace("[common]", "[common]\ntoken = stolen")
            + f"\n  [more]\n  local_port = {self.backend}\n"
        )
        code, _, _ = await request(self.port, "PUT", "/api/config", body=new.encode())
        self.assertEqual(code, 200)
        stored = FilePath(self.path).getContent().decode()
        self.assertNotIn("stolen", stored)
        self.assertIn("[common]\ntoken = harness-token\n", stored)
        self.assertIn("\n[more]\nlocal_port = ", stored)
        self.assertNotIn("more", client.proxies)  # not applied yet
        self.assertEqual((await request(self.port, "POST", "/api/reload"))[0], 200)
        await running_port(client, "more")  # logged in with the kept token
        code, _, body = await request(self.port, "GET", "/api/config")
        self.assertNotIn(b"token", body)

    @async_test
    async def test_toml_config_round_trip(self):
        """A client started from frpc.toml: GET /api/config shows the TOML
        with its token redacted, PUT of an edited body puts the token
        back, and a reload reads the TOML and applies the new proxy."""
        self.relay = await Relay(self).start()
        self.backend = echo_server(self)
        text, name = in_format(
            client_text(
                self.relay.port,
                proxies(("echo", self.backend)),
                "admin_user = admin\nadmin_pwd = adm1n-pw\n",
            ),
            "frpc.ini",
            "toml",
        )
        self.path = write(self, text, name=name)
        client = file_client(self, self.path, admin=True)
        self.assertEqual(client.config.format, "toml")
        self.port = await admin_port(client)
        await running_port(client, "echo")
        auth = dict(user="admin", password="adm1n-pw")
        code, _, body = await request(self.port, "GET", "/api/config", **auth)
        self.assertEqual(code, 200)
        shown = body.decode()
        self.assertNotIn("harness-token", shown)
        self.assertNotIn("adm1n-pw", shown)
        self.assertIn('token = "<redacted>"', shown)
        self.assertIn(f"serverPort = {self.relay.port}", shown)
        edited = shown + (
            f'\n[[proxies]]\nname = "more"\ntype = "tcp"\nlocalPort = {self.backend}\n'
        )
        code, _, _ = await request(
            self.port, "PUT", "/api/config", body=edited.encode(), **auth
        )
        self.assertEqual(code, 200)
        stored = FilePath(self.path).getContent().decode()
        self.assertIn('token = "harness-token"', stored)
        self.assertIn('password = "adm1n-pw"', stored)
        self.assertNotIn("<redacted>", stored)
        code, _, _ = await request(self.port, "POST", "/api/reload", **auth)
        self.assertEqual(code, 200)
        await running_port(client, "more")  # logged in with the kept token
        # one secret written anew while the others stay redacted
        code, _, body = await request(
            self.port,
            "PUT",
            "/api/config",
            body=shown.replace('"<redacted>"', '"x"', 1).encode(),
            **auth,
        )
        self.assertEqual(code, 200)  # a secret written in full is taken
        code, _, body = await request(
            self.port,
            "PUT",
            "/api/config",
            body=(shown + 'x.password = "<redacted>"\n').encode(),
            **auth,
        )
        # a redacted value the file has no secret for: 400
        self.assertEqual(code, 400, body)
        self.assertIn(b"redacted 'password' values", body)

    @async_test
    async def test_config_template_not_rendered(self):
        """GET /api/config returns the file as stored: a template is shown
        as written, never rendered with the client's environment (it was
        rendered until a PUT plus a GET could read any environment
        variable, a token kept out of the file included)."""
        os.environ["LABRELAY_TEST_ADMIN_SECRET"] = "env-secret-value"
        self.addCleanup(os.environ.pop, "LABRELAY_TEST_ADMIN_SECRET")
        await self.start(
            extra='log_level = {{ "debug" }}\nuser = '
            "{{ .Envs.LABRELAY_TEST_ADMIN_SECRET }}\n"
        )
        body = (await request(self.port, "GET", "/api/config"))[2]
        self.assertIn(b'log_level = {{ "debug" }}\n', body)
        self.assertIn(b"{{ .Envs.LABRELAY_TEST_ADMIN_SECRET }}", body)
        self.assertNotIn(b"env-secret-value", body)
        # The attack: PUT a file naming the variable, then GET it back.
        text = body.decode() + "\nmeta_x = {{ .Envs.LABRELAY_TEST_ADMIN_SECRET }}"
        self.assertEqual(
            (await request(self.port, "PUT", "/api/config", body=text.encode()))[0], 200
        )
        body = (await request(self.port, "GET", "/api/config"))[2]
        self.assertIn(b"meta_x = {{ .Envs.", body)
        self.assertNotIn(b"env-secret-value", body)

    @async_test
    async def test_put_empty_body(self):
        """PUT /api/config with an empty body is a 400 and the file is
        left alone."""
        await self.start()
        before = FilePath(self.path).getContent()
        code, _, body = await request(self.port, "PUT", "/api/config", body=b"")
        self.assertEqual((code, body), (400, b"body can't be empty"))
        self.assertEqual(FilePath(self.path).getContent(), before)

    @async_test
    async def test_no_config_file(self):
        """A client without a config file answers /api/config with 400."""
        config = parse_client_config(client_text())
        client = RelayClient(
            config,
            reactor,
            build_endpoint(reactor, config, None),
            exit_on_fatal=False,
            admin_listen="tcp:0:interface=127.0.0.1",
        )
        client.startService()
        self.addCleanup(client.stopService)
        port = await admin_port(client)
        for method, body in (("GET", None), ("PUT", b"[common]\n")):
            code, _, text = await request(port, method, "/api/config", body=body)
            self.assertEqual(
                (code, text), (400, b"labrelay-client has no config file path")
            )

    @async_test
    async def test_stop(self):
        """POST /api/stop answers 200, then the client stops."""
        client = await self.start()
        stopped = defer.Deferred()
        original = client.stop_gracefully

        def stop(exit_code=0):
            original(exit_code)
            stopped.callback((client.running, exit_code))

        client.stop_gracefully = stop
        code, _, _ = await request(self.port, "POST", "/api/stop")
        self.assertEqual(code, 200)
        self.assertEqual(await within(stopped), (False, STOP_EXIT_CODE))

    @async_test
    async def test_unknown_route_and_method(self):
        """An unknown path is a 404 and a known path with the wrong method
        a 405."""
        await self.start()
        self.assertEqual((await request(self.port, "GET", "/nope"))[0], 404)
        self.assertEqual((await request(self.port, "POST", "/api/status"))[0], 405)

    def test_port_taken(self):
        """An admin port already in use fails start-up with one line naming
        it."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = parse_client_config(client_text(extra=f"admin_port = {port}\n"))
        client = RelayClient(
            config, reactor, build_endpoint(reactor, config, None), exit_on_fatal=False
        )
        error = self.assertRaises(SystemExit, client.privilegedStartService)
        self.assertIn(f"admin_addr:admin_port 127.0.0.1:{port}", str(error))
        self.assertNotIsInstance(error, CannotListenError)


class WebPageTests(TestCase):
    """What a web page can make a browser send is refused, on a real
    socket: a foreign Host (DNS rebinding), a foreign Origin or a
    cross-site Sec-Fetch-Site, and a state change by GET."""

    timeout = 30

    async def start(self, extra=""):
        self.relay = await Relay(self).start()
        self.backend = echo_server(self)
        self.path = write(
            self, client_text(self.relay.port, proxies(("echo", self.backend)), extra)
        )
        self.client = file_client(self, self.path, admin=True)
        self.port = await admin_port(self.client)
        await running_port(self.client, "echo")
        self.stops = []
        self.client.stop_gracefully = lambda *a: self.stops.append(a)
        return self.client

    def assertNothingChanged(self, before):
        self.assertEqual(FilePath(self.path).getContent(), before)
        self.assertEqual(self.client.admin.resource._delayed, set())
        self.assertEqual(self.client.admin.resource.auth.pending, set())
        self.assertEqual(self.stops, [])
        self.assertTrue(self.client.running)

    @async_test
    async def test_foreign_host_refused(self):
        """Every route, /healthz included, answers 421 to a Host that is
        not localhost, a loopback literal, admin_addr or the address the
        request arrived on, with the right port; nothing is changed."""
        await self.start()
        before = FilePath(self.path).getContent()
        port = self.port
        for host in (
            f"evil.example:{port}",
            "evil.example",
            f"127.0.0.1.evil.example:{port}",
            f"localhost.:{port + 1}",
            f"localhost:{port + 1}",
            "127.0.0.1",
            f"127.0.0.2:{port}",
            f"evil@127.0.0.1:{port}",
            f"[::1]x:{port}",
            "",
        ):
            for method, path, body in (
                ("GET", "/healthz", None),
                ("GET", "/api/status", None),
                ("GET", "/api/config", None),
                ("PUT", "/api/config", b"[common]\nx = 1\n"),
                ("POST", "/api/reload", b""),
                ("POST", "/api/stop", b""),
            ):
                code, _, text = await request(port, method, path, body, host=host)
                self.assertEqual(code, 421, (host, method, path))
                self.assertNotIn(b"server_port", text)
        self.assertNothingChanged(before)

    @async_test
    async def test_local_hosts_accepted(self):
        """localhost, 127.0.0.1, [::1] and admin_addr with the API's port
        are accepted (any case, a trailing dot)."""
        await self.start(extra="admin_addr = MyBox.example\n")
        for host in ("localhost", "LocalHost.", "127.0.0.1", "[::1]", "mybox.example"):
            code, _, _ = await request(
                self.port, "GET", "/api/status", host=f"{host}:{self.port}"
            )
            self.assertEqual(code, 200, host)

    @async_test
    async def test_cross_origin_refused(self):
        """A POST /api/stop, POST /api/reload or PUT /api/config from
        another origin (Origin header, Origin null, or Sec-Fetch-Site of
        a cross-site or same-site page) is refused with 403, before any
        credentials are checked; nothing is changed."""
        await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        before = FilePath(self.path).getContent()
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": f"http://localhost:{self.port + 1}"},
            {"Origin": f"https://127.0.0.1:{self.port}"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
        ):
            for method, path, body in (
                ("POST", "/api/stop", b""),
                ("POST", "/api/reload", b""),
                ("PUT", "/api/config", b"[common]\nx = 1\n"),
                ("GET", "/api/config", None),
            ):
                code, _, _ = await request(
                    self.port,
                    method,
                    path,
                    body,
                    user="a",
                    password="b",
                    headers=headers,
                )
                self.assertEqual(code, 403, (headers, method, path))
        self.assertNothingChanged(before)

    @async_test
    async def test_same_origin_accepted(self):
        """The API's own origin, and Sec-Fetch-Site same-origin or none,
        pass."""
        await self.start()
        for headers in (
            {"Origin": f"http://127.0.0.1:{self.port}"},
            {"Sec-Fetch-Site": "same-origin"},
            {"Sec-Fetch-Site": "none"},
        ):
            code, _, _ = await request(
                self.port, "POST", "/api/reload", b"", headers=headers
            )
            self.assertEqual(code, 200, headers)

    @async_test
    async def test_state_changes_need_their_method(self):
        """Without credentials configured, GET /api/reload is 405 (Allow:
        POST) and changes nothing; GET /api/stop is 405 too; POST works."""
        client = await self.start()
        rewrite(
            self.path,
            client_text(
                self.relay.port, proxies(("echo", self.backend), ("more", self.backend))
            ),
        )
        code, headers, _ = await request(self.port, "GET", "/api/reload")
        self.assertEqual((code, headers["allow"]), (405, "POST"))
        self.assertEqual((await request(self.port, "GET", "/api/stop"))[0], 405)
        self.assertEqual((await request(self.port, "PUT", "/api/reload", b""))[0], 405)
        self.assertNotIn("more", client.proxies)
        self.assertEqual(self.stops, [])
        self.assertEqual((await request(self.port, "POST", "/api/reload", b""))[0], 200)
        await running_port(client, "more")

    @async_test
    async def test_get_reload_with_credentials(self):
        """frpc's own "frpc reload" sends GET with basic auth: accepted
        when credentials are configured and given (401 without)."""
        client = await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        rewrite(
            self.path,
            client_text(
                self.relay.port,
                proxies(("echo", self.backend), ("more", self.backend)),
                "admin_user = a\nadmin_pwd = b\n",
            ),
        )
        self.assertEqual((await request(self.port, "GET", "/api/reload"))[0], 401)
        self.assertEqual(
            (await request(self.port, "GET", "/api/reload", user="a", password="b"))[0],
            200,
        )
        await running_port(client, "more")


class CommandTests(TestCase):
    """``labrelay-client reload|status|stop`` against a real admin API."""

    timeout = 30

    async def start(self, extra=""):
        self.relay = await Relay(self).start()
        self.backend = echo_server(self)
        self.path = write(
            self, client_text(self.relay.port, proxies(("echo", self.backend)), extra)
        )
        self.client = file_client(self, self.path, admin=True)
        self.remote = await running_port(self.client, "echo")
        port = await admin_port(self.client)
        # The command reads its own copy, naming the port bound above.
        self.cli_path = write(
            self,
            client_text(self.relay.port, extra=extra + f"admin_port = {port}\n"),
            name="cli.ini",
        )
        return self.client

    @async_test
    async def test_status_table(self):
        """status prints a table per proxy type like frpc and exits 0."""
        await self.start()
        code, out, err = await run_cli("status", "-c", self.cli_path)
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[:3], ["Proxy Status...", "", "TCP"])
        self.assertEqual(
            lines[3].split(),
            ["Name", "Status", "LocalAddr", "Plugin", "RemoteAddr", "Error"],
        )
        self.assertEqual(
            lines[4].split(),
            [
                "echo",
                "running",
                f"127.0.0.1:{self.backend}",
                f"127.0.0.1:{self.remote}",
            ],
        )

    @async_test
    async def test_reload(self):
        """reload applies the file and exits 0; a bad file exits 1 with the
        server's 400 text."""
        await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        rewrite(
            self.path,
            client_text(
                self.relay.port,
                proxies(("echo", self.backend), ("more", self.backend)),
                "admin_user = a\nadmin_pwd = b\n",
            ),
        )
        self.assertEqual(
            await run_cli("reload", "-c", self.cli_path), (0, "reload success\n", "")
        )
        await running_port(self.client, "more")
        rewrite(self.path, "no common section\n")
        code, out, err = await run_cli("reload", "-c", self.cli_path)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("code [400]", err)
        self.assertIn("[common]", err)

    @async_test
    async def test_reload_without_credentials(self):
        """reload works against an API without credentials (it sends
        POST: a GET would be refused with 405)."""
        await self.start()
        rewrite(
            self.path,
            client_text(
                self.relay.port, proxies(("echo", self.backend), ("more", self.backend))
            ),
        )
        self.assertEqual(
            await run_cli("reload", "-c", self.cli_path), (0, "reload success\n", "")
        )
        await running_port(self.client, "more")

    @async_test
    async def test_reload_falls_back_to_get(self):
        """Against an API that answers POST /api/reload with 405 (frpc's
        own), reload sends frpc's GET."""
        seen = []

        class FrpcAdmin(Resource):
            isLeaf = True

            def render(self, request):
                seen.append((request.method, request.path))
                if request.method != b"GET":
                    request.setResponseCode(405)
                return b""

        port = await within(listen_web(self, FrpcAdmin()))
        path = write(self, client_text(extra=f"admin_port = {port}\n"))
        self.assertEqual(
            await run_cli("reload", "-c", path), (0, "reload success\n", "")
        )
        self.assertEqual(seen, [(b"POST", b"/api/reload"), (b"GET", b"/api/reload")])

    @async_test
    async def test_wrong_password(self):
        """A wrong admin_pwd in the command's file exits 1 with code
        [401]."""
        await self.start(extra="admin_user = a\nadmin_pwd = b\n")
        rewrite(
            self.cli_path,
            FilePath(self.cli_path)
            .getContent()
            .decode()
            .replace("admin_pwd = b", "admin_pwd = c"),
        )
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
