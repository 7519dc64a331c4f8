# -*- test-case-name: tests.unit.test_registration_budget -*-
"""
The server's registration budget: a control that pipelines large NewProxy
messages has them handled a window at a time, in order, its connection
paused meanwhile; small registrations never wait.
"""

from twisted.trial.unittest import SynchronousTestCase

from labrelay.protocol import messages
from labrelay.protocol.crypto import StreamEncryptor, derive_key
from labrelay.protocol.framing import encode_message
from labrelay.server.budget import WINDOW, RegistrationBudget

from ..support.fuzz.core import TOKEN
from ..support.fuzz.server import ServerWorld, fixed_run_id, login_frame, server_output
from ..support.registrations import wide


class BudgetTests(SynchronousTestCase):
    def test_window(self):
        """The budget allows work until it is spent, then says how long
        to wait for the next window."""
        from twisted.internet.task import Clock

        clock = Clock()
        budget = RegistrationBudget(clock, per_window=10, window=0.01)
        self.assertEqual(budget.wait(), 0)
        budget.spend(9)
        self.assertEqual(budget.wait(), 0)
        budget.spend(1)
        self.assertAlmostEqual(budget.wait(), 0.01)
        clock.advance(0.004)
        self.assertAlmostEqual(budget.wait(), 0.006)
        clock.advance(0.006)
        self.assertEqual(budget.wait(), 0)


class HeldMessagesTests(SynchronousTestCase):
    """A ServerWorld (RelayServer on a MemoryReactorClock) and one client
    writing encrypted control messages."""

    def setUp(self):
        self.world = ServerWorld(mux=False)
        self.context = fixed_run_id()
        self.context.__enter__()
        self.addCleanup(self.context.__exit__, None, None, None)
        self.connection, self.wire = self.world.connect()
        self.connection.dataReceived(login_frame())
        self.assertIsNotNone(self.connection.control)
        self.encryptor = StreamEncryptor(derive_key(TOKEN))

    def send(self, *items):
        data = b"".join(encode_message(m) for m in items)
        self.connection.dataReceived(self.encryptor.encrypt(data))

    def answers(self):
        return [
            n
            for n in server_output(self.wire.value())
            if n not in ("LoginResp", "ReqWorkConn")
        ]

    def test_pipelined_large_proxies_wait_their_turn(self):
        """Three 1,000-route proxies and a Ping in one read: one is
        registered now, the rest a window later each, in order; the
        connection is paused until they are all handled."""
        self.send(wide(0), wide(1), wide(2), messages.Ping())
        self.assertEqual(self.answers(), ["NewProxyResp"])
        self.assertEqual(self.wire.producerState, "paused")
        self.world.reactor.advance(WINDOW)
        self.assertEqual(self.answers(), ["NewProxyResp"] * 2)
        self.world.reactor.advance(WINDOW)
        self.assertEqual(self.answers(), ["NewProxyResp"] * 3 + ["Pong"])
        self.assertEqual(self.wire.producerState, "producing")
        self.assertEqual(len(self.world.server.vhost.routes), 3000)
        self.world.finish()

    def test_small_proxies_never_wait(self):
        """200 small proxies in one read are all answered at once."""
        self.send(
            *[
                messages.NewProxy(
                    proxy_name=f"s{n}",
                    proxy_type="http",
                    custom_domains=[f"s{n}.example.org"],
                )
                for n in range(200)
            ]
        )
        self.assertEqual(self.answers(), ["NewProxyResp"] * 200)
        self.assertEqual(self.wire.producerState, "producing")
        self.world.finish()

    def test_logout_drops_held_messages(self):
        """A client gone while messages are held: they are dropped, no
        timer is left, and its routes are removed."""
        self.send(wide(0), wide(1), wide(2))
        self.assertEqual(len(self.world.server.vhost.routes), 1000)
        self.world.finish()
        self.assertEqual(len(self.world.server.vhost.routes), 0)
