# -*- test-case-name: tests.integration.test_writethrough -*-
"""Tests for labrelay.writethrough: immediate sends on real TCP sockets."""

import os

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from labrelay.writethrough import write_now

from ..support.harness import async_test, within


class Collect(Protocol):
    def __init__(self):
        self.data = bytearray()
        self.size_waiters = []

    def dataReceived(self, data):
        self.data += data
        for size, d in list(self.size_waiters):
            if len(self.data) >= size:
                self.size_waiters.remove((size, d))
                d.callback(bytes(self.data))

    def wait_for(self, size):
        if len(self.data) >= size:
            return defer.succeed(bytes(self.data))
        d = defer.Deferred()
        self.size_waiters.append((size, d))
        return d


class WriteNowTests(TestCase):
    timeout = 20

    async def pair(self):
        server = Collect()
        port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: server), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        client = await within(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
                Factory.forProtocol(Protocol)
            )
        )
        self.addCleanup(client.transport.abortConnection)
        return client, server

    @async_test
    async def test_small_write_leaves_nothing_queued(self):
        """An idle socket takes a small write at once: Twisted queues nothing."""
        client, server = await self.pair()
        write_now(client.transport, b"hello")
        self.assertEqual(client.transport._tempDataLen, 0)
        self.assertEqual(await within(server.wait_for(5)), b"hello")

    @async_test
    async def test_large_writes_keep_order(self):
        """When the kernel takes only part, the rest is queued in order."""
        client, server = await self.pair()
        chunks = [os.urandom(1024 * 1024) for _ in range(16)]
        for chunk in chunks:
            write_now(client.transport, chunk)
        self.assertGreater(
            client.transport._tempDataLen + len(client.transport.dataBuffer), 0
        )
        received = await within(server.wait_for(16 * 1024 * 1024), 15)
        self.assertEqual(received, b"".join(chunks))
