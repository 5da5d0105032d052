"""What ``certkit verify`` reads from files besides the certificate's verdict: the chain of a certificate file or
bundle folder (what a server sends: fullchain.pem, else cert.pem and chain.pem, never ca.pem), what a bundle
folder's own files add to the verdict, and whether a CA directory vouches for a certificate whose chain passes
above it. For :func:`certkit.verify.verify_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.anchors import bundle_ca_note, other_root
from certkit.errors import CertkitError
from certkit.text import shown
from certkit.verify_names import cn_text

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.verify import Verdict


def load_certificate_chain(path: str | Path, *, notes: list[str] | None = None
                           ) -> tuple["x509.Certificate", list["x509.Certificate"]]:
    """The leaf (first certificate) and any intermediates that follow it (fullchain.pem),
    from a file or a bundle folder.

    Of a bundle folder, what a server sends is judged: fullchain.pem, else cert.pem and
    chain.pem. Its ca.pem is what a peer is told to trust, never a link of the chain. Of a
    certkit JSON-lines file, likewise the first line's cert and chain; that others were not
    judged goes into ``notes``."""
    from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE
    from certkit.files import STDIN
    from certkit.material import UnreadableFile, load_material

    path = Path(path)
    if str(path) != STDIN and path.is_dir():
        sent = [path / FULLCHAIN_FILE] if (path / FULLCHAIN_FILE).is_file() else \
            [path / n for n in (CERT_FILE, CHAIN_FILE) if (path / n).is_file()]
        if sent:
            certs = []
            for file in sent:
                certs += [c for c, _ in load_material(file).certificates if c not in certs]
        else:
            certs = [c for c, name in load_material(path).certificates if name != CA_FILE]
            if not certs and (path / CA_FILE).is_file():
                raise UnreadableFile(f"The folder {shown(path)} holds only {CA_FILE}, the CA certificate a peer "
                                     "trusts; give the certificate to verify (cert.pem or fullchain.pem).")
    else:
        material = load_material(path, wanted="certificate to verify")
        certs = [c for c, _ in material.certificates] if material.sent is None else material.sent
        if len(material.records) > 1 and notes is not None:
            notes.append(material.first_of_many())
    if not certs:
        raise UnreadableFile(f"{shown(path)} holds a certificate signing request, not a certificate; "
                             "a CSR becomes verifiable once a CA signs it.")
    return certs[0], certs[1:]


def _judge_folder(verdict: Verdict, folder: Path, leaf, path: list) -> None:
    """What a bundle folder's own files add to ``verdict``: a file of another certificate or key, or one a
    server cannot read, makes it NOT VALID; a ca.pem peers cannot use gets a note."""
    from certkit.bundle import bundle_mismatch
    from certkit.constants import CA_FILE
    from certkit.inspect import unreadable_files

    unreadable = unreadable_files(folder)
    if (mismatch := bundle_mismatch(folder, leaf)) is not None:
        verdict.reasons.append(f"the folder's files disagree: {mismatch}; renew or reissue the bundle")
        verdict.valid, verdict.chain = False, []
    elif unread := [f"{name} {why}" for name, why in unreadable if name != CA_FILE]:
        # As a foreign key makes it NOT VALID: a server given this folder cannot start either way.
        verdict.reasons.append(f"the folder's {'; '.join(unread)}: a server given these files cannot start; "
                               "restore the file, or reissue the bundle")
        verdict.valid, verdict.chain = False, []
    try:
        note = bundle_ca_note(folder) or other_root(folder, path)
        note = note or next((f"the folder's ca.pem, the CA its peers are told to trust, {why}" for name, why
                             in unreadable if name == CA_FILE), None)
    except CertkitError as exc:
        note = f"the folder's ca.pem, the CA its peers are told to trust, cannot be read: {exc}"
    if note:
        verdict.notes.append(note)


def _sent(folder: Path) -> str:
    """The files of a bundle folder that a server sends, as :func:`load_certificate_chain` reads them."""
    from certkit.constants import CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE

    if (folder / FULLCHAIN_FILE).is_file():
        return str(folder / FULLCHAIN_FILE)
    if (folder / CHAIN_FILE).is_file():
        return f"{folder / CERT_FILE} with {CHAIN_FILE}"
    return str(folder / CERT_FILE)


def _above_this_ca(ca_dir, path: Sequence["x509.Certificate"]) -> list[str]:
    """An intermediate's CA directory vouches for what it (or a CA below it) issued: a certificate whose
    chain does not pass through it (issued by the root above it) is not this CA's to call valid, and its
    revocation is in the root's inventory, not this one's."""
    from cryptography import x509

    from certkit.store import CADirectory

    try:
        own = x509.load_pem_x509_certificate(CADirectory(ca_dir).cert_path.read_bytes())
    except (OSError, ValueError):
        return []  # load_trust read it; a file gone since is not this check's to report
    if own in path:
        return []
    return [f"not issued by this CA ({cn_text(own.subject)}) nor by a CA below it: its issuer "
            f"{cn_text(path[0].issuer)} is a CA above this one, whose own inventory records whether it revoked "
            "it; verify it with --ca-dir of that CA"]
