"""build_certificate makes its CertificateBuilder in one call, with the extensions listed and the
constant ones made once (certkit.profiles). These tests prove that it signs exactly the certificate
that cryptography's documented chained calls (subject_name(), add_extension(), ...) sign for the
same profile: an Ed25519 issuer signs deterministically, so the two DER encodings must be equal
byte for byte, for every profile and key type, with name constraints, an empty subject, and times
given in another time zone."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.names import parse_host
from certkit.profiles import PROFILES, build_certificate

ISSUER = ed25519.Ed25519PrivateKey.generate()
ISSUER_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Builder test CA")])
ISSUER_SKI = x509.SubjectKeyIdentifier.from_public_key(ISSUER.public_key()).digest
START = dt.datetime(2026, 12, 1, 8, 0, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(days=200) - dt.timedelta(seconds=1)
EKUS = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def chained(profile, subject, public_key, identities=(), constraints=None, path_length=None,
            not_before=START, not_after=END):
    """The profile written out with cryptography's chained builder calls, as its documentation does."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ISSUER_NAME).public_key(public_key)
               .serial_number(0x1234).not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(ski, critical=False)
               .add_extension(x509.AuthorityKeyIdentifier(ISSUER_SKI, None, None), critical=False))
    if profile.is_ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True))
        if constraints is not None:
            builder = builder.add_extension(constraints, critical=True)
    else:
        encipher = isinstance(public_key, rsa.RSAPublicKey) and "serverAuth" in profile.ekus
        names = [x509.DNSName(i.value) if i.kind == "dns" else x509.IPAddress(__import__("ipaddress").ip_address(
            i.value)) for i in identities] or [x509.DirectoryName(subject)]
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, encipher, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([EKUS[e] for e in profile.ekus]), critical=False)
                   .add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0))
    return builder.sign(ISSUER, None).public_bytes(Encoding.DER)


def certkit_der(profile, subject, public_key, identities=(), constraints=None, path_length=None,
                not_before=START, not_after=END):
    return build_certificate(profile, subject=subject, public_key=public_key, issuer_name=ISSUER_NAME,
                             issuer_key=ISSUER, issuer_ski=ISSUER_SKI, serial=0x1234, not_before=not_before,
                             not_after=not_after, identities=identities, constraints=constraints,
                             path_length=path_length).public_bytes(Encoding.DER)


def cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


KEYS = {
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
    "rsa-2048": lambda: rsa.generate_private_key(65537, 2048).public_key(),
    "ed25519": lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
}


@pytest.mark.parametrize("key_type", sorted(KEYS))
@pytest.mark.parametrize("kind", ["server", "client", "peer"])
def test_a_leaf_is_the_certificate_the_chained_calls_sign(kind, key_type) -> None:
    public_key = KEYS[key_type]()
    identities = [parse_host("www.example.test"), parse_host("192.0.2.7"), parse_host("2001:db8::1")]
    assert certkit_der(PROFILES[kind], cn("www.example.test"), public_key, identities) == chained(
        PROFILES[kind], cn("www.example.test"), public_key, identities)


def test_an_empty_subject_gets_the_critical_san_the_chained_calls_give_it() -> None:
    public_key = KEYS["ecdsa-p256"]()
    identities = [parse_host("a" * 60 + ".example.test")]
    ours = certkit_der(PROFILES["server"], x509.Name([]), public_key, identities)
    assert ours == chained(PROFILES["server"], x509.Name([]), public_key, identities)
    assert x509.load_der_x509_certificate(ours).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).critical


@pytest.mark.parametrize("name,path_length", [("root-ca", 1), ("intermediate-ca", 0)])
def test_a_ca_with_name_constraints_is_the_certificate_the_chained_calls_sign(name, path_length) -> None:
    public_key = KEYS["ecdsa-p256"]()
    constraints = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None)
    assert certkit_der(PROFILES[name], cn("Sub CA"), public_key, constraints=constraints, path_length=path_length) \
        == chained(PROFILES[name], cn("Sub CA"), public_key, constraints=constraints, path_length=path_length)


def test_times_in_another_time_zone_are_the_same_moments_in_utc() -> None:
    """The one-call builder is given naive UTC times, as the chained calls convert them."""
    public_key = KEYS["ecdsa-p256"]()
    plus_two = dt.timezone(dt.timedelta(hours=2))
    identities = [parse_host("tz.example.test")]
    ours = certkit_der(PROFILES["server"], cn("tz.example.test"), public_key, identities,
                       not_before=START.astimezone(plus_two), not_after=END.astimezone(plus_two))
    assert ours == chained(PROFILES["server"], cn("tz.example.test"), public_key, identities)
    cert = x509.load_der_x509_certificate(ours)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (START, END)
