"""Round twenty, area show: verify's verdicts on unusual but real chains, compared with what real peers
(openssl verify -x509_strict, GnuTLS's certtool, Java's PKIX validator) do with them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from test_audit19_peers import _java_validates

from conftest import openssl, require, run_certkit

NOW = dt.datetime.now(dt.UTC)
HOST = "host.example.com"
_SERVER_AUTH = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])


def _cert(cn: str, key, issuer=None, issuer_key=None, *, ca: bool = False, extra=()) -> x509.Certificate:
    """A certificate as CAs make them (keyUsage, SKI, AKI; a leaf with serverAuth and a DNS name), plus ``extra``
    extensions (value, critical)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca, None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if not ca:
        names = x509.SubjectAlternativeName([x509.DNSName(HOST), x509.DNSName("localhost")])
        builder = builder.add_extension(names, critical=False)
        if not any(isinstance(value, x509.ExtendedKeyUsage) for value, _ in extra):
            builder = builder.add_extension(_SERVER_AUTH, critical=False)
    for value, critical in extra:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- 1. critical extensions OpenSSL handles and cryptography's verifier does not ----------------------------------
_POLICY = x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier("1.2.3.4"), None)])
_CDP = x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(
    "http://crl.example/ca.crl")], None, None, None)])


def _raw(oid: str, der_hex: str) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(ObjectIdentifier(oid), bytes.fromhex(der_hex))


# name: (the intermediate's extra extensions, the leaf's, the critical extension's OID)
_CRITICAL_CASES = {
    "leaf-policies": ([], [(_POLICY, True)], "2.5.29.32"),
    "ca-policies": ([(_POLICY, True)], [(_POLICY, False)], "2.5.29.32"),
    "leaf-crl-points": ([], [(_CDP, True)], "2.5.29.31"),
    "leaf-critical-eku": ([], [(_SERVER_AUTH, True)], "2.5.29.37"),
    "ca-critical-eku": ([(_SERVER_AUTH, True)], [], "2.5.29.37"),
    "ca-require-explicit-policy-met": ([(x509.PolicyConstraints(0, None), True), (_POLICY, False)],
                                       [(_POLICY, False)], "2.5.29.36"),
    "ca-require-explicit-policy-unmet": ([(x509.PolicyConstraints(0, None), True)], [], "2.5.29.36"),
    "ca-inhibit-any-policy": ([(x509.InhibitAnyPolicy(0), True)], [], "2.5.29.54"),
    "ca-policy-mappings": ([(_raw("2.5.29.33", "300c300a06032a030406032a0305"), True), (_POLICY, False)],
                           [(_POLICY, False)], "2.5.29.33"),
    "leaf-ns-cert-type": ([], [(_raw("2.16.840.1.113730.1.1", "03020640"), True)], "2.16.840.1.113730.1.1"),
    "leaf-ocsp-no-check": ([], [(x509.OCSPNoCheck(), True)], "1.3.6.1.5.5.7.48.1.5"),
    "leaf-proxy-cert-info": ([], [(_raw("1.3.6.1.5.5.7.1.14", "3000"), True)], "1.3.6.1.5.5.7.1.14"),
}


def _certtool_accepts(root: Path, full: Path) -> bool:
    said = subprocess.run([require("certtool"), "--verify", "--load-ca-certificate", str(root), "--infile", str(full)],
                          capture_output=True, text=True, timeout=60)
    return "Chain verification output: Verified." in said.stdout


