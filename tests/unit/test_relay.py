# -*- test-case-name: tests.unit.test_relay -*-
"""Tests for labrelay.relay: producer wiring, codecs, half-close, teardown."""

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from labrelay.protocol.codec import PayloadCodec
from labrelay.relay import RelayedProtocol, Splice, supports_half_close


class HalfCloseTransport(StringTransport):
    """A StringTransport that records a shut write half."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


class End(RelayedProtocol):
    ended = None

    def connection_ended(self, reason):
        self.ended = reason


def connected(transport_class=HalfCloseTransport):
    protocol = End()
    protocol.makeConnection(transport_class())
    return protocol


class SpliceTests(SynchronousTestCase):
    def setUp(self):
        self.a = connected()
        self.b = connected()
        self.closed = []
        self.a.transport.pauseProducing()  # as a fresh user connection is
        self.splice = Splice(self.a, self.b, on_close=self.closed.append)

    def test_producers_cross_registered(self):
        """Each transport is the streaming producer of the other one."""
        self.splice.start()
        self.assertIs(self.a.transport.producer, self.b.transport)
        self.assertIs(self.b.transport.producer, self.a.transport)
        self.assertTrue(self.a.transport.streaming)
        self.assertEqual(self.a.transport.producerState, "producing")

    def test_backpressure_pauses_the_source(self):
        """When b cannot take more, a stops being read, and resumes later."""
        self.splice.start()
        self.b.transport.producer.pauseProducing()
        self.assertEqual(self.a.transport.producerState, "paused")
        self.b.transport.producer.resumeProducing()
        self.assertEqual(self.a.transport.producerState, "producing")

    def test_bytes_both_ways_and_pending_first(self):
        """Pending bytes are relayed first, then everything else, counted."""
        self.splice.start(a_pending=b"early ", b_pending=b"hello ")
        self.a.dataReceived(b"late")
        self.b.dataReceived(b"world")
        self.assertEqual(self.b.transport.value(), b"early late")
        self.assertEqual(self.a.transport.value(), b"hello world")
        self.assertEqual(self.splice.bytes_a_to_b, 10)
        self.assertEqual(self.splice.bytes_b_to_a, 11)

    def test_half_close_keeps_other_direction(self):
        """EOF from a shuts b's write half; b->a keeps flowing; both EOF closes."""
        self.splice.start()
        self.a.readConnectionLost()
        self.assertTrue(self.b.transport.write_closed)
        self.assertIsNone(self.b.transport.producer)
        self.assertFalse(self.a.transport.disconnecting)
        self.b.dataReceived(b"reply")
        self.assertEqual(self.a.transport.value(), b"reply")
        self.b.readConnectionLost()
        self.assertTrue(self.a.transport.disconnecting)
        self.assertTrue(self.b.transport.disconnecting)

    def test_connection_lost_closes_other_side(self):
        """When one side is lost the other is closed with producers removed."""
        self.splice.start()
        self.a.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.b.transport.disconnecting)
        self.assertIsNone(self.b.transport.producer)
        self.assertEqual(self.closed, [])
        self.b.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.closed, [self.splice])
        self.assertIsNotNone(self.a.ended)

    def test_codec_applied_per_side(self):
        """b's codec encodes what goes to b and decodes what comes from b."""
        far_end = PayloadCodec("token", True, True)
        splice = Splice(self.a, self.b, b_codec=PayloadCodec("token", True, True))
        splice.start()
        self.a.dataReceived(b"secret data")
        wire = self.b.transport.value()
        self.assertNotIn(b"secret", wire)
        self.assertEqual(far_end.decode(wire), b"secret data")
        self.b.dataReceived(far_end.encode(b"answer"))
        self.assertEqual(self.a.transport.value(), b"answer")

    def test_codec_error_aborts_both(self):
        """Undecodable bytes from the work side drop both connections."""
        splice = Splice(self.a, self.b, b_codec=PayloadCodec("t", False, True))
        splice.start()
        self.b.dataReceived(b"\x00" * 64)
        self.assertTrue(self.a.transport.disconnecting)
        self.assertTrue(self.b.transport.disconnecting)
        self.assertEqual(self.a.transport.value(), b"")


class HalfCloseSupportTests(SynchronousTestCase):
    def test_plain_string_transport(self):
        """A transport without loseWriteConnection cannot half-close."""
        self.assertFalse(supports_half_close(StringTransport()))
        self.assertTrue(supports_half_close(HalfCloseTransport()))

    def test_no_half_close_means_full_close(self):
        """Without half-close support, EOF closes both sides (frp's way)."""
        a, b = connected(), connected(StringTransport)
        Splice(a, b).start()
        a.readConnectionLost()
        self.assertTrue(b.transport.disconnecting)
        self.assertTrue(a.transport.disconnecting)
