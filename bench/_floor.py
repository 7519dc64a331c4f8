"""
The least a Twisted relay can do: accept, dial the target, copy bytes both
ways (as Twisted's own ``portforward``, with TCP_NODELAY, half-close and
producers), nothing else -- no protocol, no TLS, no accounting.

``tunnel_bench.py`` chains two of these (user -> forwarder -> forwarder ->
backend, the shape of a labrelay tunnel without its protocol) as the
"twisted floor" row: what Python and Twisted cost on this machine before
labrelay does any work of its own.

    python3 bench/_floor.py LISTEN_PORT TARGET_PORT
"""

import sys

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class Side(protocol.Protocol):
    peer = None

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.peer.transport.write(data)

    def readConnectionLost(self):
        self.peer.transport.loseWriteConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        if self.peer is not None and self.peer.transport.connected:
            self.peer.transport.loseConnection()


class Inbound(Side):
    target = 0

    def connectionMade(self):
        super().connectionMade()
        self.transport.pauseProducing()
        outbound = Side()
        outbound.peer = self
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.target)
        d = endpoint.connect(protocol.Factory.forProtocol(lambda: outbound))

        def connected(_):
            self.peer = outbound
            self.transport.registerProducer(outbound.transport, True)
            outbound.transport.registerProducer(self.transport, True)
            self.transport.resumeProducing()

        d.addCallbacks(connected, lambda _: self.transport.loseConnection())


def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    Inbound.target = target
    factory = protocol.Factory.forProtocol(Inbound)
    factory.noisy = False
    reactor.listenTCP(listen, factory, interface="127.0.0.1", backlog=1024)
    reactor.run()


if __name__ == "__main__":
    main()