def test_critical_extensions_openssl_handles_follow_openssl_and_name_who_refuses(tmp_path: Path) -> None:
    """A CA MUST mark policyConstraints and inhibitAnyPolicy critical (RFC 5280); cryptography's verifier refuses
    every critical extension it does not handle, so verify said NOT VALID of chains OpenSSL (-x509_strict too),
    Python's ssl, curl and nginx accept, under words that claimed GnuTLS and Java accept them too (GnuTLS refuses a
    critical policyConstraints, Java a critical cRLDistributionPoints). So was a critical extendedKeyUsage, which
    only the web PKI's rules forbid. Now the verdict is OpenSSL's, and the words of GnuTLS and Java are theirs."""
    from certkit.verify_critical import CRITICAL_PEERS

    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Policy Root", root_key, ca=True)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    fulls = []
    for case, (ca_extra, leaf_extra, _oid) in _CRITICAL_CASES.items():
        ca = _cert("Policy CA", ca_key, root, root_key, ca=True, extra=ca_extra)
        leaf = _cert(HOST, leaf_key, ca, ca_key, extra=leaf_extra)
        folder = tmp_path / case
        folder.mkdir()
        for file, certs in (("full.pem", (leaf, ca)), ("leaf.pem", (leaf,)), ("chain.pem", (ca,))):
            (folder / file).write_bytes(_pem(*certs))
        fulls.append(folder / "full.pem")
    java = dict(zip(_CRITICAL_CASES, _java_validates(tmp_path, tmp_path / "root.pem", *fulls), strict=True))
    for case, (_ca, _leaf, oid) in _CRITICAL_CASES.items():
        folder = tmp_path / case
        strict = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile",
                         tmp_path / "root.pem", "-untrusted", folder / "chain.pem", folder / "leaf.pem")
        said = run_certkit("verify", folder / "full.pem", "--ca-file", tmp_path / "root.pem", "--purpose", "server",
                           "--name", HOST)
        assert (said.returncode == 0) == (strict.returncode == 0), (case, said.stdout, strict.stdout)
        name, openssl_accepts, others = CRITICAL_PEERS[oid]
        assert openssl_accepts == (strict.returncode == 0), case
        text = " ".join(said.stdout.split())
        assert f"{name} ({oid}) extension" in text and others in text, (case, text)
        if openssl_accepts:
            assert "OpenSSL accepts it (so Python's ssl, curl, nginx and Node; openssl verify -x509_strict too)" \
                in text and "note" in said.stdout and said.stderr == "", (case, text)
        # What the words say of GnuTLS and Java is what they do.
        gnutls_refuses = "GnuTLS refuses" in others or "GnuTLS and Java refuse" in others
        assert _certtool_accepts(tmp_path / "root.pem", folder / "full.pem") != gnutls_refuses, case
        java_refuses = "Java refuses it" in others or "and Java refuse" in others or (
            "refuses a chain without those it requires" in others and not _leaf)
        assert java[case].startswith("REFUSED" if java_refuses else "ACCEPTED"), (case, java[case])


def _openssl_root_and_request(tmp_path: Path, root_cn: str, leaf: str, leaf_cn: str) -> list:
    """As the guides make them with openssl: a root (ca.pem, ca.key), a request for ``leaf_cn`` (LEAF.csr,
    LEAF.key) and leaf.ext, a server certificate's extensions for HOST; returns the openssl runs."""
    (tmp_path / "leaf.ext").write_text("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                                       f"extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{HOST}\n"
                                       "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    return [openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    tmp_path / "ca.key", "-out", tmp_path / "ca.pem", "-subj", f"/CN={root_cn}", "-days", "30",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    tmp_path / f"{leaf}.key", "-out", tmp_path / f"{leaf}.csr", "-subj", f"/CN={leaf_cn}")]


# --- 2. a negative serial number, as old CAs and firmware write it -------------------------------------------------
def test_a_negative_serial_is_shown_as_openssl_shows_it_and_judged_as_peers_judge_it(tmp_path: Path) -> None:
    """``openssl x509 -req -set_serial -0x80`` (RFC 5280 forbids it; old CAs made such serials by encoding a random
    number as signed): inspect said ``serial 0-80`` (and ``-5`` for OpenSSL's ``-05``), and verify NOT VALID
    ('certificate serial number cannot be negative') of what openssl verify -x509_strict, GnuTLS and Java accept."""
    made = _openssl_root_and_request(tmp_path, "Serial Root", "leaf", HOST)
    for serial in ("-0x80", "-5"):
        made.append(openssl("x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", tmp_path / "ca.pem", "-CAkey",
                            tmp_path / "ca.key", "-set_serial", serial, "-days", "10", "-extfile",
                            tmp_path / "leaf.ext", "-out", tmp_path / f"leaf{serial}.pem"))
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    for serial in ("-0x80", "-5"):
        leaf = tmp_path / f"leaf{serial}.pem"
        shown = openssl("x509", "-in", leaf, "-noout", "-serial").stdout.decode().strip().split("=")[1]
        assert shown in ("-80", "-05")
        inspected = run_certkit("inspect", leaf, check=True).stdout
        assert f"  serial        {shown}\n" in inspected, inspected
        strict = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile",
                         tmp_path / "ca.pem", leaf)
        assert strict.returncode == 0, strict.stdout
        said = run_certkit("verify", leaf, "--ca-file", tmp_path / "ca.pem", "--purpose", "server", "--name", HOST)
        assert said.returncode == 0 and f"{leaf}: VALID as a TLS server certificate" in said.stdout, said.stdout
        assert "refuses a negative serial number (RFC 5280 forbids it), which OpenSSL (-x509_strict too), Python's " \
               "ssl, GnuTLS and Java accept" in " ".join(said.stdout.split()), said.stdout
    assert _certtool_accepts(tmp_path / "ca.pem", tmp_path / "leaf-5.pem")
    assert _java_validates(tmp_path, tmp_path / "ca.pem", tmp_path / "leaf-5.pem") == ["ACCEPTED"]


