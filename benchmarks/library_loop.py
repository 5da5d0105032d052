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
now = dt.datetime.now(dt.UTC)
"""

_ONE = r"""
key = ec.generate_private_key(ec.SECP256R1())
host = f"h{i}.example.com"
cert = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=200))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ca_ski.digest, None, None), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256()))
cert.public_bytes(serialization.Encoding.PEM)
key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
"""


def one_certificate(indent: int) -> str:
    """The loop body, indented ``indent`` spaces."""
    return textwrap.indent(_ONE.strip("\n"), " " * indent) + "\n"
