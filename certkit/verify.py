"""Checking a certificate against a CA for a purpose and a name, and saying why it fails.

The verdict comes from ``cryptography.x509.verification`` (the same RFC 5280
path validation and CA/B-style policy pyca ships), but its error text is meant
for developers. So :func:`verify_certificate` also examines the certificate
itself (who issued it, its dates, its extendedKeyUsage, its names) and states
each problem as a plain sentence, keeping the verifier's own words beside them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.anchors import load_trust, unanchored_leaf, whence
from certkit.errors import CertkitError
from certkit.handshake_keys import (
    refused_ca_key,
    signing_usage_note,
    tls_feature_note,
    unchecked_signature,
    unusable_leaf_key,
)
from certkit.sent_chain import chain_strangers
from certkit.signatures import issuer_among, signature_by, signed_by
from certkit.text import shown
from certkit.verify_critical import beyond_the_verifier, judged_by_certkit, openssl_refusal
from certkit.verify_files import _above_this_ca, _judge_folder, _sent, load_certificate_chain
from certkit.verify_names import (
    check_verify_arguments,
    cn_problem,
    cn_text,
    date_problems,
    dotted_san,
    identities_as_written,
    name_notes,
    name_problem,
    plain_verifier_error,
    san_list,
    server_name,
    verify_arguments,
)
from certkit.verify_purpose import ca_purpose_problem, purpose_problem
from certkit.verify_rfc3779 import resources_problem
from certkit.vocabulary import dn_text, eku_names, is_ca, iso

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA
    from certkit.issued import IssuedCert
    CertLike = x509.Certificate | IssuedCert | CA  # a certificate, or the one an IssuedCert or a CA holds

PURPOSES = ("server", "client")


@dataclass
class Verdict:
    valid: bool
    purpose: str
    name: str | None
    subject: str
    issuer: str
    not_after: dt.datetime
    reasons: list[str] = field(default_factory=list)  # plain sentences, empty when valid
    verifier_error: str | None = None  # cryptography's own words
    chain: list[str] = field(default_factory=list)  # subjects, leaf to trust anchor, when valid
    name_checked: bool = False
    name_ok: bool | None = None  # None when no name was given
    peer: bool = False  # a leaf with both serverAuth and clientAuth (certkit issue-peer): usable on either side
    notes: list[str] = field(default_factory=list)  # plain sentences about the input that do not decide the verdict
    not_before: dt.datetime | None = None  # for the words of its dates (time_words.dated); --json keeps not_after alone
    purposes: dict | None = None  # purpose "peer": each side's verdict (certkit.verify_peer)

    def to_dict(self) -> dict:
        return {
            "valid": self.valid, "purpose": self.purpose, "name": self.name,
            "name_checked": self.name_checked, "name_ok": self.name_ok, "subject": self.subject, "issuer": self.issuer,
            "not_after": iso(self.not_after), "reasons": self.reasons,
            "verifier_error": self.verifier_error, "chain": self.chain, "peer": self.peer, "notes": self.notes,
        } | ({"purposes": self.purposes} if self.purposes is not None else {})


# --- examining ----------------------------------------------------------------------
# openssl verify applies no security level unless given one: said beside the reason, so its "OK" is not taken for
# a verdict that disagrees (TLS, Python's ssl and nginx apply it).
_AUTH_LEVEL = "; openssl verify says so only when given -auth_level {}"


def weak_chain(path: list, *, anchored: bool = True) -> list[str]:
    """What OpenSSL at its default security level (2: Python's ssl, nginx on current systems) refuses in ``path``
    but cryptography's verifier is not asked about: RSA (or DSA) keys under 2048 bits, SHA-1 or MD5 signatures;
    a leaf key no handshake signs with, a CA key none checks (:mod:`certkit.handshake_keys`). ``anchored``: the
    last of ``path`` is the trust anchor, whose own signature nobody checks (alone: when it signed itself)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

    problems = []
    for depth, cert in enumerate(path):
        key = cert.public_key()
        whose = "its" if depth == 0 else f"the CA {cn_text(cert.subject)}'s"
        if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < 2048:
            problems.append(f"{whose} {'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'} key has {key.key_size} "
                            "bits: OpenSSL at its default security level (Python's ssl, nginx) refuses keys under "
                            f"2048 bits (\"key too weak\"{_AUTH_LEVEL.format(2)})")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.key_size < 224:
            problems.append(f"{whose} EC key is on {key.curve.name}, of {key.key_size} bits: OpenSSL at its default "
                            "security level (Python's ssl, nginx) refuses EC keys under 224 bits (\"key too weak\""
                            f"{_AUTH_LEVEL.format(2)})")
        try:  # the trust anchor's own signature is not checked by anyone
            digest = cert.signature_hash_algorithm if depth < len(path) - anchored else None
        except Exception:  # an algorithm cryptography does not know: the verifier says it
            digest = None
        if isinstance(digest, (hashes.SHA1, hashes.MD5)):
            problems.append(f"{'it' if depth == 0 else 'the CA ' + cn_text(cert.subject)} is signed with "
                            f"{digest.name.upper()}, a digest OpenSSL (Python's ssl, nginx) and cryptography's "
                            f"verifier refuse (\"digest algorithm too weak\"{_AUTH_LEVEL.format(1)})")
    return problems + [p for p in (unusable_leaf_key(path[0]) or refused_ca_key(path[0]),) if p]


def _path(leaf, intermediates, roots, sent: str | None = None, now=None, **known) -> tuple[list, str | None]:
    """Walk issuer links from ``leaf`` to a trust anchor; return the path and, if it
    breaks, a sentence saying where. ``sent`` names the file the chain came from, when it is
    what a server sends (a bundle's fullchain.pem); ``known``: what else tells where the leaf comes
    from (:func:`certkit.anchors.unanchored_leaf`'s ``recorded``, ``whole`` and ``sender``)."""
    path, cert = [leaf], leaf
    pool = list(intermediates)
    for _ in range(8):
        anchor = issuer_among(cert, roots, now)  # a valid one, of a CA renewed with its key beside its old self
        if anchor is not None:
            return path + ([anchor] if anchor != cert else []), None
        nxt = issuer_among(cert, pool, now)
        if nxt is None and (unknown := next((c for c in [*roots, *pool] if signature_by(cert, c) is None), None)):
            return path, (f"certkit cannot check its signature by {cn_text(unknown.subject)}: "
                          f"{unchecked_signature(unknown)}")
        if nxt is None:
            ca_names = ", ".join(cn_text(r.subject) for r in roots)
            if cert is leaf:
                return path, unanchored_leaf(leaf, list(roots), sent=sent, **known)
            if cert.issuer == cert.subject:  # it reached a root: one above the trusted CA, or another's
                above = any(signed_by(r, cert) for r in roots)
                return path, (f"not issued by the trusted CA ({ca_names}) nor by a CA below it: its chain ends at "
                              f"the root {cn_text(cert.subject)}"
                              + (", a CA above the trusted one, whose own inventory records whether it revoked it"
                                 if above else ", another CA's"))
            if twin := next((c for c in intermediates if c.subject == cert.subject and c != cert
                             and issuer_among(c, roots, now) is not None), None):  # cross-signed, given second
                given = {"server": "the server sends", "client": "the client sends"}.get(known.get("sender"), "given")
                return path, (f"the chain breaks at {cn_text(cert.subject)}: the intermediates {given} hold it twice, "
                              f"and OpenSSL (so nginx, curl, Python's ssl) takes the first, issued by "
                              f"{cn_text(cert.issuer)}, which is not trusted here; the one issued by "
                              f"{cn_text(twin.issuer)} comes after it: put that one first, or leave the other out")
            return path, (f"the chain breaks at {cn_text(cert.subject)}: its issuer {cn_text(cert.issuer)} is "
                          f"not the trusted CA ({ca_names}) nor in the intermediates given")
        pool.remove(nxt)
        path.append(nxt)
        cert = nxt
    return path, "the chain is longer than certkit follows (8 certificates)"


def verify_certificate(leaf: "CertLike", *, purpose: str, roots: "CertLike | Sequence[CertLike]",
                       intermediates: "CertLike | Sequence[CertLike]" = (), name: str | None = None,
                       now: dt.datetime | None = None, sent: str | None = None, recorded=None,
                       whole: str | None = None, sender: str | None = None) -> Verdict:
    """Check ``leaf`` for TLS ``purpose`` ("server", "client", or "peer": both) against trust anchors ``roots``
    (each also an IssuedCert or a CA, whose certificate is taken; a wrong type is a WrongType naming the argument).

    The verdict is cryptography's verifier; for a client, ``name`` is also matched against the certificate's SAN
    entries and subject CN (the verifier does not check client names). ``sent`` names the file the intermediates
    came from when it is what a server sends. What tells where a leaf that does not chain to ``roots`` comes from:
    the CA directory's ``recorded`` CAs (:func:`certkit.anchors.recorded_cas`), the file that held the ``whole``
    chain of its bundle, and who sends the chain, the ``sender`` ("server", "client"; None: certkit verify's user).
    """
    if purpose == "peer":  # both purposes (certkit.verify_peer)
        from certkit.verify_peer import verify_peer_certificate

        return verify_peer_certificate(leaf, roots=roots, intermediates=intermediates, name=name, now=now, sent=sent,
                                       recorded=recorded, whole=whole, sender=sender)
    leaf, roots, intermediates = verify_arguments(leaf, purpose, roots, intermediates, name, now)
    now = now or dt.datetime.now(dt.UTC)
    verdict = Verdict(False, purpose, name, dn_text(leaf.subject), dn_text(leaf.issuer),
                      leaf.not_valid_after_utc, name_checked=name is not None, not_before=leaf.not_valid_before_utc)

    # Our own reading of the certificate, for the plain-words reasons.
    path, broken = _path(leaf, intermediates, roots, sent, now, recorded=recorded, whole=whole, sender=sender)
    verdict.reasons += ([broken] if broken else []) + date_problems(path, now) + weak_chain(path)
    verdict.peer = not is_ca(leaf) and set(eku_names(leaf) or ()) == {"serverAuth", "clientAuth"}
    problem = purpose_problem(leaf, purpose) or ca_purpose_problem(path, purpose) \
        or cn_problem(path, purpose) or openssl_refusal(path) or resources_problem(path)
    if problem:
        verdict.reasons.append(problem)
    if name is not None:
        problem = name_problem(leaf, purpose, name)
        verdict.name_ok = problem is None
        if problem:
            verdict.reasons.append(problem)
        else:
            verdict.notes += name_notes(leaf, purpose, name)  # a final dot, a name Python converts otherwise

    # The verifier's verdict.
    verdict.chain, verdict.verifier_error = _verifier_verdict(leaf, purpose, roots, intermediates, name, now)
    unjudged = beyond_the_verifier(verdict.verifier_error) or judged_by_certkit(path, verdict.verifier_error)
    if verdict.verifier_error and not verdict.reasons and not broken and (other := _names_in_other_forms(path)):
        verdict.reasons.append(other)  # the verifier's refusal stands: said in words, not "candidates exhausted"
    if unjudged and not verdict.reasons and not broken:
        problem = _own_path_problem(path, purpose)
        if problem:
            verdict.reasons.append(problem)
        else:  # what the verifier cannot judge, certkit checked itself, as OpenSSL does
            verdict.notes.append(f"cryptography's verifier cannot judge this certificate ({unjudged}); certkit "
                                 "checked the chain's signatures, dates, purposes, names and name constraints "
                                 "itself, as OpenSSL does")
            verdict.chain, verdict.verifier_error = [dn_text(c.subject) for c in path], None
    if verdict.verifier_error and not verdict.reasons and verdict.name_ok and (dotted := dotted_san(leaf, name)):
        verdict.reasons.append(dotted)
    if verdict.verifier_error and not verdict.reasons and not broken and (own := _own_path_problem(path, purpose)):
        verdict.reasons.append(own)  # which CA breaks which rule (pathlen, keyCertSign, a name), OpenSSL's words
    if verdict.verifier_error and not verdict.reasons:
        verdict.reasons.append(f"the verifier refused it: {verdict.verifier_error}")
    verdict.valid = verdict.verifier_error is None and not verdict.reasons
    verdict.notes += strict_notes(path) + [n for n in (signing_usage_note(leaf), tls_feature_note(leaf)) if n] \
        if verdict.valid else []
    if verdict.valid is False and verdict.verifier_error is None:
        verdict.chain = []
    return verdict


def strict_notes(path: list) -> list[str]:
    """What only strict verifiers (Python 3.13's default context, openssl -x509_strict) refuse in a chain others
    take: a CA certificate without a subject key identifier, an intermediate without an authority key identifier."""
    from cryptography import x509

    notes = []
    for depth, ca in enumerate(path[1:], start=1):
        for wanted, missing in ((x509.SubjectKeyIdentifier, "Subject"), (x509.AuthorityKeyIdentifier, "Authority")):
            if missing == "Authority" and depth == len(path) - 1 and ca.issuer == ca.subject:
                continue  # a root needs none
            try:
                ca.extensions.get_extension_for_class(wanted)
            except x509.ExtensionNotFound:
                notes.append(f"the CA {cn_text(ca.subject)} has no {missing.lower()} key identifier: Python 3.13's "
                             f"default context and openssl verify -x509_strict refuse the chain (\"Missing {missing} "
                             "Key Identifier\"); Python 3.12 and older, OpenSSL's default and GnuTLS accept it")
    return notes


def pinned_problems(leaf: "x509.Certificate", *, purpose: str, name: str | None = None,
                    now: dt.datetime | None = None) -> list[str]:
    """What is wrong with a certificate trusted as itself, pinned (probe's --ca-file holding the server's own
    certificate, as curl --cacert takes it), where no chain is built: its dates, purpose and name, in the
    words of :func:`verify_certificate`."""
    reasons = date_problems([leaf], now or dt.datetime.now(dt.UTC))
    reasons += [p for p in (purpose_problem(leaf, purpose),) if p]
    if name is not None and (problem := name_problem(leaf, purpose, name)):
        reasons.append(problem)
    return reasons


def _names_in_other_forms(path: list) -> str | None:
    """Why the verifier refused ``path``, when an issuer name is its CA's subject only as OpenSSL compares names
    (another case of A-Z, spacing or string type): the verifier compares them byte for byte, and so refuses it."""
    for cert, above in zip(path, path[1:], strict=False):
        if cert.issuer.public_bytes() != above.subject.public_bytes():
            return (f"its issuer name is the subject of {cn_text(above.subject)} only as OpenSSL compares names "
                    "(another case, spacing or string type): OpenSSL and Python's ssl accept the chain, "
                    "cryptography's verifier (which certkit verify uses) compares the names byte for byte and refuses "
                    "it; reissue it with the issuer name exactly as the CA's subject")
    return None


def _own_path_problem(path: list, purpose: str) -> str | None:
    """certkit's own check of a chain the verifier could not judge (signatures and dates are checked
    already, by :func:`_path` and the caller): a server certificate with a subjectAltName, every issuer a CA
    allowed to sign certificates, its path length respected, and the leaf's names inside every CA's name
    constraints."""
    from cryptography import x509

    from certkit.constraints import of_chain, openssl_reading, permitted

    leaf = path[0]
    if purpose == "server" and not san_list(leaf):  # what the verifier asks of every server certificate
        return ("it has no subjectAltName, which a TLS server certificate needs: browsers and Go refuse it (curl, "
                "Python's ssl and OpenSSL fall back to its subject CN: give --name to see whether it names the host)")
    for depth, ca in enumerate(path[1:]):
        if not is_ca(ca):
            return f"its issuer {cn_text(ca.subject)} is not a CA"
        try:
            usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_cert_sign:
                return (f"{'its issuer' if depth == 0 else 'the issuing CA'} {cn_text(ca.subject)} may not sign "
                        "certificates (no keyCertSign in its keyUsage): "
                        "OpenSSL refuses the chain (\"invalid CA certificate\")")
        except x509.ExtensionNotFound:
            pass
        limit = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        if limit is not None and depth > limit:
            return (f"the issuing CA {cn_text(ca.subject)} allows {limit} intermediate CAs below it, not {depth}: "
                    "OpenSSL refuses the chain (\"path length constraint exceeded\")")
    identities = identities_as_written(leaf)  # not by certkit's rules of issuing: a verifier takes them as they are
    for ca in path[1:]:
        for nc in of_chain([ca]):
            outside = [i for i in identities if not permitted(nc, i)]
            if outside:
                return (f"{', '.join(i.value for i in outside)} is outside the name constraints of "
                        f"{cn_text(ca.subject)}{openssl_reading(outside)}")
    return None


def _verifier_verdict(leaf, purpose: str, roots, intermediates, name: str | None, now: dt.datetime
                      ) -> tuple[list[str], str | None]:
    """cryptography's verifier on ``leaf``: (the chain's subjects, leaf to anchor; None) when it
    accepts it, ([], its reason in plain words) when it refuses it."""
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    builder = PolicyBuilder().store(Store(list(roots))).time(now)
    try:
        if purpose == "server":
            if name is not None:
                subject = server_name(name)[1]
            else:  # no name to check: any name the certificate holds will do
                subject = next((s for s in san_list(leaf) if isinstance(s, (x509.DNSName, x509.IPAddress))),
                               x509.DNSName("name-not-given.invalid"))
                if isinstance(subject, x509.DNSName) and subject.value.startswith("*."):
                    # The verifier wants a host, not a pattern: take one the wildcard covers.
                    subject = x509.DNSName("name-not-given" + subject.value[1:])
            builder = builder.extension_policies(**_policies(purpose))
            chain = builder.build_server_verifier(subject).verify(leaf, list(intermediates))
        else:
            builder = builder.extension_policies(**_policies(purpose))
            chain = builder.build_client_verifier().verify(leaf, list(intermediates)).chain
        return [dn_text(c.subject) for c in chain], None
    except VerificationError as exc:
        return [], plain_verifier_error(str(exc))
    except ValueError as exc:  # e.g. a certificate the verifier cannot parse as a leaf
        return [], plain_verifier_error(str(exc))


def _policies(purpose: str) -> dict:
    """cryptography's web-PKI extension policies, but for what OpenSSL (-x509_strict too), GnuTLS and Python's
    ssl accept: a subjectAltName marked critical beside a subject (RFC 5280 says only SHOULD NOT); and, for a
    client, no subjectAltName at all (OpenSSL, nginx and PostgreSQL know a client by its subject CN). A
    certificate with neither subject nor subjectAltName, which names nobody, and one with an empty subject whose
    subjectAltName is not critical (OpenSSL -x509_strict's refusal) are still refused."""
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    def subject_alt_name(_policy, cert, san) -> None:
        if san is None:
            if not len(cert.subject):
                raise ValueError("it names nobody: its subject is empty and it has no subjectAltName")
            return
        if not len(cert.subject) and not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical:
            raise ValueError("its subject is empty, so its subjectAltName must be marked critical")

    ee = ExtensionPolicy.webpki_defaults_ee()
    ee = (ee.require_present if purpose == "server" else ee.may_be_present)(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, subject_alt_name)
    return {"ca_policy": ExtensionPolicy.webpki_defaults_ca(), "ee_policy": ee}


def verify_path(cert_path: str | Path, *, purpose: str, name: str | None = None,
                ca_file: str | Path | None = None, ca_dir: str | Path | None = None,
                untrusted: str | Path | None = None, now: dt.datetime | None = None) -> tuple[Verdict, str]:
    """:func:`verify_certificate` on files: the certificate (with any chain in the same file), ``untrusted``
    intermediates, and the trust from ``ca_file`` or ``ca_dir``. Returns the verdict and where the trust came from."""
    from certkit.anchors import completed_chain_note
    from certkit.errors import damage_said, parse_errors
    from certkit.files import STDIN
    from certkit.material import load_certificates
    from certkit.withdrawals import inventory_problems

    if purpose == "peer":  # both purposes (certkit.verify_peer)
        from certkit.verify_peer import verify_peer_path

        return verify_peer_path(cert_path, name=name, ca_file=ca_file, ca_dir=ca_dir, untrusted=untrusted, now=now)
    check_verify_arguments(cert_path, name, now, ca_file=ca_file, ca_dir=ca_dir, untrusted=untrusted)
    if name is not None and purpose == "server":
        from certkit.names import parse_host

        parse_host(name)  # a bad name is the caller's mistake, not damage in the certificate
    notes: list[str] = []
    leaf, chain = load_certificate_chain(cert_path, notes=notes)
    roots, extra, trust = load_trust(ca_file, ca_dir, roots_only=True)
    if strangers := chain_strangers([leaf, *chain], roots + extra):  # the CAs known tell a root above a gap
        notes.append(f"{shown(cert_path)} holds more than the certificate verified and its chain: "
                     f"{'; '.join(strangers)}. Only the first certificate was verified; a server given this file "
                     "sends the others as its chain (certkit serve --cert refuses it): keep one certificate per "
                     "file, followed by the intermediate CAs that issued it")
    if untrusted is not None:
        chain += load_certificates(untrusted, "--untrusted, the intermediate CA certificates")
    folder = Path(cert_path) if str(cert_path) != STDIN and Path(cert_path).is_dir() else None
    try:
        verdict = verify_certificate(leaf, purpose=purpose, roots=roots, intermediates=chain + extra,
                                     name=name, now=now, sent=_sent(folder) if folder is not None else None,
                                     **whence(cert_path, folder, _sent(folder) if folder else str(cert_path),
                                              [leaf, *chain], False if ca_file is not None else ca_dir))
        path, _ = _path(leaf, chain + extra, roots)
    except parse_errors() as exc:  # damage found only when a field is first read
        raise CertkitError(f"{shown(cert_path)} holds {damage_said(exc, of=[leaf, *chain])}.") from None
    verdict.notes += notes + [n for n in [completed_chain_note(cert_path, folder, chain, path, trust, ca_file)] if n]
    if folder is not None:
        _judge_folder(verdict, folder, leaf, path)
    if ca_file is None:
        unread: list[str] = []
        problems = _above_this_ca(ca_dir, path) if verdict.valid else []
        problems += inventory_problems(ca_dir, path, unread=unread, by_server=purpose == "server")
        # Fail closed: a script that reads the exit status must not take a certificate the CA may
        # have revoked (its key compromised) as valid because the record could not be read.
        problems += [f"revocation could not be checked against the CA's inventory: {why} (give --ca-file "
                     "to verify the chain alone)" for why in unread[:1]]
        if problems:
            verdict.reasons += problems
            verdict.valid, verdict.chain = False, []
    return verdict, trust