def test_probe_of_a_server_under_a_ca_with_critical_policy_constraints_says_yes(tmp_path: Path) -> None:
    """probe's verdict is verify's: a server (openssl s_server, TLS 1.2 only) sending a chain through a CA with
    the critical policyConstraints RFC 5280 asks for was 'valid? NO' under 'chain verified against the CA'."""
    from test_probe import openssl_server

    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Policy Root", root_key, ca=True)
    ca = _cert("Policy CA", ca_key, root, root_key, ca=True, extra=[(x509.PolicyConstraints(0, None), True)])
    leaf = _cert(HOST, leaf_key, ca, ca_key)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    (tmp_path / "chain.pem").write_bytes(_pem(ca))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with openssl_server("-cert", tmp_path / "leaf.pem", "-key", tmp_path / "leaf.key", "-cert_chain",
                        tmp_path / "chain.pem", "-tls1_2") as port:
        said = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", tmp_path / "root.pem", "--json")
    data = json.loads(said.stdout)
    assert data["tls_version"] == "TLSv1.2"
    assert said.returncode == 0 and data["server_certificate"]["ok"] is True, said.stdout
    assert data["server_certificate"]["verified"] is True and data["server_certificate"]["reasons"] == []


# --- 3. dates before 2050 written as GeneralizedTime ---------------------------------------------------------------
def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    length = bytes([size]) if size < 128 else bytes([0x80 | (size.bit_length() + 7) // 8]) + size.to_bytes(
        (size.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _children(der: bytes) -> list[bytes]:
    """The DER elements inside ``der``'s outer element, each whole."""
    start = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    out, i = [], start
    while i < len(der):
        size, head = der[i + 1], 2
        if size & 0x80:
            head += size & 0x7F
            size = int.from_bytes(der[i + 2:i + head], "big")
        out.append(der[i:i + head + size])
        i += head + size
    return out


def _generalized_time(cert: x509.Certificate, issuer_key) -> x509.Certificate:
    """``cert`` with its validity written as GeneralizedTime (as some CAs write every date), signed again."""
    outer = _children(cert.public_bytes(serialization.Encoding.DER))
    fields = _children(outer[0])
    at = 4 if fields[0][0] == 0xA0 else 3  # version, serial, signature, issuer, validity
    times = [_tlv(0x18, b"20" + t[2:]) for t in _children(fields[at])]  # UTCTime 26... -> 2026...
    fields[at] = _tlv(0x30, b"".join(times))
    tbs = _tlv(0x30, b"".join(fields))
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_certificate(_tlv(0x30, tbs + outer[1] + _tlv(0x03, b"\0" + signature)))


def test_dates_before_2050_in_generalized_time_are_judged_as_peers_judge_them(tmp_path: Path) -> None:
    """RFC 5280 asks for UTCTime before 2050; cryptography's verifier refused such a leaf or CA ('validity dates
    between 1950 and 2049 must be UtcTime'), so verify said NOT VALID of what openssl verify -x509_strict, Python's
    ssl, GnuTLS and Java accept."""
    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Time Root", root_key, ca=True)
    ca = _generalized_time(_cert("Time CA", ca_key, root, root_key, ca=True), root_key)
    leaf = _generalized_time(_cert(HOST, leaf_key, ca, ca_key), ca_key)
    assert ca.not_valid_before_utc < NOW < leaf.not_valid_after_utc  # the dates themselves are unchanged
    for file, certs in (("root.pem", (root,)), ("full.pem", (leaf, ca)), ("leaf.pem", (leaf,)), ("chain.pem", (ca,))):
        (tmp_path / file).write_bytes(_pem(*certs))
    assert b"GENERALIZEDTIME" in openssl("asn1parse", "-in", tmp_path / "leaf.pem").stdout
    strict = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile",
                     tmp_path / "root.pem", "-untrusted", tmp_path / "chain.pem", tmp_path / "leaf.pem")
    assert strict.returncode == 0, strict.stdout
    assert _certtool_accepts(tmp_path / "root.pem", tmp_path / "full.pem")
    said = run_certkit("verify", tmp_path / "full.pem", "--ca-file", tmp_path / "root.pem", "--purpose", "server",
                       "--name", HOST)
    assert said.returncode == 0, said.stdout
    assert "refuses a date before 2050 written as GeneralizedTime (RFC 5280 asks for UTCTime), which OpenSSL " \
           "(-x509_strict too), Python's ssl, GnuTLS and Java accept" in " ".join(said.stdout.split()), said.stdout


# --- 4. what openssl x509 -req makes: a version 1 certificate; a serial longer than 20 octets -----------------------
def test_a_version_1_leaf_and_a_long_serial_are_judged_as_peers_judge_them(tmp_path: Path) -> None:
    """``openssl x509 -req`` without -extfile makes a version 1 certificate (PostgreSQL's and many guides' recipe
    for client certificates), and -set_serial can give more than 20 octets: cryptography's verifier refused both
    ('certificate must be an X509v3 certificate', 'serial between 1 and 20 octets'), so verify said NOT VALID of
    client and server certificates openssl verify -x509_strict, GnuTLS and Java accept. A version 1 server
    certificate has no subjectAltName, which certkit still asks of a server certificate, in its own words."""
    made = _openssl_root_and_request(tmp_path, "Guide Root", "alice", "alice")
    sign = ("x509", "-req", "-in", tmp_path / "alice.csr", "-CA", tmp_path / "ca.pem", "-CAkey", tmp_path / "ca.key",
            "-days", "10")
    made += [openssl(*sign, "-out", tmp_path / "v1.pem"),
             openssl(*sign, "-set_serial", "0x" + "ab" * 21, "-extfile", tmp_path / "leaf.ext", "-out",
                     tmp_path / "long-serial.pem")]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    assert b"Version: 1 (0x0)" in openssl("x509", "-in", tmp_path / "v1.pem", "-noout", "-text").stdout
    for leaf, purpose, why in (("v1.pem", "client", "refuses a version 1 certificate"),
                               ("long-serial.pem", "server", "refuses a serial number longer than 20 octets")):
        strict = openssl("verify", "-x509_strict", "-purpose", f"ssl{purpose}", "-CAfile", tmp_path / "ca.pem",
                         tmp_path / leaf)
        assert strict.returncode == 0, strict.stdout
        assert _certtool_accepts(tmp_path / "ca.pem", tmp_path / leaf)
        said = run_certkit("verify", tmp_path / leaf, "--ca-file", tmp_path / "ca.pem", "--purpose", purpose,
                           *(["--name", "alice"] if purpose == "client" else ["--name", HOST]))
        assert said.returncode == 0 and f"VALID as a TLS {purpose} certificate" in said.stdout, said.stdout
        assert why in " ".join(said.stdout.split()) and "Python's ssl, GnuTLS and Java accept" in said.stdout
    assert _java_validates(tmp_path, tmp_path / "ca.pem", tmp_path / "v1.pem",
                           tmp_path / "long-serial.pem") == ["ACCEPTED", "ACCEPTED"]
    said = run_certkit("verify", tmp_path / "v1.pem", "--ca-file", tmp_path / "ca.pem", "--purpose", "server")
    assert said.returncode == 1 and "reason    it has no subjectAltName, which a TLS server certificate needs: " \
        "browsers and Go refuse it" in said.stdout, said.stdout


# --- 5. a certificate certkit cannot read: a name form cryptography lacks, a duplicated extension ------------------
_EDI_PARTY_NAME = bytes.fromhex("a505a1030c0178")  # GeneralName [5] ediPartyName { partyName UTF8String "x" }


def _with_edi_name(cn: str, key, issuer, issuer_key, eku) -> x509.Certificate:
    """A leaf whose subjectAltName holds a DNS name and an ediPartyName: valid X.509, which OpenSSL reads and
    cryptography does not."""
    body = _tlv(0x82, b"localhost") + _EDI_PARTY_NAME
    san = x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, _tlv(0x30, body))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30)).add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.ExtendedKeyUsage([eku]), False).add_extension(san, False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
            .sign(issuer_key, hashes.SHA256()))


