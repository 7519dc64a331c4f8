# -*- test-case-name: tests.integration.test_tunnel -*-
"""
End-to-end tunnels in one process: a real server and real clients on
127.0.0.1, with and without tcp_mux, TLS on and off.
"""

import hashlib
import os

from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import TestCase

from labrelay.errors import LoginRefused

from ..support.harness import (
    Client,
    Relay,
    async_test,
    connect_user,
    echo_server,
    tcp_proxy,
    within,
)


class TunnelMixin:
    mux = True
    tls = False
    timeout = 60

    async def relay(self, extra=""):
        return await Relay(self, extra, mux=self.mux).start()

    async def client(self, relay, proxies, extra="", **kw):
        return await Client(
            self, relay.port, proxies, extra, mux=self.mux, tls=self.tls, **kw
        ).start()

    async def echo_tunnel(self, **proxy_options):
        relay = await self.relay()
        backend = echo_server(self)
        client = await self.client(relay, tcp_proxy("echo", backend, **proxy_options))
        port = await client.running("echo")
        return relay, client, port

    @async_test
    async def test_echo_byte_exact(self):
        """1 MiB sent through the tunnel comes back byte-exact."""
        _, _, port = await self.echo_tunnel()
        user = await connect_user(self, port)
        payload = os.urandom(1024 * 1024)
        user.transport.write(payload)
        received = await within(user.wait_for(len(payload)), 30)
        self.assertEqual(
            hashlib.sha256(received).hexdigest(), hashlib.sha256(payload).hexdigest()
        )

    @async_test
    async def test_encryption_and_compression(self):
        """use_encryption + use_compression relay byte-exact."""
        _, _, port = await self.echo_tunnel(
            use_encryption="true", use_compression="true"
        )
        user = await connect_user(self, port)
        payload = b"compressible " * 50000 + os.urandom(100000)
        user.transport.write(payload)
        received = await within(user.wait_for(len(payload)), 30)
        self.assertEqual(received, payload)

    @async_test
    async def test_half_close_keeps_reply(self):
        """A user that half-closes after sending still gets the whole reply."""
        _, _, port = await self.echo_tunnel()
        user = await connect_user(self, port)
        payload = os.urandom(300000)
        user.transport.write(payload)
        user.transport.loseWriteConnection()
        received = await within(user.closed, 30)
        self.assertEqual(received, payload)

    @async_test
    async def test_two_clients_one_server(self):
        """Two clients with their own remote ports share one server."""
        relay = await self.relay()
        ports = []
        for name in ("gpu-c", "gpu-d"):
            backend = echo_server(self)
            client = await self.client(
                relay, tcp_proxy(name, backend), extra=f"user = {name}\n"
            )
            ports.append(await client.running(f"{name}.{name}"))
        self.assertNotEqual(ports[0], ports[1])
        for port in ports:
            user = await connect_user(self, port)
            user.transport.write(b"ping %d" % port)
            self.assertEqual(await within(user.wait_for(9)), b"ping %d" % port)

    @async_test
    async def test_port_conflict_keeps_other_proxies(self):
        """A proxy refused for its port leaves the client's other proxies working."""
        relay = await self.relay()
        backend = echo_server(self)
        first = await self.client(
            relay, tcp_proxy("first", backend), extra="user = a\n"
        )
        taken = await first.running("a.first")
        second = await self.client(
            relay,
            tcp_proxy("clash", backend, remote_port=taken) + tcp_proxy("fine", backend),
            extra="user = b\n",
        )
        state = await within(second.client.when_proxy_status("b.clash", "start error"))
        self.assertEqual(state.error, "port already used")
        port = await second.running("b.fine")
        user = await connect_user(self, port)
        user.transport.write(b"still works")
        self.assertEqual(await within(user.wait_for(11)), b"still works")

    @async_test
    async def test_disallowed_port(self):
        """A remote_port outside allow_ports is refused with frp's error."""
        relay = await self.relay("allow_ports = 20000-20010\n")
        backend = echo_server(self)
        client = await self.client(relay, tcp_proxy("x", backend, remote_port=30000))
        state = await within(client.client.when_proxy_status("x", "start error"))
        self.assertEqual(state.error, "port not allowed")

    @async_test
    async def test_client_gone_closes_its_port(self):
        """When a client goes away its remote port stops listening at once."""
        relay = await self.relay()
        backend = echo_server(self)
        client = await self.client(relay, tcp_proxy("gone", backend))
        port = await client.running("gone")
        await within(client.client.stopService())
        # the server notices the closed control connection
        for _ in range(200):
            if not relay.server.registry.controls:
                break
            await within(_tick(), 1)
        self.assertEqual(relay.server.registry.controls, {})
        with self.assertRaises(ConnectionRefusedError):
            await connect_user(self, port)

    @async_test
    async def test_wrong_token_refused(self):
        """A wrong token is refused with frp's error text."""
        relay = await self.relay()
        client = Client(self, relay.port, "", mux=self.mux, tls=self.tls, token="wrong")
        d = client.client.first_login
        await client.start()
        with self.assertRaises(LoginRefused) as caught:
            await within(d)
        self.assertIn("token in login doesn't match", str(caught.exception))
        self.assertEqual(relay.server.registry.controls, {})

    @async_test
    async def test_reconnect_after_server_restart(self):
        """The client logs in again and re-registers its proxies."""
        relay = await self.relay()
        backend = echo_server(self)
        client = await self.client(relay, tcp_proxy("back", backend))
        port = await client.running("back")
        run_id = client.client.run_id
        await within(relay.server.stopService())
        # a new server on the same port
        relay2 = Relay(self, mux=self.mux)
        relay2.server._listener.endpoint._port = relay.port
        await relay2.start()
        self.assertEqual(relay2.port, relay.port)
        await within(client.client.when_proxy_status("back", "wait start"))
        port2 = await client.running("back")
        self.assertEqual(client.client.run_id, run_id)
        user = await connect_user(self, port2)
        user.transport.write(b"again")
        self.assertEqual(await within(user.wait_for(5)), b"again")
        del port


