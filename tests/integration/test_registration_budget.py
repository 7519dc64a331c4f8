# -*- test-case-name: tests.integration.test_registration_budget -*-
"""
The registration budget over real loopback sockets: a control that
pipelines large NewProxy messages (on a TCP connection or a yamux stream)
is paused and resumed, and every answer comes, in order.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from labrelay.mux.session import YamuxSession
from labrelay.protocol import messages
from labrelay.protocol.framing import encode_message
from labrelay.server.vhost import Vhost

from ..support.frp_peer import FrpPeer
from ..support.harness import Relay, async_test, connect_protocol, within
from ..support.registrations import wide


class HeldOverSocketsTests(TestCase):
    """The same over real loopback sockets: the paused connection (a TCP
    connection, or a yamux stream) resumes and every answer comes, in
    order."""

    timeout = 30

    async def pipeline(self, mux: bool):
        relay = await Relay(self, "vhost_http_port = 0\n", mux=mux).start()
        relay.server.vhost = Vhost(relay.server.context)
        peer = FrpPeer()
        if mux:
            session = YamuxSession(is_client=True, clock=reactor, keepalive_interval=0)
            await within(
                TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port).connect(
                    Factory.forProtocol(lambda: session)
                )
            )

            def close():
                closed = session.when_closed()
                session.close()
                return within(closed)

            self.addCleanup(close)
            session.open_stream(peer)
        else:
            await connect_protocol(self, relay.port, peer)
        await peer.log_in()
        peer.send_raw(
            b"".join(
                encode_message(m)
                for m in [wide(n) for n in range(6)] + [messages.Ping()]
            )
        )
        await within(peer.wait_messages(messages.Pong))
        names = [
            type(m).__name__
            for m in peer.messages
            if isinstance(m, (messages.NewProxyResp, messages.Pong))
        ]
        self.assertEqual(names, ["NewProxyResp"] * 6 + ["Pong"])
        self.assertEqual(len(relay.server.vhost.routes), 6000)

    @async_test
    async def test_plain_tcp(self):
        """Without tcp_mux."""
        await self.pipeline(mux=False)

    @async_test
    async def test_yamux_stream(self):
        """With tcp_mux."""
        await self.pipeline(mux=True)
