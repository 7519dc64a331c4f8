"""
Tests for labrelay.tls: server/client TLS options, verification and mTLS,
TLS version floor, config errors, and TLS close semantics, all in memory.
"""

from __future__ import annotations

import os

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from labrelay.tls import (
    TLSConfigError,
    TLSVerificationError,
    client_tls_options,
    describe_tls_error,
    server_tls_options,
)
from labrelay.tls_transport import TLSFactory, TLSTransport

from ..support import certs


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """An application protocol that records what happens to it."""

    def __init__(self) -> None:
        self.data = b""
        self.made = False
        self.handshake_done = False
        self.lost = None

    def connectionMade(self) -> None:
        self.made = True

    def handshakeCompleted(self) -> None:
        self.handshake_done = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    """A Recorder that also accepts half-close events."""

    read_lost = False
    write_lost = False

    def readConnectionLost(self) -> None:
        self.read_lost = True

    def writeConnectionLost(self) -> None:
        self.write_lost = True


@implementer(IOpenSSLClientConnectionCreator)
class OldTLSClient:
    """A client that offers only TLS 1.0 and 1.1."""

    def clientConnectionForTLS(self, tlsProtocol):
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_1_VERSION)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        ctx.set_verify(SSL.VERIFY_NONE)
        return SSL.Connection(ctx, None)