def _duplicated_extension(cert: x509.Certificate, issuer_key) -> bytes:
    """``cert`` (DER) with its last extension written twice, signed again: damaged (RFC 5280 forbids it)."""
    outer = _children(cert.public_bytes(serialization.Encoding.DER))
    fields = _children(outer[0])
    extensions = _children(_children(fields[-1])[0])
    fields[-1] = _tlv(0xA3, _tlv(0x30, b"".join([*extensions, extensions[-1]])))
    tbs = _tlv(0x30, b"".join(fields))
    return _tlv(0x30, tbs + outer[1] + _tlv(0x03, b"\0" + issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))))


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_probe_of_a_chain_certkit_cannot_read_says_which_certificate_and_why(tmp_path: Path) -> None:
    """A server sending a leaf with an ediPartyName in its subjectAltName (OpenSSL takes it), or an intermediate
    with a duplicated extension: probe ended in a traceback (UnsupportedGeneralNameType, DuplicateExtension from
    describing the chain); inspect and verify called the first 'a damaged certificate'. Now one Error line names
    the certificate and why, and a name form cryptography lacks is not called damage."""
    from test_probe import openssl_server

    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Odd Root", root_key, ca=True)
    ca = _cert("Odd CA", ca_key, root, root_key, ca=True)
    edi = _with_edi_name("localhost", leaf_key, root, root_key, ExtendedKeyUsageOID.SERVER_AUTH)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "edi.pem").write_bytes(_pem(edi))
    (tmp_path / "leaf.pem").write_bytes(_pem(_cert(HOST, leaf_key, ca, ca_key)))
    (tmp_path / "chain.der").write_bytes(_duplicated_extension(ca, root_key))
    made = openssl("x509", "-inform", "DER", "-in", tmp_path / "chain.der", "-out", tmp_path / "chain.pem")
    assert made.returncode == 0, made.stderr
    (tmp_path / "leaf.key").write_bytes(_key_pem(leaf_key))
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "root.pem",
                   tmp_path / "edi.pem").returncode == 0  # OpenSSL reads it, and takes it
    cannot_read = ("a certificate certkit cannot read: it holds an x400Address or ediPartyName name (in its "
                   "subjectAltName or another name extension), a form cryptography, which certkit reads certificates "
                   "with, does not support (openssl x509 -text shows it)")
    for chain, said in ((("-cert", tmp_path / "edi.pem"), f"certificate 1 of 1 the server sends is {cannot_read}"),
                        (("-cert", tmp_path / "leaf.pem", "-cert_chain", tmp_path / "chain.pem"),
                         "certificate 2 of 2 the server sends is a damaged certificate: Duplicate 2.5.29.35 extension "
                         "found")):
        with openssl_server(*chain, "-key", tmp_path / "leaf.key") as port:
            probed = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", tmp_path / "root.pem")
        assert probed.returncode == 1 and probed.stdout == "", probed.stdout
        assert probed.stderr == f"Error: localhost:{port}: {said}; openssl s_client -connect localhost:{port} " \
                                "-showcerts shows them.\n", probed.stderr
    inspected = run_certkit("inspect", tmp_path / "edi.pem")
    assert inspected.stderr == f"Error: {tmp_path / 'edi.pem'} holds a certificate or CSR certkit cannot read: " \
                               f"{cannot_read.split(': ', 1)[1]}.\n", inspected.stderr
    verified = run_certkit("verify", tmp_path / "edi.pem", "--ca-file", tmp_path / "root.pem", "--purpose", "server")
    assert verified.stderr == f"Error: {tmp_path / 'edi.pem'} holds {cannot_read}.\n", verified.stderr


