# -*- test-case-name: tests.integration.test_stcp -*-
"""
stcp in one process: a real server, an owner client with an stcp proxy in
front of an echo backend, and a visitor client listening on a local port;
bytes both ways, with and without tcp_mux, encryption and compression; a
wrong sk refused on both sides while the server keeps serving.
"""

import hashlib
import os

from twisted.trial.unittest import TestCase

from labrelay.client.admin import status_document
from labrelay.server.visitor import SUMMARY

from ..support.dashboard import DashboardRelay, close_user, push
from ..support.harness import (
    Client,
    LogCapture,
    Relay,
    async_test,
    connect_user,
    echo_server,
    within,
)
from ..support.processes import free_port
from ..support.web import Http


def stcp_proxy(name, local_port, sk, **extra):
    lines = [f"[{name}]", "type = stcp", f"sk = {sk}", f"local_port = {local_port}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def stcp_visitor(name, server_name, sk, bind_port, **extra):
    lines = [
        f"[{name}]",
        "role = visitor",
        "type = stcp",
        f"server_name = {server_name}",
        f"sk = {sk}",
        "bind_addr = 127.0.0.1",
        f"bind_port = {bind_port}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class StcpMixin:
    mux = True
    timeout = 60

    async def setup_tunnel(self, proxy_extra=None, visitor_extra=None, sk="s3cret"):
        self.logs = LogCapture(self)
        self.relay = await Relay(self, mux=self.mux).start()
        backend = echo_server(self)
        owner = await Client(
            self,
            self.relay.port,
            stcp_proxy("ssh", backend, "s3cret", **(proxy_extra or {})),
            mux=self.mux,
        ).start()
        await within(owner.client.when_proxy_status("ssh", "running"))
        self.bind_port = free_port()
        visitor = await Client(
            self,
            self.relay.port,
            stcp_visitor(
                "ssh_visitor", "ssh", sk, self.bind_port, **(visitor_extra or {})
            ),
            mux=self.mux,
        ).start()
        await within(visitor.client.first_login)
        return owner, visitor

    async def round_trip(self, size=256 * 1024):
        user = await connect_user(self, self.bind_port)
        payload = os.urandom(size)
        user.transport.write(payload)
        received = await within(user.wait_for(len(payload)), 30)
        self.assertEqual(
            hashlib.sha256(received).hexdigest(), hashlib.sha256(payload).hexdigest()
        )
        return user

    @async_test
    async def test_bytes_both_ways(self):
        """What a user sends to the visitor's port comes back from the
        owner's backend byte-exact; the server counts it on the proxy."""
        await self.setup_tunnel()
        user = await self.round_trip()
        proxy = self.relay.server.context.registry.proxies["ssh"]
        self.assertEqual(proxy.type, "stcp")
        user.transport.loseConnection()
        await within(user.closed)

    @async_test
    async def test_encryption_and_compression(self):
        """The visitor's encryption and compression (keyed by sk) and the
        proxy's own (keyed by the token) in any combination."""
        await self.setup_tunnel(
            proxy_extra={"use_encryption": "true"},
            visitor_extra={"use_encryption": "true", "use_compression": "true"},
        )
        await self.round_trip()

    @async_test
    async def test_compression_only(self):
        await self.setup_tunnel(
            proxy_extra={"use_compression": "true"},
            visitor_extra={"use_compression": "true"},
        )
        await self.round_trip()

    @async_test
    async def test_wrong_sk_refused(self):
        """A visitor with a wrong sk: the server logs why, the visitor
        logs frps's error and closes the user's connection; the server
        keeps serving the right key."""
        owner, visitor = await self.setup_tunnel(sk="wrong")
        mark = self.logs.mark()
        user = await connect_user(self, self.bind_port)
        await within(user.closed, 20)
        self.assertEqual(bytes(user.received), b"")
        server_lines = self.logs.lines(
            "register visitor conn error", "auth failed (wrong sk)", since=mark
        )
        self.assertEqual(len(server_lines), 1, server_lines)
        client_lines = self.logs.lines(
            "visitor [ssh_visitor]: start new visitor connection error: "
            "visitor connection of [ssh] auth failed",
            since=mark,
        )
        self.assertEqual(len(client_lines), 1, client_lines)
        # the server keeps serving: a visitor with the right key gets through
        port = free_port()
        good = await Client(
            self,
            self.relay.port,
            stcp_visitor("good", "ssh", "s3cret", port),
            mux=self.mux,
        ).start()
        await within(good.client.first_login)
        self.bind_port = port
        await self.round_trip(4096)
        self.assertNotIn(SUMMARY, "".join(client_lines))


class StcpMuxTests(StcpMixin, TestCase):
    mux = True


class StcpNoMuxTests(StcpMixin, TestCase):
    mux = False


class StcpStatusTests(TestCase):
    """The dashboard, Prometheus and the client's admin status list stcp
    proxies by their type, without their secret key."""

    timeout = 60

    @async_test
    async def test_listed_by_type(self):
        relay = await DashboardRelay(self, "enable_prometheus = true\n").start()
        backend = echo_server(self)
        owner = await Client(
            self, relay.port, stcp_proxy("ssh", backend, "s3cret-dash")
        ).start()
        await within(owner.client.when_proxy_status("ssh", "running"))
        bind_port = free_port()
        visitor = await Client(
            self, relay.port, stcp_visitor("v", "ssh", "s3cret-dash", bind_port)
        ).start()
        await within(visitor.client.first_login)
        user = await push(self, bind_port, 1000)
        http = Http(self)
        (entry,) = (await http.json(relay.url("/api/proxy/stcp")))["proxies"]
        self.assertEqual(
            (
                entry["name"],
                entry["conf"]["type"],
                entry["status"],
                entry["today_traffic_in"],
                entry["cur_conns"],
            ),
            ("ssh", "stcp", "online", 1000, 1),
        )
        info = await http.json(relay.url("/api/serverinfo"))
        self.assertEqual(info["proxy_type_count"].get("stcp"), 1)
        code, _, body = await http.get(relay.url("/api/proxy/stcp"))
        self.assertNotIn(b"s3cret-dash", body)
        _, _, metrics = await http.get(relay.url("/metrics"))
        self.assertIn(b'frp_server_proxy_counts{type="stcp"} 1.0', metrics)
        status = status_document(owner.client)
        self.assertEqual(
            [(e["name"], e["status"], e["remote_addr"]) for e in status["stcp"]],
            [("ssh", "running", "")],
        )
        await close_user(user, relay)
