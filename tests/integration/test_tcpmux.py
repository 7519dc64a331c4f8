"""
The tcpmux HTTP CONNECT port on real loopback sockets: CONNECT requests
routed by host (custom domain, subdomain, wildcard) to echo backends,
frps's answers byte for byte (200, 407, 404), Proxy-Authorization and
route_by_http_user, passthrough, and what is refused (not CONNECT, a head
too slow or too large).
"""

import base64

from twisted.trial.unittest import TestCase

from labrelay.server.tcpmux import CONNECT_OK, PROXY_UNAUTHORIZED
from tests.support.harness import (
    Client,
    async_test,
    echo_server,
    wait_until,
    within,
)
from tests.support.named_ports import NamedRelay, named_proxy, raw_user


def connect(host, user=None, password=None, extra=b""):
    head = f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n".encode()
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode())
        head += b"Proxy-Authorization: Basic " + token + b"\r\n"
    return head + b"\r\n" + extra


async def until(user, size):
    await within(wait_until(lambda: len(user.received) >= size))
    return bytes(user.received)


class TcpMuxThroughTheRelay(TestCase):
    async def relay_with_proxies(self, extra=""):
        relay = await NamedRelay(self, extra).start()
        self.echo = echo_server(self)
        proxies = (
            named_proxy(
                "gpu1",
                "tcpmux",
                self.echo,
                multiplexer="httpconnect",
                custom_domains="gpu1.lab.internal",
            )
            + named_proxy(
                "gpu2",
                "tcpmux",
                self.echo,
                multiplexer="httpconnect",
                subdomain="gpu2",
            )
            + named_proxy(
                "nodes",
                "tcpmux",
                self.echo,
                multiplexer="httpconnect",
                custom_domains="*.nodes.internal",
            )
            + named_proxy(
                "locked",
                "tcpmux",
                self.echo,
                multiplexer="httpconnect",
                custom_domains="locked.internal",
                http_user="alice",
                http_pwd="s3cret",
            )
            + named_proxy(
                "bob-only",
                "tcpmux",
                self.echo,
                multiplexer="httpconnect",
                custom_domains="shared.internal",
                route_by_http_user="bob",
            )
        )
        client = await Client(self, relay.port, proxies).start()
        for name in ("gpu1", "gpu2", "nodes", "locked", "bob-only"):
            state = await within(client.client.when_proxy_status(name, "running"))
            self.assertIn(f":{relay.tcpmux_port}", state.remote_addr)
        return relay

    @async_test
    async def test_connect_is_routed_by_host(self):
        relay = await self.relay_with_proxies()
        for host in (
            "gpu1.lab.internal:22",
            "GPU2.lab.example.test.:22",
            "n7.nodes.internal:2222",
        ):
            user = await raw_user(self, relay.tcpmux_port)
            user.transport.write(connect(host, extra=b"early "))
            user.transport.write(b"bytes")
            expected = CONNECT_OK + b"early bytes"
            self.assertEqual(await until(user, len(expected)), expected)

    @async_test
    async def test_unknown_host_gets_frps_404(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("nobody.internal:22"))
        answer = await within(user.closed)
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer)
        self.assertIn(b"\r\nServer: frp/", answer)

    @async_test
    async def test_credentials(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("locked.internal:22"))
        self.assertEqual(await within(user.closed), PROXY_UNAUTHORIZED)
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("locked.internal:22", "alice", "wrong"))
        self.assertEqual(await within(user.closed, seconds=20), PROXY_UNAUTHORIZED)
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("locked.internal:22", "alice", "s3cret", b"hi"))
        self.assertEqual(await until(user, len(CONNECT_OK) + 2), CONNECT_OK + b"hi")

    @async_test
    async def test_route_by_http_user(self):
        relay = await self.relay_with_proxies()
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("shared.internal:22", "bob", "any", b"x"))
        self.assertEqual(await until(user, len(CONNECT_OK) + 1), CONNECT_OK + b"x")
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("shared.internal:22", "carol", "any"))
        self.assertIn(b" 404 ", await within(user.closed))

    @async_test
    async def test_passthrough_forwards_the_connect_head(self):
        relay = await self.relay_with_proxies("tcpmux_passthrough = true\n")
        user = await raw_user(self, relay.tcpmux_port)
        request = connect("gpu1.lab.internal:22", extra=b"payload")
        user.transport.write(request)
        self.assertEqual(await until(user, len(request)), request)

    @async_test
    async def test_not_connect_is_closed_without_an_answer(self):
        relay = await self.relay_with_proxies()
        for data in (
            b"GET / HTTP/1.1\r\nHost: gpu1.lab.internal\r\n\r\n",
            b"\x16\x03\x01\x00\x05hello",
            b"CONNECT gpu1.lab.internal:22 HTTP/1.1\r\nBad Header\r\n\r\n",
        ):
            user = await raw_user(self, relay.tcpmux_port)
            user.transport.write(data)
            self.assertEqual(await within(user.closed, seconds=2), b"")

    @async_test
    async def test_head_too_large_or_too_slow(self):
        relay = await self.relay_with_proxies()
        relay.tcpmux.timeout = 0.3
        big = await raw_user(self, relay.tcpmux_port)
        big.transport.write(b"CONNECT a:1 HTTP/1.1\r\nX: " + b"y" * 70000)
        self.assertEqual(await within(big.closed, seconds=2), b"")
        slow = await raw_user(self, relay.tcpmux_port)
        slow.transport.write(b"CONNECT gpu1.lab.internal:22 HTTP/1.1\r\n")
        self.assertEqual(await within(slow.closed, seconds=5), b"")
        user = await raw_user(self, relay.tcpmux_port)
        user.transport.write(connect("gpu1.lab.internal:22", extra=b"ok"))
        self.assertEqual(await until(user, len(CONNECT_OK) + 2), CONNECT_OK + b"ok")
        self.assertEqual(dict(relay.tcpmux.pending), {})
