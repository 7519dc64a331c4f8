# -*- test-case-name: tests.unit.test_udp_proxy,tests.integration.test_udp -*-
"""
``type = udp`` proxies on the server: a UDP port on the relay's
``remote_port`` whose datagrams travel to the client, and back, as frp's
UDPPacket messages over ONE work connection of the proxy.

As frps: half a second after the proxy starts (so that NewProxyResp is
first), :class:`UdpProxy` takes a work connection from the client's pool,
sends StartWorkConn (no addresses) and keeps it; the client's Ping on it
every 30 s keeps it alive, and 60 s without any message from the client
closes it.  Whenever it is lost, another is taken.  The proxy's
use_encryption/use_compression wrap that connection as they wrap a tcp
proxy's.  The port is chosen as a tcp proxy's is (``allow_ports``,
``max_ports_per_client`` counting tcp and udp proxies, remembered per
name), by an allocator of its own: a udp and a tcp proxy may share a
port number, as in frp.

Bounds (what a user or the client can make us hold):

* datagrams read are at most ``udp_packet_size`` bytes (longer ones are
  truncated by the read, as frp);
* while no work connection is up, at most :data:`MAX_QUEUED_DATAGRAMS`
  wait; more are dropped;
* while the work connection's send buffer is full the UDP port is not
  read (the kernel drops what does not fit);
* a reply is sent only to an address that sent the proxy a datagram in
  the last :data:`PEER_SECONDS` (the client cannot make the relay send
  datagrams to anyone else), and at most :data:`MAX_PEERS` such addresses
  are remembered per proxy (the oldest is forgotten first);
* a UDPPacket frame longer than ``udp_packet_size`` in base64 plus a
  little (:func:`~labrelay.udp_packets.frame_limit`) closes the work
  connection, as does a frame that is not a UDPPacket or Ping, or a bad
  UDPPacket;
* dropped datagrams are logged in at most one line every 10 s per proxy.
"""

from collections import OrderedDict, deque

from twisted.internet.defer import CancelledError
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import NoWorkConnection, ProtocolError, ProxyError
from ..interfaces import ISink
from ..peers import describe
from ..protocol import messages
from ..relay import unregister_producer
from ..udp_packets import (
    DropLog,
    UdpFrameReader,
    datagram_of,
    encode_packet,
    peer_key,
)
from ..udp_port import listen_udp
from ..writethrough import write_now
from .proxy_base import ProxyBase
from .worklink import start_work_link

#: Seconds between NewProxyResp and taking the work connection (frps: 0.5).
FIRST_WORK_DELAY = 0.5

#: Seconds between two tries to get a work connection (frps: 1).
WORK_RETRY_SECONDS = 1.0

#: Seconds without a message from the client before its udp work
#: connection is closed (frps: 60; the client pings every 30).
WORK_IDLE_SECONDS = 60.0

#: Datagrams kept while no work connection is up (frps: 1024).
MAX_QUEUED_DATAGRAMS = 256

#: Users per proxy the relay remembers, to whom replies may be sent.
MAX_PEERS = 4096

#: Seconds a user stays answerable after its last datagram either way.
PEER_SECONDS = 120.0


class UserDatagrams(DatagramProtocol):
    """The proxy's UDP port: every datagram goes to the proxy."""

    noisy = False

    def __init__(self, proxy):
        self.proxy = proxy

    def datagramReceived(self, data, addr):
        self.proxy.from_user(data, addr)


class PeerTable:
    """
    The users a proxy may answer: address -> when last heard from,
    oldest first, at most *limit* of them, each for *seconds*.
    """

    def __init__(self, clock, limit: int = MAX_PEERS, seconds: float = PEER_SECONDS):
        self._clock = clock
        self._limit = limit
        self._seconds = seconds
        self._seen = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def touch(self, key) -> None:
        self._seen.pop(key, None)
        self._seen[key] = self._clock.seconds() + self._seconds
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)

    def knows(self, key) -> bool:
        expires = self._seen.get(key)
        if expires is None:
            return False
        if expires < self._clock.seconds():
            del self._seen[key]
            return False
        return True