def test_serve_says_why_it_rejects_a_client_certificate_certkit_cannot_read(tmp_path: Path) -> None:
    """Python's ssl takes a client certificate with an ediPartyName; serve then logged 'the client certificate
    cannot be parsed: x400Address/EDIPartyName are not supported types' (cryptography's words). Now its log says
    it is a certificate certkit cannot read, and why."""
    import socket
    import ssl

    from serve_process import serving

    root_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Odd Client Root", root_key, ca=True)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "server.pem").write_bytes(_pem(_cert(HOST, server_key, root, root_key)))
    (tmp_path / "server.key").write_bytes(_key_pem(server_key))
    (tmp_path / "client.pem").write_bytes(_pem(_with_edi_name("alice", client_key, root, root_key,
                                                              ExtendedKeyUsageOID.CLIENT_AUTH)))
    (tmp_path / "client.key").write_bytes(_key_pem(client_key))
    with serving("--cert", tmp_path / "server.pem", "--key", tmp_path / "server.key", "--client-ca",
                 tmp_path / "root.pem") as srv:
        context = ssl.create_default_context(cafile=tmp_path / "root.pem")
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            tls.recv(100)
        line = srv.wait_for_log("rejected")[0]
    assert line.endswith("it presented a client certificate certkit cannot read: it holds an x400Address or "
                         "ediPartyName name (in its subjectAltName or another name extension), a form cryptography, "
                         "which certkit reads certificates with, does not support (openssl x509 -text shows it)"), line


