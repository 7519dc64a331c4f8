"""
A labrelay server with its dashboard on, in this process (every port 0),
and tunnels to push traffic through while the dashboard counts it.
"""

import os

from twisted.internet import reactor

from labrelay.config import parse_server_config
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

from .harness import (
    TOKEN,
    Client,
    connect_user,
    echo_server,
    tcp_proxy,
    wait_until,
    within,
)

LOCAL = "tcp:0:interface=127.0.0.1"


class DashboardRelay:
    """A labrelay server with the dashboard on, every port 0."""

    def __init__(self, testcase, extra="", vhost=False):
        text = (
            "[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
            f"token = {TOKEN}\ndashboard_port = 7500\n"
            + (
                "vhost_http_port = 8080\nsubdomain_host = example.test\n"
                if vhost
                else ""
            )
            + extra
        )
        self.config = parse_server_config(text, source="frps.ini")
        self.server = RelayServer(
            self.config,
            reactor,
            server_tls_options(),
            listen=LOCAL,
            vhost_listen=LOCAL if vhost else None,
            dashboard_listen=LOCAL,
        )
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


async def tunnel(testcase, relay, name="echo", **extra):
    """A client with one tcp proxy to an echo backend; its remote port."""
    backend = echo_server(testcase)
    client = await Client(
        testcase, relay.port, tcp_proxy(name, backend, **extra)
    ).start()
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
        await within(
            wait_until(lambda: all(p.active_splices == 0 for p in proxies.values()))
        )
