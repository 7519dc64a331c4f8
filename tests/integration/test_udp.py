# -*- test-case-name: tests.integration.test_udp -*-
"""
``type = udp`` proxies end to end in one process: a real server and client
on 127.0.0.1 and a real UDP echo service, with and without tcp_mux.
"""

import os

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from labrelay.protocol import messages
from labrelay.protocol.framing import encode_message
from labrelay.udp_packets import address_json

from ..support.harness import Client, LogCapture, Relay, async_test, within
from ..support.udp import udp_echo_server, udp_proxy, udp_user


def sleep(seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class UdpTunnelMixin:
    mux = True
    timeout = 60

    async def tunnel(self, relay_extra="", client_extra="", **proxy_options):
        self.relay = await Relay(self, relay_extra, mux=self.mux).start()
        self.backend_port, self.echo = udp_echo_server(self)
        self.client = await Client(
            self,
            self.relay.port,
            udp_proxy("dns", self.backend_port, **proxy_options),
            client_extra,
            mux=self.mux,
        ).start()
        return await self.client.running("dns")

    def server_proxy(self):
        return self.relay.server.registry.proxies["dns"]

    async def channel_up(self):
        """Wait until the server's proxy holds its work connection."""
        for _ in range(100):
            if self.server_proxy().channel is not None:
                return self.server_proxy().channel
            await sleep(0.05)
        raise AssertionError("the udp proxy never got its work connection")

    @async_test
    async def test_echo_both_directions(self):
        """A datagram reaches the UDP service and its reply comes back."""
        port = await self.tunnel()
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"hello udp"), b"hello udp")

    @async_test
    async def test_several_peers_get_only_their_replies(self):
        """Three users, each answered through its own local socket, and no
        user receives another's replies."""
        port = await self.tunnel()
        users = [udp_user(self) for _ in range(3)]
        for round_ in range(3):
            for index, user in enumerate(users):
                payload = f"user {index} round {round_}".encode()
                self.assertEqual(await user.ask(port, payload), payload)
        for index, user in enumerate(users):
            for data, _ in user.received:
                self.assertTrue(data.startswith(f"user {index} ".encode()), data)
        self.assertEqual(len(set(self.echo.senders)), 3)

    @async_test
    async def test_encryption_and_compression(self):
        port = await self.tunnel(use_encryption="true", use_compression="true")
        user = udp_user(self)
        payload = os.urandom(1000)
        self.assertEqual(await user.ask(port, payload), payload)

    @async_test
    async def test_long_datagram_is_truncated_to_udp_packet_size(self):
        """As frp: a datagram is read into udp_packet_size bytes."""
        port = await self.tunnel(
            relay_extra="udp_packet_size = 600\n", client_extra="udp_packet_size = 600"
        )
        await self.channel_up()
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"a" * 600), b"a" * 600)
        user.transport.write(b"b" * 900, ("127.0.0.1", port))
        reply = await within(user.replies.get(), 10)
        self.assertEqual(reply, b"b" * 600)

    @async_test
    async def test_work_connection_loss_and_recovery(self):
        """The work connection dies; the server takes another and the
        users carry on."""
        port = await self.tunnel()
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"before"), b"before")
        channel = self.server_proxy().channel
        channel.work.transport.abortConnection()
        await sleep(0.2)
        self.assertEqual(await user.ask(port, b"after", tries=20), b"after")
        self.assertIsNot(self.server_proxy().channel, channel)

    @async_test
    async def test_malformed_packet_on_work_connection(self):
        """A UDPPacket with bad base64 closes the work connection; the
        proxy takes another and keeps serving."""
        logs = LogCapture(self)
        port = await self.tunnel()
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"first"), b"first")
        link = self.client.client.udp_links["dns"]
        link._write(
            encode_message(
                messages.UDPPacket(c="!!not base64", r=address_json("127.0.0.1", 9))
            )
        )
        await within(logs.when_logged("not base64"), 10)
        self.assertEqual(await user.ask(port, b"second", tries=20), b"second")

    @async_test
    async def test_reply_to_unknown_address_is_dropped(self):
        """The client cannot make the relay send datagrams to an address
        that never sent the proxy one."""
        logs = LogCapture(self)
        port = await self.tunnel()
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"known"), b"known")
        bystander = udp_user(self)
        where = bystander.transport.getHost()
        link = self.client.client.udp_links["dns"]
        link._write(
            encode_message(
                messages.UDPPacket(
                    c="c3Bvb2Y=", r=address_json("127.0.0.1", where.port)
                )
            )
        )
        await within(logs.when_logged("which sent nothing"), 10)
        self.assertEqual(bystander.received, [])
        self.assertEqual(await user.ask(port, b"still"), b"still")

    @async_test
    async def test_garbage_datagrams_do_not_hurt(self):
        """Empty, random and oversized datagrams pass or are truncated; the
        proxy keeps serving."""
        port = await self.tunnel()
        await self.channel_up()
        noisy = udp_user(self)
        for size in (0, 1, 1499, 1500, 1501, 8000):
            noisy.transport.write(os.urandom(size), ("127.0.0.1", port))
        user = udp_user(self)
        self.assertEqual(await user.ask(port, b"ok"), b"ok")

    @async_test
    async def test_dashboard_lists_udp(self):
        """The server's registry and traffic count the udp proxy."""
        port = await self.tunnel()
        user = udp_user(self)
        await user.ask(port, b"x" * 100)
        proxy = self.server_proxy()
        self.assertEqual(proxy.type, "udp")
        bytes_in, bytes_out = proxy.traffic()
        self.assertGreaterEqual(bytes_in, 100)
        self.assertGreaterEqual(bytes_out, 100)


class UdpTunnelMuxTests(UdpTunnelMixin, TestCase):
    mux = True


class UdpTunnelNoMuxTests(UdpTunnelMixin, TestCase):
    mux = False
