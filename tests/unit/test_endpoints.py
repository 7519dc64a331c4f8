# -*- test-case-name: tests.unit.test_endpoints -*-
"""
Endpoints built from config (labrelay.endpoints), without a socket: how
listen addresses are described and what client endpoints are made of.
"""

from __future__ import annotations

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from labrelay.endpoints import client_endpoint, server_endpoint_description
from labrelay.tls import client_tls_options


class DescriptionTests(SynchronousTestCase):
    """server_endpoint_description builds strports strings from frp addresses."""

    def listen(self, description: str):
        memory = MemoryReactor()
        serverFromString(memory, description).listen(Factory())
        [(port, _, _, interface)] = memory.tcpServers
        return port, interface

    def test_ipv4(self) -> None:
        """An IPv4 address becomes the interface."""
        description = server_endpoint_description("0.0.0.0", 7000)
        self.assertEqual(description, "tcp:7000:interface=0.0.0.0")
        self.assertEqual(self.listen(description), (7000, "0.0.0.0"))

    def test_ipv6(self) -> None:
        """An IPv6 address (no brackets, as in frp's config) has its colons escaped."""
        description = server_endpoint_description("::", 7000)
        self.assertEqual(description, "tcp:7000:interface=\\:\\:")
        self.assertEqual(self.listen(description), (7000, "::"))

    def test_bracketed_ipv6(self) -> None:
        """Brackets around an IPv6 address are tolerated."""
        self.assertEqual(
            self.listen(server_endpoint_description("[::1]", 80)), (80, "::1")
        )

    def test_all_interfaces(self) -> None:
        """An empty address listens on all interfaces."""
        self.assertEqual(server_endpoint_description("", 7000), "tcp:7000")


class ClientEndpointShapeTests(SynchronousTestCase):
    """client_endpoint picks the right endpoint for the configuration."""

    def test_plain_name_is_hostname_endpoint(self) -> None:
        """Without TLS, a server name is dialled through HostnameEndpoint."""
        endpoint = client_endpoint(
            MemoryReactor(),
            server_addr="relay.example",
            server_port=7000,
            tls_enable=False,
            send_tls_first_byte=True,
        )
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_ip_literal_is_dialled_directly(self) -> None:
        """
        An IP address skips the resolver (a thread hop per dial): IPv4 and
        IPv6, bracketed or not, with connect_server_local_ip bound.
        """
        for addr, kind, host in [
            ("127.0.0.1", TCP4ClientEndpoint, "127.0.0.1"),
            ("::1", TCP6ClientEndpoint, "::1"),
            ("[::1]", TCP6ClientEndpoint, "::1"),
        ]:
            endpoint = client_endpoint(
                MemoryReactor(),
                server_addr=addr,
                server_port=7000,
                local_ip="127.0.0.2" if kind is TCP4ClientEndpoint else "",
                tls_enable=False,
                send_tls_first_byte=True,
            )
            self.assertIsInstance(endpoint, kind)
            self.assertEqual(endpoint._host, host)
            self.assertEqual(endpoint._port, 7000)
        reactor = MemoryReactor()
        client_endpoint(
            reactor,
            server_addr="127.0.0.1",
            server_port=7000,
            local_ip="127.0.0.2",
            dial_timeout=3,
            tls_enable=False,
            send_tls_first_byte=True,
        ).connect(Factory.forProtocol(Protocol))
        host, port, _, timeout, bind = reactor.tcpClients[0]
        self.assertEqual(
            (host, port, timeout, bind), ("127.0.0.1", 7000, 3, ("127.0.0.2", 0))
        )

    def test_tls_needs_options(self) -> None:
        """tls_enable without TLS options is a programming error."""
        self.assertRaises(
            ValueError,
            client_endpoint,
            MemoryReactor(),
            server_addr="relay.example",
            server_port=7000,
            tls_enable=True,
            send_tls_first_byte=False,
        )

    def test_tls_endpoints(self) -> None:
        """With TLS both variants are client endpoints."""
        for first_byte in (False, True):
            endpoint = client_endpoint(
                MemoryReactor(),
                server_addr="relay.example",
                server_port=7000,
                tls_enable=True,
                tls_options=client_tls_options("relay.example"),
                send_tls_first_byte=first_byte,
            )
            self.assertTrue(IStreamClientEndpoint.providedBy(endpoint))
