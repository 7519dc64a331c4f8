"""
Test-time X.509 material: a CA, server and client certificates, expired and
self-signed ones, all generated in memory with EC P-256 keys.

Nothing here is used at run time; it exists so that tests never need keys
stored in the repository.  Certificate authorities are cached per process
(one per name), so every test that needs "the CA" gets the same one and
generation stays cheap.  Leaf certificates are generated on each call.

Every function returns a :class:`PemPair` of PEM bytes;
:meth:`PemPair.write_to` and :func:`write_pem` put them into a directory
and return the paths.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
from collections.abc import Iterable
from typing import Optional

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CA_NAME = "labrelay test CA"
OTHER_CA_NAME = "labrelay unrelated test CA"


@attrs.frozen
class PemPair:
    """
    A certificate and its private key, both PEM-encoded.

    :ivar cert: the PEM certificate.
    :ivar key: the PEM (PKCS#8, unencrypted) private key.
    """

    cert: bytes
    key: bytes

    def write_to(self, directory: str, stem: str) -> tuple[str, str]:
        """
        Write ``<stem>.crt`` and ``<stem>.key`` into ``directory`` (created
        if needed) and return their paths as ``(cert_path, key_path)``.
        """
        return (
            write_pem(directory, stem + ".crt", self.cert),
            write_pem(directory, stem + ".key", self.key),
        )


def write_pem(directory: str, filename: str, data: bytes) -> str:
    """
    Write ``data`` to ``directory/filename`` (creating the directory) and
    return the path.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@attrs.frozen
class _Authority:
    """A CA's parsed certificate and key, for signing leaves."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem: PemPair


@functools.cache
def _authority(name: str) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = PemPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
    return _Authority(cert, key, pem)


def certificate_authority(name: str = DEFAULT_CA_NAME) -> PemPair:
    """
    Return the process-wide test CA called ``name`` (generated on first use).
    Different names give unrelated CAs, e.g. :data:`OTHER_CA_NAME` for
    "signed by the wrong CA" tests.
    """
    return _authority(name).pem


def _san(
    dns_names: Iterable[str], ip_addresses: Iterable[str]
) -> Optional[x509.SubjectAlternativeName]:
    entries: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    entries += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    return x509.SubjectAlternativeName(entries) if entries else None


def _leaf(
    common_name: str,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    usage: x509.ObjectIdentifier,
    issuer: Optional[_Authority],
    expired: bool,
) -> PemPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    if expired:
        not_before = now - datetime.timedelta(days=30)
        not_after = now - datetime.timedelta(days=1)
    else:
        not_before = now - datetime.timedelta(days=1)
        not_after = now + datetime.timedelta(days=30)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    san = _san(dns_names, ip_addresses)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return PemPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def server_certificate(
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = (),
    *,
    ca_name: str = DEFAULT_CA_NAME,
    expired: bool = False,
) -> PemPair:
    """
    A server certificate signed by the CA ``ca_name``, valid for the given DNS
    names and IP addresses (subjectAltName), or expired when ``expired``.
    """
    dns_names = tuple(dns_names)
    ip_addresses = tuple(ip_addresses)
    common_name = (dns_names + ip_addresses + ("labrelay test server",))[0]
    return _leaf(
        common_name,
        dns_names,
        ip_addresses,
        ExtendedKeyUsageOID.SERVER_AUTH,
        _authority(ca_name),
        expired,
    )


def expired_certificate(
    dns_names: Iterable[str] = ("localhost",), ip_addresses: Iterable[str] = ()
) -> PemPair:
    """A server certificate signed by the default CA whose validity ended yesterday."""
    return server_certificate(dns_names, ip_addresses, expired=True)


def client_certificate(
    common_name: str = "labrelay test client", *, ca_name: str = DEFAULT_CA_NAME
) -> PemPair:
    """A client-authentication certificate signed by the CA ``ca_name``."""
    return _leaf(
        common_name, (), (), ExtendedKeyUsageOID.CLIENT_AUTH, _authority(ca_name), False
    )


def self_signed_certificate(
    dns_names: Iterable[str] = ("localhost",), ip_addresses: Iterable[str] = ()
) -> PemPair:
    """A self-signed server certificate (issuer == subject, no CA)."""
    dns_names = tuple(dns_names)
    ip_addresses = tuple(ip_addresses)
    common_name = (dns_names + ip_addresses + ("labrelay self-signed",))[0]
    return _leaf(
        common_name,
        dns_names,
        ip_addresses,
        ExtendedKeyUsageOID.SERVER_AUTH,
        None,
        False,
    )
