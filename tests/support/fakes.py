"""
Stand-ins for labrelay's collaborators in memory: a stub with given
attributes, a pooled work connection on a StringTransport, a vhost wired
to them, and a dict that refuses to be scanned.
"""

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from labrelay.config import parse_server_config
from labrelay.protocol import messages
from labrelay.server.vhost import Vhost
from labrelay.tracking import ConnectionSet

from .vhost import SUBDOMAIN_HOST


class Stub:
    """An object with the given attributes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeWork:
    """A pooled work connection on a StringTransport."""

    def __init__(self):
        self.transport = StringTransport()
        self.sent = []
        self.alive = True
        self.sink = None

    def send(self, message):
        self.sent.append(message)

    def take_early_data(self):
        return b""


class MemoryVhostMixin:
    """
    A TestCase mixin: one vhost with the http proxy ``jupyter`` (under
    :data:`SUBDOMAIN_HOST`) whose work connections are :class:`FakeWork`
    (``self.works``), and one user connection on a StringTransport
    (``self.user``, ``self.connection``), on a Clock.
    """

    def setUp(self):
        self.clock = Clock()
        config = parse_server_config(
            "[common]\nvhost_http_port = 80\nsubdomain_host = "
            f"{SUBDOMAIN_HOST}\ntoken = t\n"
        )
        server = Stub(config=config, clock=self.clock, connections=ConnectionSet())
        self.vhost = Vhost(server)
        self.works = []

        def get():
            self.works.append(FakeWork())
            return defer.succeed(self.works[-1])

        control = Stub(login=Stub(pool_count=1), closed=False, pool=Stub(get=get))
        self.proxy = self.vhost.create_proxy(
            control,
            messages.NewProxy(
                proxy_name="jupyter", proxy_type="http", subdomain="jupyter"
            ),
        )
        self.assertEqual(self.proxy.start(), f"jupyter.{SUBDOMAIN_HOST}")
        self.user = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        self.connection = self.vhost.factory.buildProtocol(None)
        self.connection.makeConnection(self.user)

    def tearDown(self):
        self.connection.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _StatsControl:
    version = "0.51.3"


class StatsProxy:
    """What ServerStats reads of a proxy."""

    def __init__(self, name, type_="tcp"):
        self.name = name
        self.type = type_
        self.control = _StatsControl()
        self.active_splices = 0
        self.moved = [0, 0]

    def traffic(self):
        return tuple(self.moved)


class NoScan(dict):
    """A dict that refuses to be iterated: a table operation that scans
    every domain (or every user of a domain) fails the test."""

    def _scan(self, *args):
        raise AssertionError("the route table scanned a whole dict")

    __iter__ = keys = values = items = _scan
