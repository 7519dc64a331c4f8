"""
A hand-driven frp peer on a real connection (a TCP connection or a yamux
stream): it writes exactly what the test says and decodes what it
receives as frp messages, as frpc would.
"""

import time

from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol

from labrelay import FRP_VERSION
from labrelay.protocol import messages
from labrelay.protocol.auth import privilege_key
from labrelay.protocol.crypto import StreamDecryptor, StreamEncryptor, derive_key
from labrelay.protocol.framing import MessageParser, encode_message

from .harness import TOKEN, within


def login(token=TOKEN, **fields) -> messages.Login:
    """A Login as frpc sends it, its privilege key made with *token*."""
    now = int(time.time())
    return messages.Login(
        version=FRP_VERSION,
        privilege_key=privilege_key(token, now),
        timestamp=now,
        **fields,
    )


class FrpPeer(Protocol):
    """
    A hand-driven peer on one frp connection (a TCP connection or a yamux
    stream): it writes exactly what the test says, keeps every byte it
    receives and, on request, decodes them as frp messages (decrypting
    after a successful LoginResp, as frpc does).
    """

    def __init__(self):
        self.received = bytearray()
        self.closed = defer.Deferred()
        self.connected_at = self.closed_at = None
        self.label = "?"  # host:port the server sees, as in its log lines
        self.messages = []
        self._parser = MessageParser()
        self._parsed = 0
        self._encryptor = None
        self._decryptor = None
        self._waiting = []  # (message class, count, Deferred)

    def connectionMade(self):
        self.connected_at = reactor.seconds()

    def dataReceived(self, data):
        self.received += data
        if self._waiting:
            self._decode()

    def connectionLost(self, reason):
        self.closed_at = reactor.seconds()
        self.closed.callback(bytes(self.received))

    def send_raw(self, data: bytes) -> None:
        """Write *data* (encrypted once logged in)."""
        if self._encryptor is not None:
            data = self._encryptor.encrypt(data)
        self.transport.write(data)

    def send(self, message) -> None:
        self.send_raw(encode_message(message))

    def wait_messages(self, kind, count=1):
        """A Deferred firing with the first *count* received *kind* messages."""
        d = defer.Deferred()
        self._waiting.append((kind, count, d))
        self._decode()
        return d

    def _decode(self) -> None:
        fresh = bytes(self.received[self._parsed :])
        self._parsed = len(self.received)
        if self._decryptor is not None:
            fresh = self._decryptor.decrypt(fresh)
        self._parser.feed(fresh)
        while True:
            message = self._parser.next_message()
            if message is None:
                break
            self.messages.append(message)
            if isinstance(message, messages.LoginResp) and not message.error:
                # what follows LoginResp is encrypted in both directions
                key = derive_key(TOKEN)
                self._encryptor = StreamEncryptor(key)
                self._decryptor = StreamDecryptor(key)
                self._parser.feed(self._decryptor.decrypt(self._parser.take_rest()))
        still = []
        for kind, count, d in self._waiting:
            found = [m for m in self.messages if isinstance(m, kind)]
            if d.called:
                continue  # timed out meanwhile
            if len(found) >= count:
                d.callback(found[:count])
            else:
                still.append((kind, count, d))
        self._waiting = still

    async def log_in(self):
        """Log in with the right token; return the LoginResp."""
        self.send(login(pool_count=0))
        [response] = await within(self.wait_messages(messages.LoginResp))
        if response.error:
            raise AssertionError(f"login refused: {response.error}")
        return response
