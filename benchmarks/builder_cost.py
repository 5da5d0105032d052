"""What cryptography's CertificateBuilder costs beyond the signature itself, per certificate.

Answers whether certkit could sign faster than the library loop of fleet_bench.py does: a full
server profile's ``sign``, a minimal one's, the same with the constant extensions pre-encoded
(``UnrecognizedExtension``), the full profile's builder made in one call with its extensions listed
(as certkit.profiles.build_certificate makes it) against the chained calls the library loop makes,
and the bare ECDSA P-256 signature, each the minimum of 5 repeats.

    python benchmarks/builder_cost.py [--number 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import timeit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def builders():
    ca, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
    minimal = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=200)))
    extensions = [
        (x509.SubjectAlternativeName([x509.DNSName("bench.example")]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False),
    ]
    full, raw = minimal, minimal
    for value, critical in extensions:
        full = full.add_extension(value, critical)
        raw = raw.add_extension(x509.UnrecognizedExtension(value.oid, value.public_bytes()), critical)
    tbs = full.sign(ca, hashes.SHA256()).tbs_certificate_bytes
    cases = {"full server profile": full, "constant extensions pre-encoded": raw, "minimal": minimal}
    listed = [x509.Extension(value.oid, critical, value) for value, critical in extensions]

    def chained():  # the builder made as the library loop makes it, then signed
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=200)))
        for value, critical in extensions:
            builder = builder.add_extension(value, critical)
        return builder.sign(ca, hashes.SHA256())

    def one_call():  # the same certificate, the builder made in one call
        return x509.CertificateBuilder(name, name, key.public_key(), 1, now.replace(tzinfo=None),
                                       (now + dt.timedelta(days=200)).replace(tzinfo=None), listed).sign(
            ca, hashes.SHA256())

    assert chained().tbs_certificate_bytes == one_call().tbs_certificate_bytes
    return ca, cases, tbs, {"chained calls": chained, "one call": one_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    number = parser.parse_args().number
    ca, cases, tbs, making = builders()

    def best(call) -> float:
        return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6

    print("| what | µs per certificate |\n|---|---:|")
    for label, builder in cases.items():
        print(f"| CertificateBuilder.sign, {label} | {best(lambda b=builder: b.sign(ca, hashes.SHA256())):.1f} |")
    for label, make in making.items():
        print(f"| full server profile, builder made and signed: {label} | {best(make):.1f} |")
    print(f"| ECDSA P-256 signature of the TBS alone | {best(lambda: ca.sign(tbs, ec.ECDSA(hashes.SHA256()))):.1f} |")
    print(f"| EC P-256 key generation | {best(lambda: ec.generate_private_key(ec.SECP256R1())):.1f} |")


if __name__ == "__main__":
    main()
