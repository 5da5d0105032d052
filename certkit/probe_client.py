"""The client certificate probe presents (``probe --cert/--key``, ``--bundle``): its files, its key read by
certkit (never by OpenSSL, which would prompt for a passphrase), its description, and whether its chain leads
to a CA of the trust given."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from certkit.probe_http import ProbeError
from certkit.text import shown


@dataclass
class ClientFiles:
    """A client certificate (with any intermediates) and its key, as files."""

    cert: Path
    key: Path

    @classmethod
    def from_bundle(cls, folder: Path) -> "ClientFiles":
        """A certkit (or certbot) bundle folder: fullchain.pem (else cert.pem) and privkey.pem."""
        from certkit.vocabulary import absent_text  # a FIFO or folder there is said as such, not as missing
        cert = folder / "fullchain.pem" if (folder / "fullchain.pem").exists() else folder / "cert.pem"
        if (path := next((p for p in (cert, folder / "privkey.pem") if not p.is_file()), None)) is not None:
            raise ProbeError(f"{shown(folder)} is not a bundle folder: {shown(path.name)} {absent_text(path)}.")
        return cls(cert, folder / "privkey.pem")


def client_key(path: Path):
    """The client's private key, read by certkit: OpenSSL reading the file would ask for an encrypted key's
    passphrase itself, on the terminal or from whatever stdin holds. certkit writes leaf keys unencrypted,
    and serve --key refuses an encrypted one in the same words."""
    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.errors import CertkitError, PassphraseRequired
    from certkit.files import read_limited
    from certkit.keys import load_private_key

    data = read_limited(path.absolute(), MAX_CERT_FILE_BYTES, what="client key")  # absolute: '-' is a file here
    try:
        return load_private_key(data, None, source=f"client key {shown(path)}")
    except PassphraseRequired:
        raise ProbeError(f"The client key {shown(path)} is encrypted; give an unencrypted key (mode 0600).") from None
    except CertkitError:  # a keystore, a bundle.p12: what it is and how to take the key out, as serve --key says
        from certkit.keys import held_instead
        from certkit.material_kinds import advice_for

        if (held := held_instead(data, b"-----BEGIN" in data)) and (advice := advice_for(held, path, key=True)):
            raise ProbeError(f"The client key {shown(path)} is {held}, not a private key{advice}.") from None
        raise


def client_description(client: ClientFiles, now: dt.datetime | None = None) -> tuple[dict, list]:
    """The client certificate described, and the certificates of its file (the leaf, then its intermediates)."""
    from cryptography import x509

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.der_input import read_pem_form
    from certkit.files import read_limited
    from certkit.inspect import describe_certificate
    from certkit.material import load_certificates

    load_certificates(client.cert, "the client certificate to present (--cert, --bundle)")  # a key, a CSR: said so
    try:  # a DER certificate in PEM form, as probe hands it to OpenSSL (der_input.pem_paths)
        certs = x509.load_pem_x509_certificates(read_pem_form(client.cert, "certificate"))
    except ValueError:
        certs = []
    if not certs:  # no certificate, PEM or DER: said with what the file holds instead
        from certkit.material_kinds import not_pem

        said = not_pem(client.cert, read_limited(client.cert, MAX_CERT_FILE_BYTES, what="certificate"), "certificate")
        raise ProbeError(f"{shown(client.cert)} {said or 'holds no PEM certificate'}.")
    return describe_certificate(certs[0], now=now), certs


def foreign(certs: list, roots: list, known: list, where: str) -> str | None:
    """That the client's chain does not lead, signature by signature, to a CA of the trust given (the
    certificates of its file, then the CA directory's intermediates, may lead there); None when it does, or
    when the trust holds no CA (a pinned server certificate)."""
    from certkit.signatures import signed_by
    from certkit.vocabulary import is_ca

    anchors = [r for r in roots if is_ca(r)]
    if not anchors:
        return None
    cert, pool = certs[0], [*certs[1:], *known]
    for _ in range(len(pool) + 1):
        if any(signed_by(cert, a) for a in anchors):
            return None
        cert = next((c for c in pool if c is not cert and signed_by(cert, c)), None) or cert
        if cert not in pool:
            break
    named = cert.issuer.rfc4514_string()
    if any(c.subject == cert.issuer for c in [*anchors, *known]):
        return (f"its chain names {named} as its issuer, but the CA of that name in {where} did not sign it "
                "(another CA of the same name)")
    return f"its chain does not lead to the CA in {where} (its issuer is {named})"
