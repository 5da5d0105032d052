"""Describing certificates, CSRs and bundles in plain words.

:func:`certkit.material.load_material` reads a file (PEM with any mix of certificates, CSRs and keys, or a
DER certificate/CSR) or a bundle folder; :func:`describe_certificate` and :func:`describe_csr` turn one
object into a dict of facts, including a "usable for" sentence; :func:`inspect_path` does both for ``certkit inspect``.
Private keys are only ever described by type and by whether they match a certificate: no key material leaves here.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError, damage_said, parse_errors
from certkit.handshake_keys import signing_usage_note, tls_feature_note
from certkit.inspect_extensions import csr_facts, csr_lines, extension_facts, extension_lines
from certkit.inspect_purpose import EITHER_SIDE, _shown, leaf_kind, usable_for
from certkit.material import Material, UnreadableFile, load_material  # noqa: F401 (inspect's readers)
from certkit.paths import check_path_argument
from certkit.profiles import aware
from certkit.signatures import self_signed
from certkit.text import shown
from certkit.time_words import dated, described_dates, time_left, time_until
from certkit.vocabulary import (
    colons,
    common_name,
    dn_text,
    eku_name,
    general_name_text,
    iso,
    key_usage_names,
    ns_cert_type,
    serial_hex,
)

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA, IssuedCert


# --- describing ---------------------------------------------------------------------
def _ext(obj, cls):
    from cryptography import x509

    try:
        return obj.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _u_label(a_label: str) -> str | None:
    if "xn--" not in a_label.lower():
        return None
    import idna

    try:
        return idna.decode(a_label.lstrip("*."), uts46=False) if not a_label.startswith("*.") \
            else "*." + idna.decode(a_label[2:])
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def general_names(names) -> list[dict]:
    """subjectAltName entries as ``{"type", "value"}`` (+ ``"unicode"`` for IDN A-labels)."""
    from cryptography import x509

    out = []
    for gn in names:
        if isinstance(gn, x509.DNSName):
            entry = {"type": "DNS", "value": gn.value}
            if (u := _u_label(gn.value)) is not None:
                entry["unicode"] = u
        elif isinstance(gn, x509.IPAddress):
            entry = {"type": "IP", "value": str(gn.value)}
        elif isinstance(gn, x509.RFC822Name):
            entry = {"type": "email", "value": gn.value}
        elif isinstance(gn, x509.UniformResourceIdentifier):
            entry = {"type": "URI", "value": gn.value}
        else:  # as SAN entries are written everywhere: DirName, Registered ID, othername (never a repr)
            kind, _, value = general_name_text(gn).partition(":")
            entry = {"type": kind, "value": value}
        out.append(entry)
    return out


def _key_usage(ku) -> list[str]:
    return key_usage_names(ku)


def _eku(ext) -> list[str]:
    return [eku_name(oid) for oid in ext.value]


def _name_constraints(nc) -> dict:
    return {"permitted": [f"{e['type']}:{e['value']}" for e in general_names(nc.permitted_subtrees or [])],
            "excluded": [f"{e['type']}:{e['value']}" for e in general_names(nc.excluded_subtrees or [])]}


def describe_certificate(cert: "x509.Certificate | IssuedCert | CA", *, now: dt.datetime | None = None) -> dict:
    """Everything ``certkit inspect`` says about one certificate (an IssuedCert's, a CA's), as JSON-ready data."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from certkit.issued import certificate_argument

    cert, now = certificate_argument(cert, "cert"), aware(now, "now") if now is not None else dt.datetime.now(dt.UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    san = _ext(cert, x509.SubjectAlternativeName)
    sans = general_names(san.value) if san else []
    ku, eku = _ext(cert, x509.KeyUsage), _ext(cert, x509.ExtendedKeyUsage)
    bc, nc = _ext(cert, x509.BasicConstraints), _ext(cert, x509.NameConstraints)
    is_ca = bool(bc and bc.value.ca)
    eku_list = _eku(eku) if eku else None
    if now > not_after:  # in the words of certkit.time_words.dated, as verify, probe and serve say it
        status, days = "expired", (now - not_after).days
        validity_text = f"expired {dated(not_before, not_after, now)[0][1].partition(' UTC (')[2][:-1]}"
    elif now < not_before:
        status, days = "not yet valid", (not_before - now).days
        validity_text = f"valid in {time_until(not_before - now)}"
    else:
        status, days = "valid", (not_after - now).days
        validity_text = f"{time_left(not_after - now)} left"  # "23 hours left", not "0 days left"
    ns_types = ns_cert_type(cert)
    usable = usable_for(is_ca=is_ca, eku=eku_list, sans=sans, subject_cn=common_name(cert.subject),
                        path_length=bc.value.path_length if bc else None,
                        key_usage=_key_usage(ku.value) if ku else None, ns_types=ns_types)
    if status != "valid":
        usable = f"nothing now ({validity_text}); issued for {usable}"
    elif weak := _weak_key(cert):  # OpenSSL refuses it (a weak key, a critical extension): said where it is usable
        usable = f"nothing with OpenSSL-based peers: {weak}; issued for {usable}"
    elif (note := signing_usage_note(cert)) and not usable.startswith("nothing"):  # GnuTLS and Java refuse it
        usable = f"{usable}; beware: {note}"
    kind = leaf_kind(is_ca=is_ca, eku=eku_list)
    return {
        "type": "certificate",
        "subject": dn_text(cert.subject),
        "issuer": dn_text(cert.issuer),
        "self_signed": self_signed(cert),
        "serial": serial_hex(cert.serial_number),
        "not_before": iso(not_before),
        "not_after": iso(not_after),
        "status": status,
        "validity": validity_text,
        "days_left": (not_after - now).days if status != "expired" else -days,
        "key_type": _key_type(cert),
        "subject_alt_names": sans,
        "key_usage": _key_usage(ku.value) if ku else None,
        "extended_key_usage": eku_list,
        "ns_cert_type": ns_types,  # Netscape's certificate types; OpenSSL's purpose check still honours them
        "basic_constraints": {"ca": is_ca, "path_length": bc.value.path_length if bc else None,
                              "critical": bc.critical} if bc else None,
        "name_constraints": _name_constraints(nc.value) if nc else None,
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "fingerprint_sha1": cert.fingerprint(hashes.SHA1()).hex(),
        "kind": kind,
        "either_side": EITHER_SIDE if kind == "peer" else None,
        "usable_for": usable,
        "tls_feature": tls_feature_note(cert, lead=""),  # OCSP Must-Staple: servers must staple, Firefox checks
        **extension_facts(cert.extensions),  # policies, AIA, CRLDP, unknown extensions: as openssl x509 -text
    }


def describe_csr(csr: "x509.CertificateSigningRequest") -> dict:
    from cryptography import x509

    from certkit.csr import unchecked_key, weak_signature

    san = _ext(csr, x509.SubjectAlternativeName)
    eku = _ext(csr, x509.ExtendedKeyUsage)
    weak, unchecked = weak_signature(csr), unchecked_key(csr)  # unchecked: a key OpenSSL refuses, not a bad signature
    return {
        "type": "csr",
        "subject": dn_text(csr.subject),
        "key_type": _key_type(csr),
        # MD5 or SHA-1: not checked at all (cryptography refuses to), so not accepted, but not known to be altered.
        "signature_valid": False if weak else None if unchecked else _signature_valid(csr),
        "signature_unchecked": unchecked,
        "weak_signature": weak,
        "subject_alt_names": general_names(san.value) if san else [],
        "requested_extended_key_usage": _eku(eku) if eku else None,
        **csr_facts(csr),  # its attributes and every extension it requests, as openssl req -text
        "usable_for": "nothing yet: a CSR is a request; the CA that signs it decides the purpose "
                      "(certkit sign-csr --server or --client)",
    }


def inspect_path(path: str | Path, *, now: dt.datetime | None = None) -> dict:
    """Describe everything in a file or bundle folder: one dict for ``--json``."""
    from certkit.files import STDIN
    from certkit.inspect_crl import describe_crl
    from certkit.keys import key_type_of, public_key_der

    if str(path) != STDIN:
        check_path_argument(path, "path")
    if now is not None:
        aware(now, "now")
    material = load_material(path, crls=True)
    items, what = [], "certificate or CSR"
    try:
        for cert, name in material.certificates:
            items.append({"file": name, **describe_certificate(cert, now=now)})
        for csr, name in material.csrs:
            items.append({"file": name, **describe_csr(csr)})
        what = "CRL"  # a CRL entry's reasonCode that is no ENUMERATED is the CRL's damage, not a certificate's
        for crl, name in material.crls:  # its signature checked with the certificates beside it
            items.append({"file": name, **describe_crl(crl, now=now, beside=material.certificates)})
    except parse_errors() as exc:  # cryptography parses names, keys and extensions lazily
        read = [obj for obj, _ in material.certificates + material.csrs]  # a name OpenSSL reads: said, not damage
        raise UnreadableFile(f"{path} holds {damage_said(exc, what, read if what != 'CRL' else ())}.") from None
    keys = []
    publics = [(_public_der(c), c) for c, _ in material.certificates]
    publics += [(_public_der(r), r) for r, _ in material.csrs]
    for key, name in material.keys:
        if key is None:
            keys.append({"file": name, "encrypted": True, "matches": None,
                         "summary": "encrypted private key (not decrypted, so not compared)"})
            continue
        own = public_key_der(key.public_key())
        match = next((obj for der, obj in publics if der == own), None)
        subject = dn_text(match.subject) if match is not None else None
        keys.append({"file": name, "encrypted": False, "key_type": key_type_of(key), "matches": subject,
                     "summary": (f"private key ({key_type_of(key)}) matches the certificate {subject or '(empty)'}"
                                 if match is not None else
                                 f"private key ({key_type_of(key)}) matches NONE of the certificates here")})
    # A bundle file load_material passes over (a dangling link, a folder, a device) is named, never silent.
    unread = [{"file": name, "problem": why} for name, why in unreadable_files(Path(path))] \
        if str(path) != STDIN and Path(path).is_dir() else []
    return {"source": str(material.source), "items": items, "private_keys": keys, "unreadable": unread}


def unreadable_files(folder: Path) -> list[tuple[str, str]]:
    """The bundle files of ``folder`` that are there but hold nothing certkit (or a server) can read, each
    as (its name, why in words): "is empty", "is a folder, not a file", "does not hold a private key
    certkit can read". A missing file is not one (a bundle from a CSR has no privkey.pem); an encrypted
    key is not judged."""
    import os

    from cryptography import x509

    from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE, MAX_CERT_FILE_BYTES
    from certkit.files import read_limited
    from certkit.key_encryption import is_encrypted
    from certkit.keys import load_private_key
    from certkit.vocabulary import file_kind_text

    found = []
    for name in (CERT_FILE, FULLCHAIN_FILE, CHAIN_FILE, KEY_FILE, CA_FILE):
        file = folder / name
        if not file.is_file():  # a FIFO, a device, a folder or a dangling link there is not read
            if os.path.lexists(file):
                found.append((name, f"is {file_kind_text(file)}"))
            continue
        try:
            data = read_limited(file, MAX_CERT_FILE_BYTES)
        except CertkitError as exc:
            found.append((name, f"cannot be read: {str(exc).rstrip('.')}"))
            continue
        if not data.strip():
            found.append((name, "is empty"))
        elif name == KEY_FILE and not is_encrypted(data):
            try:
                load_private_key(data, None, source=f"key {file}")
            except CertkitError:
                found.append((name, "does not hold a private key certkit can read"))
        elif name != KEY_FILE and name != CA_FILE:  # ca.pem is judged by bundle_ca_note, in its own words
            try:
                x509.load_pem_x509_certificates(data)
            except ValueError:
                found.append((name, "does not hold a PEM certificate certkit can read"))
    return found


def _csr_signature(item: dict) -> str:
    if item.get("weak_signature"):
        return f"not accepted: {item['weak_signature']}, a weak signature algorithm (sign it with SHA-256)"
    if item["signature_valid"] is None:
        return f"not checked: {item.get('signature_unchecked') or 'its key type is one certkit cannot read'}"
    return "valid" if item["signature_valid"] else "INVALID (tampered or damaged)"


def render(report: dict) -> str:
    """The readable account printed by ``certkit inspect``."""
    lines: list[str] = []
    items = report["items"]
    for n, item in enumerate(items, 1):
        head = f"{item['file']}" + (f" [{n} of {len(items)}]" if len(items) > 1 else "")
        if item["type"] == "crl":
            from certkit.inspect_crl import render_crl

            lines += render_crl(item, head)
            continue
        if item["type"] == "csr":
            lines += [f"Certificate signing request ({head})",
                      f"  subject       {item['subject'] or '(empty)'}",
                      f"  key type      {item['key_type']}",
                      f"  signature     {_csr_signature(item)}",
                      f"  names asked   {_names_text(item['subject_alt_names'])}"]
            if item["requested_extended_key_usage"]:
                lines.append(f"  EKU asked     {', '.join(item['requested_extended_key_usage'])}")
            lines += [*csr_lines(item), f"  Usable for: {item['usable_for']}", ""]
            continue
        bc = item["basic_constraints"]
        lines += [f"Certificate ({head})",
                  f"  subject       {item['subject'] or '(empty)'}",
                  f"  issuer        {item['issuer'] or '(empty)'}"
                  + ("  (self-signed)" if item["self_signed"] else ""),
                  f"  serial        {item['serial']}",
                  *([f"  valid         {item['not_before'][:19].replace('T', ' ')} to "
                     f"{item['not_after'][:19].replace('T', ' ')} UTC ({item['validity']})"]
                    if item["status"] == "valid" else  # else as verify and probe: "valid from ... (in 6 days)"
                    [f"  {label:<13} {words}" for label, words in described_dates(item)]),
                  f"  key type      {item['key_type']}",
                  f"  names (SAN)   {_names_text(item['subject_alt_names'])}",
                  f"  key usage     {', '.join(item['key_usage'] or ['(none)'])}",
                  f"  EKU           {', '.join(item['extended_key_usage'] or ['(none)'])}",
                  *([f"  nsCertType    {', '.join(item['ns_cert_type']) or '(empty)'} (Netscape certificate type)"]
                    if item["ns_cert_type"] is not None else []),
                  "  basic constr. " + ("(none)" if bc is None else
                                        f"CA:{'TRUE' if bc['ca'] else 'FALSE'}"
                                        + (f", pathlen {bc['path_length']}" if bc["path_length"] is not None else "")
                                        + (", critical" if bc["critical"] else ""))]
        if item["name_constraints"]:
            nc = item["name_constraints"]
            lines.append(f"  name constr.  permitted: {', '.join(nc['permitted']) or '(none)'}; "
                         f"excluded: {', '.join(nc['excluded']) or '(none)'}")
        lines += textwrap.wrap(f"TLS feature   {item['tls_feature']}", 110, initial_indent="  ",
                               subsequent_indent=" " * 16) if item.get("tls_feature") else []
        lines += [*extension_lines(item), f"  SHA-256       {colons(item['fingerprint_sha256'])}",
                  f"  SHA-1         {colons(item['fingerprint_sha1'])}",
                  f"  Usable for: {item['usable_for']}"]
        if item["either_side"]:
            lines += textwrap.wrap(f"Peer certificate: {item['either_side']}", 96, initial_indent="  ",
                                   subsequent_indent="    ")
        lines.append("")
    for key in report["private_keys"]:
        lines.append(f"{key['file']}: {key['summary']}")
    for entry in report.get("unreadable", ()):
        lines.append(f"{entry['file']}: not read: it {entry['problem']}")
    # Each entry is one line; a subject, a SAN or a file name holding a newline or an escape
    # sequence is shown escaped within it, never as a line of its own.
    return "\n".join(shown(line) for line in lines).rstrip()


def _names_text(sans: list[dict]) -> str:
    return ", ".join(f"{e['type']}:{_shown(e)}" for e in sans) or "(none)"


def _weak_key(cert) -> str | None:
    """``its RSA key has 1024 bits: ...``, ``it marks its ... extension critical, which OpenSSL does not handle``
    (certkit verify's words of what OpenSSL refuses in the certificate itself), or None."""
    from cryptography.exceptions import UnsupportedAlgorithm

    from certkit.verify import weak_chain
    from certkit.verify_critical import openssl_refusal

    try:
        return next(iter(weak_chain([cert], anchored=self_signed(cert))), None) or openssl_refusal([cert])
    except UnsupportedAlgorithm:
        return None


def _signature_valid(csr) -> bool | None:
    """Whether the CSR's signature is valid; None (not checked) for a key type cryptography cannot read."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return csr.is_signature_valid
    except UnsupportedAlgorithm:
        return None


def _public_der(signed) -> bytes | None:
    """The DER of a certificate's or CSR's public key; None for a key type cryptography cannot read."""
    from cryptography.exceptions import UnsupportedAlgorithm

    from certkit.keys import public_key_der

    try:
        return public_key_der(signed.public_key())
    except UnsupportedAlgorithm:
        return None


def _key_type(signed) -> str:
    """The key type of a certificate's or CSR's public key, an RSA-PSS key (id-RSASSA-PSS, which
    cryptography reads as RSA) told apart: certkit certifies rsaEncryption keys only."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.x509.oid import PublicKeyAlgorithmOID

    from certkit.keys import key_type_of

    try:
        named = key_type_of(signed.public_key())
    except UnsupportedAlgorithm as exc:  # a well-formed certificate of a key type cryptography cannot read
        return f"unreadable here ({str(exc).rstrip('.')})"
    if getattr(signed, "public_key_algorithm_oid", None) == PublicKeyAlgorithmOID.RSASSA_PSS:
        return named.replace("rsa-", "rsa-pss-", 1)
    return named

