# -*- test-case-name: tests.system.test_dashboard_browser -*-
"""
The dashboard page in a real headless browser (Debian's ``chromium``): the
DOM it builds from the JSON API lists the live proxy and the client, and its
numbers change after more traffic.

Skipped when ``/usr/bin/chromium`` is missing (``.ci/run`` installs it; the
test never installs anything).  With ``LABRELAY_SCREENSHOT=1`` the
screenshot test also rewrites ``docs/dashboard.png`` (1280x800).
"""

import os
import shutil
from html.parser import HTMLParser

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from ..support import paths
from ..support.dashboard import DashboardRelay, close_user, push, tunnel
from ..support.harness import (
    Client,
    async_test,
    connect_user,
    echo_server,
    listen,
    tcp_proxy,
    wait_until,
    within,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT = shutil.which("timeout") or "/usr/bin/timeout"
SCREENSHOT = paths.REPO_ROOT.child("docs").child("dashboard.png")
#: Seconds a browser run may take before it is killed.
BROWSER_SECONDS = 60


class PageRows(HTMLParser):
    """The proxy and client rows of a dumped dashboard DOM:
    ``proxies[name][field]`` (raw ``data-value`` numbers, and ``status``)
    and ``clients`` (addresses)."""

    def __init__(self, html):
        super().__init__()
        self.proxies = {}
        self.clients = []
        self._row = None
        self._status = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-proxy" in attrs:
            self._row = self.proxies.setdefault(attrs["data-proxy"], {})
        elif tag == "tr" and "data-client" in attrs:
            self.clients.append(attrs["data-client"])
        elif tag == "td" and self._row is not None and "data-field" in attrs:
            if attrs["data-field"] == "status":
                self._status = True
            else:
                self._row[attrs["data-field"]] = int(attrs["data-value"])

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._status = False

    def handle_data(self, data):
        if self._status and data.strip():
            self._row["status"] = data.strip()


async def browse(testcase, url, *extra):
    """Run headless chromium on *url* (bounded by ``timeout``); return the
    DOM it dumps once the page's scripts have run (*extra* arguments, such
    as ``--screenshot``, replace ``--dump-dom``)."""
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(
            f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
        )
    home = os.path.abspath(testcase.mktemp())
    os.makedirs(home)
    args = [
        "-k",
        "5",
        str(BROWSER_SECONDS),
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={home}",
        "--virtual-time-budget=5000",
        *(extra or ["--dump-dom"]),
        url,
    ]
    env = dict(os.environ, HOME=home)
    out, err, code = await within(
        getProcessOutputAndValue(TIMEOUT, args, env=env, reactor=reactor),
        BROWSER_SECONDS + 15,
    )
    if code != 0:
        raise AssertionError(f"chromium exited {code}: {err[-2000:]!r}")
    return out.decode("utf-8")


class BrowserTests(TestCase):
    """The page as a browser renders it."""

    timeout = 3 * BROWSER_SECONDS

    @async_test
    async def test_page_lists_live_proxy_and_follows_traffic(self):
        """The page lists the client and the online proxy with today's bytes,
        and shows new numbers after more traffic."""
        relay = await DashboardRelay(self).start()
        client, port = await tunnel(self, relay, name="echo")
        await close_user(await push(self, port, 1000), relay)
        html = await browse(self, relay.url("/"))
        page = PageRows(html)
        ((run_id, control),) = relay.server.registry.controls.items()
        self.assertEqual(page.clients, [control.peer])
        self.assertNotIn(run_id, html)
        # the header names what runs, not only the frp version it speaks
        from labrelay import VERSION_TEXT

        self.assertIn(VERSION_TEXT, html)
        self.assertEqual(
            page.proxies,
            {
                "echo": {
                    "status": "online",
                    "cur_conns": 0,
                    "today_traffic_in": 1000,
                    "today_traffic_out": 1000,
                }
            },
        )

        user = await push(self, port, 5000)
        page = PageRows(await browse(self, relay.url("/")))
        self.assertEqual(
            page.proxies["echo"],
            {
                "status": "online",
                "cur_conns": 1,
                "today_traffic_in": 6000,
                "today_traffic_out": 6000,
            },
        )
        await close_user(user, relay)

    @async_test
    async def test_screenshot(self):
        """The page with clients, proxies (one offline) and traffic renders
        to a PNG; with LABRELAY_SCREENSHOT=1 it rewrites docs/dashboard.png."""
        if os.environ.get("LABRELAY_SCREENSHOT") == "1":
            screenshot = SCREENSHOT
        else:
            screenshot = FilePath(self.mktemp()).child("dashboard.png")
        relay = await DashboardRelay(self, vhost=True).start()
        backend = echo_server(self)
        alice = await Client(
            self,
            relay.port,
            tcp_proxy("ssh", backend) + tcp_proxy("postgres", backend),
            extra="user = alice\n",
        ).start()
        ssh = await alice.running("alice.ssh")
        postgres = await alice.running("alice.postgres")
        page = Resource()
        page.putChild(b"", Data(b"<p>notebook</p>\n" * 4000, "text/html"))
        web = listen(self, Site(page))
        bob = await Client(
            self,
            relay.port,
            (
                "[web]\ntype = http\nlocal_ip = 127.0.0.1\n"
                f"local_port = {web}\nsubdomain = notebook\n"
            ),
            extra="user = bob\n",
        ).start()
        await within(bob.client.when_proxy_status("bob.web", "running"))
        for _ in range(3):
            user = await connect_user(self, relay.http_port)
            user.transport.write(
                b"GET / HTTP/1.1\r\nHost: notebook."
                b"example.test\r\nConnection: close\r\n\r\n"
            )
            await within(user.closed)
        old = await Client(
            self, relay.port, tcp_proxy("legacy", backend), extra="user = carol\n"
        ).start()
        legacy = await old.running("carol.legacy")
        await close_user(await push(self, legacy, 48 * 1024), relay)
        await old.stop()
        await within(
            wait_until(lambda: "carol.legacy" not in relay.server.registry.proxies)
        )
        await close_user(await push(self, ssh, 300 * 1024), relay)
        open_user = await push(self, postgres, 2 * 1024 * 1024)
        screenshot.parent().makedirs(ignoreExistingDirectory=True)
        await browse(
            self,
            relay.url("/"),
            f"--screenshot={screenshot.path}",
            "--window-size=1280,800",
            "--hide-scrollbars",
        )
        self.assertTrue(screenshot.exists())
        with open(screenshot.path, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        width, height = (
            int.from_bytes(head[16:20], "big"),
            int.from_bytes(head[20:24], "big"),
        )
        self.assertEqual((width, height), (1280, 800))
        await close_user(open_user, relay)
