"""revokeCert (RFC 8555 7.6): who may revoke a certificate through ACME, and how.

A certificate this CA issued is revoked when the request is signed by its own key, by the account
that ordered it, or (for a certificate this server issued) by an account holding valid, unexpired
authorizations for every identifier in it (:func:`certificate_identifiers`), which may not claim
keyCompromise. :class:`certkit.acme.resources.Resources` answers the resource through
:func:`revoke_cert`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.acme import jws
from certkit.acme.fields import REVOCATION_CODES, revocation_code
from certkit.acme.problems import Problem
from certkit.acme.response import Response
from certkit.errors import AlreadyRevoked, UnknownCertificate
from certkit.vocabulary import serial_hex

if TYPE_CHECKING:
    from certkit.acme.resources import Request, Resources
    from certkit.acme.state import AcmeState


def revoke_cert(resources: Resources, request: Request) -> Response:
    """revokeCert (RFC 8555 7.6): the certificate named, if this CA issued it and the request is signed by
    the account that may revoke it or by the certificate's own key."""
    from cryptography import x509

    from certkit.errors import parse_errors

    payload = request.payload
    if "certificate" not in payload:
        raise Problem("malformed", "revokeCert needs the certificate as base64url DER in 'certificate'.")
    der = jws.b64decode(payload["certificate"], "The 'certificate' value")
    try:
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, *parse_errors()):
        raise Problem("malformed", "revokeCert needs the certificate as base64url DER in 'certificate'.") \
            from None
    code = revocation_code(payload)
    serial = serial_hex(cert.serial_number)
    from certkit.signatures import signature_by

    row = resources.ca.inventory.get(serial) if signature_by(cert, resources.ca.cert) else None  # check's one rule
    if row is None:
        raise Problem("malformed", f"The certificate {serial} was not issued by this CA.", status=404)
    if request.account is not None:
        how = _revoking_account(resources.state, request.account.id, serial, cert, row, code)
    else:
        if jws.public_key_der(request.jwk) != jws.public_key_der(jws.jwk_for_public_key(cert.public_key())):
            raise Problem("unauthorized", "The request is signed neither by an account nor by the key of "
                                          f"certificate {serial}.")
        how = "the certificate's own key"
    try:
        done = resources.ca.revoke(serial, REVOCATION_CODES[code])
    except AlreadyRevoked as exc:
        raise Problem("alreadyRevoked", str(exc)) from None
    except UnknownCertificate as exc:
        raise Problem("malformed", str(exc), status=404) from None
    also = done.get("also_revoked") or []
    resources.log(f"revoked serial {serial} ({REVOCATION_CODES[code]}), signed by {how}"
                  + (f"; also revoked, sharing its key: {', '.join(also)}" if also else ""))
    return Response(200)


def _revoking_account(state: AcmeState, account_id: str, serial: str, cert, row: dict, code: int) -> str:
    """How the account may revoke the certificate (RFC 8555 7.6): it ordered it (its CSR proved it
    held the key), or it holds valid, unexpired authorizations for every identifier in it; else an
    ``unauthorized`` Problem."""
    owner = state.certificate(serial)
    if owner is not None and owner[1] == account_id:
        return f"account {account_id}"
    if row.get("sink") != "acme":  # the command line's certificates (client, peer, CA) are not ACME's to revoke
        raise Problem("unauthorized", f"The account did not order certificate {serial}, which this CA issued "
                                      "outside ACME: an account's authorizations revoke only what this server "
                                      "issued. Revoke it with certkit revoke, or sign with the certificate's "
                                      "own key.")
    identifiers = certificate_identifiers(cert)
    if not identifiers:
        raise Problem("unauthorized", f"The account did not order certificate {serial}, whose names are not "
                                      "all DNS names or IP addresses it could hold authorizations for; revoke "
                                      "it with the account that did, or sign with the certificate's own key.")
    missing = sorted(set(identifiers) - state.authorized(account_id, identifiers))
    if missing:
        raise Problem("unauthorized", f"The account did not order certificate {serial} and holds no valid "
                                      f"authorization for {', '.join(value for _kind, value in missing)}; "
                                      "revoke it with the account that ordered it, with an account that holds "
                                      "valid authorizations for all of its names, or sign with the "
                                      "certificate's own key.")
    _refuse_compromise_claim(serial, code)
    return f"account {account_id}, which holds valid authorizations for all of its names"


def _refuse_compromise_claim(serial: str, code: int) -> None:
    """keyCompromise revokes every certificate of the key (Inventory.revoke), whoever issued it:
    only who showed they hold the key may say so. An account that merely holds authorizations
    for the names has not (Let's Encrypt refuses it the same way); any other reason revokes the
    named certificate alone."""
    if REVOCATION_CODES.get(code) == "keyCompromise":
        raise Problem("badRevocationReason", f"keyCompromise must be signed with the certificate's own key: "
                                             f"this account did not order certificate {serial}, and holding "
                                             "authorizations for its names does not show that its key was "
                                             "compromised. Sign the revocation with the certificate's key "
                                             "(certbot revoke --key-path), or give another reason.")


def certificate_identifiers(cert) -> list[tuple[str, str]] | None:
    """The ACME identifiers ((type, value)) a certificate is for: its DNS names and IP addresses,
    and a subject common name that is not among them; None if it names anything else (an email
    address, a URI), for which no account can hold an authorization."""
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    found: list[tuple[str, str]] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = []
    for name in san:
        if isinstance(name, x509.DNSName):
            found.append(("dns", name.value.lower()))
        elif isinstance(name, x509.IPAddress):
            found.append(("ip", str(name.value)))
        else:
            return None
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attribute.value).lower()
        try:
            value = str(ipaddress.ip_address(value))
            kind = "ip"
        except ValueError:
            kind = "dns"
        if (kind, value) not in found:
            found.append((kind, value))
    return list(dict.fromkeys(found))
