"""The library limit, as code the benchmarks run in their child processes: what cryptography
itself does per certificate, with the extensions certkit puts on a server certificate, both
PEMs encoded, no files, no inventory (benchmarks/run.py, fleet_bench.py).

``SETUP`` makes a CA key and ``now``; ``one_certificate(indent)`` is the body of a loop over
``i`` that makes certificate ``i``.
"""

import textwrap

SETUP = r"""
import datetime as dt, sys, time
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # (naive UTC: what the builder keeps)
# The builder made in one call, its constant extensions made once, as certkit.profiles.build_certificate
# makes it: the fastest way the library offers (benchmarks/builder_cost.py: chained add_extension calls
# cost 16 to 55 µs more a certificate), so that the limit is the library's best, not a slower use of it.
aki = x509.Extension(x509.AuthorityKeyIdentifier.oid, False, x509.AuthorityKeyIdentifier(ca_ski.digest, None, None))
basic = x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(ca=False, path_length=None))
usage = x509.Extension(x509.KeyUsage.oid, True, x509.KeyUsage(True, False, False, False, False, False, False, False,
                                                              False))
eku = x509.Extension(x509.ExtendedKeyUsage.oid, False, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]))
SAN = x509.SubjectAlternativeName.oid
"""

_ONE = r"""
key = ec.generate_private_key(ec.SECP256R1())
host = f"h{i}.example.com"
ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
cert = x509.CertificateBuilder(
    ca_name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key.public_key(),
    x509.random_serial_number(), now, now + dt.timedelta(days=200),
    [x509.Extension(ski.oid, False, ski), aki, basic, usage, eku,
     x509.Extension(SAN, False, x509.SubjectAlternativeName([x509.DNSName(host)]))]).sign(ca_key, hashes.SHA256())
cert.public_bytes(serialization.Encoding.PEM)
key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
"""


def one_certificate(indent: int) -> str:
    """The loop body, indented ``indent`` spaces."""
    return textwrap.indent(_ONE.strip("\n"), " " * indent) + "\n"
