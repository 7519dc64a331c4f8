# -*- test-case-name: tests.unit.test_tls -*-
"""
TLS configuration for the link between the relay client and server.

This module owns turning frp's ``tls_*`` settings into pyOpenSSL-backed
Twisted connection creators, and describing TLS failures in one line:

* :func:`server_tls_options` (frps): the configured certificate, or a
  self-signed one generated in memory at start-up when none is configured
  (as frps does); with ``tls_trusted_ca_file``, client certificates are
  required and verified against that CA.
* :func:`client_tls_options` (frpc): with ``tls_trusted_ca_file`` the server's
  chain *and* name (DNS name or IP address, checked by service_identity)
  are verified; without it any certificate is accepted, exactly like frp's
  ``InsecureSkipVerify``.  SNI is sent whenever the server name is a DNS
  name.  An optional client certificate is presented.

The client does not use ``optionsForClientTLS``: its verify callback (as of
Twisted 26.10) accepts a CA-signed certificate that has no subjectAltName
for *any* name, merely logging the error.  With one CA issuing both client
and server certificates (common for frp mTLS), that would let a client
certificate impersonate the server.  :func:`_verify_callback` refuses it.

Both sides speak TLS 1.2 and 1.3 only.  Bad files raise :class:`TLSConfigError`,
whose message names the setting, the file and what is wrong with it; a
refused server certificate is reported as :class:`TLSVerificationError`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Optional, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: frp's "custom TLS first byte" (``FRPTLSHeadByte``): sent by frpc before the
#: ClientHello when ``disable_custom_tls_first_byte = false``.
TLS_HEAD_BYTE = b"\x17"

#: The first byte of any TLS handshake record (a ClientHello).
TLS_HANDSHAKE_BYTE = b"\x16"

_MINIMUM_VERSION = TLSVersion.TLSv1_2

_log = Logger()


class TLSConfigError(Exception):
    """
    A TLS file setting cannot be used.  ``str()`` is one line naming the
    setting, the file and the problem.
    """


# -- loading files ---------------------------------------------------------


def _read(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(
            f"{setting} {path!r}: cannot read the file ({e.strerror or e})"
        ) from None


def _load_certificates(setting: str, path: str) -> list[x509.Certificate]:
    data = _read(setting, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TLSConfigError(f"{setting} {path!r}: no PEM certificate in the file")
    return certs


def _load_private_key(setting: str, path: str) -> Any:
    data = _read(setting, path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(
            f"{setting} {path!r}: the private key is encrypted (a passphrase-free "
            f"PEM key is needed)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(
            f"{setting} {path!r}: not a readable PEM private key"
        ) from None


def _public_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_identity(
    cert_file: str, key_file: str, *, warn_expired: bool
) -> Optional[dict[str, Any]]:
    """
    Load a certificate (plus any chain after it) and its key, as keyword
    arguments for :class:`CertificateOptions`; ``None`` if the pair is not set.

    frp uses the pair only when both files are set, so a half-set pair is
    ignored (with a warning) rather than rejected.
    """
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        _log.warn(
            "TLS: tls_cert_file and tls_key_file must be set together; "
            "ignoring tls_cert_file={cert_file!r} tls_key_file={key_file!r}",
            cert_file=cert_file,
            key_file=key_file,
        )
        return None
    certs = _load_certificates("tls_cert_file", cert_file)
    key = _load_private_key("tls_key_file", key_file)
    if _public_der(key.public_key()) != _public_der(certs[0].public_key()):
        raise TLSConfigError(
            f"tls_key_file {key_file!r}: the key does not match the certificate in "
            f"tls_cert_file {cert_file!r}"
        )
    not_after = certs[0].not_valid_after_utc
    if warn_expired and not_after < datetime.datetime.now(datetime.timezone.utc):
        _log.warn(
            "TLS: the certificate in {cert_file!r} expired on {not_after}; "
            "clients that verify it will refuse it",
            cert_file=cert_file,
            not_after=not_after.isoformat(),
        )
    # pyOpenSSL takes cryptography objects for the identity (its own X509 and
    # PKey wrappers are deprecated there); trust stores still need X509.
    return dict(privateKey=key, certificate=certs[0], extraCertChain=certs[1:])


def _load_ca(trusted_ca_file: str) -> list[X509]:
    certs = _load_certificates("tls_trusted_ca_file", trusted_ca_file)
    return [X509.from_cryptography(c) for c in certs]


def _self_signed_identity() -> dict[str, Any]:
    """
    An in-memory self-signed certificate for a server with none configured.
    Like frps's, it carries no name: clients that skip verification (frpc's
    default) accept it, clients that verify do not.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return dict(privateKey=key, certificate=cert)


