"""Assertions on certificate structure, one helper per profile (trustme's assert_is_ca habit)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def assert_serial_ok(cert: x509.Certificate) -> None:
    serial = cert.serial_number
    assert serial > 0
    assert (serial.bit_length() + 8) // 8 <= 20  # DER INTEGER content octets, sign bit included
    assert serial.bit_length() >= 64  # a 159-bit random value is below 2**64 with probability 2**-95


def assert_is_ca(cert: x509.Certificate, *, path_length: int | None) -> None:
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == path_length
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature and not ku.value.key_encipherment
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert_serial_ok(cert)
    for absent in (x509.ExtendedKeyUsage, x509.SubjectAlternativeName):
        assert absent not in {e.value.__class__ for e in cert.extensions}


def assert_is_leaf(cert: x509.Certificate, issuer: x509.Certificate, purpose: str) -> None:
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign and not ku.value.content_commitment
    is_rsa = isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert ku.value.key_encipherment == (is_rsa and purpose == "server")
    eku = ext(cert, x509.ExtendedKeyUsage)
    expected = ExtendedKeyUsageOID.SERVER_AUTH if purpose == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    assert list(eku.value) == [expected]  # exactly one purpose
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == ext(issuer, x509.SubjectKeyIdentifier).value.digest
    assert cert.issuer == issuer.subject
    assert cert.not_valid_after_utc <= issuer.not_valid_after_utc  # never outlives its issuer
    assert cert.not_valid_before_utc >= issuer.not_valid_before_utc
    san = ext(cert, x509.SubjectAlternativeName)
    assert len(list(san.value)) >= 1
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if purpose == "server" and cns:
        values = [str(v) for v in san.value.get_values_for_type(x509.DNSName)]
        values += [str(v) for v in san.value.get_values_for_type(x509.IPAddress)]
        assert cns[0].value in values  # the CN is among the SAN entries
    assert_serial_ok(cert)
