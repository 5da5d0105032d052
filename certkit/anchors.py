"""The trust anchors a verification starts from: a PEM file of CA certificates (``--ca-file``), or a
certkit CA directory, with what its inventory withdrew; shared by ``verify``, ``probe`` and ``serve``. What a
chain file holds that is not of its chain: :mod:`certkit.sent_chain`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.signatures import self_signed, signed_by
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509


def load_trust(ca_file: str | Path | None = None, ca_dir: str | Path | None = None, *, roots_only: bool = False
               ) -> tuple[list["x509.Certificate"], list["x509.Certificate"], str]:
    """Trust anchors, extra intermediates, and a description: from a PEM file of CA
    certificates (all trusted, as OpenSSL's -CAfile; with ``roots_only``, as OpenSSL's -CAfile
    without -partial_chain: only its self-signed CAs are anchors, its other CAs intermediates), else
    from a certkit CA directory (its root trusted, an intermediate CA's own certificate supplied as
    untrusted)."""
    if ca_file is not None:
        from certkit.material import load_certificates
        from certkit.vocabulary import is_ca

        found = load_certificates(ca_file, CA_FILE_ROLE)
        if not roots_only:  # probe: what curl --cacert trusts; a leaf only to pin it (:func:`pinned`)
            return found, [], str(ca_file)
        cas = [c for c in found if is_ca(c)]
        if not cas:
            raise no_ca_certificate(ca_file, found)
        roots = [c for c in cas if self_signed(c)]
        if not roots:
            raise CertkitError(f"{shown(ca_file)} holds no root CA certificate (a self-signed one): OpenSSL "
                               f"(openssl verify -CAfile, nginx, Python before 3.13) takes no other as a trust anchor; "
                               f"give the root above {shown(cas[0].subject.rfc4514_string())}.")
        return roots, [c for c in cas if c not in roots], str(ca_file)
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    cert, parents = store.load_certificates()
    if parents:
        return [parents[-1]], [cert, *parents[:-1]], str(store.path)
    return [cert], [], str(store.path)


# What a --ca-file is, in the words of a refusal of what it holds (material.load_certificates's role).
CA_FILE_ROLE = "--ca-file, the CA certificate(s) to trust"


def no_ca_certificate(ca_file: str | Path, found: list, *, server: "x509.Certificate | None" = None
                      ) -> CertkitError:
    """The refusal of a --ca-file that holds no CA certificate (``found``: what it holds); for probe, whose
    --ca-file may also pin the ``server``'s own certificate (curl --cacert), that it does not hold that."""
    from cryptography import x509

    what = (f" (what it holds, {shown(found[0].subject.rfc4514_string())}, is not a CA: basicConstraints "
            "CA:FALSE or none)" if found else "")
    if found and found[0].version is x509.Version.v1 and found[0].subject == found[0].issuer:
        what = (f" (what it holds, {shown(found[0].subject.rfc4514_string())}, is a self-signed version 1 "
                "certificate, without the basicConstraints CA:TRUE that makes a CA, as openssl x509 -req -signkey "
                "makes it: OpenSSL's default (openssl verify, curl, Python 3.11's ssl) takes it as a CA, while openssl "
                "verify -x509_strict and Python 3.13's default context refuse the chains it signs, as certkit does; "
                "remake the root with openssl req -x509, which adds basicConstraints CA:TRUE)")
    pin = (f", nor the server's own certificate ({shown(server.subject.rfc4514_string())}), which a --ca-file "
           "may hold to pin it" if server is not None else "")
    return CertkitError(f"{shown(ca_file)} holds no CA certificate{what}{pin}.")


def pinned(ca_file: str | Path, anchors: list, sent: list) -> bool:
    """Whether probe's --ca-file pins the server's own certificate (``sent[0]``, the chain as sent): it holds
    that certificate, and none of its CA certificates is reached from it. OpenSSL, as curl --cacert, then
    trusts the certificate as itself, and no CA vouches for it. A --ca-file that holds neither a CA nor the
    server's own certificate is refused, as verify refuses it (:func:`no_ca_certificate`)."""
    from certkit.vocabulary import is_ca

    leaf, cas = sent[0], [c for c in anchors if is_ca(c)]
    if leaf in anchors and not _reaches(leaf, sent[1:], cas):
        return True
    if not cas:
        raise no_ca_certificate(ca_file, anchors, server=leaf)
    return False


