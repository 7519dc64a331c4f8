# -*- test-case-name: tests.unit.test_udp_work,tests.integration.test_udp -*-
"""
The client's side of a ``type = udp`` proxy: the one work connection the
server keeps for it (:class:`UdpWorkLink`), which carries every user's
datagrams as frp's UDPPacket messages.

For each user address ``r`` the server names, the link opens one local UDP
socket connected to ``local_ip:local_port`` (:class:`LocalPeerSocket`),
sends the user's datagrams from it and wraps whatever the service answers
on it into a UDPPacket for that same address, so a user's replies go to
that user only.  As frpc, the link sends Ping on the work connection every
:data:`PING_SECONDS`, a newer work connection for the same proxy replaces
the older one, and a user's socket is closed after
:data:`PEER_IDLE_SECONDS` without a datagram either way.

Bounds: at most :data:`MAX_LOCAL_PEERS` local sockets per proxy (a new
user beyond that closes the least recently active one: frp has no cap,
and each socket is a file descriptor); datagrams read from the service are
at most ``udp_packet_size`` bytes; a frame from the server longer than
``udp_packet_size`` in base64 plus a little, or a malformed one, closes
the work connection (the server opens another); while the work
connection's send buffer is full the local sockets are not read.
"""

import ipaddress
from collections import OrderedDict

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import ProtocolError
from ..interfaces import ISink
from ..protocol import messages
from ..protocol.codec import PayloadCodec
from ..protocol.framing import encode_message
from ..relay import unregister_producer
from ..udp_packets import DropLog, UdpFrameReader, datagram_of, encode_packet
from ..udp_port import listen_udp
from ..writethrough import write_now

#: Seconds between two Pings on the udp work connection (frpc: 30).
PING_SECONDS = 30.0

#: Seconds a user's local socket lives without a datagram (frpc: 30).
PEER_IDLE_SECONDS = 30.0

#: Local sockets (users) per udp proxy.
MAX_LOCAL_PEERS = 256


class LocalPeerSocket(DatagramProtocol):
    """One user's UDP socket towards the local service."""

    noisy = False

    def __init__(self, link, key):
        self.link = link
        self.key = key
        self.idle_call = None
        self.port = None

    def datagramReceived(self, data, addr):
        self.link.from_local(self, data)

    def connectionRefused(self):
        """Nothing listens locally (ICMP): the user's datagram is lost."""
        self.link.drops.dropped("the local service refused a datagram")


