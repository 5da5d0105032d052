"""Round thirty-seven, area revoke1: revocation and CRLs, checked against real peers (openssl verify -crl_check,
openssl crl -text) on what certkit writes and reads back.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_audit22_show import _pem, crl_ca  # noqa: F401 (crl_ca: a CA, its leaf and key, the module's fixture)

from conftest import certkit_env, openssl, run_certkit

NOW = dt.datetime.now(dt.UTC)


def _crl_with_entries(ca, key, entries: list) -> bytes:
    """A CRL of ``ca`` listing serials 0x99, 0x9A... (not the leaf's), entry i with the extensions entries[i]."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(NOW - dt.timedelta(minutes=5)).next_update(NOW + dt.timedelta(days=1))
               .add_extension(x509.CRLNumber(7), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    for i, extensions in enumerate(entries):
        entry = x509.RevokedCertificateBuilder().serial_number(0x99 + i).revocation_date(NOW - dt.timedelta(days=1))
        for value, critical in extensions:
            entry = entry.add_extension(value, critical)
        builder = builder.add_revoked_certificate(entry.build())
    return _pem(builder.sign(key, hashes.SHA256()))


def _inspected(path, home) -> tuple[str, dict]:
    """inspect's text of ``path`` and the CRL item of its --json."""
    env = certkit_env(HOME=str(home))
    report = json.loads(run_certkit("inspect", path, "--json", env=env, check=True).stdout)
    return run_certkit("inspect", path, env=env, check=True).stdout, next(i for i in report["items"]
                                                                            if i["type"] == "crl")


_PRIVATE = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
_REASON = x509.CRLReason(x509.ReasonFlags.key_compromise)
_SINCE = x509.InvalidityDate(NOW - dt.timedelta(days=3))
ENTRY_CASES = {
    # entries' extensions; what inspect names (None: usable, as openssl verify finds it)
    "private-critical": ([[(_PRIVATE, True)]], "the entry of 99 has a critical extension OpenSSL does not handle "
                                               "(1.2.3.4.5)"),
    "reason-critical": ([[], [(_REASON, True)]], "the entry of 9A has a critical extension OpenSSL does not "
                                                 "handle (cRLReason, 2.5.29.21)"),
    "two-entries-critical": ([[(_SINCE, True)], [(_REASON, False), (_SINCE, True)]],
                             "the entries of 99, 9A have a critical extension OpenSSL does not handle "
                             "(invalidityDate, 2.5.29.24)"),
    "none-critical": ([[(_PRIVATE, False)], [(_REASON, False), (_SINCE, False)]], None),
}


@pytest.mark.parametrize("case", list(ENTRY_CASES))
def test_a_crl_entry_with_a_critical_extension_is_said_to_make_the_crl_unusable(crl_ca, case: str) -> None:  # noqa: F811
    """A CRL entry extension marked critical (a private one, even a reasonCode or invalidityDate) makes OpenSSL
    refuse every certificate of the CA, the leaf it does not list too: openssl verify -crl_check says 'unhandled
    critical CRL extension' (x_crl.c: only certificateIssuer may be critical in an entry). inspect said nothing,
    and --json's unusable was empty: a CRL that locks everyone out looked current and usable."""
    where, ca, key = crl_ca
    entries, inspect_says = ENTRY_CASES[case]
    both = where / f"{case}.pem"  # the CA and its CRL in one file, as -CAfile (and nginx's ssl_crl beside it) take
    both.write_bytes(_pem(ca) + _crl_with_entries(ca, key, entries))
    peer = openssl("verify", "-crl_check", "-CAfile", both, where / "leaf.pem")
    peer.stdout, peer.stderr = peer.stdout.decode(), peer.stderr.decode()
    text, item = _inspected(both, where)
    assert item["signature"].startswith("valid"), item
    if inspect_says is None:
        assert peer.returncode == 0, peer.stdout + peer.stderr
        assert item["unusable"] == [] and "NOT USABLE" not in text, text
        return
    assert peer.returncode != 0 and "unhandled critical CRL extension" in peer.stdout + peer.stderr, peer.stdout
    assert len(item["unusable"]) == 1 and item["unusable"][0].startswith(inspect_says), item["unusable"]
    assert "refuses every certificate of its CA, not only th" in item["unusable"][0], item["unusable"]
    assert "{" not in item["unusable"][0], item["unusable"]
    assert f"  NOT USABLE    {inspect_says}" in text, text


def test_inspect_says_a_crl_entrys_invalidity_date_and_reason_as_openssl_crl_does(crl_ca) -> None:  # noqa: F811
    """openssl crl -text shows an entry's invalidityDate (when the key was compromised, which RFC 5280 5.3.2 lets
    be earlier than the revocation date) and reads reason 8 as 'Remove From CRL'. inspect showed no invalidity
    date at all, in the text or --json, and spelled reason 8 'removeFromCrl', RFC 5280's name being
    removeFromCRL (the reasons an issuingDistributionPoint is limited to are named as RFC 5280 names them too)."""
    where, ca, key = crl_ca
    since = (NOW - dt.timedelta(days=3)).replace(microsecond=0)
    crl = where / "dated.pem"
    crl.write_bytes(_crl_with_entries(ca, key, [
        [(x509.CRLReason(x509.ReasonFlags.key_compromise), False), (x509.InvalidityDate(since), False)],
        [(x509.CRLReason(x509.ReasonFlags.remove_from_crl), False)],
        [],
    ]))
    told = subprocess.run(["openssl", "crl", "-in", crl, "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    assert "Invalidity Date" in told and since.strftime("%b %e %H:%M:%S %Y GMT") in told, told
    assert "Remove From CRL" in told, told
    env = certkit_env(HOME=str(where))
    text = run_certkit("inspect", crl, env=env, check=True).stdout
    [item] = json.loads(run_certkit("inspect", crl, "--json", env=env, check=True).stdout)["items"]
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [(e["serial"], e["revocation_reason"], e["reason"], e["invalidity_date"]) for e in item["revoked"]] == [
        ("99", "keyCompromise", "keyCompromise", stamp), ("9A", "removeFromCRL", "removeFromCRL", None),
        ("9B", "unspecified", "unspecified", None)], item["revoked"]
    assert f"(keyCompromise; invalid since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC)" in text, text
    assert "(removeFromCRL)" in text and "(unspecified)" in text and "removeFromCrl" not in text, text

    scoped = where / "scoped.pem"  # an issuingDistributionPoint for some reasons only, removeFromCRL not among them
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(NOW - dt.timedelta(minutes=5)).next_update(NOW + dt.timedelta(days=1))
               .add_extension(x509.CRLNumber(8), False)
               .add_extension(x509.IssuingDistributionPoint(
                   full_name=None, relative_name=None, only_contains_user_certs=False,
                   only_contains_ca_certs=False, indirect_crl=False, only_contains_attribute_certs=False,
                   only_some_reasons=frozenset({x509.ReasonFlags.ca_compromise, x509.ReasonFlags.aa_compromise})),
                   True))
    scoped.write_bytes(_pem(builder.sign(key, hashes.SHA256())))
    [item] = json.loads(run_certkit("inspect", scoped, "--json", env=env, check=True).stdout)["items"]
    assert item["scope"].endswith("revocations for these reasons only: aACompromise, cACompromise"), item["scope"]


@pytest.mark.parametrize("with_ca", [False, True])
def test_a_crl_whose_entry_reason_is_damaged_is_said_to_be_a_damaged_crl(crl_ca, with_ca: bool) -> None:  # noqa: F811
    """A CRL entry whose reasonCode is no ENUMERATED (an empty SEQUENCE: openssl crl -text prints its reason as
    '0.', openssl verify -crl_check uses the CRL) was 'X holds a damaged certificate or CSR: ...', of a file that
    holds a CRL (and, beside it, a certificate that is whole). It is now said to be a damaged CRL, in one line."""
    where, ca, key = crl_ca
    bad = x509.UnrecognizedExtension(x509.oid.CRLEntryExtensionOID.CRL_REASON, b"\x30\x00")
    crl = where / f"bad-reason-{with_ca}.pem"
    crl.write_bytes((_pem(ca) if with_ca else b"") + _crl_with_entries(ca, key, [[(bad, False)]]))
    told = subprocess.run(["openssl", "crl", "-in", crl, "-noout", "-text"], capture_output=True, text=True)
    assert told.returncode == 0 and "Serial Number: 99" in told.stdout, told.stdout + told.stderr
    env = certkit_env(HOME=str(where))
    for args in (("inspect", crl), ("inspect", crl, "--json")):
        proc = run_certkit(*args, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        said = proc.stderr if "--json" not in args else json.loads(proc.stdout)["error"]
        assert f"{crl} holds a damaged CRL: " in said and "certificate or CSR" not in said, said


def _spaced(serial: str, lower: bool = True) -> str:
    """A serial as Windows' certificate dialog shows it (octets separated by spaces, lower case)."""
    text = " ".join(serial[i:i + 2] for i in range(0, len(serial), 2))
    return text.lower() if lower else text


def test_a_serial_in_octets_separated_by_spaces_is_taken_as_openssls_colons_are(ca_dir, ca_env, tmp_path) -> None:
    """A serial copied from Windows' certificate dialog or macOS Keychain ('5b c8 46 6b ...') was 'No certificate
    of this CA matches' for revoke (whole or a prefix of 8+ digits), renew and the library's revoke and
    inventory.get, though its colon-separated form ('5b:c8:46:...') is taken. Spaces now separate octets as colons
    do; the CRL then lists each certificate so revoked, as openssl crl reads it."""
    from certkit.store import CADirectory
    from certkit.vocabulary import serial_hex

    serials = {}
    for name in ("whole.test", "prefix.test", "renewed.test", "library.test"):
        run_certkit("issue-server", name, "--out", tmp_path / name, env=ca_env, check=True)
        cert = x509.load_pem_x509_certificate((tmp_path / name / "cert.pem").read_bytes())
        serials[name] = serial_hex(cert.serial_number)
    run_certkit("revoke", _spaced(serials["whole.test"]), "--reason", "superseded", env=ca_env, check=True)
    run_certkit("revoke", _spaced(serials["prefix.test"][:10], lower=False), env=ca_env, check=True)
    renewed = run_certkit("renew", "  " + _spaced(serials["renewed.test"]) + " ", "--json", env=ca_env, check=True)
    assert json.loads(renewed.stdout)["renewed_from"] == serials["renewed.test"], renewed.stdout
    ca = CADirectory(ca_dir).open()
    assert ca.inventory.get(_spaced(serials["library.test"]))["subject"] == "CN=library.test"
    assert ca.revoke(_spaced(serials["library.test"]), "keyCompromise")["serial"] == serials["library.test"]
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    told = subprocess.run(["openssl", "crl", "-in", crl, "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    for name in ("whole.test", "prefix.test", "library.test"):
        assert f"Serial Number: {serials[name]}" in told, (name, told)
    assert serials["renewed.test"] not in told, told
    refused = run_certkit("revoke", "5b c8 zz", env=ca_env)  # not hex: refused as before, in one line
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr


def test_a_serial_given_in_decimal_is_refused_with_its_hex(ca_dir, ca_env, tmp_path) -> None:
    """A serial in decimal, as Python's cert.serial_number (and Go's, Java's getSerialNumber()) print it, was 'No
    certificate of this CA matches ...; certkit list shows them', with nothing of why: its digits are hex digits
    too. revoke and renew still refuse it (nothing revoked, nothing renewed), and now say the serial it is in hex,
    which they then take."""
    from certkit.vocabulary import serial_hex

    run_certkit("issue-server", "dec.test", "--out", tmp_path / "dec", env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "dec" / "cert.pem").read_bytes())
    decimal = str(cert.serial_number)
    hexed = serial_hex(cert.serial_number)
    for args in (("revoke", decimal), ("revoke", decimal, "--reason", "keyCompromise"), ("renew", decimal)):
        proc = run_certkit(*args, env=ca_env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, \
            proc.stderr
        assert f"Read as a decimal number it is serial {hexed} (CN=dec.test), but certkit reads serials in hex" \
               in proc.stderr and proc.stderr.rstrip().endswith(f"give {hexed}."), proc.stderr
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert [(c["serial"], c["status"]) for c in listed] == [(hexed, "valid")], listed  # nothing changed
    other = run_certkit("revoke", "12345678901", env=ca_env)  # decimal of no serial here: said as before
    assert other.returncode == 1 and "decimal" not in other.stderr, other.stderr
    from certkit.errors import UnknownCertificate
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()  # the library's revoke, given str(cert.serial_number)
    with pytest.raises(UnknownCertificate, match=f"Read as a decimal number it is serial {hexed} "):
        ca.revoke(decimal, "keyCompromise")
    assert ca.inventory.get(hexed)["status"] == "valid"
    assert ca.revoke(cert.serial_number)["serial"] == hexed  # the int, as the page says
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    assert f"Serial Number: {hexed}" in openssl("crl", "-in", crl, "-noout", "-text").stdout.decode()


@pytest.mark.parametrize(("der", "name"), [(False, "crl.der"), (True, "crl.pem"), (True, "CRL.PEM")])
@pytest.mark.parametrize("to", ["--out", "stdout"])
def test_a_crl_is_not_written_under_a_name_of_the_other_encoding(ca_dir, ca_env, tmp_path, der, name, to) -> None:
    """crl --out crl.der (no --der) wrote a PEM CRL there, which openssl crl -inform DER refuses, and crl --der
    --out crl.pem a DER one, which nginx's ssl_crl (PEM_read_bio_X509_CRL) refuses: every client locked out at
    the next reload. Both are refused, --out or '> FILE', before a passphrase is asked or a number taken, as a
    compressed name is; the right pair is written, and openssl reads it."""
    target = tmp_path / name
    flags = ["--der"] if der else []
    if to == "--out":
        proc = run_certkit("crl", *flags, "--out", target, env=ca_env)
    else:
        with open(target, "wb") as out:
            proc = subprocess.run([sys.executable, "-m", "certkit", "crl", *flags], stdout=out, stderr=subprocess.PIPE,
                                  text=True, env=ca_env, cwd=tmp_path)
    stderr = proc.stderr
    assert proc.returncode == 1 and "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    wanted = ("is named as a PEM file, but --der writes a DER CRL" if der else
              "is named as a DER file, but without --der certkit writes a PEM CRL")
    assert wanted in stderr, stderr
    assert not target.exists() or target.stat().st_size == 0  # '> FILE': the shell made it, nothing written
    right = tmp_path / ("right.der" if der else "right.pem")
    run_certkit("crl", *flags, "--out", right, env=ca_env, check=True)
    read = openssl("crl", "-in", str(right), "-inform", "DER" if der else "PEM", "-noout", "-crlnumber")
    assert read.returncode == 0 and "crlNumber=0x01" in read.stdout.decode(), read  # the refusal took no number


def test_a_compromised_keys_later_certificates_are_not_revoked_before_they_existed(ca_dir, tmp_path) -> None:
    """ca.revoke(serial, "keyCompromise", when=T) revokes every certificate of that key, and dated each at T, also one
    issued after T (its notBefore later): list and the CRL said it was revoked before it existed, which revoke
    refuses for the certificate it is given ('cannot be revoked before it existed'). Each is now dated T or, if
    later, its own notBefore (one not valid yet: now); the one given stays at T. openssl crl -text reads the dates."""
    import time

    from cryptography.hazmat.primitives.asymmetric import ec

    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    ca = CADirectory(ca_dir).open()
    ca.unlock(PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    first = ca.issue_server(["first.test"], key=key)
    time.sleep(2)
    later = ca.issue_server(["later.test"], key=key)
    ahead = ca.issue_server(["ahead.test"], key=key, not_before=NOW + dt.timedelta(days=2))
    when = first.cert.not_valid_before_utc
    assert later.cert.not_valid_before_utc > when
    row = ca.revoke(first.serial_hex, "keyCompromise", when=when)
    assert sorted(row["also_revoked"]) == sorted([later.serial_hex, ahead.serial_hex]), row
    dates = {s: ca.inventory.get(s)["revoked_at"] for s in (first.serial_hex, later.serial_hex, ahead.serial_hex)}
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    assert dates[first.serial_hex] == when.strftime(stamp), dates
    assert dates[later.serial_hex] == later.cert.not_valid_before_utc.strftime(stamp), dates
    assert when.strftime(stamp) < dates[ahead.serial_hex] <= dt.datetime.now(dt.UTC).strftime(stamp), dates
    crl = tmp_path / "crl.pem"
    crl.write_bytes(_pem(ca.crl()))
    told = openssl("crl", "-in", crl, "-noout", "-text").stdout.decode()
    for issued in (first, later):
        at = (issued.cert.not_valid_before_utc if issued is later else when).strftime("%b %e %H:%M:%S %Y GMT")
        assert f"Serial Number: {issued.serial_hex}\n        Revocation Date: {at}" in told, (at, told)


def test_an_intermediates_directory_given_to_its_parents_revoke_names_the_command_that_works(tmp_path) -> None:
    """certkit revoke --ca-dir root issuing (the intermediate's CA directory, given to the CA above it) was told
    'To revoke that CA, revoke its certificate issuing/ca.pem with --ca-dir naming the CA above it', which is the
    --ca-dir given: it read as if root were the wrong CA. When this CA issued that CA's certificate, the refusal
    now says to give its ca.pem (or serial) to this same CA; that works, and the root's CRL then lists it, so
    openssl verify -crl_check_all refuses the intermediate's leaf. A CA directory this CA did not issue (its
    own, or the intermediate's given to itself) is said as before; nothing is revoked by a refusal."""
    from conftest import PASSPHRASE, new_ca

    root = new_ca(tmp_path, "Revoke Root")
    issuing = tmp_path / "issuing"
    env = {**root, "CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}
    run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", tmp_path / "ca", "--name", "Revoke Issuing",
                env=env, check=True)
    run_certkit("issue-server", "leaf.test", "--ca-dir", issuing, "--out", tmp_path / "leaf", env=root, check=True)
    from certkit.vocabulary import serial_hex

    serial = serial_hex(x509.load_pem_x509_certificate((issuing / "ca.pem").read_bytes()).serial_number)
    proc = run_certkit("revoke", "--ca-dir", tmp_path / "ca", issuing, "--reason", "cACompromise", env=root)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert (f"This CA issued that CA's certificate: to revoke it, give its certificate, {issuing / 'ca.pem'} (or "
            f"its serial, {serial}), with this same CA.") in proc.stderr, proc.stderr
    assert "naming the CA above it" not in proc.stderr, proc.stderr
    for ca_dir, folder in ((issuing, issuing), (tmp_path / "ca", tmp_path / "ca")):  # no CA of theirs: as before
        other = run_certkit("revoke", "--ca-dir", ca_dir, folder, env=root)
        assert other.returncode == 1 and "with --ca-dir naming the CA above it" in other.stderr, other.stderr
    listed = json.loads(run_certkit("list", "--ca-dir", tmp_path / "ca", "--json", env=root, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["valid"], listed  # the refusals revoked nothing
    run_certkit("revoke", "--ca-dir", tmp_path / "ca", issuing / "ca.pem", "--reason", "cACompromise", env=root,
                check=True)
    for ca_dir, name in ((tmp_path / "ca", "root.crl"), (issuing, "issuing.crl")):
        run_certkit("crl", "--ca-dir", ca_dir, "--out", tmp_path / name, env=root, check=True)
    crls = tmp_path / "crls.pem"
    crls.write_bytes((tmp_path / "root.crl").read_bytes() + (tmp_path / "issuing.crl").read_bytes())
    peer = openssl("verify", "-crl_check_all", "-CAfile", tmp_path / "ca" / "ca.pem", "-untrusted",
                   issuing / "ca.pem", "-CRLfile", crls, tmp_path / "leaf" / "cert.pem")
    assert peer.returncode != 0 and b"error 23 at 1 depth lookup: certificate revoked" in peer.stdout + peer.stderr