#: OpenSSL's SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a write that OpenSSL could
#: not finish (it waits for the peer) may be retried from another buffer, as
#: :mod:`labrelay.tls_transport` does.  pyOpenSSL sets it on every context
#: since 25.2; Python 3.9 (PyPy) stops at pyOpenSSL 25.1, where without it
#: a no-mux TLS tunnel lost its last bytes (tests.integration.test_tls_tunnel).
_ACCEPT_MOVING_WRITE_BUFFER = 0x2


def _certificate_options(**kwargs: Any) -> CertificateOptions:
    """``CertificateOptions(**kwargs)`` whose context accepts a write
    retried from another buffer."""
    options = CertificateOptions(**kwargs)
    options.getContext().set_mode(_ACCEPT_MOVING_WRITE_BUFFER)
    return options


# -- server ----------------------------------------------------------------


def server_tls_options(
    cert_file: str = "", key_file: str = "", trusted_ca_file: str = ""
) -> CertificateOptions:
    """
    Build the server side's TLS options, usable as
    ``TLSMemoryBIOFactory(options, False, factory)``.

    :param cert_file: ``tls_cert_file``; with ``key_file`` the server
        certificate (any further certificates in the file are sent as the
        chain).  Without the pair, a self-signed certificate is generated.
    :param key_file: ``tls_key_file``.
    :param trusted_ca_file: ``tls_trusted_ca_file``; when set, clients must
        present a certificate signed by one of the CAs in this file.
    :raises TLSConfigError: a file is unreadable, not PEM, or the key does
        not match the certificate.
    """
    identity = _load_identity(cert_file, key_file, warn_expired=True)
    if identity is None:
        identity = _self_signed_identity()
    verify: dict[str, Any] = {}
    if trusted_ca_file:
        verify = dict(
            verify=True, caCerts=_load_ca(trusted_ca_file), requireCertificate=True
        )
    return _certificate_options(raiseMinimumTo=_MINIMUM_VERSION, **identity, **verify)


# -- client ----------------------------------------------------------------


class TLSVerificationError(Exception):
    """
    The server's certificate was refused by a verifying client.  ``str()``
    is one line: the OpenSSL verification error, or the name it does not
    match.
    """


_VERIFY_CODES = {
    getattr(SSL.X509VerificationCodes, name): name[4:].lower().replace("_", " ")
    for name in dir(SSL.X509VerificationCodes)
    if name.startswith("ERR_")
}


def _is_ip(name: str) -> bool:
    return bool(isIPAddress(name) or isIPv6Address(name))


def _check_name(cert: X509, server_name: str) -> None:
    certificate = cert.to_cryptography()
    try:
        if _is_ip(server_name):
            verify_certificate_ip_address(certificate, server_name)
        else:
            verify_certificate_hostname(certificate, server_name)
    except VerificationError:
        raise TLSVerificationError(
            f"the server certificate is not valid for {server_name!r}"
        ) from None
    except CertificateError as e:
        raise TLSVerificationError(
            f"the server certificate cannot be checked for {server_name!r}: {e}"
        ) from None


def _verify_callback(tls_protocol: Any, server_name: str) -> Any:
    """
    OpenSSL's chain result, then the server name on the leaf.

    Twisted's own callback (``optionsForClientTLS``) lets a CA-signed
    certificate *without any subjectAltName* through for every name, only
    logging the error; this one refuses it.  Every refusal is reported to
    the TLS protocol as a :class:`TLSVerificationError`.
    """
    protocol_ref = [tls_protocol]

    def fail(error: Exception) -> bool:
        if protocol_ref:
            protocol_ref.pop().failVerification(Failure(error))
        return False

    def callback(connection: Any, cert: X509, errno: int, depth: int, ok: int) -> bool:
        try:
            if not ok:
                reason = _VERIFY_CODES.get(errno, f"error {errno}")
                return fail(
                    TLSVerificationError(f"certificate verify failed: {reason}")
                )
            if depth == 0:
                _check_name(cert, server_name)
                protocol_ref.clear()
            return True
        except TLSVerificationError as e:
            return fail(e)
        except BaseException:
            # An exception must not escape into OpenSSL: fail closed.
            _log.failure("TLS: error while verifying the server certificate")
            return fail(
                TLSVerificationError("certificate verify failed: internal error")
            )

    return callback


