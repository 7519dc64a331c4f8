# -*- test-case-name: tests.test_dashboard -*-
"""
The server dashboard: frp's JSON API routes and field names after real
traffic through real tunnels, labrelay's own routes, basic auth, the page,
TLS mode and the start-up listener; plus unit tests of the traffic
bookkeeping (:mod:`labrelay.server.stats`) with a fake clock.
"""

import base64
import json
import os
import re

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from labrelay import FRP_VERSION, __version__
from labrelay import testcerts
from labrelay.config import ConfigError, parse_server_config
from labrelay.server import stats as stats_module
from labrelay.server.dashboard import STATIC_DIR
from labrelay.server.proxy_base import ProxyBase
from labrelay.server.service import RelayServer
from labrelay.server.stats import BUCKETS, ServerStats
from labrelay.tls import server_tls_options

from .harness import (TOKEN, Client, async_test, connect_user, echo_server,
                      listen, tcp_proxy, within)
from .test_admin import request

LOCAL = "tcp:0:interface=127.0.0.1"
TIME = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d$")

#: frp v0.51's ``conf`` keys of a tcp proxy, in Go's order.
TCP_CONF_KEYS = [
    "name", "type", "use_encryption", "use_compression", "group",
    "group_key", "proxy_protocol_version", "bandwidth_limit",
    "bandwidth_limit_mode", "metas", "local_ip", "local_port", "plugin",
    "PluginParams", "health_check_type", "health_check_timeout_s",
    "health_check_max_failed", "health_check_interval_s",
    "health_check_url", "remote_port"]
SERVERINFO_KEYS = [
    "version", "bind_port", "vhost_http_port", "vhost_https_port",
    "tcpmux_httpconnect_port", "kcp_bind_port", "quic_bind_port",
    "subdomain_host", "max_pool_count", "max_ports_per_client",
    "heart_beat_timeout", "total_traffic_in", "total_traffic_out",
    "cur_conns", "client_counts", "proxy_type_count", "labrelay_version"]
ENTRY_KEYS = ["name", "conf", "today_traffic_in", "today_traffic_out",
              "cur_conns", "last_start_time", "last_close_time", "status"]


# -- helpers shared with test_metrics and test_dashboard_browser --------------

class DashboardRelay:
    """A labrelay server with the dashboard on, every port 0."""

    def __init__(self, testcase, extra="", vhost=False):
        text = ("[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
                f"token = {TOKEN}\ndashboard_port = 7500\n"
                + ("vhost_http_port = 8080\nsubdomain_host = example.test\n"
                   if vhost else "") + extra)
        self.config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(
            self.config, reactor, server_tls_options(), listen=LOCAL,
            vhost_listen=LOCAL if vhost else None, dashboard_listen=LOCAL)
        self.testcase = testcase
        self.vhost = vhost

    async def start(self):
        self.server.startService()
        self.testcase.addCleanup(self.stop)
        self.port = (await within(self.server.when_listening())).getHost().port
        dashboard = await within(self.server.when_dashboard_listening())
        self.dashboard_port = dashboard.getHost().port
        if self.vhost:
            http = await within(self.server.when_vhost_listening())
            self.http_port = http.getHost().port
        return self

    def url(self, path, scheme="http"):
        return f"{scheme}://127.0.0.1:{self.dashboard_port}{path}"

    def stop(self):
        if self.server.running:
            return self.server.stopService()


@implementer(IPolicyForHTTPS)
class _TrustPolicy:
    def __init__(self, ca_pem):
        self._trust = Certificate.loadPEM(ca_pem)

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS("localhost", trustRoot=self._trust)


