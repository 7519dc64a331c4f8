# -*- test-case-name: tests.integration.test_sdnotify -*-
"""
systemd readiness notifications (labrelay.sdnotify): the datagrams a
Notifier sends, READY from an in-process server once every listener
listens and from a client after its first login, RELOADING/READY around a
server reload, STOPPING, and silence without ``$NOTIFY_SOCKET``
(tests.system.test_sdnotify runs a real ``twistd -n labrelay-server``).

The fake ``$NOTIFY_SOCKET`` is a unix datagram socket bound in a short
temporary directory (socket paths are limited to about 100 bytes) and
read by the test.
"""

import os
import signal
import socket
import time

from twisted.internet import reactor
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from labrelay.client.service import RelayClient
from labrelay.client_tap import build_endpoint
from labrelay.config import (
    ConfigError,
    load_client_config,
    load_server_config,
    parse_server_config,
)
from labrelay.sdnotify import Notifier
from labrelay.server.service import RelayServer
from labrelay.tls import server_tls_options

from ..support.harness import TOKEN, Client, LogCapture, Relay, async_test, within
from ..support.processes import write_config
from ..support.systemd import FakeSystemd, short_dir

LOCAL = "tcp:0:interface=127.0.0.1"


def bound_socket(testcase, address):
    """A unix datagram socket bound to *address*, closed after the test."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    testcase.addCleanup(sock.close)
    sock.bind(address)
    sock.setblocking(False)
    return sock


class NotifierTests(SynchronousTestCase):
    """What a Notifier sends, and when it sends nothing."""

    def test_path_socket(self):
        """READY=1 and a one-line STATUS reach a socket given by path."""
        path = os.path.join(short_dir(self), "notify")
        sock = bound_socket(self, path)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
        self.assertTrue(notifier.ready("up\nand running"))
        self.assertEqual(sock.recv(4096), b"READY=1\nSTATUS=up and running")

    def test_abstract_namespace(self):
        """An address starting with '@' is in the abstract namespace."""
        name = f"labrelay-test-{os.getpid()}-{id(self)}"
        sock = bound_socket(self, "\0" + name)
        self.assertTrue(Notifier("@" + name).stopping())
        self.assertEqual(sock.recv(4096), b"STOPPING=1")

    def test_reloading_carries_monotonic_time(self):
        """RELOADING=1 comes with MONOTONIC_USEC, the monotonic clock now."""
        path = os.path.join(short_dir(self), "notify")
        sock = bound_socket(self, path)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        Notifier(path).reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = sock.recv(4096).decode().split("\n")
        self.assertEqual(first, "RELOADING=1")
        key, value = second.split("=")
        self.assertEqual(key, "MONOTONIC_USEC")
        self.assertTrue(before <= int(value) <= after)

    def test_unreachable_socket_logged_once(self):
        """A socket that is not there: no exception, one warning."""
        log = LogCapture(self)
        notifier = Notifier(os.path.join(short_dir(self), "missing"))
        self.assertFalse(notifier.ready())
        self.assertFalse(notifier.stopping())
        self.assertEqual(
            len(log.lines("cannot notify systemd", min_level=LogLevel.warn)), 1
        )


class ServiceTests(TestCase):
    """In-process servers and clients talking to a fake systemd."""

    @async_test
    async def test_server_ready_when_all_listening(self):
        """READY=1 arrives once the bind, vhost and dashboard ports listen,
        and its STATUS names the three ports."""
        systemd = FakeSystemd(self)
        config = parse_server_config(
            "[common]\nbind_addr = 127.0.0.1\nvhost_http_port = 8080\n"
            "dashboard_port = 7500\n"
        )
        server = RelayServer(
            config,
            reactor,
            server_tls_options(),
            listen=LOCAL,
            vhost_listen=LOCAL,
            dashboard_listen=LOCAL,
            notifier=Notifier(systemd.path),
        )
        server.startService()
        self.addCleanup(server.stopService)
        message = await systemd.next()
        ports = [
            (await within(d)).getHost().port
            for d in (
                server.when_listening(),
                server.when_vhost_listening(),
                server.when_dashboard_listening(),
            )
        ]
        self.assertEqual(
            message,
            "READY=1\nSTATUS=listening: bind port %d, "
            "vhost port %d, dashboard %d" % tuple(ports),
        )
        await within(server.when_ready())

    @async_test
    async def test_server_reload_and_stop(self):
        """A reload is RELOADING=1 then READY=1 (also when the file is bad),
        and stopping is STOPPING=1."""
        systemd = FakeSystemd(self)
        path = write_config(self, "frps.ini", "[common]\n")
        server = RelayServer(
            load_server_config(path),
            reactor,
            server_tls_options(),
            listen=LOCAL,
            config_path=path,
            notifier=Notifier(systemd.path),
        )
        server.startService()
        self.addCleanup(lambda: server.stopService() if server.running else None)
        self.assertTrue((await systemd.next()).startswith("READY=1\n"))

        with open(path, "a") as f:
            f.write("max_pool_count = 2\n")
        server.reload()
        self.assertTrue(
            (await systemd.next()).startswith("RELOADING=1\nMONOTONIC_USEC=")
        )
        self.assertEqual(await systemd.next(), "READY=1\nSTATUS=reloaded")

        with open(path, "a") as f:
            f.write("max_pool_count = x\n")
        with self.assertRaises(ConfigError):
            server.reload()
        self.assertTrue((await systemd.next()).startswith("RELOADING=1\n"))
        ready = await systemd.next()
        self.assertTrue(
            ready.startswith("READY=1\nSTATUS=reload failed, nothing changed: "), ready
        )

        await server.stopService()
        self.assertEqual(await systemd.next(), "STOPPING=1\nSTATUS=stopping")

    @async_test
    async def test_client_ready_after_login(self):
        """A client's first datagram is READY=1, sent once it has logged
        in, naming the server and its run_id."""
        systemd = FakeSystemd(self)
        relay = await Relay(self).start()
        client = Client(self, relay.port)
        client.client.notifier = Notifier(systemd.path)
        await client.start()
        message = await systemd.next()
        self.assertTrue(client.client.first_login.called)
        self.assertEqual(
            message,
            (
                f"READY=1\nSTATUS=logged in to 127.0.0.1:{relay.port}, run_id "
                f"{client.client.run_id}"
            ),
        )
        await client.stop()
        self.assertEqual(await systemd.next(), "STOPPING=1\nSTATUS=stopping")

    @async_test
    async def test_client_sighup_reload(self):
        """A client reloading on SIGHUP after its login sends RELOADING=1
        then READY=1."""
        systemd = FakeSystemd(self)
        relay = await Relay(self).start()
        path = write_config(
            self,
            "frpc.ini",
            (
                f"[common]\nserver_addr = 127.0.0.1\nserver_port = {relay.port}"
                f"\ntoken = {TOKEN}\ntls_enable = false\n"
            ),
        )
        config = load_client_config(path)
        client = RelayClient(
            config,
            reactor,
            build_endpoint(reactor, config, None),
            exit_on_fatal=False,
            config_path=path,
            notifier=Notifier(systemd.path),
        )
        client.startService()
        self.addCleanup(client.stopService)
        self.assertTrue((await systemd.next()).startswith("READY=1\n"))
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertTrue((await systemd.next()).startswith("RELOADING=1\n"))
        self.assertEqual(await systemd.next(), "READY=1\nSTATUS=reloaded")

    @async_test
    async def test_client_status_while_login_fails(self):
        """A client whose logins fail (login_fail_exit = false) shows why in
        STATUS and is not READY."""
        systemd = FakeSystemd(self)
        relay = await Relay(self).start()
        client = Client(
            self, relay.port, token="wrong", extra="login_fail_exit = false\n"
        )
        client.client.notifier = Notifier(systemd.path)
        await client.start()
        message = await systemd.next()
        self.assertTrue(message.startswith("STATUS=login to server failed: "), message)
        self.assertTrue(message.endswith("; retrying"), message)
        self.assertEqual(client.client.logins, 0)

    @async_test
    async def test_silent_without_notify_socket(self):
        """Built without a notifier and with NOTIFY_SOCKET unset, a server
        and a client start, log in and stop sending nothing."""
        saved = os.environ.pop("NOTIFY_SOCKET", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "NOTIFY_SOCKET", saved)
        relay = await Relay(self).start()
        client = await Client(self, relay.port).start()
        await within(client.client.first_login)
        await client.stop()
        await relay.stop()
        for notifier in (relay.server.notifier, client.client.notifier):
            self.assertFalse(notifier.enabled)
            self.assertEqual(notifier.sent, [])
