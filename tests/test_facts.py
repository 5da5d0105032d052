"""What the issuing pipeline records and prints about a certificate (IssuedCert.facts) is what the
certificate itself says: taken shortcuts (the subject as built, the SAN from the identities, the
dates and fingerprint formatted directly) are checked here against the certificate parsed on its
own, with cryptography and with the openssl binary, for every kind of subject and name."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certkit.ca import CA
from certkit.csr import load_csr
from certkit.inventory.rows import ISO, facts_of, iso, subject_text
from certkit.keys import generate_key
from certkit.vocabulary import san_entries, serial_hex

REQUESTS = {
    "dns": lambda ca: ca.issue_server(["web.example.com"]),
    "dns and ip": lambda ca: ca.issue_server(["10.0.0.1", "db.example.com", "::1"]),
    "ip only": lambda ca: ca.issue_server(["192.0.2.7"]),
    "wildcard": lambda ca: ca.issue_server(["*.apps.example.com"]),
    "idn": lambda ca: ca.issue_server(["bücher.example"]),
    "peer": lambda ca: ca.issue_peer(["etcd-0.cluster.local"]),
    "client plain": lambda ca: ca.issue_client("alice"),
    "client escaped": lambda ca: ca.issue_client('Smith, "Bob" +1 <ops>; #2 '.strip()),
    "client leading hash": lambda ca: ca.issue_client("#ops"),
    "client unicode": lambda ca: ca.issue_client("Zoë Ærø"),
    "client email and uri": lambda ca: ca.issue_client("svc", emails=["svc@example.com"],
                                                      uris=["spiffe://example.org/svc"]),
    "long name, empty subject": lambda ca: ca.issue_server(["a" * 60 + "." + "b" * 60 + ".example.com"]),
}


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("facts CA")


@pytest.mark.parametrize("what", list(REQUESTS))
def test_facts_are_the_certificates_own(ca: CA, what: str) -> None:
    issued = REQUESTS[what](ca)
    cert = x509.load_der_x509_certificate(issued.cert.public_bytes(Encoding.DER))  # nothing shared
    facts = issued.facts
    assert facts.serial == serial_hex(cert.serial_number)
    assert facts.subject == cert.subject.rfc4514_string()
    assert facts.names == san_entries(cert)
    assert facts.not_before == cert.not_valid_before_utc.strftime(ISO)
    assert facts.not_after == cert.not_valid_after_utc.strftime(ISO)
    assert facts.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert facts.der == cert.public_bytes(Encoding.DER)
    assert facts == facts_of(cert)  # and the same from the certificate alone
    # openssl agrees on the serial and the fingerprint
    shown = subprocess.run(["openssl", "x509", "-noout", "-serial", "-fingerprint", "-sha256"],
                           input=issued.cert_pem, capture_output=True, check=True).stdout.decode()
    assert f"serial={facts.serial}" in shown
    assert facts.fingerprint.upper() in shown.replace(":", "")


def test_facts_of_a_csr_and_a_renewal_keep_their_subject(ca: CA) -> None:
    key = generate_key("ecdsa-p256")
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ops, Inc."),
                         x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example.com")]), critical=False)
           .sign(key, hashes.SHA256()))
    signed = ca.sign_csr(load_csr(csr.public_bytes(Encoding.PEM)), "server")
    renewed = ca.renew(signed.cert, rekey=True)
    for issued in (signed, renewed):
        assert issued.facts == facts_of(issued.cert)


@pytest.mark.parametrize("value", ["a b", "#x", " x", "x ", "a,b", "a+b", 'a"b', "ü", "a\\b", "a;b", "a<b>",
                                   "a\0b", "*.example.com", "-x", "A.b-c_d"])
def test_subject_text_is_rfc4514(value: str) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    assert subject_text(name) == name.rfc4514_string()


@pytest.mark.parametrize("when", [dt.datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=dt.UTC),
                                  dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                                  dt.datetime(1970, 1, 1, tzinfo=dt.UTC)])
def test_iso_is_the_inventory_format(when: dt.datetime) -> None:
    assert iso(when) == when.astimezone(dt.UTC).strftime(ISO)


def _reference_record(issued, name: str, files: dict) -> bytes:
    """The JSON line as json.dumps writes the record (what formats.jsonl_record must equal)."""
    import json

    facts = issued.facts
    record = {"name": name, "kind": issued.kind, "serial": facts.serial, "subject": facts.subject,
              "names": facts.names, "not_before": facts.not_before, "not_after": facts.not_after,
              "fingerprint_sha256": facts.fingerprint, "cert": files["cert.pem"].decode("ascii")}
    if "privkey.pem" in files:
        record["key"] = files["privkey.pem"].decode("ascii")
    record |= {"chain": files.get("chain.pem", b"").decode("ascii"),
               "fullchain": files["fullchain.pem"].decode("ascii"), "ca": files["ca.pem"].decode("ascii")}
    return json.dumps(record, ensure_ascii=True).encode("ascii") + b"\n"


@pytest.mark.parametrize("what", list(REQUESTS))
@pytest.mark.parametrize("under", ["root", "intermediate"])
def test_json_line_is_json_dumps_of_the_record(ca: CA, what: str, under: str) -> None:
    from certkit.formats import Encoder, jsonl_record

    issuer = ca if under == "root" else CA.create("facts intermediate", parent=ca)
    issued = REQUESTS[what](issuer)
    files = Encoder("jsonl").files(issued)
    for name in ("web", 'we"ird/na\\me ü', "\u202etxt"):
        assert jsonl_record(issued, name, files) == _reference_record(issued, name, files)
    without_key = {k: v for k, v in files.items() if k != "privkey.pem"}  # a CSR's bundle
    assert jsonl_record(issued, "csr", without_key) == _reference_record(issued, "csr", without_key)


def test_tar_headers_read_back_with_tarfile() -> None:
    """The ustar headers batches write (built from cached fields, only the name summed per member)
    are read back by tarfile with a valid checksum and every field as written."""
    import random
    import tarfile

    from certkit.formats.encoding import _header

    rng = random.Random(13)
    for _ in range(3000):
        name = "".join(rng.choice("abc./-_xyz019") for _ in range(rng.randint(1, 99)))
        kind = rng.choice([tarfile.REGTYPE, tarfile.DIRTYPE])
        mode, size = rng.choice([0o600, 0o644, 0o755]), rng.randint(0, 10**6)
        mtime, uid, gid = rng.randint(0, 2**33), rng.randint(0, 70000), rng.randint(0, 70000)
        block = _header(name, kind, mode, size, mtime, uid, gid)
        assert len(block) == tarfile.BLOCKSIZE
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")  # raises on a bad checksum
        assert (info.name, info.type, info.mode, info.size, info.mtime, info.uid, info.gid) == (
            name.rstrip("/") if kind == tarfile.DIRTYPE else name, kind, mode, size, mtime, uid, gid)