class Http:
    """An HTTP client whose connections are closed when the test ends."""

    def __init__(self, testcase, ca_pem=None):
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.retryAutomatically = False
        kwargs = {"pool": self.pool}
        if ca_pem is not None:
            kwargs["contextFactory"] = _TrustPolicy(ca_pem)
        self.agent = Agent(reactor, **kwargs)
        testcase.addCleanup(self.pool.closeCachedConnections)

    async def get(self, url, user=None, password=None, method=b"GET"):
        """(status, headers, body) of one request."""
        headers = Headers()
        if user is not None:
            raw = base64.b64encode(f"{user}:{password}".encode())
            headers.addRawHeader(b"authorization", b"Basic " + raw)
        response = await within(self.agent.request(method, url.encode(),
                                                   headers))
        body = await within(readBody(response))
        return response.code, response.headers, body

    async def json(self, url, **kw):
        code, headers, body = await self.get(url, **kw)
        if code != 200:
            raise AssertionError(f"{url}: {code} {body!r}")
        return json.loads(body)


async def tunnel(testcase, relay, name="echo", **extra):
    """A client with one tcp proxy to an echo backend; its remote port."""
    backend = echo_server(testcase)
    client = await Client(testcase, relay.port,
                          tcp_proxy(name, backend, **extra)).start()
    return client, await client.running(name)


async def push(testcase, port, size, user=None):
    """Send *size* bytes through the tunnel at *port* and wait for the echo;
    return the (still open) user connection."""
    user = user or await connect_user(testcase, port)
    already = len(user.received)
    user.transport.write(os.urandom(size))
    await within(user.wait_for(already + size))
    return user


