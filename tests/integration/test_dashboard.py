# -*- test-case-name: tests.integration.test_dashboard -*-
"""
The server dashboard on loopback sockets: frp's JSON API routes and field
names after real traffic through real tunnels, labrelay's own routes, the
Host/Origin checks, basic auth, the page, TLS mode and the start-up
listener (the bookkeeping behind them is in tests.unit.test_dashboard).
"""

import json
import os
import re

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from labrelay import FRP_VERSION, __version__
from labrelay.config import parse_server_config
from labrelay.server.service import RelayServer
from labrelay.server.stats import BUCKETS
from labrelay.tls import server_tls_options

from ..support import certs
from ..support.dashboard import LOCAL, DashboardRelay, close_user, push, tunnel
from ..support.harness import (
    Client,
    async_test,
    connect_user,
    listen,
    wait_until,
    within,
)
from ..support.web import Http, request

TIME = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d$")

#: frp v0.51's ``conf`` keys of a tcp proxy, in Go's order.
TCP_CONF_KEYS = [
    "name",
    "type",
    "use_encryption",
    "use_compression",
    "group",
    "group_key",
    "proxy_protocol_version",
    "bandwidth_limit",
    "bandwidth_limit_mode",
    "metas",
    "local_ip",
    "local_port",
    "plugin",
    "PluginParams",
    "health_check_type",
    "health_check_timeout_s",
    "health_check_max_failed",
    "health_check_interval_s",
    "health_check_url",
    "remote_port",
]
SERVERINFO_KEYS = [
    "version",
    "bind_port",
    "vhost_http_port",
    "vhost_https_port",
    "tcpmux_httpconnect_port",
    "kcp_bind_port",
    "quic_bind_port",
    "subdomain_host",
    "max_pool_count",
    "max_ports_per_client",
    "heart_beat_timeout",
    "total_traffic_in",
    "total_traffic_out",
    "cur_conns",
    "client_counts",
    "proxy_type_count",
    "labrelay_version",
]
ENTRY_KEYS = [
    "name",
    "conf",
    "today_traffic_in",
    "today_traffic_out",
    "cur_conns",
    "last_start_time",
    "last_close_time",
    "status",
]


# -- the JSON API --------------------------------------------------------------


