# -*- test-case-name: tests.integration.test_server_reload -*-
"""
Live reload of the server's config on real loopback sockets: tunnels
across a token change, new dashboard credentials, and SIGHUP.
"""

import os
import signal

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from labrelay.config import load_server_config
from labrelay.sdnotify import Notifier
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

from ..support.config_files import rewrite, write_ini
from ..support.harness import (
    Client,
    LogCapture,
    async_test,
    connect_user,
    echo_server,
    tcp_proxy,
    within,
)
from ..support.web import Http


class LiveTests(TestCase):
    """On real sockets: tunnels across a token change, dashboard
    credentials, SIGHUP."""

    def start_server(self, text, **listen):
        path = write_ini(self, text)
        server = RelayServer(
            load_server_config(path),
            reactor,
            server_tls_options(),
            listen="tcp:0:interface=127.0.0.1",
            config_path=path,
            notifier=Notifier(None),
            **listen,
        )
        server.startService()

        def stop():
            if server.running:
                return server.stopService()

        self.addCleanup(stop)
        return server, path

    @async_test
    async def test_tunnel_survives_token_change(self):
        """An encrypted tunnel whose work connections are signed keeps
        working (open and new connections) after the token changes; a new
        client needs the new token."""
        text = (
            "[common]\nbind_addr = 127.0.0.1\ntoken = first\n"
            "authenticate_new_work_conns = true\n"
        )
        server, path = self.start_server(text)
        port = (await within(server.when_listening())).getHost().port
        backend = echo_server(self)
        client = await Client(
            self,
            port,
            tcp_proxy("enc", backend, use_encryption="true", use_compression="true"),
            extra="authenticate_new_work_conns = true\n",
            token="first",
        ).start()
        remote = await client.running("enc")
        user = await connect_user(self, remote)
        user.transport.write(b"before")
        await within(user.wait_for(6))

        rewrite(path, text.replace("first", "second"))
        self.assertEqual(server.reload().applied, ("token",))
        user.transport.write(b"after")
        self.assertEqual(await within(user.wait_for(11)), b"beforeafter")
        for round_trip in (b"one", b"two"):  # each takes a new work conn
            other = await connect_user(self, remote)
            other.transport.write(round_trip)
            self.assertEqual(await within(other.wait_for(3)), round_trip)

        stale = Client(self, port, "", token="first")
        refused = stale.client.first_login
        await stale.start()
        with self.assertRaises(Exception):
            await within(refused)
        fresh = await Client(self, port, "", token="second").start()
        await within(fresh.client.first_login)

    @async_test
    async def test_dashboard_credentials(self):
        """New dashboard credentials are required at once; the old ones
        are refused."""
        text = (
            "[common]\nbind_addr = 127.0.0.1\ndashboard_port = 7500\n"
            "dashboard_user = admin\ndashboard_pwd = old-pass\n"
        )
        server, path = self.start_server(
            text, dashboard_listen="tcp:0:interface=127.0.0.1"
        )
        dashboard = await within(server.when_dashboard_listening())
        url = f"http://127.0.0.1:{dashboard.getHost().port}/api/serverinfo"
        http = Http(self)
        code, _, _ = await http.get(url, user="admin", password="old-pass")
        self.assertEqual(code, 200)
        rewrite(path, text.replace("old-pass", "new-pass").replace("= admin", "= root"))
        self.assertEqual(server.reload().applied, ("dashboard_user", "dashboard_pwd"))
        code, _, _ = await http.get(url, user="admin", password="old-pass")
        self.assertEqual(code, 401)
        code, _, _ = await http.get(url, user="root", password="new-pass")
        self.assertEqual(code, 200)

    @async_test
    async def test_sighup(self):
        """SIGHUP reloads the file through the reactor, and stopping the
        server puts the previous SIGHUP handler back."""
        previous = signal.getsignal(signal.SIGHUP)
        text = "[common]\nbind_addr = 127.0.0.1\n"
        server, path = self.start_server(text)
        await within(server.when_listening())
        self.assertEqual(signal.getsignal(signal.SIGHUP), server.sighup.on_signal)
        rewrite(path, text + "max_proxies_per_client = 3\n")
        log = LogCapture(self)
        os.kill(os.getpid(), signal.SIGHUP)
        await within(log.when_logged("reload: applied max_proxies_per_client"))
        self.assertEqual(server.config.max_proxies_per_client, 3)
        await server.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)
