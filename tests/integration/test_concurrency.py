# -*- test-case-name: tests.integration.test_concurrency -*-
"""Many user connections at once through one client."""

import hashlib
import os
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from ..support.harness import (
    Client,
    Relay,
    async_test,
    connect_user,
    echo_server,
    tcp_proxy,
    within,
)

USERS = 500
PAYLOAD = 1024 * 1024


class ConcurrencyMixin:
    mux = True
    timeout = 240
    _log = Logger()

    @async_test
    async def test_500_users_each_echo_1mib(self):
        """500 concurrent users through one client each get their 1 MiB back."""
        relay = await Relay(self, mux=self.mux, extra="max_pool_count = 50\n").start()
        backend = echo_server(self)
        client = await Client(
            self,
            relay.port,
            tcp_proxy("echo", backend),
            mux=self.mux,
            extra="pool_count = 50\n",
        ).start()
        port = await client.running("echo")
        started = time.monotonic()
        users = [await connect_user(self, port) for _ in range(USERS)]
        payloads = [os.urandom(64) * (PAYLOAD // 64) for _ in users]
        for user, payload in zip(users, payloads):
            user.transport.write(payload)
        results = await within(
            defer.gatherResults([user.wait_for(PAYLOAD) for user in users]), 200
        )
        elapsed = time.monotonic() - started
        for payload, received in zip(payloads, results):
            self.assertEqual(len(received), PAYLOAD)
            self.assertEqual(
                hashlib.sha256(received).digest(), hashlib.sha256(payload).digest()
            )
        self._log.info(
            "{users} users x 1 MiB echoed in {seconds:.1f}s (tcp_mux={mux})",
            users=USERS,
            seconds=elapsed,
            mux=self.mux,
        )


class MuxConcurrencyTests(ConcurrencyMixin, TestCase):
    mux = True


class NoMuxConcurrencyTests(ConcurrencyMixin, TestCase):
    mux = False