def test_files_given_beside_the_certificate_name_the_one_certkit_cannot_read(tmp_path: Path) -> None:
    """A damaged intermediate in --untrusted made verify blame the certificate verified ('leaf.pem holds a damaged
    certificate'); in --ca-file, and in probe's --cert file, it ended in a traceback (DuplicateExtension,
    UnsupportedGeneralNameType). Every file of certificates given to a command (material.load_certificates:
    --untrusted, --ca-file, --cert, serve's --client-ca, export-p12's certificate) now names itself, which
    certificate in it, and why, in one line, before any connection."""
    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Odd Root", root_key, ca=True)
    ca = _cert("Odd CA", ca_key, root, root_key, ca=True)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "leaf.pem").write_bytes(_pem(_cert(HOST, leaf_key, ca, ca_key)))
    (tmp_path / "leaf.key").write_bytes(_key_pem(leaf_key))
    (tmp_path / "ca.der").write_bytes(_duplicated_extension(ca, root_key))
    made = openssl("x509", "-inform", "DER", "-in", tmp_path / "ca.der", "-out", tmp_path / "ca.pem")
    assert made.returncode == 0, made.stderr
    (tmp_path / "edi.pem").write_bytes(_pem(_with_edi_name("alice", leaf_key, root, root_key,
                                                           ExtendedKeyUsageOID.CLIENT_AUTH)))
    damaged = "a damaged certificate: Duplicate 2.5.29.35 extension found"
    for args, said in (
            (("verify", tmp_path / "leaf.pem", "--untrusted", tmp_path / "ca.pem", "--ca-file", tmp_path / "root.pem",
              "--purpose", "server"), f"{tmp_path / 'ca.pem'} holds, as certificate 1 of 1, {damaged}; it is given "
                                      "as --untrusted, the intermediate CA certificates."),
            (("verify", tmp_path / "leaf.pem", "--ca-file", tmp_path / "ca.pem", "--purpose", "server"),
             f"{tmp_path / 'ca.pem'} holds, as certificate 1 of 1, {damaged}; it is given as --ca-file, the CA "
             "certificate(s) to trust."),
            (("probe", "https://localhost:1/", "--cert", tmp_path / "edi.pem", "--key", tmp_path / "leaf.key"),
             f"{tmp_path / 'edi.pem'} holds, as certificate 1 of 1, a certificate certkit cannot read: it holds an "
             "x400Address or ediPartyName name (in its subjectAltName or another name extension), a form "
             "cryptography, which certkit reads certificates with, does not support (openssl x509 -text shows it); "
             "it is given as the client certificate to present (--cert, --bundle).")):
        ran = run_certkit(*args)
        assert (ran.returncode, ran.stderr) == (1, f"Error: {said}\n"), ran.stderr