def _reaches(leaf, sent: list, cas: list) -> bool:
    """Whether the chain from ``leaf`` through the certificates ``sent`` after it reaches one of ``cas``."""
    cert, pool = leaf, list(sent)
    for _ in range(len(pool) + 1):
        if cert in cas or any(signed_by(cert, ca) for ca in cas):
            return True
        cert = next((c for c in pool if signed_by(cert, c)), None)
        if cert is None:
            return False
        pool.remove(cert)
    return False


# A --ca-file of CAs without their root: probe trusts any CA in it, as curl --cacert does (certkit verify refuses it)
PARTIAL_ANCHOR_NOTE = ("{} holds no root CA (a self-signed one): curl, GnuTLS and Python 3.13 clients given it "
                       "accept this server, but OpenSSL (s_client, nginx), Python before 3.13 and Node clients refuse "
                       "it (unable to get issuer certificate): give them the root at the top of the chain")


def bundle_ca_note(folder: str | Path) -> str | None:
    """What is wrong with a bundle folder's ca.pem, the CA its peers are told to trust: it should be
    a self-signed root, since OpenSSL and most TLS stacks take no other certificate as a trust anchor."""
    from certkit.constants import CA_FILE
    from certkit.material import load_material
    from certkit.verify_names import cn_text

    ca_file = Path(folder) / CA_FILE
    if not ca_file.is_file():
        return None
    cas = [c for c, _ in load_material(ca_file).certificates]
    not_roots = [c for c in cas if not self_signed(c)]
    if not not_roots:
        return None
    names = ", ".join(cn_text(c.subject) for c in not_roots)
    return (f"the folder's {CA_FILE} holds {names}, which is not a self-signed root CA: peers told to trust "
            f"{CA_FILE} cannot build a chain with it (OpenSSL refuses it as a trust anchor); {CA_FILE} should "
            "hold the root CA")


def other_root(folder: Path, path: list) -> str | None:
    """The folder's ca.pem, if it is a root other than the one this certificate chains to: peers told
    to trust it refuse the certificate."""
    from certkit.constants import CA_FILE
    from certkit.material import load_material
    from certkit.verify_names import cn_text

    if not (Path(folder) / CA_FILE).is_file() or not path or not self_signed(path[-1]):
        return None
    roots = [c for c, _ in load_material(Path(folder) / CA_FILE).certificates]
    if not roots or path[-1] in roots:
        return None
    return (f"the folder's {CA_FILE} holds {', '.join(cn_text(c.subject) for c in roots)}, not the root this "
            f"certificate chains to ({cn_text(path[-1].subject)}): peers told to trust {CA_FILE} refuse it")


def probe_trust(ca_file: str | Path | None, ca_dir: str | Path | None
                ) -> tuple[list["x509.Certificate"], list["x509.Certificate"], str]:
    """What a TLS client given this trust takes from a server (``probe``): the anchors, the CA directory's
    intermediates (not trusted), and where they came from, in words. A CA directory is judged as its
    bundles' clients judge a server, from its root (their ca.pem) alone, so an intermediate CA's
    certificate must come from the server; a --ca-file is trusted whole, as curl --cacert trusts it."""
    roots, extra, where = load_trust(ca_file, ca_dir)
    if not extra:
        return roots, [], f"the CA in {where}"
    return roots, extra, f"the root of the CA in {where} ({roots[0].subject.rfc4514_string()}, its bundles' ca.pem)"


def missing_issuer(certs: list["x509.Certificate"], known: list["x509.Certificate"], *, beside: Path | None = None
                   ) -> tuple[str | None, bool | None]:
    """The CA a chain file (leaf first) stops short of: the issuer of its chain's top, unless that top is
    self-signed or the file holds a certificate of it; and whether that CA is an intermediate: True when a
    certificate of it, not self-signed, is among ``known`` or in the chain.pem and fullchain.pem of the
    ``beside`` folder (a certkit bundle), so the file lacks a certificate its peer may need; False when that
    bundle holds none (its chain ends there); None when nothing tells."""

    top = certs[0]
    for _ in certs:  # up the chain, at most once per certificate (a file may hold a loop)
        above = next((c for c in certs if c.subject == top.issuer and c != top), None)
        if above is None or self_signed(top):
            break
        top = above
    if self_signed(top) or any(c.subject == top.issuer for c in certs):
        return None, None
    bundle = _bundle_chain(beside) if beside is not None else []
    if any(c.subject == top.issuer and not self_signed(c) for c in known + bundle):
        return top.issuer.rfc4514_string(), True
    return top.issuer.rfc4514_string(), False if bundle else None