@implementer(IOpenSSLClientConnectionCreator)
class _ClientTLS:
    """
    Client connections that send SNI for a DNS server name and, with
    ``verify``, check the chain against the configured CA and the name.
    Without ``verify`` any certificate is accepted (frp's
    ``InsecureSkipVerify``).
    """

    def __init__(
        self, server_name: str, options: CertificateOptions, verify: bool
    ) -> None:
        self._options = options
        self._server_name = server_name
        self._verify = verify
        self._sni: Optional[bytes] = None
        if server_name and not _is_ip(server_name):
            try:
                self._sni = server_name.encode("idna")
            except UnicodeError:
                raise TLSConfigError(
                    f"tls_server_name {server_name!r}: not a valid host name"
                ) from None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        # What CertificateOptions.clientConnectionForTLS does since Twisted
        # 26 (no ALPN is configured here); Twisted 25.5, the last release
        # for Python 3.9 (PyPy 7.3), has only getContext().
        connection = SSL.Connection(self._options.getContext(), None)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        if self._verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                _verify_callback(tlsProtocol, self._server_name),
            )
        return connection


def client_tls_options(
    server_name: str,
    trusted_ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
) -> IOpenSSLClientConnectionCreator:
    """
    Build the client side's TLS connection creator (for ``wrapClientTLS`` or
    ``TLSMemoryBIOFactory(creator, True, factory)``).

    :param server_name: ``tls_server_name`` (frp's default: ``server_addr``);
        a DNS name or an IP address, used for SNI (DNS names only) and, with
        a CA, for checking the server's certificate (service_identity rules:
        subjectAltName DNS or IP entries).
    :param trusted_ca_file: ``tls_trusted_ca_file``; without it, any server
        certificate is accepted.
    :param cert_file: ``tls_cert_file``, an optional client certificate.
    :param key_file: ``tls_key_file``, its key.
    :raises TLSConfigError: a file is unreadable, not PEM, or the key does
        not match the certificate.
    """
    extra: dict[str, Any] = dict(raiseMinimumTo=_MINIMUM_VERSION)
    identity = _load_identity(cert_file, key_file, warn_expired=False)
    if identity is not None:
        extra.update(identity)
    if not trusted_ca_file:
        return _ClientTLS(server_name, _certificate_options(**extra), verify=False)
    if not server_name:
        raise TLSConfigError(
            "tls_server_name: a server name (or server_addr) is needed to verify "
            f"the server against tls_trusted_ca_file {trusted_ca_file!r}"
        )
    roots = trustRootFromCertificates(
        [Certificate(c) for c in _load_ca(trusted_ca_file)]
    )
    return _ClientTLS(
        server_name, _certificate_options(trustRoot=roots, **extra), verify=True
    )


# -- diagnostics -----------------------------------------------------------


def _openssl_reasons(error: SSL.Error) -> str:
    reasons = []
    details = error.args[0] if error.args else None
    if isinstance(details, Sequence) and not isinstance(details, (str, bytes)):
        for entry in details:
            if isinstance(entry, Sequence) and len(entry) == 3 and entry[2]:
                reasons.append(str(entry[2]))
    if reasons:
        return "; ".join(dict.fromkeys(reasons))
    return str(error) or error.__class__.__name__


def describe_tls_error(reason: Union[Failure, BaseException]) -> str:
    """
    One line for a TLS failure: OpenSSL's reason strings (for example
    ``unsupported protocol``, ``tlsv1 alert unknown ca``) or, for a refused
    server certificate, the :class:`TLSVerificationError` text.
    """
    error = reason.value if isinstance(reason, Failure) else reason
    if isinstance(error, SSL.Error):
        return _openssl_reasons(error)
    return str(error) or error.__class__.__name__