class TLSTestCase(SynchronousTestCase):
    """Shared helpers: temp files for certificates and an in-memory TLS pair."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.ca_file = certs.write_pem(
            self.dir, "ca.crt", certs.certificate_authority().cert
        )
        self.addCleanup(self._no_delayed_calls)

    def _no_delayed_calls(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def write_pair(self, pair: certs.PemPair, stem: str) -> tuple[str, str]:
        return pair.write_to(self.dir, stem)

    def server_files(self, **kwargs) -> tuple[str, str]:
        return self.write_pair(certs.server_certificate(**kwargs), "server")

    def connect(self, server_options, client_creator, server_app=None):
        """
        Handshake in memory over labrelay's TLS transport; return
        (server_app, client_app, pump, server_tls).
        """
        server_app = server_app or Recorder()
        client_app = Recorder()
        server_tls = TLSFactory(
            server_options,
            False,
            Factory.forProtocol(lambda: server_app),
            clock=self.clock,
        ).buildProtocol(None)
        client_tls = TLSFactory(
            client_creator,
            True,
            Factory.forProtocol(lambda: client_app),
            clock=self.clock,
        ).buildProtocol(None)
        pump = iosim.connect(
            server_tls,
            iosim.makeFakeServer(server_tls),
            client_tls,
            iosim.makeFakeClient(client_tls),
            clock=self.clock,
        )
        return server_app, client_app, pump, server_tls

    def assert_works(self, server_options, client_creator) -> Recorder:
        server_app, client_app, pump, _ = self.connect(server_options, client_creator)
        client_app.transport.write(b"ping")
        server_app.transport.write(b"pong")
        pump.flush()
        self.assertTrue(client_app.handshake_done)
        self.assertEqual((server_app.data, client_app.data), (b"ping", b"pong"))
        self.assertIsNone(client_app.lost)
        client_app.transport.loseConnection()
        pump.flush()
        self.assertIsNotNone(server_app.lost)
        return server_app

    def assert_fails(self, server_options, client_creator):
        """The handshake fails; return (server_app, client_app) for details."""
        server_app, client_app, pump, _ = self.connect(server_options, client_creator)
        client_app.transport.write(b"secret")
        pump.flush()
        self.assertIsNotNone(client_app.lost)
        self.assertIsNotNone(server_app.lost)
        self.assertEqual(server_app.data, b"")
        return server_app, client_app


class ServerCertificateTests(TLSTestCase):
    """Which server certificates a client accepts."""

    def test_self_signed_without_ca(self) -> None:
        """A server without a configured certificate works with a non-verifying client."""
        self.assert_works(server_tls_options(), client_tls_options("relay.example"))

    def test_self_signed_rejected_with_ca(self) -> None:
        """A verifying client refuses the generated self-signed certificate."""
        _, client_app = self.assert_fails(
            server_tls_options(), client_tls_options("localhost", self.ca_file)
        )
        self.assertEqual(
            describe_tls_error(client_app.lost),
            "certificate verify failed: depth zero self signed cert",
        )

    def test_configured_self_signed(self) -> None:
        """A configured self-signed certificate passes only a non-verifying client."""
        cert, key = self.write_pair(certs.self_signed_certificate(), "self")
        self.assert_works(
            server_tls_options(cert, key), client_tls_options("localhost")
        )
        _, client_app = self.assert_fails(
            server_tls_options(cert, key), client_tls_options("localhost", self.ca_file)
        )
        self.assertIn("self signed", describe_tls_error(client_app.lost))

    def test_ca_right_name(self) -> None:
        """A CA-signed certificate for the right DNS name is accepted."""
        cert, key = self.server_files(dns_names=["relay.example"])
        self.assert_works(
            server_tls_options(cert, key),
            client_tls_options("relay.example", self.ca_file),
        )

    def test_ca_wrong_name(self) -> None:
        """A CA-signed certificate for another name is refused with a clear message."""
        cert, key = self.server_files(dns_names=["relay.example"])
        _, client_app = self.assert_fails(
            server_tls_options(cert, key),
            client_tls_options("wrong.example", self.ca_file),
        )
        self.assertTrue(client_app.lost.check(TLSVerificationError))
        self.assertEqual(
            describe_tls_error(client_app.lost),
            "the server certificate is not valid for 'wrong.example'",
        )

    def test_no_san_refused(self) -> None:
        """A CA-signed certificate without any subjectAltName is refused for every name."""
        cert, key = self.server_files(dns_names=[])
        _, client_app = self.assert_fails(
            server_tls_options(cert, key),
            client_tls_options("anything.example", self.ca_file),
        )
        self.assertIn(
            "cannot be checked for 'anything.example'",
            describe_tls_error(client_app.lost),
        )

    def test_client_certificate_cannot_pose_as_server(self) -> None:
        """A client certificate from the same CA is not accepted as the server's."""
        cert, key = self.write_pair(certs.client_certificate(), "client-as-server")
        _, client_app = self.assert_fails(
            server_tls_options(cert, key), client_tls_options("localhost", self.ca_file)
        )
        self.assertEqual(
            describe_tls_error(client_app.lost),
            "certificate verify failed: invalid purpose",
        )

    def test_ipv4_san(self) -> None:
        """A server name that is an IPv4 address is checked against IP SANs."""
        cert, key = self.server_files(dns_names=[], ip_addresses=["127.0.0.1"])
        self.assert_works(
            server_tls_options(cert, key), client_tls_options("127.0.0.1", self.ca_file)
        )

    def test_ipv6_san(self) -> None:
        """A server name that is an IPv6 address is checked against IP SANs."""
        cert, key = self.server_files(dns_names=[], ip_addresses=["::1"])
        self.assert_works(
            server_tls_options(cert, key), client_tls_options("::1", self.ca_file)
        )

    def test_ip_not_in_san(self) -> None:
        """An IP address is not matched by a certificate that only names a DNS name."""
        cert, key = self.server_files(dns_names=["localhost"])
        _, client_app = self.assert_fails(
            server_tls_options(cert, key), client_tls_options("127.0.0.1", self.ca_file)
        )
        self.assertIn("'127.0.0.1'", describe_tls_error(client_app.lost))

    def test_expired(self) -> None:
        """An expired certificate is refused by a verifying client, and the server warns."""
        cert, key = self.write_pair(certs.expired_certificate(), "expired")
        with capturedLogs() as events:
            options = server_tls_options(cert, key)
        self.assertTrue(any("expired" in e["log_format"] for e in events))
        client = client_tls_options("localhost", self.ca_file)
        _, client_app = self.assert_fails(options, client)
        self.assertEqual(
            describe_tls_error(client_app.lost),
            "certificate verify failed: cert has expired",
        )

    def test_expired_without_ca(self) -> None:
        """A non-verifying client accepts even an expired certificate, as frpc does."""
        cert, key = self.write_pair(certs.expired_certificate(), "expired")
        self.assert_works(
            server_tls_options(cert, key), client_tls_options("localhost")
        )


