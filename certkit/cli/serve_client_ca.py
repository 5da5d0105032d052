"""serve's client CA (``--client-ca``, else the CA in ``--ca-dir``): whose client certificates it accepts, the PEM
its handshake trusts (with the intermediate CAs the CA's inventory records as valid), and the check of revocations
in the CA directory's inventory; a leaf given as --client-ca refused."""

from __future__ import annotations

from pathlib import Path


def _client_ca(client_ca: Path | None, ca_dir: Path | None):
    """PEM of the CA whose client certificates are accepted, the PEM the handshake trusts (with the intermediate
    CAs the CA's inventory records as valid), its name for messages, and the check of
    revocations in the CA directory's inventory (when its CA, or an intermediate CA its inventory records, is
    one of them; else None)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.errors import CertkitError
    from certkit.pkcs12 import common_name
    from certkit.serve import InventoryRevocations
    from certkit.store import CADirectory
    from certkit.verify_names import cn_text

    store = CADirectory(ca_dir)
    if client_ca is not None:
        from certkit.material import load_certificates

        certs = load_certificates(client_ca, "--client-ca, the CA whose client certificates are accepted")
        _refuse_non_ca(client_ca, certs)
        try:
            own = store.load_certificates()[0] if store.exists() else None
        except CertkitError:
            own = None  # a CA directory serve does not need: --client-ca alone is enough
    else:
        own = store.load_certificates()[0]
        certs = [own]
    revocations, ours = None, []
    if own is not None:  # its inventory, and those of the intermediates it records, say what was revoked
        try:
            store.open()  # its inventory checked (and settled) now: a damaged one is an error before listening
        except CertkitError:
            if own in certs:
                raise
            own = None  # only another CA's clients: an inventory serve does not need
    if own is not None:
        revocations = InventoryRevocations(store, own)
        ours = [c for c in certs if c == own or revocations.records(c)]
        revocations = revocations if ours else None
    names = [cn_text(c.subject) for c in certs]  # as the issuer of a certificate is shown: CN=...
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in certs)
    if revocations is not None:  # the other client CAs, whose inventories are not at hand
        revocations.others = [common_name(c) or c.subject.rfc4514_string() for c in certs if c not in ours]
        revocations.trusted = [c for c in revocations.valid_intermediates() if own in certs and c not in certs]
    # The handshake also trusts the intermediate CAs the CA's inventory records as valid: Python's ssl cannot name
    # the accepted CA in its request, so a browser sends their client certificates without them (the inventories
    # still judge each chain at each connection: a revoked intermediate refuses its clients).
    verify_pem = pem + b"".join(c.public_bytes(Encoding.PEM) for c in getattr(revocations, "trusted", []))
    return pem, verify_pem, ", ".join(names), revocations


def _refuse_non_ca(path: Path, certs: list) -> None:
    """--client-ca names the CA that issues client certificates: a leaf there would be taken for
    one (and OpenSSL would let its holder in as if it were the CA's own)."""
    from cryptography import x509

    from certkit.errors import CertkitError
    from certkit.text import shown

    for cert in certs:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CertkitError(f"{shown(path)} holds {shown(cert.subject.rfc4514_string())}, which is not a CA "
                               "certificate: --client-ca takes the CA that issues the client certificates (its "
                               "ca.pem).")
