"""
UDP helpers for the udp proxy tests: an echo service that says which
address it heard from, users that send datagrams and collect replies, and
the proxy section of a ``type = udp`` proxy.
"""

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol


class UdpEcho(DatagramProtocol):
    """Echoes every datagram to its sender; keeps the senders it saw."""

    noisy = False

    def __init__(self):
        self.senders = []

    def datagramReceived(self, data, addr):
        self.senders.append(addr)
        self.transport.write(data, addr)


def udp_echo_server(testcase, interface="127.0.0.1"):
    """Start a :class:`UdpEcho` on a free port; return ``(port, echo)``."""
    echo = UdpEcho()
    port = reactor.listenUDP(0, echo, interface=interface)
    testcase.addCleanup(port.stopListening)
    return port.getHost().port, echo


class UdpUser(DatagramProtocol):
    """A user of a udp proxy: every datagram received goes to ``replies``."""

    noisy = False

    def __init__(self):
        self.replies = defer.DeferredQueue()
        self.received = []

    def datagramReceived(self, data, addr):
        self.received.append((data, addr))
        self.replies.put(data)

    async def ask(self, port, payload, tries=10, wait=1.0, host="127.0.0.1"):
        """Send *payload* to *host*:*port* until a reply equal to it comes
        (UDP may lose a datagram); return the reply."""
        for _ in range(tries):
            self.transport.write(payload, (host, port))
            try:
                while True:
                    reply = await self.replies.get().addTimeout(wait, reactor)
                    if reply == payload:
                        return reply
            except defer.TimeoutError:
                continue
        raise AssertionError(f"no reply to {payload[:20]!r} from port {port}")


def udp_user(testcase, interface="127.0.0.1"):
    """A :class:`UdpUser` on a free port."""
    user = UdpUser()
    port = reactor.listenUDP(0, user, interface=interface)
    testcase.addCleanup(port.stopListening)
    return user


def udp_proxy(name, local_port, remote_port=0, **extra):
    """frpc.ini lines of a ``type = udp`` proxy."""
    lines = [
        f"[{name}]",
        "type = udp",
        "local_ip = 127.0.0.1",
        f"local_port = {local_port}",
        f"remote_port = {remote_port}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