class ApiTests(TestCase):
    """frp's routes and fields, after real traffic."""

    timeout = 60

    async def setup(self, extra=""):
        relay = await DashboardRelay(self, extra).start()
        http = Http(self)
        client, port = await tunnel(self, relay)
        return relay, http, client, port

    @async_test
    async def test_serverinfo(self):
        """serverinfo has frp's fields in order; its totals and counts
        follow the traffic, live."""
        relay, http, _, port = await self.setup("allow_ports = 1000-65000\n")
        info = await http.json(relay.url("/api/serverinfo"))
        self.assertEqual(
            list(info),
            SERVERINFO_KEYS[:11] + ["allow_ports_str"] + SERVERINFO_KEYS[11:],
        )
        self.assertEqual(info["version"], FRP_VERSION)
        self.assertEqual(
            info["labrelay_version"],
            f"labrelay {__version__} (speaks frp {FRP_VERSION})",
        )
        self.assertEqual(info["allow_ports_str"], "1000-65000")
        self.assertEqual(
            (
                info["bind_port"],
                info["client_counts"],
                info["proxy_type_count"],
                info["cur_conns"],
                info["total_traffic_in"],
            ),
            (7000, 1, {"tcp": 1}, 0, 0),
        )
        user = await push(self, port, 3000)
        info = await http.json(relay.url("/api/serverinfo"))
        # counted while the connection is still open
        self.assertEqual(
            (info["cur_conns"], info["total_traffic_in"], info["total_traffic_out"]),
            (1, 3000, 3000),
        )
        await close_user(user)

    @async_test
    async def test_proxy_list(self):
        """/api/proxy/tcp lists the proxy with frp's fields and a conf in
        v0.51's snake_case; today's traffic grows as bytes flow."""
        relay, http, _, port = await self.setup()
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(
            list(entry), ENTRY_KEYS[:2] + ["client_version"] + ENTRY_KEYS[2:]
        )
        self.assertEqual(list(entry["conf"]), TCP_CONF_KEYS)
        self.assertEqual(
            (
                entry["name"],
                entry["conf"]["name"],
                entry["conf"]["type"],
                entry["conf"]["remote_port"],
                entry["client_version"],
                entry["status"],
                entry["today_traffic_in"],
                entry["cur_conns"],
                entry["last_close_time"],
            ),
            ("echo", "echo", "tcp", port, FRP_VERSION, "online", 0, 0, ""),
        )
        self.assertRegex(entry["last_start_time"], TIME)
        user = await push(self, port, 1000)
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(
            (entry["today_traffic_in"], entry["today_traffic_out"], entry["cur_conns"]),
            (1000, 1000, 1),
        )
        await push(self, port, 500, user)
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(entry["today_traffic_in"], 1500)
        await close_user(user)
        self.assertEqual((await http.json(relay.url("/api/proxy/http")))["proxies"], [])

    @async_test
    async def test_proxy_by_name(self):
        """/api/proxy/{type}/{name} is the entry without client_version;
        an unknown name or the wrong type is 404 'no proxy info found'."""
        relay, http, _, port = await self.setup()
        await close_user(await push(self, port, 700), relay)
        entry = await http.json(relay.url("/api/proxy/tcp/echo"))
        self.assertEqual(list(entry), ENTRY_KEYS)
        self.assertEqual(
            (entry["today_traffic_in"], entry["cur_conns"], entry["status"]),
            (700, 0, "online"),
        )
        for path in (
            "/api/proxy/tcp/nope",
            "/api/proxy/http/echo",
            "/api/traffic/nope",
        ):
            code, headers, body = await http.get(relay.url(path))
            self.assertEqual((code, body), (404, b"no proxy info found"))
            self.assertEqual(
                headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"]
            )
        code, _, _ = await http.get(relay.url("/api/nothing"))
        self.assertEqual(code, 404)
        code, _, _ = await http.get(relay.url("/api/serverinfo"), method=b"POST")
        self.assertEqual(code, 405)

    @async_test
    async def test_traffic(self):
        """/api/traffic/{name} gives 7 days, today first."""
        relay, http, _, port = await self.setup()
        await close_user(await push(self, port, 1234))
        traffic = await http.json(relay.url("/api/traffic/echo"))
        self.assertEqual(
            traffic,
            {
                "name": "echo",
                "traffic_in": [1234, 0, 0, 0, 0, 0, 0],
                "traffic_out": [1234, 0, 0, 0, 0, 0, 0],
            },
        )

    @async_test
    async def test_offline_proxy_stays_listed(self):
        """A proxy whose client left stays listed offline, with its traffic,
        a close time and conf null (as frp)."""
        relay, http, client, port = await self.setup()
        await close_user(await push(self, port, 800), relay)
        await client.stop()
        await within(wait_until(lambda: not relay.server.registry.controls))
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(
            (
                entry["status"],
                entry["conf"],
                entry["today_traffic_in"],
                entry["cur_conns"],
            ),
            ("offline", None, 800, 0),
        )
        self.assertNotIn("client_version", entry)
        self.assertRegex(entry["last_close_time"], TIME)
        info = await http.json(relay.url("/api/serverinfo"))
        self.assertEqual(
            (info["client_counts"], info["proxy_type_count"], info["total_traffic_in"]),
            (0, {"tcp": 0}, 800),
        )
        self.assertEqual(await http.json(relay.url("/api/clients")), {"clients": []})

    @async_test
    async def test_connection_outliving_its_proxy_is_counted(self):
        """Bytes of a connection still open when its client goes away are
        still booked to the proxy."""
        relay, http, client, port = await self.setup()
        user = await push(self, port, 100)
        proxy = relay.server.registry.proxies["echo"]
        relay.server.registry.remove_proxy("echo", proxy)
        # the splice runs on: the relay tears it down with the client only
        await push(self, port, 200, user)
        entry = await http.json(relay.url("/api/proxy/tcp/echo"))
        self.assertEqual(
            (entry["status"], entry["today_traffic_in"], entry["cur_conns"]),
            ("offline", 300, 1),
        )
        await close_user(user)

    @async_test
    async def test_clients(self):
        """/api/clients lists the client online with its address, user,
        version, uptime and proxies (no run_id: it was listed until it
        let a reader join work connections to the client's pool)."""
        relay, http, client, _ = await self.setup()
        (entry,) = (await http.json(relay.url("/api/clients")))["clients"]
        (control,) = relay.server.registry.controls.values()
        self.assertEqual(
            (entry["address"], entry["user"], entry["version"], entry["proxies"]),
            (control.peer, "", FRP_VERSION, ["echo"]),
        )
        self.assertNotIn("run_id", entry)
        self.assertRegex(entry["address"], r"^127\.0\.0\.1:\d+$")
        self.assertIsInstance(entry["uptime_seconds"], int)
        self.assertGreaterEqual(entry["uptime_seconds"], 0)

    @async_test
    async def test_no_run_id_anywhere(self):
        """No dashboard route, JSON or page, carries a client's run_id."""
        relay, http, client, port = await self.setup()
        await close_user(await push(self, port, 100))
        (run_id,) = relay.server.registry.controls
        for path in (
            "/api/serverinfo",
            "/api/clients",
            "/api/proxy/tcp",
            "/api/proxy/tcp/echo",
            "/api/traffic/echo",
            "/api/history",
            "/static/",
            "/static/app.js",
            "/static/index.html",
        ):
            code, _, body = await http.get(relay.url(path))
            self.assertEqual(code, 200, path)
            self.assertNotIn(run_id.encode(), body, path)
            self.assertNotIn(b"run_id", body, path)
            self.assertNotIn(b"runId", body, path)

    @async_test
    async def test_history(self):
        """/api/history has a day of buckets per proxy that add up to the
        traffic."""
        relay, http, _, port = await self.setup()
        await close_user(await push(self, port, 4096))
        history = await http.json(relay.url("/api/history"))
        self.assertEqual(history["bucket_seconds"], 600)
        (entry,) = history["proxies"]
        self.assertEqual(
            (
                entry["name"],
                entry["type"],
                len(entry["traffic_in"]),
                sum(entry["traffic_in"]),
                sum(entry["traffic_out"]),
            ),
            ("echo", "tcp", BUCKETS, 4096, 4096),
        )
        self.assertEqual(entry["traffic_in"][-1], 4096)

    @async_test
    async def test_http_proxy(self):
        """An http proxy's entry has the http conf fields, and its requests
        and an upgraded (raw) connection are counted while they run."""
        relay = await DashboardRelay(self, vhost=True).start()
        http = Http(self)
        backend = listen(self, Factory.forProtocol(UpgradeEcho))
        client = await Client(
            self,
            relay.port,
            (
                "[web]\ntype = http\nlocal_ip = 127.0.0.1\n"
                f"local_port = {backend}\ncustom_domains = web.test\n"
                "subdomain = app\nlocations = /,/x\n"
            ),
        ).start()
        await within(client.client.when_proxy_status("web", "running"))
        (entry,) = (await http.json(relay.url("/api/proxy/http")))["proxies"]
        conf = entry["conf"]
        self.assertEqual(
            list(conf)[-4:],
            ["custom_domains", "subdomain", "locations", "host_header_rewrite"],
        )
        self.assertEqual(
            (conf["custom_domains"], conf["subdomain"], conf["locations"]),
            (["web.test"], "app", ["/", "/x"]),
        )
        user = await connect_user(self, relay.http_port)
        request = (
            b"GET /x HTTP/1.1\r\nHost: web.test\r\nUpgrade: raw\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        user.transport.write(request)
        await within(wait_until(lambda: b"\r\n\r\n" in user.received))
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(entry["cur_conns"], 1)
        first_in = entry["today_traffic_in"]
        self.assertGreaterEqual(first_in, len(request))
        await push(self, None, 5000, user)
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(
            (entry["cur_conns"], entry["today_traffic_in"]), (1, first_in + 5000)
        )
        await push(self, None, 1000, user)
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(entry["today_traffic_in"], first_in + 6000)
        await close_user(user)
        proxy = relay.server.registry.proxies["web"]
        await within(wait_until(lambda: proxy.active_splices == 0))
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(
            (entry["cur_conns"], entry["today_traffic_in"]), (0, first_in + 6000)
        )


class UpgradeEcho(Protocol):
    """An HTTP backend that switches every request to raw echo."""

    HEAD = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\n"
        b"Connection: Upgrade\r\n\r\n"
    )

    def connectionMade(self):
        self._head = b""

    def dataReceived(self, data):
        if self._head is None:
            self.transport.write(data)
            return
        self._head += data
        if b"\r\n\r\n" in self._head:
            rest = self._head.split(b"\r\n\r\n", 1)[1]
            self._head = None
            self.transport.write(self.HEAD + rest)