async def close_user(user, relay=None):
    """Close *user*; with *relay*, also wait until the relay has closed
    its side (no proxy has an open connection left)."""
    user.transport.loseConnection()
    await within(user.closed)
    if relay is not None:
        proxies = relay.server.registry.proxies
        await within(wait_until(lambda: all(
            p.active_splices == 0 for p in proxies.values())))


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
        self.assertEqual(list(info), SERVERINFO_KEYS[:11] +
                         ["allow_ports_str"] + SERVERINFO_KEYS[11:])
        self.assertEqual(info["version"], FRP_VERSION)
        self.assertEqual(info["labrelay_version"],
                         f"labrelay {__version__} (speaks frp {FRP_VERSION})")
        self.assertEqual(info["allow_ports_str"], "1000-65000")
        self.assertEqual((info["bind_port"], info["client_counts"],
                          info["proxy_type_count"], info["cur_conns"],
                          info["total_traffic_in"]),
                         (7000, 1, {"tcp": 1}, 0, 0))
        user = await push(self, port, 3000)
        info = await http.json(relay.url("/api/serverinfo"))
        # counted while the connection is still open
        self.assertEqual((info["cur_conns"], info["total_traffic_in"],
                          info["total_traffic_out"]), (1, 3000, 3000))
        await close_user(user)

    @async_test
    async def test_proxy_list(self):
        """/api/proxy/tcp lists the proxy with frp's fields and a conf in
        v0.51's snake_case; today's traffic grows as bytes flow."""
        relay, http, _, port = await self.setup()
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(list(entry), ENTRY_KEYS[:2] + ["client_version"] +
                         ENTRY_KEYS[2:])
        self.assertEqual(list(entry["conf"]), TCP_CONF_KEYS)
        self.assertEqual((entry["name"], entry["conf"]["name"],
                          entry["conf"]["type"], entry["conf"]["remote_port"],
                          entry["client_version"], entry["status"],
                          entry["today_traffic_in"], entry["cur_conns"],
                          entry["last_close_time"]),
                         ("echo", "echo", "tcp", port, FRP_VERSION, "online",
                          0, 0, ""))
        self.assertRegex(entry["last_start_time"], TIME)
        user = await push(self, port, 1000)
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual((entry["today_traffic_in"],
                          entry["today_traffic_out"], entry["cur_conns"]),
                         (1000, 1000, 1))
        await push(self, port, 500, user)
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual(entry["today_traffic_in"], 1500)
        await close_user(user)
        self.assertEqual(
            (await http.json(relay.url("/api/proxy/http")))["proxies"], [])

    @async_test
    async def test_proxy_by_name(self):
        """/api/proxy/{type}/{name} is the entry without client_version;
        an unknown name or the wrong type is 404 'no proxy info found'."""
        relay, http, _, port = await self.setup()
        await close_user(await push(self, port, 700), relay)
        entry = await http.json(relay.url("/api/proxy/tcp/echo"))
        self.assertEqual(list(entry), ENTRY_KEYS)
        self.assertEqual((entry["today_traffic_in"], entry["cur_conns"],
                          entry["status"]), (700, 0, "online"))
        for path in ("/api/proxy/tcp/nope", "/api/proxy/http/echo",
                     "/api/traffic/nope"):
            code, headers, body = await http.get(relay.url(path))
            self.assertEqual((code, body), (404, b"no proxy info found"))
            self.assertEqual(headers.getRawHeaders(b"content-type"),
                             [b"text/plain; charset=utf-8"])
        code, _, _ = await http.get(relay.url("/api/nothing"))
        self.assertEqual(code, 404)
        code, _, _ = await http.get(relay.url("/api/serverinfo"),
                                    method=b"POST")
        self.assertEqual(code, 405)

    @async_test
    async def test_traffic(self):
        """/api/traffic/{name} gives 7 days, today first."""
        relay, http, _, port = await self.setup()
        await close_user(await push(self, port, 1234))
        traffic = await http.json(relay.url("/api/traffic/echo"))
        self.assertEqual(traffic, {"name": "echo",
                                   "traffic_in": [1234, 0, 0, 0, 0, 0, 0],
                                   "traffic_out": [1234, 0, 0, 0, 0, 0, 0]})

    @async_test
    async def test_offline_proxy_stays_listed(self):
        """A proxy whose client left stays listed offline, with its traffic,
        a close time and conf null (as frp)."""
        relay, http, client, port = await self.setup()
        await close_user(await push(self, port, 800), relay)
        await client.stop()
        await within(wait_until(
            lambda: not relay.server.registry.controls))
        (entry,) = (await http.json(relay.url("/api/proxy/tcp")))["proxies"]
        self.assertEqual((entry["status"], entry["conf"],
                          entry["today_traffic_in"], entry["cur_conns"]),
                         ("offline", None, 800, 0))
        self.assertNotIn("client_version", entry)
        self.assertRegex(entry["last_close_time"], TIME)
        info = await http.json(relay.url("/api/serverinfo"))
        self.assertEqual((info["client_counts"], info["proxy_type_count"],
                          info["total_traffic_in"]), (0, {"tcp": 0}, 800))
        self.assertEqual(await http.json(relay.url("/api/clients")),
                         {"clients": []})

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
        self.assertEqual((entry["status"], entry["today_traffic_in"],
                          entry["cur_conns"]), ("offline", 300, 1))
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
            (entry["address"], entry["user"], entry["version"],
             entry["proxies"]),
            (control.peer, "", FRP_VERSION, ["echo"]))
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
        for path in ("/api/serverinfo", "/api/clients", "/api/proxy/tcp",
                     "/api/proxy/tcp/echo", "/api/traffic/echo",
                     "/api/history", "/static/", "/static/app.js",
                     "/static/index.html"):
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
        self.assertEqual((entry["name"], entry["type"],
                          len(entry["traffic_in"]), sum(entry["traffic_in"]),
                          sum(entry["traffic_out"])),
                         ("echo", "tcp", BUCKETS, 4096, 4096))
        self.assertEqual(entry["traffic_in"][-1], 4096)

    @async_test
    async def test_http_proxy(self):
        """An http proxy's entry has the http conf fields, and its requests
        and an upgraded (raw) connection are counted while they run."""
        relay = await DashboardRelay(self, vhost=True).start()
        http = Http(self)
        backend = listen(self, Factory.forProtocol(UpgradeEcho))
        client = await Client(self, relay.port, (
            "[web]\ntype = http\nlocal_ip = 127.0.0.1\n"
            f"local_port = {backend}\ncustom_domains = web.test\n"
            "subdomain = app\nlocations = /,/x\n")).start()
        await within(client.client.when_proxy_status("web", "running"))
        (entry,) = (await http.json(relay.url("/api/proxy/http")))["proxies"]
        conf = entry["conf"]
        self.assertEqual(list(conf)[-4:], ["custom_domains", "subdomain",
                                           "locations", "host_header_rewrite"])
        self.assertEqual((conf["custom_domains"], conf["subdomain"],
                          conf["locations"]), (["web.test"], "app", ["/", "/x"]))
        user = await connect_user(self, relay.http_port)
        request = (b"GET /x HTTP/1.1\r\nHost: web.test\r\nUpgrade: raw\r\n"
                   b"Connection: Upgrade\r\n\r\n")
        user.transport.write(request)
        await within(wait_until(lambda: b"\r\n\r\n" in user.received))
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(entry["cur_conns"], 1)
        first_in = entry["today_traffic_in"]
        self.assertGreaterEqual(first_in, len(request))
        await push(self, None, 5000, user)
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual((entry["cur_conns"], entry["today_traffic_in"]),
                         (1, first_in + 5000))
        await push(self, None, 1000, user)
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual(entry["today_traffic_in"], first_in + 6000)
        await close_user(user)
        proxy = relay.server.registry.proxies["web"]
        await within(wait_until(lambda: proxy.active_splices == 0))
        entry = await http.json(relay.url("/api/proxy/http/web"))
        self.assertEqual((entry["cur_conns"], entry["today_traffic_in"]),
                         (0, first_in + 6000))


