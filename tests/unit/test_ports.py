# -*- test-case-name: tests.unit.test_ports -*-
"""
Tests for labrelay.server.ports: which remote port a tcp proxy gets
(allow_ports, taken ports, ports remembered per name), on a task.Clock
with a fake listen().
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from labrelay.config import PortSet, parse_port_ranges
from labrelay.errors import ProxyError
from labrelay.server.ports import PORT_CANDIDATES, RESERVATION_SECONDS, PortAllocator


class FakeListen:
    """listen(port) as a tcp proxy does it: the bound port, or ProxyError
    for a port that is busy outside labrelay; port 0 binds
    :attr:`system_port`."""

    system_port = 40000

    def __init__(self, busy=()):
        self.busy = set(busy)
        self.tried = []

    def __call__(self, port: int) -> int:
        self.tried.append(port)
        if port in self.busy:
            raise ProxyError(f"port unavailable: {port} busy")
        return port or self.system_port


def first(population, k):
    """A predictable random.sample: the first *k*."""
    return list(population)[:k]


class PortAllocatorTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.allow = PortSet()
        self.ports = PortAllocator(self.clock, lambda: self.allow, sample=first)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def allocate(self, name, requested=0, listen=None):
        return self.ports.allocate(name, requested, listen or FakeListen())

    def refusal(self, name, requested=0, listen=None) -> str:
        return str(
            self.assertRaises(ProxyError, self.allocate, name, requested, listen)
        )

    # A requested port.

    def test_requested_port_is_taken(self):
        """A free allowed port is listened on, taken and remembered."""
        self.assertEqual(self.allocate("ssh", 6000), 6000)
        self.assertTrue(self.ports.taken(6000))
        self.assertEqual(self.ports.remembered_port("ssh"), 6000)

    def test_not_a_port(self):
        """A negative port or one above 65535 is refused, named."""
        self.assertEqual(self.refusal("a", -1), "remote_port -1 is not a port")
        self.assertEqual(self.refusal("a", 65536), "remote_port 65536 is not a port")

    def test_not_allowed(self):
        """A port outside allow_ports is refused without listening."""
        self.allow = parse_port_ranges("6000-6010")
        listen = FakeListen()
        self.assertEqual(self.refusal("a", 7000, listen), "port not allowed")
        self.assertEqual(listen.tried, [])

    def test_already_used(self):
        """A port another proxy holds is refused without listening."""
        self.allocate("a", 6000)
        listen = FakeListen()
        self.assertEqual(self.refusal("b", 6000, listen), "port already used")
        self.assertEqual(listen.tried, [])

    def test_listen_failure_is_the_refusal(self):
        """A requested port the system will not give: listen's error, and
        nothing is taken."""
        self.assertEqual(
            self.refusal("a", 6000, FakeListen(busy={6000})),
            "port unavailable: 6000 busy",
        )
        self.assertFalse(self.ports.taken(6000))
        self.assertEqual(self.ports.remembered, 0)

    def test_allow_ports_read_live(self):
        """A reload's allow_ports applies to the next allocation."""
        self.allocate("a", 7000)
        self.allow = parse_port_ranges("6000-6010")
        self.assertEqual(self.refusal("b", 7001), "port not allowed")

    # remote_port = 0.

    def test_any_port_from_the_system(self):
        """Without allow_ports the system picks the port."""
        listen = FakeListen()
        self.assertEqual(self.allocate("a", 0, listen), FakeListen.system_port)
        self.assertEqual(listen.tried, [0])
        self.assertTrue(self.ports.taken(FakeListen.system_port))

    def test_remembered_port_comes_back(self):
        """A name that had a port gets it back after a close, first."""
        self.allocate("a", 0)
        self.ports.release(FakeListen.system_port, "a")
        self.assertFalse(self.ports.taken(FakeListen.system_port))
        listen = FakeListen()
        self.assertEqual(self.allocate("a", 0, listen), FakeListen.system_port)
        self.assertEqual(listen.tried, [FakeListen.system_port])

    def test_remembered_port_busy_falls_back(self):
        """A remembered port the system will not give is skipped."""
        self.allocate("a", 6000)
        self.ports.release(6000, "a")
        listen = FakeListen(busy={6000})
        self.assertEqual(self.allocate("a", 0, listen), FakeListen.system_port)
        self.assertEqual(listen.tried, [6000, 0])

    def test_remembered_port_outside_allow_ports_skipped(self):
        """A remembered port that allow_ports no longer has is not tried."""
        self.allocate("a", 7000)
        self.ports.release(7000, "a")
        self.allow = parse_port_ranges("6000-6001")
        listen = FakeListen()
        self.assertEqual(self.allocate("a", 0, listen), 6000)
        self.assertEqual(listen.tried, [6000])

    def test_free_allowed_ports_tried(self):
        """With allow_ports, up to PORT_CANDIDATES free ports are tried
        (never a taken one); none free is "no available port"."""
        self.allow = parse_port_ranges("6000-6009")
        self.allocate("a", 6000)
        self.allocate("b", 6001)
        listen = FakeListen(busy=range(6002, 6010))
        self.assertEqual(self.refusal("c", 0, listen), "no available port")
        self.assertEqual(listen.tried, list(range(6002, 6002 + PORT_CANDIDATES)))
        self.assertEqual(self.allocate("c", 0), 6002)

    def test_random_sample_of_free_ports(self):
        """The candidates are a random sample of the free allowed ports."""
        ports = PortAllocator(self.clock, lambda: parse_port_ranges("6000-6099"))
        chosen = {ports.allocate(f"p{n}", 0, FakeListen()) for n in range(20)}
        self.assertEqual(len(chosen), 20)
        self.assertTrue(chosen <= set(range(6000, 6100)))

    # Taken and remembered.

    def test_release_by_another_name_ignored(self):
        """Only the name holding a port frees it."""
        self.allocate("a", 6000)
        self.ports.release(6000, "b")
        self.assertTrue(self.ports.taken(6000))

    def test_remembered_port_held_by_another_name(self):
        """A remembered port another proxy now holds is not offered."""
        self.allocate("a", 6000)
        self.ports.release(6000, "a")
        self.allocate("b", 6000)
        self.assertIsNone(self.ports.remembered_port("a"))
        self.assertEqual(self.ports.remembered_port("b"), 6000)

    def test_reservation_expires(self):
        """A name keeps its port for RESERVATION_SECONDS, then forgets it."""
        self.allocate("a", 6000)
        self.ports.release(6000, "a")
        self.clock.advance(RESERVATION_SECONDS)
        self.assertEqual(self.ports.remembered_port("a"), 6000)
        self.clock.advance(1)
        self.assertIsNone(self.ports.remembered_port("a"))
        self.assertEqual(self.ports.remembered, 0)

    def test_expired_forgotten_as_new_come(self):
        """Taking a port forgets every expired reservation."""
        for n in range(10):
            self.allocate(f"p{n}", 6000 + n)
            self.ports.release(6000 + n, f"p{n}")
        self.clock.advance(RESERVATION_SECONDS + 1)
        self.assertEqual(self.ports.remembered, 10)
        self.allocate("late", 7000)
        self.assertEqual(self.ports.remembered, 1)

    def test_max_remembered(self):
        """At most max_remembered names, the oldest forgotten first; read
        live."""
        limit = [3]
        ports = PortAllocator(self.clock, max_remembered=lambda: limit[0])
        for n in range(5):
            ports.take(6000 + n, f"p{n}")
        self.assertEqual(ports.remembered, 3)
        self.assertIsNone(ports.remembered_port("p1"))
        self.assertEqual(ports.remembered_port("p2"), 6002)
        limit[0] = 0
        for n in range(5, 10):
            ports.take(6000 + n, f"p{n}")
        self.assertEqual(ports.remembered, 8)