class SNITests(TLSTestCase):
    """Which server name the client announces."""

    def server_name_seen(self, creator) -> bytes | None:
        _, _, pump, server_tls = self.connect(server_tls_options(), creator)
        name = server_tls.getHandle().get_servername()
        server_tls.loseConnection()
        pump.flush()
        return name

    def test_dns_name_sent_without_ca(self) -> None:
        """A non-verifying client still sends SNI for a DNS server name."""
        name = self.server_name_seen(client_tls_options("relay.example"))
        self.assertEqual(name, b"relay.example")

    def test_ip_not_sent(self) -> None:
        """No SNI is sent for an IP address server name."""
        self.assertIsNone(self.server_name_seen(client_tls_options("192.0.2.7")))


class MutualTLSTests(TLSTestCase):
    """A server with tls_trusted_ca_file requires a valid client certificate."""

    def setUp(self) -> None:
        super().setUp()
        cert, key = self.server_files(dns_names=["localhost"])
        self.server = server_tls_options(cert, key, trusted_ca_file=self.ca_file)

    def test_no_client_certificate(self) -> None:
        """A client without a certificate is refused."""
        server_app, _ = self.assert_fails(self.server, client_tls_options("localhost"))
        self.assertEqual(
            describe_tls_error(server_app.lost), "peer did not return a certificate"
        )

    def test_client_certificate_from_other_ca(self) -> None:
        """A client certificate signed by another CA is refused."""
        cert, key = self.write_pair(
            certs.client_certificate(ca_name=certs.OTHER_CA_NAME), "client"
        )
        server_app, _ = self.assert_fails(
            self.server, client_tls_options("localhost", cert_file=cert, key_file=key)
        )
        self.assertEqual(
            describe_tls_error(server_app.lost), "certificate verify failed"
        )

    def test_right_client_certificate(self) -> None:
        """A client certificate signed by the trusted CA is accepted."""
        cert, key = self.write_pair(certs.client_certificate(), "client")
        self.assert_works(
            self.server, client_tls_options("localhost", self.ca_file, cert, key)
        )


class VersionTests(TLSTestCase):
    """Only TLS 1.2 and 1.3 are spoken."""

    def test_old_client_refused(self) -> None:
        """A client limited to TLS 1.1 cannot complete a handshake."""
        server_app, _ = self.assert_fails(server_tls_options(), OldTLSClient())
        self.assertEqual(describe_tls_error(server_app.lost), "unsupported protocol")

    def test_server_context_disables_old_versions(self) -> None:
        """The server context carries the no-TLS-1.0 and no-TLS-1.1 options."""
        options = server_tls_options().getContext().set_options(0)
        self.assertTrue(options & SSL.OP_NO_TLSv1)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)