class UpgradeEcho(Protocol):
    """An HTTP backend that switches every request to raw echo."""

    HEAD = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\n"
            b"Connection: Upgrade\r\n\r\n")

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


def wait_until(predicate, interval=0.01):
    """A Deferred firing once *predicate()* holds, for states that have
    no event of their own (bound it with :func:`within`; cancelling it
    stops the polling)."""
    def check():
        if predicate():
            loop.stop()

    loop = LoopingCall(check)
    result = defer.Deferred(lambda _: loop.stop() if loop.running else None)
    loop.start(interval).addCallback(
        lambda _: None if result.called else result.callback(None))
    return result


class HostTests(TestCase):
    """The dashboard answers only requests naming it in Host (DNS
    rebinding), and refuses another origin's, on a real socket."""

    timeout = 30

    async def get(self, port, path="/api/clients", host=None, headers=None):
        code, _, body = await request(port, "GET", path, host=host,
                                      headers=headers)
        return code, body

    @async_test
    async def test_foreign_host_refused(self):
        """A Host not naming the dashboard gets 421 on every route,
        /healthz included, and no data; this used to be answered."""
        relay = await DashboardRelay(self).start()
        await tunnel(self, relay)
        port = relay.dashboard_port
        for host in (f"rebind.example:{port}", "rebind.example",
                     f"localhost:{port + 1}", "127.0.0.1", ""):
            for path in ("/api/clients", "/api/serverinfo", "/healthz",
                         "/static/", "/", "/api/proxy/tcp"):
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
            self, "dashboard_allowed_hosts = frps.example.test, "
                  "Other.Example\n").start()
        port = relay.dashboard_port
        for host in (f"localhost:{port}", f"127.0.0.1:{port}",
                     f"[::1]:{port}", "frps.example.test",
                     "frps.example.test:443", f"other.example:{port}"):
            code, body = await self.get(port, host=host)
            self.assertEqual((code, json.loads(body)), (200, {"clients": []}),
                             host)

    @async_test
    async def test_foreign_origin_refused(self):
        """A request whose Origin is another origin gets 403; the
        dashboard's own origin passes, and so does a link followed from
        another site (Sec-Fetch-Site cross-site, no Origin)."""
        relay = await DashboardRelay(self).start()
        port = relay.dashboard_port
        for origin in ("http://evil.example", "null",
                       f"http://localhost:{port + 1}"):
            code, _ = await self.get(port, headers={"Origin": origin})
            self.assertEqual(code, 403, origin)
        for headers in ({"Origin": f"http://127.0.0.1:{port}"},
                        {"Sec-Fetch-Site": "cross-site"}):
            code, _ = await self.get(port, "/static/", headers=headers)
            self.assertEqual(code, 200, headers)

    def test_allowed_hosts_config(self):
        """dashboard_allowed_hosts is a list of names; a scheme or a port
        is a clear error."""
        config = parse_server_config(
            "[common]\ndashboard_port = 7500\n"
            "dashboard_allowed_hosts = a.example, b.example\n")
        self.assertEqual(config.dashboard_allowed_hosts,
                         ("a.example", "b.example"))
        for bad in ("a.example:7500", "http://a.example"):
            with self.assertRaises(ConfigError) as e:
                parse_server_config("[common]\ndashboard_port = 7500\n"
                                    f"dashboard_allowed_hosts = {bad}\n")
            self.assertIn("dashboard_allowed_hosts", str(e.exception))