def _bundle_chain(folder: Path) -> list["x509.Certificate"]:
    """The certificates of a bundle folder's chain.pem and fullchain.pem (none when it has neither)."""
    from cryptography import x509

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.files import read_limited

    found = []
    for name in ("chain.pem", "fullchain.pem"):
        try:
            found += x509.load_pem_x509_certificates(read_limited(folder / name, MAX_CERT_FILE_BYTES))
        except (CertkitError, ValueError):
            pass  # no such file, or no certificate in it: nothing known from it
    return found


def withdrawn(ca_dir: str | Path, chain: list["x509.Certificate"], *, fail_closed: bool,
              by_server: bool = False) -> list[str]:
    """What a CA directory's inventory records against ``chain`` (leaf first), in certkit verify's words
    (:func:`certkit.withdrawals.inventory_problems`, ``by_server`` for a server's chain): revoked, never
    delivered. With ``fail_closed``, an inventory that cannot be read is one more problem, as for verify."""
    from certkit.withdrawals import inventory_problems

    unread: list[str] = []
    problems = inventory_problems(ca_dir, chain, unread=unread, by_server=by_server)
    return problems + [f"revocation could not be checked against the CA's inventory: {why} (give --ca-file to "
                       "verify the chain alone)" for why in unread[:1] if fail_closed]


def unread_inventory(ca_dir: str | Path | None, chain: list["x509.Certificate"]) -> str | None:
    """Why the inventory of the CA directory ``ca_dir`` cannot be read (damaged, gone, another CA's), when
    ``chain`` (leaf first) leads to its CA (holds it, or a certificate it signed), or why its CA certificate
    cannot be read (then whether it is that CA cannot be told either): whether that inventory revoked the chain
    cannot be told then. None otherwise (read, or no such CA directory, or another CA's chain)."""
    from certkit.store import CADirectory
    from certkit.withdrawals import inventory_problems

    store = CADirectory(ca_dir)
    try:
        own = store.load_certificates()[0] if store.exists() else None
    except (CertkitError, OSError, ValueError) as exc:  # which CA it is cannot be told: nor that it is not this one's
        why = f"{exc.filename or store.path}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        return f"the CA directory {shown(store.path)} cannot be read: {why[:1].lower()}{why[1:].rstrip('.')}"
    if own is None or not (own in chain or any(signed_by(c, own) for c in chain)):
        return None
    unread: list[str] = []
    inventory_problems(store.path, [c for c in chain if c != own], unread=unread)
    return unread[0] if unread else None


@dataclass(frozen=True)
class RecordedCAs:
    """The CAs a CA directory knows: the intermediates its inventory records it signed, and its own chain."""

    valid: list  # the intermediate CAs its inventory records as valid (kind ca)
    names: set  # the subjects (DER) of every CA it knows: recorded in any status, itself and those above it
    deeper: bool  # a CA it knows may sign CAs below it (path length not 0), which its inventory does not record


def recorded_cas(ca_dir: str | Path | None) -> RecordedCAs | None:
    """What the CA directory's inventory records of the CAs it signed (:class:`RecordedCAs`); None when there is
    no CA directory or it cannot be read (then nothing is known, and nothing is said from it)."""
    from cryptography import x509

    from certkit.store import CADirectory, check_binding

    try:
        store = CADirectory(ca_dir)
        if not store.exists():
            return None
        own, parents = store.load_certificates()
        inventory = store.inventory
        check_binding(inventory, own)  # another CA's (a wrong $CERTKIT_INVENTORY_URL): neither migrated nor read
        inventory.check(settle=False)
        rows = inventory.rows("WHERE kind = ?", ("ca",))
        cas = [(row["status"], inventory.certificate(row["serial"])) for row in rows]
    except Exception:  # noqa: BLE001 (a damaged or missing inventory: nothing is claimed from it)
        return None

    def may_sign_cas(cert) -> bool:
        try:
            limit = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        except x509.ExtensionNotFound:
            return True
        return limit is None or limit > 0

    return RecordedCAs([c for status, c in cas if status == "valid"],
                       {c.subject.public_bytes() for c in [own, *parents, *(c for _, c in cas)]},
                       any(may_sign_cas(c) for _, c in cas))


def whence(cert_path, folder: Path | None, name: str, certs: list, ca_dir) -> dict:
    """For certkit verify, what tells where a certificate that does not chain to the CA comes from: the
    intermediates the inventory of ``ca_dir`` records (``False``: no CA directory, as with --ca-file), and
    whether the file (``name``) held the whole chain of its bundle (:func:`_ends_at_root`):
    :func:`unanchored_leaf`'s ``recorded`` and ``whole``."""
    from certkit.files import STDIN

    recorded = recorded_cas(ca_dir) if ca_dir is not False else None
    if str(cert_path) == STDIN:
        return {"recorded": recorded}
    return {"recorded": recorded, "whole": name if _ends_at_root(certs, folder or Path(cert_path).parent) else None}