@implementer(ISink, IPushProducer)
class UdpWorkLink:
    """
    A udp proxy's work connection on the client after StartWorkConn.

    :param client: the :class:`~labrelay.client.service.RelayClient`.
    :param proxy: the proxy's :class:`~labrelay.config.ProxyConfig`.
    :param work: the work connection (a
        :class:`~labrelay.client.workconn.ClientWorkConnection`).
    """

    _log = Logger()

    def __init__(self, client, proxy, work):
        self.client = client
        self.proxy = proxy
        self.work = work
        self.reactor = client.reactor
        self.clock = client.clock
        self.codec = None
        if proxy.use_encryption or proxy.use_compression:
            self.codec = PayloadCodec(
                client.config.token, proxy.use_encryption, proxy.use_compression
            )
        self.packet_size = client.config.udp_packet_size
        self.reader = UdpFrameReader(self.packet_size)
        self.peers = OrderedDict()  # user address -> LocalPeerSocket
        self.drops = DropLog(self.clock, self._log, f"udp proxy [{proxy.name}]")
        self.target = None  # (ip, port) of the local service, once known
        self.closed = False
        self._paused = False
        self._ping = LoopingCall(self._send_ping)
        self._ping.clock = self.clock

    # Starting and ending.

    def start(self, pending: bytes = b"") -> None:
        links = self.client.udp_links
        older = links.get(self.proxy.name)
        links[self.proxy.name] = self
        if older is not None:
            older.close()
        self.work.sink = self
        self.work.transport.registerProducer(self, True)
        self._ping.start(PING_SECONDS, now=False)
        self._log.info("[{name}] udp work connection started", name=self.proxy.name)
        host, port = self.proxy.local_ip, self.proxy.local_port
        try:
            ipaddress.ip_address(host)
        except ValueError:
            d = self.reactor.resolve(host)
            d.addCallbacks(lambda ip: self._set_target(ip, port), self._unresolved)
        else:
            self._set_target(host, port)
        if pending:
            self.forward(self.work, pending)

    def _set_target(self, ip: str, port: int) -> None:
        self.target = (ip, port)

    def _unresolved(self, failure) -> None:
        self._log.warn(
            "[{name}] cannot resolve local_ip {host}: {error}",
            name=self.proxy.name,
            host=self.proxy.local_ip,
            error=failure.getErrorMessage(),
        )

    def close(self) -> None:
        """Close the work connection (connection_lost cleans up)."""
        if not self.closed:
            self.closed = True
            unregister_producer(self.work.transport)
            self.work.transport.loseConnection()
            self._cleanup()

    def _cleanup(self) -> None:
        self.closed = True
        if self._ping.running:
            self._ping.stop()
        peers, self.peers = self.peers, OrderedDict()
        for peer in peers.values():
            self._close_peer(peer)
        if self.client.udp_links.get(self.proxy.name) is self:
            del self.client.udp_links[self.proxy.name]

    # ISink: the server's frames.

    def forward(self, source, data: bytes) -> None:
        if self.closed:
            return
        if self.codec is not None:
            data = self.codec.decode(data)
        try:
            for message in self.reader.feed(data):
                self._from_server(message)
        except ProtocolError as e:
            self._log.warn(
                "[{name}] udp work connection: {error}; closing it",
                name=self.proxy.name,
                error=e,
            )
            self.closed = True
            self.work.transport.abortConnection()
            self._cleanup()

    def end_of_input(self, source) -> None:
        self.close()

    def connection_lost(self, source, reason) -> None:
        self._cleanup()

    def _from_server(self, message) -> None:
        if isinstance(message, messages.Ping):
            return
        if not isinstance(message, messages.UDPPacket):
            raise ProtocolError(f"unexpected {message.name} on a udp work connection")
        data, address = datagram_of(message)
        self.to_local(data, address)

    # Users' datagrams to the local service and back.

    def to_local(self, data: bytes, address) -> None:
        if self.target is None:
            self.drops.dropped("the local service's address is not known yet")
            return
        peer = self.peers.get(address)
        if peer is None:
            peer = self._open_peer(address)
            if peer is None:
                return
        else:
            self.peers.move_to_end(address)
        peer.idle_call.reset(PEER_IDLE_SECONDS)
        try:
            peer.transport.write(data)
        except Exception as e:  # the system refused (e.g. a full buffer)
            self.drops.dropped(f"cannot send to the local service: {e}")

    def _open_peer(self, address):
        while len(self.peers) >= MAX_LOCAL_PEERS:
            _, oldest = self.peers.popitem(last=False)
            self._close_peer(oldest)
            self.drops.dropped(
                f"more than {MAX_LOCAL_PEERS} users; the least recent was forgotten"
            )
        host, port = self.target
        interface = "::" if ":" in host else "0.0.0.0"
        peer = LocalPeerSocket(self, address)
        try:
            peer.port = listen_udp(
                self.reactor,
                0,
                peer,
                interface=interface,
                maxPacketSize=max(self.packet_size, 1),
            )
            peer.transport.connect(host, port)
        except Exception as e:
            if peer.port is not None:
                peer.port.stopListening()
            self.drops.dropped(f"cannot open a socket to the local service: {e}")
            return None
        if self._paused:
            peer.port.stopReading()
        peer.idle_call = self.clock.callLater(PEER_IDLE_SECONDS, self._peer_idle, peer)
        self.peers[address] = peer
        return peer

    def from_local(self, peer, data: bytes) -> None:
        if self.closed or self.peers.get(peer.key) is not peer:
            return
        peer.idle_call.reset(PEER_IDLE_SECONDS)
        self.peers.move_to_end(peer.key)
        self._write(encode_packet(data, peer.key))

    def _peer_idle(self, peer) -> None:
        peer.idle_call = None
        if self.peers.get(peer.key) is peer:
            del self.peers[peer.key]
        self._close_peer(peer)

    def _close_peer(self, peer) -> None:
        if peer.idle_call is not None and peer.idle_call.active():
            peer.idle_call.cancel()
        peer.idle_call = None
        if peer.port is not None:
            peer.port.stopListening()
            peer.port = None

    # Writing to the server.

    def _write(self, frame: bytes) -> None:
        if self.codec is not None:
            frame = self.codec.encode(frame)
        write_now(self.work.transport, frame)

    def _send_ping(self) -> None:
        if not self.closed:
            self._write(encode_message(messages.Ping()))

    # IPushProducer: the work connection's send buffer is full, or not.

    def pauseProducing(self):
        self._paused = True
        for peer in self.peers.values():
            peer.port.stopReading()

    def resumeProducing(self):
        self._paused = False
        for peer in self.peers.values():
            peer.port.startReading()

    def stopProducing(self):
        """The work connection is gone; connection_lost cleans up."""