class AuthAndPageTests(TestCase):
    """Basic auth, the page, /metrics off, TLS mode, the listener."""

    timeout = 60

    @async_test
    async def test_basic_auth(self):
        """With dashboard_user/pwd, every route but /healthz needs them: 401
        with frp's WWW-Authenticate header otherwise."""
        relay = await DashboardRelay(
            self, "dashboard_user = admin\ndashboard_pwd = s3cret\n").start()
        http = Http(self)
        for path in ("/api/serverinfo", "/static/", "/", "/api/proxy/tcp"):
            for creds in ({}, {"user": "admin", "password": "wrong"},
                          {"user": "root", "password": "s3cret"}):
                code, headers, body = await http.get(relay.url(path), **creds)
                self.assertEqual(code, 401, (path, creds))
                self.assertEqual(headers.getRawHeaders(b"www-authenticate"),
                                 [b'Basic realm="Restricted"'])
        code, _, body = await http.get(relay.url("/healthz"))
        self.assertEqual((code, body), (200, b""))
        info = await http.json(relay.url("/api/serverinfo"), user="admin",
                               password="s3cret")
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
        self.assertEqual((code, headers.getRawHeaders(b"location")),
                         (301, [b"/static/"]))
        code, headers, page = await http.get(relay.url("/static/"))
        self.assertEqual(code, 200)
        self.assertIn(b'<script src="app.js">', page)
        for name in ("app.js", "style.css", "index.html"):
            code, _, body = await http.get(relay.url("/static/" + name))
            self.assertEqual(code, 200, name)
            # no CDN, no external fonts: the only URL is SVG's namespace
            urls = set(re.findall(rb"https?://[^\s\"')]+", body))
            self.assertLessEqual(urls, {b"http://www.w3.org/2000/svg"}, name)
        for path in ("/static/nope.js", "/nope", "/metrics",
                     "/static/../config.py"):
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
        cert, key = testcerts.server_certificate(["localhost"]).write_to(
            self.mktemp(), "dashboard")
        relay = await DashboardRelay(
            self, "dashboard_tls_mode = true\n"
            f"dashboard_tls_cert_file = {cert}\n"
            f"dashboard_tls_key_file = {key}\n").start()
        https = Http(self, ca_pem=testcerts.certificate_authority().cert)
        info = await https.json(relay.url("/api/serverinfo", "https"))
        self.assertEqual(info["version"], FRP_VERSION)

    def test_tls_mode_config(self):
        """dashboard_tls_mode needs both files; a bad file is one line at
        start-up."""
        with self.assertRaises(ConfigError) as e:
            parse_server_config("[common]\ndashboard_port = 7500\n"
                                "dashboard_tls_mode = true\n"
                                "dashboard_tls_key_file = k.pem\n")
        self.assertEqual(str(e.exception), "frps.ini: [common] "
                         "dashboard_tls_cert_file: required when "
                         "dashboard_tls_mode is true")
        config = parse_server_config(
            "[common]\ndashboard_port = 7500\ndashboard_tls_mode = true\n"
            "dashboard_tls_cert_file = /nonexistent/c.pem\n"
            "dashboard_tls_key_file = /nonexistent/k.pem\n")
        with self.assertRaises(SystemExit) as e:
            RelayServer(config, reactor, server_tls_options(), listen=LOCAL,
                        dashboard_listen=LOCAL)
        self.assertIn("dashboard_tls_cert_file", str(e.exception))
        self.assertNotIn("\n", str(e.exception))

    def test_config_defaults(self):
        """The dashboard is off by default and listens on 127.0.0.1 (not
        frp's 0.0.0.0); keys that need dashboard_port warn without it."""
        config = parse_server_config("[common]\n")
        self.assertEqual((config.dashboard_port, config.dashboard_addr,
                          config.enable_prometheus), (0, "127.0.0.1", False))
        self.assertIsNone(RelayServer(config, reactor, server_tls_options(),
                                      listen=LOCAL).dashboard)
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nenable_prometheus = true\n")
        self.assertEqual(config.warnings, (
            "frps.ini [common] enable_prometheus: has no effect without "
            "dashboard_port",))

    @async_test
    async def test_bind_failure(self):
        """A dashboard port already taken fails start-up with one line."""
        taken = listen(self, Factory.forProtocol(Protocol))
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\ndashboard_port = 7500\n")
        server = RelayServer(config, reactor, server_tls_options(),
                             listen=LOCAL,
                             dashboard_listen=f"tcp:{taken}:interface=127.0.0.1")
        with self.assertRaises(SystemExit) as e:
            server.privilegedStartService()
        self.assertIn(f"labrelay-server: cannot listen on 127.0.0.1:{taken}",
                      str(e.exception))
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