def _ends_at_root(certs: list, beside: Path) -> bool:
    """Whether the chain file ``certs`` (leaf first) is whole: the root its bundle's peers trust (the ca.pem
    ``beside`` it, self-signed) signed the top of it, so no intermediate is missing from it."""
    from certkit.material import load_material

    top = certs[0]
    for _ in certs:  # up the chain, at most once per certificate (a file may hold a loop)
        above = next((c for c in certs if c != top and signed_by(top, c)), None)
        if above is None:
            break
        top = above
    try:
        roots = [c for c, _ in load_material(beside / "ca.pem").certificates] if (beside / "ca.pem").is_file() else []
    except CertkitError:
        return False
    return any(self_signed(r) and signed_by(top, r) for r in roots)


# How the certificate of a missing intermediate gets to the verifier, by who sends the chain: certkit verify's user,
# a server (probe), a client (serve).
_SEND_TOO = {
    None: "verify fullchain.pem or pass its certificate with --untrusted",
    "server": "send its certificate too: configure the server with fullchain.pem, e.g. nginx ssl_certificate, not "
              "cert.pem alone",
    "client": "send its certificate too: curl --cert fullchain.pem, or the bundle.p12 that holds it",
}


def unanchored_leaf(leaf, roots: list, *, sent: str | None = None, recorded: RecordedCAs | None = None,
                    whole: str | None = None, sender: str | None = None) -> str:
    """Why ``leaf`` does not chain to ``roots``, its issuer's certificate being nowhere in what was given: an
    intermediate of this CA that its inventory records (``recorded``), whose certificate must be sent too; or
    another CA, said without a hedge when the CA's inventory records no intermediate of that name or the file
    ``whole`` held the whole chain of its bundle; else with advice for the case that it is an intermediate.
    ``sent`` names the bundle file a server sends; ``sender`` who sends the chain (None: certkit verify's user)."""
    from certkit.verify_names import cn_text

    issuer, ca_names = cn_text(leaf.issuer), ", ".join(cn_text(r.subject) for r in roots)
    if recorded is not None and any(signed_by(leaf, c) for c in recorded.valid):
        lacking = {None: "which the chain given lacks", "server": "which the server does not send",
                   "client": "which the client did not send"}[sender]
        fix = (f"{shown(sent)} does not carry it, so a server sending it leaves its peers without the chain: "
               "send fullchain.pem" if sent is not None and sender is None else _SEND_TOO[sender])
        return (f"issued by {issuer}, an intermediate CA of this CA ({ca_names}, whose inventory records it), "
                f"{lacking}: {fix}")
    said = f"not issued by this CA: it was issued by {issuer}, and the trusted CA is {ca_names}"
    if any(r.subject == leaf.issuer for r in roots):
        return said  # a namesake: the trusted CA's name, another key
    if recorded is not None and leaf.issuer.public_bytes() not in recorded.names and not recorded.deeper:
        return f"{said}, whose inventory records no intermediate CA of that name"
    if whole is not None:
        return f"{said} ({shown(whole)} holds its bundle's whole chain, up to {issuer}: no intermediate is missing)"
    if sent is not None:
        return (f"{said} ({shown(sent)} does not carry {issuer}'s certificate, so a server sending it leaves its "
                "peers without the chain)")
    # verify's words, which probe (probe_report.server_side) and serve (serve_optional) say their own way
    return f"{said} (if {issuer} is an intermediate CA under it, {_SEND_TOO[None]})"


def completed_chain_note(cert_path, folder: Path | None, chain: list, path: list, trust: str,
                         ca_file) -> str | None:
    """For certkit verify of a file: a note when intermediates of the chain built came from the trust
    (the CA directory, or --ca-file) rather than from the file or --untrusted, since a server given
    that file alone sends none of them and a peer trusting only the root refuses it."""
    from certkit.verify_names import cn_text

    if folder is not None:  # a bundle folder: what its server sends is judged (_judge_folder)
        return None
    missing = [cn_text(ca.subject) for ca in path[1:] if ca not in chain and not self_signed(ca)]
    if not missing:
        return None
    source = f"--ca-file {shown(ca_file)}" if ca_file is not None else f"the CA directory {shown(trust)}"
    return (f"{shown(cert_path)} does not hold the intermediate CA {', '.join(missing)}: certkit completed the chain "
            f"from {source}; a peer that trusts only the root refuses this file presented alone: give servers (and "
            "clients) the bundle's fullchain.pem")