class ConfigErrorTests(SynchronousTestCase):
    """Unusable files raise TLSConfigError naming the setting and the file."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.cert, self.key = certs.server_certificate().write_to(self.dir, "server")
        self.garbage = certs.write_pem(self.dir, "garbage.pem", b"not a pem file\n")

    def assert_error(self, call, *needles: str) -> None:
        error = self.assertRaises(TLSConfigError, call)
        message = str(error)
        self.assertNotIn("\n", message)
        for needle in needles:
            self.assertIn(needle, message)

    def test_missing_cert(self) -> None:
        """A missing certificate file is reported as unreadable."""
        missing = os.path.join(self.dir, "nope.crt")
        self.assert_error(
            lambda: server_tls_options(missing, self.key),
            "tls_cert_file",
            missing,
            "cannot read",
        )

    def test_garbage_cert(self) -> None:
        """A certificate file without PEM is reported."""
        self.assert_error(
            lambda: server_tls_options(self.garbage, self.key),
            "tls_cert_file",
            self.garbage,
            "PEM",
        )

    def test_garbage_key(self) -> None:
        """A key file without a PEM key is reported."""
        self.assert_error(
            lambda: server_tls_options(self.cert, self.garbage),
            "tls_key_file",
            self.garbage,
            "PEM",
        )

    def test_mismatched_key(self) -> None:
        """A key that belongs to another certificate is reported with both files."""
        _, other_key = certs.server_certificate().write_to(self.dir, "other")
        self.assert_error(
            lambda: server_tls_options(self.cert, other_key),
            other_key,
            self.cert,
            "does not match",
        )

    def test_garbage_ca(self) -> None:
        """A trusted CA file without PEM is reported on both sides."""
        self.assert_error(
            lambda: server_tls_options(trusted_ca_file=self.garbage),
            "tls_trusted_ca_file",
            self.garbage,
        )
        self.assert_error(
            lambda: client_tls_options("localhost", self.garbage),
            "tls_trusted_ca_file",
            self.garbage,
        )

    def test_client_mismatched_key(self) -> None:
        """The client's certificate pair is checked the same way."""
        _, other_key = certs.client_certificate().write_to(self.dir, "other")
        self.assert_error(
            lambda: client_tls_options(
                "localhost", cert_file=self.cert, key_file=other_key
            ),
            "does not match",
        )

    def test_bad_server_name(self) -> None:
        """A server name that is not a valid host name is reported."""
        self.assert_error(lambda: client_tls_options("a..b"), "tls_server_name", "a..b")

    def test_verifying_needs_a_name(self) -> None:
        """Verifying against a CA needs a server name."""
        ca = certs.write_pem(self.dir, "ca.crt", certs.certificate_authority().cert)
        self.assert_error(lambda: client_tls_options("", ca), "tls_server_name")

    def test_half_pair_ignored(self) -> None:
        """A certificate without a key is ignored with a warning, as frp ignores it."""
        with capturedLogs() as events:
            options = server_tls_options(cert_file=self.cert)
        self.assertTrue(any("together" in e["log_format"] for e in events))
        self.assertIsNotNone(options.certificate)
        self.assertEqual(options.certificate.subject.rfc4514_string(), "")


class CloseSemanticsTests(TLSTestCase):
    """What TLSMemoryBIOProtocol does with close_notify and half-close."""

    def test_no_loseWriteConnection_of_its_own(self) -> None:
        """labrelay's TLS transport has no loseWriteConnection; the name reaches the raw socket."""
        for cls in TLSTransport.__mro__:
            self.assertNotIn("loseWriteConnection", vars(cls), cls)
        self.assertTrue(issubclass(TLSTransport, TLSMemoryBIOProtocol))

    def test_close_notify_is_a_full_close(self) -> None:
        """A peer's close_notify reaches a half-closeable protocol as connectionLost only."""
        server_app = HalfCloseRecorder()
        _, client_app, pump, _ = self.connect(
            server_tls_options(), client_tls_options("localhost"), server_app
        )
        client_app.transport.write(b"last words")
        client_app.transport.loseConnection()
        pump.flush()
        self.assertEqual(server_app.data, b"last words")
        self.assertFalse(server_app.read_lost)
        self.assertTrue(server_app.lost.check(ConnectionDone))
        self.assertTrue(client_app.lost.check(ConnectionDone))


class DescribeTests(SynchronousTestCase):
    """describe_tls_error turns failures into one line."""

    def test_openssl_reasons(self) -> None:
        """OpenSSL's reason strings are joined, duplicates removed."""
        entry = ("SSL routines", "", "wrong version number")
        error = SSL.Error([entry, entry])
        self.assertEqual(describe_tls_error(error), "wrong version number")

    def test_other_exception(self) -> None:
        """Anything else is described by its text."""
        self.assertEqual(describe_tls_error(ValueError("boom")), "boom")


class ReceivePathTests(TLSTestCase):
    """What one read decrypts to reaches the protocol in one call."""

    def test_records_of_one_read_arrive_together(self) -> None:
        """
        100 KiB is 7 TLS records; the server reads them in one go and its
        protocol gets one dataReceived, not one per record; a close_notify
        behind them is handled after they were delivered.
        """
        calls = []

        class Counting(Recorder):
            def dataReceived(self, data: bytes) -> None:
                calls.append(len(data))
                super().dataReceived(data)

        server_app, client_app, pump, _ = self.connect(
            server_tls_options(), client_tls_options("localhost"), Counting()
        )
        pump.flush()
        payload = os.urandom(100 * 1024)
        client_app.transport.write(payload)
        client_app.transport.loseConnection()
        pump.flush()
        self.assertEqual(calls, [len(payload)])
        self.assertEqual(server_app.data, payload)
        self.assertTrue(server_app.lost.check(ConnectionDone))