@implementer(ISink, IPushProducer)
class UdpWorkChannel:
    """The proxy's work connection once started: UDPPacket frames both
    ways through the proxy's codec."""

    def __init__(self, proxy, work, codec):
        self.proxy = proxy
        self.work = work
        self.codec = codec
        self.reader = UdpFrameReader(proxy.packet_size)
        self.closed = False

    def send(self, data: bytes, address) -> None:
        frame = encode_packet(data, address)
        if self.codec is not None:
            frame = self.codec.encode(frame)
        write_now(self.work.transport, frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            unregister_producer(self.work.transport)
            self.work.transport.loseConnection()

    # ISink: what the work connection reads.

    def forward(self, source, data: bytes) -> None:
        if self.closed:
            return
        if self.codec is not None:
            data = self.codec.decode(data)
        try:
            for message in self.reader.feed(data):
                self.proxy.from_work(self, message)
        except ProtocolError as e:
            self.proxy.work_failed(self, str(e))

    def end_of_input(self, source) -> None:
        self.close()

    def connection_lost(self, source, reason) -> None:
        self.closed = True
        self.proxy.work_lost(self)

    # IPushProducer: the work connection's send buffer is full, or not.

    def pauseProducing(self):
        self.proxy.pause_reading()

    def resumeProducing(self):
        self.proxy.resume_reading()

    def stopProducing(self):
        """The work connection is gone; connection_lost does the rest."""


class UdpProxy(ProxyBase):
    type = "udp"

    _log = Logger()

    def __init__(self, context, control, message):
        super().__init__(context, control, message)
        self._port = None
        self.remote_port = 0
        self.packet_size = context.config.udp_packet_size
        self.channel = None
        self.peers = PeerTable(context.clock)
        self.queued = deque()
        self.drops = DropLog(context.clock, self._log, f"udp proxy [{self.name}]")
        self._work_call = None
        self._waiting = None
        self._idle_call = None
        self._closed = False
        self._reading = True

    @property
    def _ports(self):
        return getattr(self.context, "udp_ports", None) or self.context.ports

    def start(self) -> str:
        limit = self.context.config.max_ports_per_client
        used = sum(1 for p in self.control.proxies.values() if p.type in PORT_TYPES)
        if limit > 0 and used >= limit:
            raise ProxyError("exceed the max_ports_per_client")
        self.remote_port = self._ports.allocate(
            self.name, self.message.remote_port, self._listen
        )
        self._work_call = self.context.clock.callLater(
            FIRST_WORK_DELAY, self._want_work
        )
        return f":{self.remote_port}"

    def _listen(self, port: int) -> int:
        try:
            self._port = listen_udp(
                self.context.reactor,
                port,
                UserDatagrams(self),
                interface=self.context.config.proxy_bind_addr,
                maxPacketSize=max(self.packet_size, 1),
            )
        except CannotListenError as e:
            raise ProxyError(f"port unavailable: {e.socketError}") from None
        return self._port.getHost().port

    # Users' datagrams.

    def from_user(self, data: bytes, addr) -> None:
        key = peer_key(addr)
        self.peers.touch(key)
        self.bytes_in += len(data)
        if self.channel is not None:
            self.channel.send(data, key)
        elif len(self.queued) < MAX_QUEUED_DATAGRAMS:
            self.queued.append((data, key))
        else:
            self.drops.dropped("no work connection and the queue is full")

    def pause_reading(self) -> None:
        if self._reading and self._port is not None:
            self._reading = False
            self._port.stopReading()

    def resume_reading(self) -> None:
        if not self._reading and self._port is not None:
            self._reading = True
            self._port.startReading()

    # The work connection.

    def _want_work(self) -> None:
        self._work_call = None
        if self._closed or self.channel is not None or self._waiting is not None:
            return
        try:
            d = self.control.pool.get()
        except NoWorkConnection:
            self._retry_work()
            return
        self._waiting = d
        d.addCallbacks(self._got_work, self._no_work)

    def _retry_work(self) -> None:
        if not self._closed and self._work_call is None:
            self._work_call = self.context.clock.callLater(
                WORK_RETRY_SECONDS, self._want_work
            )

    def _no_work(self, failure) -> None:
        self._waiting = None
        if failure.check(CancelledError):
            return None
        if failure.check(NoWorkConnection):
            self._retry_work()
            return None
        return failure

    def _got_work(self, work) -> None:
        self._waiting = None
        if self._closed:
            if work.alive:
                self.control.pool.put(work)
            return
        if not work.alive:
            self._retry_work()
            return
        link = start_work_link(self, work)
        channel = UdpWorkChannel(self, work, link.codec)
        self.channel = channel
        work.sink = channel
        work.transport.registerProducer(channel, True)
        self._idle_call = self.context.clock.callLater(
            WORK_IDLE_SECONDS, self._work_idle
        )
        self._log.info(
            "udp proxy [{name}] uses work connection {peer}",
            name=self.name,
            peer=describe(work.transport),
        )
        queued, self.queued = self.queued, deque()
        for data, key in queued:
            channel.send(data, key)
        early = work.take_early_data()
        if early:
            channel.forward(work, early)

    def from_work(self, channel, message) -> None:
        if channel is not self.channel:
            return
        if self._idle_call is not None:
            self._idle_call.reset(WORK_IDLE_SECONDS)
        if isinstance(message, messages.Ping):
            return
        if not isinstance(message, messages.UDPPacket):
            raise ProtocolError(f"unexpected {message.name} on a udp work connection")
        data, address = datagram_of(message)
        key = peer_key(address)
        if not self.peers.knows(key):
            self.drops.dropped(f"reply to {key[0]}:{key[1]}, which sent nothing")
            return
        self.peers.touch(key)
        self.bytes_out += len(data)
        try:
            self._port.write(data, key)
        except Exception as e:  # an address the system refuses
            self.drops.dropped(f"cannot send to {key[0]}:{key[1]}: {e}")

    def work_failed(self, channel, why: str) -> None:
        self._log.warn(
            "udp proxy [{name}]: closing its work connection: {why}",
            name=self.name,
            why=why,
        )
        channel.work.transport.abortConnection()

    def work_lost(self, channel) -> None:
        if channel is not self.channel:
            return
        self.channel = None
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self.resume_reading()
        if not self._closed:
            self._log.info(
                "udp proxy [{name}]: work connection lost; taking another",
                name=self.name,
            )
            self._want_work()

    def _work_idle(self) -> None:
        self._idle_call = None
        if self.channel is not None:
            self._log.warn(
                "udp proxy [{name}]: no message on its work connection for "
                "{seconds:g}s; closing it",
                name=self.name,
                seconds=WORK_IDLE_SECONDS,
            )
            self.channel.work.transport.abortConnection()

    def close(self) -> None:
        self._closed = True
        for call in (self._work_call, self._idle_call):
            if call is not None and call.active():
                call.cancel()
        self._work_call = self._idle_call = None
        if self._waiting is not None:
            self._waiting.cancel()
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()
        self.queued.clear()
        if self._port is not None:
            self._port.stopListening()
            self._port = None
            self._ports.release(self.remote_port, self.name)


#: Proxy types whose ports max_ports_per_client counts (as frp's
#: usedPortsNum).
PORT_TYPES = ("tcp", "udp")