class HostTests(TestCase):
    """The dashboard answers only requests naming it in Host (DNS
    rebinding), and refuses another origin's, on a real socket."""

    timeout = 30

    async def get(self, port, path="/api/clients", host=None, headers=None):
        code, _, body = await request(port, "GET", path, host=host, headers=headers)
        return code, body

    @async_test
    async def test_foreign_host_refused(self):
        """A Host not naming the dashboard gets 421 on every route,
        /healthz included, and no data; this used to be answered."""
        relay = await DashboardRelay(self).start()
        await tunnel(self, relay)
        port = relay.dashboard_port
        for host in (
            f"rebind.example:{port}",
            "rebind.example",
            f"localhost:{port + 1}",
            "127.0.0.1",
            "",
        ):
            for path in (
                "/api/clients",
                "/api/serverinfo",
                "/healthz",
                "/static/",
                "/",
                "/api/proxy/tcp",
            ):
                code, body = await self.get(port, path, host)
                self.assertEqual(code, 421, (host, path))
                self.assertNotIn(b"127.0.0.1", body)
                self.assertNotIn(b"echo", body)

    @async_test
    async def test_local_and_listed_hosts_accepted(self):
        """localhost, the loopback literals and dashboard_addr with the
        port, and a dashboard_allowed_hosts name with any port or none,
        are answered."""
        relay = await DashboardRelay(
            self, "dashboard_allowed_hosts = frps.example.test, Other.Example\n"
        ).start()
        port = relay.dashboard_port
        for host in (
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            "frps.example.test",
            "frps.example.test:443",
            f"other.example:{port}",
        ):
            code, body = await self.get(port, host=host)
            self.assertEqual((code, json.loads(body)), (200, {"clients": []}), host)

    @async_test
    async def test_foreign_origin_refused(self):
        """A request whose Origin is another origin gets 403; the
        dashboard's own origin passes, and so does a link followed from
        another site (Sec-Fetch-Site cross-site, no Origin)."""
        relay = await DashboardRelay(self).start()
        port = relay.dashboard_port
        for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}"):
            code, _ = await self.get(port, headers={"Origin": origin})
            self.assertEqual(code, 403, origin)
        for headers in (
            {"Origin": f"http://127.0.0.1:{port}"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            code, _ = await self.get(port, "/static/", headers=headers)
            self.assertEqual(code, 200, headers)


class AuthAndPageTests(TestCase):
    """Basic auth, the page, /metrics off, TLS mode, the listener."""

    timeout = 60

    @async_test
    async def test_basic_auth(self):
        """With dashboard_user/pwd, every route but /healthz needs them: 401
        with frp's WWW-Authenticate header otherwise."""
        relay = await DashboardRelay(
            self, "dashboard_user = admin\ndashboard_pwd = s3cret\n"
        ).start()
        http = Http(self)
        for path in ("/api/serverinfo", "/static/", "/", "/api/proxy/tcp"):
            for creds in (
                {},
                {"user": "admin", "password": "wrong"},
                {"user": "root", "password": "s3cret"},
            ):
                code, headers, body = await http.get(relay.url(path), **creds)
                self.assertEqual(code, 401, (path, creds))
                self.assertEqual(
                    headers.getRawHeaders(b"www-authenticate"),
                    [b'Basic realm="Restricted"'],
                )
        code, _, body = await http.get(relay.url("/healthz"))
        self.assertEqual((code, body), (200, b""))
        info = await http.json(
            relay.url("/api/serverinfo"), user="admin", password="s3cret"
        )
        self.assertEqual(info["client_counts"], 0)

    @async_test
    async def test_no_auth_when_unset(self):
        """Without dashboard_user/pwd, the API needs no credentials."""
        relay = await DashboardRelay(self).start()
        code, _, _ = await Http(self).get(relay.url("/api/serverinfo"))
        self.assertEqual(code, 200)

    @async_test
    async def test_page(self):
        """/ redirects to /static/, which serves the page and its files, none
        of which loads anything from another site."""
        relay = await DashboardRelay(self).start()
        http = Http(self)
        code, headers, _ = await http.get(relay.url("/"))
        self.assertEqual(
            (code, headers.getRawHeaders(b"location")), (301, [b"/static/"])
        )
        code, headers, page = await http.get(relay.url("/static/"))
        self.assertEqual(code, 200)
        self.assertIn(b'<script src="app.js">', page)
        for name in ("app.js", "style.css", "index.html"):
            code, _, body = await http.get(relay.url("/static/" + name))
            self.assertEqual(code, 200, name)
            # no CDN, no external fonts: the only URL is SVG's namespace
            urls = set(re.findall(rb"https?://[^\s\"')]+", body))
            self.assertLessEqual(urls, {b"http://www.w3.org/2000/svg"}, name)
        for path in ("/static/nope.js", "/nope", "/metrics", "/static/../config.py"):
            code, _, _ = await http.get(relay.url(path))
            self.assertEqual(code, 404, path)

    @async_test
    async def test_assets_dir(self):
        """assets_dir replaces the packaged page."""
        assets = self.mktemp()
        os.makedirs(assets)
        with open(os.path.join(assets, "index.html"), "wb") as f:
            f.write(b"<p>custom page</p>")
        relay = await DashboardRelay(self, f"assets_dir = {assets}\n").start()
        code, _, body = await Http(self).get(relay.url("/static/"))
        self.assertEqual((code, body), (200, b"<p>custom page</p>"))

    @async_test
    async def test_tls_mode(self):
        """dashboard_tls_mode serves the API over HTTPS with the configured
        certificate."""
        cert, key = certs.server_certificate(["localhost"]).write_to(
            self.mktemp(), "dashboard"
        )
        relay = await DashboardRelay(
            self,
            "dashboard_tls_mode = true\n"
            f"dashboard_tls_cert_file = {cert}\n"
            f"dashboard_tls_key_file = {key}\n",
        ).start()
        https = Http(self, ca_pem=certs.certificate_authority().cert)
        info = await https.json(relay.url("/api/serverinfo", "https"))
        self.assertEqual(info["version"], FRP_VERSION)

    @async_test
    async def test_bind_failure(self):
        """A dashboard port already taken fails start-up with one line."""
        taken = listen(self, Factory.forProtocol(Protocol))
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\ndashboard_port = 7500\n"
        )
        server = RelayServer(
            config,
            reactor,
            server_tls_options(),
            listen=LOCAL,
            dashboard_listen=f"tcp:{taken}:interface=127.0.0.1",
        )
        with self.assertRaises(SystemExit) as e:
            server.privilegedStartService()
        self.assertIn(
            f"labrelay-server: cannot listen on 127.0.0.1:{taken}", str(e.exception)
        )
        self.assertNotIn("\n", str(e.exception))
        # the bind port, bound before the failure, is released again
        await server._listener.stopService()

    @async_test
    async def test_stop_closes_connections(self):
        """Stopping the server closes open dashboard connections."""
        relay = await DashboardRelay(self).start()
        http = Http(self)
        await http.json(relay.url("/api/serverinfo"))  # a kept-alive conn
        self.assertEqual(len(relay.server.dashboard.tracking.connections), 1)
        await relay.stop()
        self.assertEqual(len(relay.server.dashboard.tracking.connections), 0)