# -- the bookkeeping, with a fake clock ---------------------------------------

class _Control:
    version = "0.51.3"


class _Proxy:
    """What ServerStats reads of a proxy."""

    def __init__(self, name, type_="tcp"):
        self.name = name
        self.type = type_
        self.control = _Control()
        self.active_splices = 0
        self.moved = [0, 0]

    def traffic(self):
        return tuple(self.moved)


class StatsTests(SynchronousTestCase):
    """Days, buckets, offline proxies and draining connections."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000 * 86400)
        # days of exactly 86400 s, independent of the local time zone
        self.stats = ServerStats(self.clock, day_of=lambda t: int(t // 86400))

    def test_days_roll_over(self):
        """Each day's bytes are kept apart, today first, for 7 days."""
        proxy = _Proxy("a")
        self.stats.proxy_online(proxy)
        for day in range(9):
            proxy.moved[0] += 10 * (day + 1)
            proxy.moved[1] += day
            self.stats.sample()
            self.clock.advance(86400)
        self.clock.advance(-86400)
        entry = self.stats.get("a")
        self.assertEqual(entry.last_days(self.stats.today),
                         ([90, 80, 70, 60, 50, 40, 30], [8, 7, 6, 5, 4, 3, 2]))
        self.assertEqual((entry.total_in, entry.total_out), (450, 36))
        self.assertEqual(self.stats.today_totals(), (90, 8))

    def test_history_buckets(self):
        """Bytes land in the bucket of the sample; a day later they are gone
        from the history."""
        proxy = _Proxy("a")
        self.stats.proxy_online(proxy)
        proxy.moved[0] = 100
        self.stats.sample()
        self.clock.advance(stats_module.BUCKET_SECONDS * 3)
        proxy.moved[0] = 150
        self.stats.sample()
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(len(history), BUCKETS)
        self.assertEqual((history[-4], history[-1], sum(history)),
                         (100, 50, 150))
        self.clock.advance(86400 - stats_module.BUCKET_SECONDS)
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(sum(history), 50)
        self.clock.advance(stats_module.BUCKET_SECONDS * 10)
        history, _ = self.stats.get("a").last_day_history(self.stats.bucket)
        self.assertEqual(sum(history), 0)

    def test_offline_then_forgotten(self):
        """An offline proxy stays listed for 7 days after it closed."""
        proxy = _Proxy("a")
        self.stats.proxy_online(proxy)
        self.stats.proxy_offline(proxy)
        self.assertEqual(self.stats.get("a").status, "offline")
        self.assertEqual(self.stats.type_counts(), {"tcp": 0})
        self.clock.advance(stats_module.FORGET_OFFLINE_SECONDS)
        self.stats.sample()
        self.assertIsNotNone(self.stats.get("a"))
        self.clock.advance(1)
        self.stats.sample()
        self.assertIsNone(self.stats.get("a"))

    def test_draining_and_restart(self):
        """A restarted proxy adds to the same figures, and the old object's
        still-open connection keeps being counted until it ends."""
        old = _Proxy("a")
        self.stats.proxy_online(old)
        old.active_splices = 1
        old.moved = [10, 10]
        self.stats.proxy_offline(old)
        new = _Proxy("a")
        self.stats.proxy_online(new)
        old.moved = [15, 10]
        new.moved = [1, 2]
        self.stats.sample()
        entry = self.stats.get("a")
        self.assertEqual((entry.total_in, entry.total_out,
                          entry.current_connections, entry.status),
                         (16, 12, 1, "online"))
        old.active_splices = 0
        old.moved = [20, 10]
        self.stats.sample()
        old.moved = [99, 99]  # no longer read
        self.stats.sample()
        self.assertEqual((entry.total_in, entry.current_connections),
                         (21, 0))

    def test_type_change_starts_afresh(self):
        """A name coming back with another type starts new figures (frp)."""
        tcp = _Proxy("a")
        self.stats.proxy_online(tcp)
        tcp.moved = [5, 5]
        self.stats.proxy_offline(tcp)
        self.stats.proxy_online(_Proxy("a", "http"))
        entry = self.stats.get("a")
        self.assertEqual((entry.type, entry.total_in), ("http", 0))
        self.assertEqual(self.stats.by_type("tcp"), [])


