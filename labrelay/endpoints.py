# -*- test-case-name: tests.unit.test_endpoints,tests.integration.test_endpoints -*-
"""
Endpoints built from configuration: the client's dial to the server and the
server's listen descriptions.

* :func:`tcp_client_endpoint`: a TCP dial to a host and port; an IP address is
  dialled directly, only a name goes through :class:`HostnameEndpoint`'s
  resolver (a thread hop per dial, which costs a tenth of a no-mux work
  connection's set-up).
* :func:`client_endpoint`: frpc's connection to frps -- a :func:`tcp_client_endpoint`
  (optionally bound to ``connect_server_local_ip``), wrapped in TLS when
  ``tls_enable``, with frp's custom first byte ``0x17`` written on the raw
  connection just before the ClientHello when
  ``disable_custom_tls_first_byte = false``.
* :func:`server_endpoint_description`: a ``strports`` description for a listen
  address and port (IPv6 addresses are written without brackets in frp's
  config and need their colons escaped here).

Half-close over TLS (measured in tests/unit/test_endpoints.py or tests/integration/test_endpoints.py and
tests/unit/test_tls.py): a TLS transport from :class:`TLSMemoryBIOProtocol` has no
half-close.  It has no ``loseWriteConnection`` of its own; the name resolves
to the TCP socket's through ``ProtocolWrapper.__getattr__``, which sends a
raw FIN without a TLS close_notify.  The peer's TLS layer reports that as a
lost connection and closes both directions; and a received close_notify
also closes both directions.  ``readConnectionLost`` never reaches the
application, so relays over TLS must splice full-close only.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    quoteStringArgument,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from zope.interface import implementer

from labrelay.tls import TLS_HEAD_BYTE
from labrelay.tls_transport import TLSFactory, TLSTransport


class _HeadByteTLSProtocol(TLSTransport):
    """A client TLS transport that writes frp's head byte before its ClientHello."""

    def makeConnection(self, transport: object) -> None:
        transport.write(TLS_HEAD_BYTE)  # type: ignore[attr-defined]
        super().makeConnection(transport)


class _HeadByteTLSFactory(TLSFactory):
    """:class:`TLSMemoryBIOFactory` whose connections start with :data:`TLS_HEAD_BYTE`."""

    protocol = _HeadByteTLSProtocol


@implementer(IStreamClientEndpoint)
class _TLSEndpoint:
    """
    Like ``wrapClientTLS(options, endpoint)``, with labrelay's TLS transport
    (see :class:`~labrelay.tls_transport.TLSTransport`); with ``head_byte``, each connection
    sends :data:`TLS_HEAD_BYTE` on the raw stream before the TLS handshake.
    """

    def __init__(
        self,
        wrapped: IStreamClientEndpoint,
        tls_options: IOpenSSLClientConnectionCreator,
        clock: IReactorTime,
        head_byte: bool = True,
    ) -> None:
        self._wrapped = wrapped
        self._tls_options = tls_options
        self._clock = clock
        self._factory_class = _HeadByteTLSFactory if head_byte else TLSFactory

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        tls_factory = self._factory_class(
            self._tls_options, True, protocolFactory, clock=self._clock
        )
        return self._wrapped.connect(tls_factory).addCallback(
            lambda tls_protocol: tls_protocol.wrappedProtocol
        )


def tcp_client_endpoint(
    reactor: object,
    host: str,
    port: int,
    timeout: float,
    bind_address: Optional[tuple[str, int]] = None,
) -> IStreamClientEndpoint:
    """
    A TCP dial to *host*: an IPv4 or IPv6 address directly, a name through
    :class:`HostnameEndpoint` (resolution in a thread, then happy eyeballs).

    :param timeout: seconds to connect.
    :param bind_address: ``(ip, port)`` to bind the socket to first.
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(
            reactor, host, port, timeout=timeout, bindAddress=bind_address
        )
    if isIPv6Address(host):
        return TCP6ClientEndpoint(
            reactor, host, port, timeout=timeout, bindAddress=bind_address
        )
    return HostnameEndpoint(
        reactor, host, port, timeout=timeout, bindAddress=bind_address
    )


def client_endpoint(
    reactor: object,
    *,
    server_addr: str,
    server_port: int,
    dial_timeout: float = 10,
    local_ip: str = "",
    tls_enable: bool,
    tls_options: Optional[IOpenSSLClientConnectionCreator] = None,
    send_tls_first_byte: bool,
) -> IStreamClientEndpoint:
    """
    The endpoint frpc dials frps with.

    :param reactor: the reactor (name resolution, connecting, TLS timers).
    :param server_addr: host name or IP address (IPv6 without brackets).
    :param server_port: frps's ``bind_port``.
    :param dial_timeout: ``dial_server_timeout``, seconds.
    :param local_ip: ``connect_server_local_ip``; bind the socket to it.
    :param tls_enable: wrap the connection in TLS.
    :param tls_options: the client connection creator (see
        :func:`~labrelay.tls.client_tls_options`); required with ``tls_enable``.
    :param send_tls_first_byte: write ``0x17`` before the ClientHello (frp's
        ``disable_custom_tls_first_byte = false``); ignored without TLS.
    """
    if server_addr.startswith("[") and server_addr.endswith("]"):
        server_addr = server_addr[1:-1]
    tcp = tcp_client_endpoint(
        reactor,
        server_addr,
        server_port,
        timeout=dial_timeout,
        bind_address=(local_ip, 0) if local_ip else None,
    )
    if not tls_enable:
        return tcp
    if tls_options is None:
        raise ValueError(
            "tls_enable needs tls_options (labrelay.tls.client_tls_options)"
        )
    return _TLSEndpoint(
        tcp,
        tls_options,
        clock=reactor,  # type: ignore[arg-type]
        head_byte=send_tls_first_byte,
    )


def server_endpoint_description(addr: str, port: int) -> str:
    """
    A ``strports.service`` description listening on ``addr:port`` over TCP
    (``addr`` empty: all interfaces).  IPv6 literals are accepted as frp
    writes them, without brackets.
    """
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    description = f"tcp:{int(port)}"
    if addr:
        description += ":interface=" + quoteStringArgument(addr)
    return description
