"""The trust anchors a verification starts from: a PEM file of CA certificates (``--ca-file``), or a
certkit CA directory, with what its inventory withdrew; shared by ``verify``, ``probe`` and ``serve``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
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
        from certkit.material import load_material
        from certkit.vocabulary import is_ca, self_signed

        found = [c for c, _ in load_material(ca_file).certificates]
        if found and not roots_only:  # probe: what curl --cacert trusts (a self-signed server's own, too)
            return found, [], str(ca_file)
        cas = [c for c in found if is_ca(c)]
        if not cas:
            raise CertkitError(f"{shown(ca_file)} holds no CA certificate" + (
                f" (what it holds, {shown(found[0].subject.rfc4514_string())}, is not a CA: basicConstraints "
                "CA:FALSE or none)." if found else "."))
        roots = [c for c in cas if self_signed(c)]
        if not roots:
            raise CertkitError(f"{shown(ca_file)} holds no root CA certificate (a self-signed one): OpenSSL "
                               f"(openssl verify -CAfile, nginx, Python) takes no other as a trust anchor; give "
                               f"the root above {shown(cas[0].subject.rfc4514_string())}.")
        return roots, [c for c in cas if c not in roots], str(ca_file)
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    cert, parents = store.load_certificates()
    if parents:
        return [parents[-1]], [cert, *parents[:-1]], str(store.path)
    return [cert], [], str(store.path)


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
    from certkit.vocabulary import self_signed

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


def withdrawn(ca_dir: str | Path, chain: list["x509.Certificate"], *, fail_closed: bool) -> list[str]:
    """What a CA directory's inventory records against ``chain`` (leaf first), in certkit verify's words
    (:func:`certkit.verify.inventory_problems`): revoked, never delivered. With ``fail_closed``, an
    inventory that cannot be read is one more problem, as for verify."""
    from certkit.verify import inventory_problems

    unread: list[str] = []
    problems = inventory_problems(ca_dir, chain, unread=unread)
    return problems + [f"revocation could not be checked against the CA's inventory: {why} (give --ca-file to "
                       "verify the chain alone)" for why in unread[:1] if fail_closed]