class _Splice:
    def __init__(self, a_to_b=0, b_to_a=0):
        self.bytes_a_to_b = a_to_b
        self.bytes_b_to_a = b_to_a


class _Message:
    proxy_name = "p"
    use_encryption = use_compression = False


class ProxyTrafficTests(SynchronousTestCase):
    """ProxyBase.traffic reads open splices live, across a protocol
    switch."""

    def proxy(self):
        return ProxyBase(None, None, _Message())

    def test_open_and_closed(self):
        """Open sinks count live; closed ones are folded into the
        totals."""
        proxy = self.proxy()
        splice = _Splice()
        proxy.sink_opened(splice)
        splice.bytes_a_to_b, splice.bytes_b_to_a = 7, 3
        self.assertEqual(proxy.traffic(), (7, 3))
        splice.bytes_a_to_b = 9
        proxy.sink_closed(splice)
        self.assertEqual(proxy.traffic(), (9, 3))

    def test_switched_exchange(self):
        """After an Upgrade, the raw splice that replaced the exchange is
        read; nothing is counted twice."""
        for look_before_close in (True, False):
            proxy = self.proxy()
            exchange = _Splice()
            proxy.sink_opened(exchange)
            exchange.bytes_a_to_b = 100
            self.assertEqual(proxy.traffic(), (100, 0))
            # what VhostConnection.switch_protocols does
            raw = _Splice(5, 6)
            proxy.sink_replaced(exchange, raw)
            if look_before_close:
                self.assertEqual(proxy.traffic(), (105, 6))
            raw.bytes_a_to_b = 50
            proxy.sink_closed(raw)
            self.assertEqual(proxy.traffic(), (150, 6))
            self.assertEqual((proxy.active_splices, len(proxy._open)), (0, 0))
            self.assertEqual(proxy.total_connections, 1)


# -- the packaged page ---------------------------------------------------------

class PackagingTests(SynchronousTestCase):
    """The page is part of the package."""

    def test_static_files_present(self):
        """index.html, app.js and style.css sit in labrelay/server/static."""
        self.assertEqual(sorted(n for n in os.listdir(STATIC_DIR)
                                if not n.startswith(".")),
                         ["app.js", "index.html", "style.css"])
