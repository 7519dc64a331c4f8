"""
A RelayServer on a MemoryReactorClock whose clock reads :data:`NOW`, and
fake frp peers on StringTransports (``tcp_mux = false``, so each peer is
one frp connection): the reactor's part is done by hand.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from labrelay import FRP_VERSION
from labrelay.config import load_server_config
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.crypto import StreamDecryptor, StreamEncryptor, derive_key
from labrelay.protocol.framing import MessageParser, encode_message
from labrelay.sdnotify import Notifier
from labrelay.server.service import RelayServer

from .config_files import rewrite, write_ini
from .harness import LogCapture

TOKEN = "hardening-token"
NOW = 1_700_000_000
BIND = IPv4Address("TCP", "127.0.0.1", 7000)


def login(token=TOKEN, timestamp=NOW, **fields):
    fields.setdefault("version", FRP_VERSION)
    fields.setdefault("pool_count", 0)
    return messages.Login(
        privilege_key=privilege_key(token, timestamp), timestamp=timestamp, **fields
    )


def work_conn(run_id, token=TOKEN, timestamp=NOW):
    return messages.NewWorkConn(
        run_id=run_id,
        timestamp=timestamp,
        privilege_key=privilege_key(token, timestamp),
    )


class Peer:
    """One frp connection of a fake client, on a StringTransport."""

    def __init__(self, case, host, port):
        self.case = case
        self.address = IPv4Address("TCP", host, port)
        self.protocol = case.bind_factory.buildProtocol(self.address)
        self.transport = StringTransport(hostAddress=BIND, peerAddress=self.address)
        self.protocol.makeConnection(self.transport)
        self.lost = False
        self._parser = MessageParser()
        self._encryptor = self._decryptor = None
        self.run_id = None
        case.peers.append(self)

    @property
    def refused_at_once(self) -> bool:
        return self.transport.disconnecting and self.transport.value() == b""

    def send(self, *items) -> None:
        data = b"".join(encode_message(m) for m in items)
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        self.protocol.dataReceived(data)

    def read(self) -> list:
        """The messages received since the last read."""
        data = self.transport.value()
        self.transport.clear()
        if self._decryptor is not None:
            data = self._decryptor.decrypt(data)
        self._parser.feed(data)
        out = []
        while True:
            message = self._parser.next_message()
            if message is None:
                return out
            out.append(message)
            if isinstance(message, messages.LoginResp) and not message.error:
                self.run_id = message.run_id
                key = derive_key(TOKEN)
                self._encryptor = StreamEncryptor(key)
                self._decryptor = StreamDecryptor(key)
                self._parser.feed(self._decryptor.decrypt(self._parser.take_rest()))

    def lose(self) -> None:
        """The reactor's part: deliver connectionLost once."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


BASE = (
    "[common]\nbind_addr = 127.0.0.1\nbind_port = 7000\n"
    f"token = {TOKEN}\ntcp_mux = false\n"
)


class MemoryServerCase(SynchronousTestCase):
    """A RelayServer run from a config file on a MemoryReactorClock."""

    extra = ""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        self.peers = []
        self.text = BASE + self.extra
        self.path = write_ini(self, self.text)
        self.server = RelayServer(
            load_server_config(self.path),
            self.reactor,
            None,
            config_path=self.path,
            notifier=Notifier(None),
        )
        self.server.startService()
        self.addCleanup(self._stop)
        [(_, self.bind_factory, _, _)] = [
            s for s in self.reactor.tcpServers if s[0] == 7000
        ]
        self.log = LogCapture(self)

    def _stop(self):
        stopped = self.server.stopService()
        for _ in range(3):
            for peer in self.peers:
                if peer.transport.disconnecting:
                    peer.lose()
        for peer in self.peers:
            peer.lose()
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def reload(self, extra, token=TOKEN):
        """Rewrite the file as the base config (with *token*) plus *extra*;
        reload."""
        rewrite(self.path, BASE.replace(TOKEN, token) + extra)
        return self.server.reload()

    def peer(self, host="192.0.2.1"):
        return Peer(self, host, 40000 + len(self.peers))

    def logged_in(self, host="192.0.2.1", **fields):
        peer = self.peer(host)
        peer.send(login(**fields))
        response, *peer.after_login = peer.read()
        self.assertEqual(response.error, "")
        return peer

    def login_error(self, peer, wait=8.0) -> str:
        """The LoginResp error *peer* gets (delayed answers included)."""
        self.reactor.advance(wait)
        [response] = peer.read()
        self.assertIsInstance(response, messages.LoginResp)
        return response.error

    def control(self, peer):
        return self.server.registry.controls[peer.run_id]

    def new_proxy(self, peer, name, port):
        """Send NewProxy (tcp, remote_port *port*); the NewProxyResp."""
        peer.send(
            messages.NewProxy(proxy_name=name, proxy_type="tcp", remote_port=port)
        )
        [response] = [m for m in peer.read() if isinstance(m, messages.NewProxyResp)]
        return response

    def user_of(self, port):
        """A user connection accepted on proxy port *port* (memory)."""
        factory = [s for s in self.reactor.tcpServers if s[0] == port][-1][1]
        user = factory.buildProtocol(IPv4Address("TCP", "198.51.100.1", 1))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "198.51.100.1", 1))
        user.makeConnection(transport)
        self.addCleanup(user.connectionLost, None)
        return transport