class HeartbeatTests(TestCase):
    """Heartbeats find dead links on both sides (tcp_mux off, as frp)."""

    timeout = 30

    @async_test
    async def test_client_reconnects_when_pongs_stop(self):
        """A server that stops answering Pings is left and logged in again."""
        from labrelay.server.control import ControlSession

        relay = await Relay(self, mux=False).start()
        client = await Client(
            self,
            relay.port,
            "",
            mux=False,
            extra="heartbeat_interval = 1\nheartbeat_timeout = 2\n",
        ).start()
        await within(client.client.first_login)
        self.patch(ControlSession, "_ping", lambda self, message: None)
        for _ in range(600):
            if client.client.logins >= 2:
                break
            await within(_tick(), 1)
        self.assertGreaterEqual(client.client.logins, 2)

    @async_test
    async def test_server_drops_silent_client(self):
        """A client that sends no Ping is closed after heartbeat_timeout."""
        relay = await Relay(self, "heartbeat_timeout = 1\n", mux=False).start()
        client = await Client(
            self, relay.port, "", mux=False, extra="heartbeat_interval = 0\n"
        ).start()
        await within(client.client.first_login)
        run_id = client.client.run_id
        control = relay.server.registry.controls[run_id]
        for _ in range(600):
            if control.closed:
                break
            await within(_tick(), 1)
        self.assertTrue(control.closed)


class RunIdTests(TestCase):
    """A Login with a known run_id replaces the old control (frp's reconnect)."""

    timeout = 30

    @async_test
    async def test_same_run_id_replaces_old_control(self):
        """The old control and its proxies go; the new login takes the names."""
        relay = await Relay(self).start()
        backend = echo_server(self)
        first = await Client(self, relay.port, tcp_proxy("svc", backend)).start()
        await first.running("svc")
        run_id = first.client.run_id
        old = relay.server.registry.controls[run_id]
        # keep the replaced client from coming straight back (20 s backoff)
        first.client._login_failures = 100
        second = Client(self, relay.port, tcp_proxy("svc", backend))
        second.client.run_id = run_id  # as a reconnecting client sends it
        await second.start()
        port = await second.running("svc")
        self.assertTrue(old.closed)
        self.assertIsNot(relay.server.registry.controls[run_id], old)
        user = await connect_user(self, port)
        user.transport.write(b"new owner")
        self.assertEqual(await within(user.wait_for(9)), b"new owner")
        await within(first.client.stopService())


class KeepAliveTests(TestCase):
    """tcp_keepalive and dial_server_keepalive reach the sockets."""

    timeout = 30

    @async_test
    async def test_keepalive_idle_times(self):
        """Both ends of the client's link get the configured keep-alive idle."""
        import socket

        from labrelay.peers import raw_socket

        relay = await Relay(self, "tcp_keepalive = 123\n").start()
        client = await Client(
            self, relay.port, "", extra="dial_server_keepalive = 45\n"
        ).start()
        await within(client.client.first_login)
        [session] = relay.server.sessions
        server_side = raw_socket(session.transport)
        client_side = raw_socket(client.client.control.transport)
        idle = (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        self.assertEqual(server_side.getsockopt(*idle), 123)
        self.assertEqual(client_side.getsockopt(*idle), 45)
        self.assertEqual(
            client_side.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1
        )


def _tick():
    from twisted.internet.task import deferLater

    return deferLater(reactor, 0.01, lambda: None)


class PlainNoMuxTests(TunnelMixin, TestCase):
    mux = False


class PlainMuxTests(TunnelMixin, TestCase):
    mux = True


class TcpMuxMismatchTests(TestCase):
    """A tcp_mux mismatch is a clear login error, not a hang."""

    timeout = 30

    async def mismatch(self, server_mux, client_mux):
        relay = await Relay(self, mux=server_mux).start()
        client = Client(self, relay.port, "", mux=client_mux)
        first = client.client.first_login
        await client.start()
        with self.assertRaises(LoginRefused) as caught:
            await within(first)
        return str(caught.exception)

    @async_test
    async def test_plain_client_on_mux_server(self):
        """A tcp_mux = false client is told the server has tcp_mux = true."""
        error = await self.mismatch(server_mux=True, client_mux=False)
        self.assertIn("server has tcp_mux = true", error)

    @async_test
    async def test_mux_client_on_plain_server(self):
        """A tcp_mux = true client is told the server has tcp_mux = false."""
        error = await self.mismatch(server_mux=False, client_mux=True)
        self.assertIn("server has tcp_mux = false", error)
