# -*- test-case-name: tests.integration.test_yamux_session -*-
"""
yamux sessions over a real loopback socket: twenty echo streams at once.
"""

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.trial.unittest import TestCase

from labrelay.mux.session import YamuxSession


class _Echo(protocol.Protocol):
    """Writes back whatever arrives."""

    def dataReceived(self, data):
        self.transport.write(data)


class _Pinger(protocol.Protocol):
    """Sends a payload, expects it back, then closes; `done` fires with what came back."""

    def __init__(self, payload):
        self.payload = payload
        self.chunks = []
        self.size = 0
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.payload)

    def dataReceived(self, data):
        self.chunks.append(data)
        self.size += len(data)
        if self.size >= len(self.payload):
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.chunks))


class _ClientSession(YamuxSession):
    """A session whose `transport_lost` fires when its TCP connection is gone."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transport_lost = defer.Deferred()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.transport_lost.callback(None)


class LoopbackTests(TestCase):
    """One real TCP session on 127.0.0.1."""

    timeout = 60

    @defer.inlineCallbacks
    def test_twenty_echo_streams(self):
        """20 concurrent streams each echo 1 MiB byte-exact through a real socket."""
        servers = []

        def make_server():
            session = YamuxSession(
                is_client=False, clock=reactor, accept_stream=lambda s: _Echo()
            )
            servers.append(session)
            return session

        port = reactor.listenTCP(
            0, protocol.Factory.forProtocol(make_server), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        client = _ClientSession(is_client=True, clock=reactor)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield connectProtocol(endpoint, client)
        payloads = [bytes([i]) * 1000 + bytes(range(256)) * 4096 for i in range(20)]
        pingers = [_Pinger(p) for p in payloads]
        for p in pingers:
            client.open_stream(p)
        results = yield defer.gatherResults([p.done for p in pingers]).addTimeout(
            30, reactor
        )
        self.assertEqual(results, payloads)
        self.assertEqual(client.streams_open, 0)
        server_closed = servers[0].when_closed()
        client.close()
        yield client.transport_lost
        reason = yield server_closed
        self.assertIsInstance(reason, ConnectionDone)
