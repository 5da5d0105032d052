"""Describing a CRL for ``certkit inspect``: its issuer, number, dates and the certificates it revokes
(``certkit crl`` writes one; a CA directory's CRL is what servers are given to refuse revoked clients)."""

from __future__ import annotations

import datetime as dt

from certkit.vocabulary import iso, moment_text, serial_hex

SHOWN_ENTRIES = 20  # the text lists this many revoked certificates; --json lists them all


def describe_crl(crl, *, now: dt.datetime | None = None, beside=()) -> dict:
    """One CRL for ``--json``; ``beside`` (the (certificate, file name) pairs of the same file or folder) holds
    the certificates its signature is checked against: each whose subject is the CRL's issuer."""
    from cryptography import x509

    now = now or dt.datetime.now(dt.UTC)
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    except ValueError:  # a damaged CRL number: said by the unusable notes
        number = None
    entries = []
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"  # RFC 5280's spelling (removeFromCRL), as list, revoke and verify name it
        try:
            since = iso(entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc)
        except x509.ExtensionNotFound:
            since = None
        entries.append({"serial": serial_hex(entry.serial_number), "revoked_at": iso(entry.revocation_date_utc),
                        "revocation_reason": reason, "reason": reason, "invalidity_date": since})
    next_update = crl.next_update_utc
    status = ("not yet valid: its thisUpdate is " + _ahead(crl.last_update_utc - now) + " from now, and until then "
              "peers that check CRLs refuse every certificate of its CA (OpenSSL: CRL is not yet valid)"
              if crl.last_update_utc > now else
              "no nextUpdate" if next_update is None else "current" if next_update > now else
              "out of date: its nextUpdate has passed, and peers that check CRLs refuse every certificate of its CA")
    scope, delta_of, unusable = crl_scope(crl)
    return {"type": "crl", "issuer": crl.issuer.rfc4514_string(), "crl_number": number,
            "this_update": iso(crl.last_update_utc), "next_update": iso(next_update) if next_update else None,
            "status": status, "delta_of": delta_of, "scope": scope, "unusable": unusable,
            "signature": crl_signature(crl, [cert for cert, _ in beside]), "revoked": entries}


# What OpenSSL (openssl verify -crl_check, nginx ssl_crl, HAProxy crl-file, PostgreSQL ssl_crl_file...) does
# with a CRL given alone, for what it holds beyond a plain CRL (RFC 5280 5.2); x509_vfy.c and v3_crld.c.
_HANDLED_CRITICAL = ("2.5.29.28", "2.5.29.35", "2.5.29.27")  # issuingDistributionPoint, AKI, deltaCRLIndicator
EVERY = "every certificate its issuer signed"
_REFUSES = "a peer given it alone refuses every certificate it should cover"


def crl_scope(crl) -> tuple[str, int | None, list[str]]:
    """What certificates ``crl`` covers (in words), the base CRL number of a delta CRL (else None), and each
    reason OpenSSL, given this CRL alone, cannot use it (as sentences without their final stop)."""
    from cryptography import x509

    unusable, delta_of, scope = [], None, EVERY
    for ext in _extensions(crl, unusable):
        oid = ext.oid.dotted_string
        if isinstance(ext.value, x509.DeltaCRLIndicator):
            delta_of = ext.value.crl_number
            unusable.append(f"it is a delta CRL (only the changes since CRL number {delta_of}): OpenSSL uses one "
                            "only beside its base CRL and when told to (openssl verify -use_deltas; servers such as "
                            f"nginx never do), so {_REFUSES} (unable to get certificate CRL)")
        elif isinstance(ext.value, x509.IssuingDistributionPoint):
            idp = ext.value
            if idp.only_contains_ca_certs:
                scope = "CA certificates only (issuingDistributionPoint onlyContainsCACerts)"
                unusable.append("it covers CA certificates only: a peer checking a leaf certificate with it refuses "
                                "the leaf (OpenSSL: different CRL scope); a leaf needs a CRL that covers end-entity "
                                "certificates")
            elif idp.only_contains_user_certs:
                scope = "end-entity certificates only (issuingDistributionPoint onlyContainsUserCerts)"
            elif idp.only_contains_attribute_certs:
                scope = "attribute certificates only (issuingDistributionPoint onlyContainsAttributeCerts)"
                unusable.append("it covers attribute certificates only, no TLS certificate: a peer checking one "
                                "with it refuses it (OpenSSL: different CRL scope)")
            if idp.only_some_reasons:
                reasons = ", ".join(sorted(r.value for r in idp.only_some_reasons))
                scope += f"; revocations for these reasons only: {reasons}"
                unusable.append(f"it lists revocations for some reasons only ({reasons}): OpenSSL needs CRLs "
                                f"covering every reason, so {_REFUSES} (unable to get certificate CRL)")
            if idp.indirect_crl:
                scope += "; indirect (it may list certificates other CAs signed)"
                unusable.append("it is an indirect CRL: OpenSSL uses one only with extended CRL support (openssl "
                                f"verify -extended_crl; servers such as nginx never turn it on), so {_REFUSES} "
                                "(unable to get certificate CRL)")
        elif ext.critical and oid not in _HANDLED_CRITICAL:
            unusable.append(f"it has a critical extension OpenSSL does not handle ({_ext_name(ext)}), so a peer "
                            "given it refuses every certificate of its CA (unhandled critical CRL extension)")
    unusable += _critical_entry_extensions(crl)
    return scope, delta_of, unusable


def _critical_entry_extensions(crl) -> list[str]:
    """Why OpenSSL refuses the whole CRL for its entries: an entry extension marked critical that is not a
    certificateIssuer (2.5.29.29), the one OpenSSL handles so (x_crl.c: any other, even a critical reasonCode,
    makes it refuse every certificate of the CA, not only the entry's)."""
    found: dict[str, list[str]] = {}
    for entry in crl:
        try:
            extensions = list(entry.extensions)
        except ValueError:  # damaged: the entry's reason says so where it is read
            continue
        for ext in extensions:
            if ext.critical and ext.oid.dotted_string != "2.5.29.29":
                found.setdefault(_ext_name(ext), []).append(serial_hex(entry.serial_number))
    said = []
    for name, serials in found.items():
        many = len(serials) > 1
        said.append(f"the entr{'ies' if many else 'y'} of {', '.join(serials[:3])}"
                    f"{f' and {len(serials) - 3} more' if len(serials) > 3 else ''} {'have' if many else 'has'} a "
                    f"critical extension OpenSSL does not handle ({name}), so a peer given it refuses every "
                    f"certificate of its CA, not only {'those' if many else 'that one'} (unhandled critical CRL "
                    "extension)")
    return said


def _extensions(crl, unusable: list[str]) -> list:
    try:
        return list(crl.extensions)
    except ValueError as exc:  # an extension cryptography cannot parse
        unusable.append(f"an extension of it is damaged ({str(exc).rstrip('.')})")
        return []


def _ext_name(ext) -> str:
    name = getattr(ext.oid, "_name", None)
    return ext.oid.dotted_string if not name or name == "Unknown OID" else f"{name}, {ext.oid.dotted_string}"


def crl_signature(crl, certificates) -> str | None:
    """Whether ``crl`` is signed by the key of a certificate among ``certificates`` named as its issuer
    (in words); None when none of them is."""
    from certkit.verify_names import cn_text

    named = [c for c in certificates if c.subject == crl.issuer]
    if not named:
        return None
    for cert in named:
        try:
            if crl.is_signature_valid(cert.public_key()):
                return f"valid: signed by the key of the certificate of {cn_text(cert.subject)} here"
        except Exception:  # noqa: BLE001 - a key type cryptography cannot check a CRL with
            continue
    return (f"NOT signed by the key of the certificate of {cn_text(named[0].subject)} here (another key of that "
            "name, or damaged): a peer trusting that certificate finds no CRL of its CA in it (OpenSSL: unable to "
            "get certificate CRL) and refuses every certificate of it")


def _ahead(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60) + 1
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def render_crl(item: dict, file: str) -> list[str]:
    lines = [f"Certificate revocation list ({file})",
             f"  issuer        {item['issuer'] or '(empty)'}",
             f"  CRL number    {item['crl_number'] if item['crl_number'] is not None else '(none)'}",
             f"  this update   {moment_text(item['this_update'])}",
             f"  next update   {moment_text(item['next_update']) if item['next_update'] else '(none)'}"
             + (f"  ({item['status']})" if item["status"] != "current" else "")]
    if item.get("delta_of") is not None:
        lines.append(f"  delta of      CRL number {item['delta_of']} (this one lists only the changes since)")
    if item.get("scope") and item["scope"] != EVERY:
        lines.append(f"  covers        {item['scope']}")
    if item.get("signature"):
        lines.append(f"  signature     {item['signature']}")
    lines += [f"  NOT USABLE    {why}" for why in item.get("unusable", [])]
    lines.append(f"  revoked       {len(item['revoked'])} certificate{'s' if len(item['revoked']) != 1 else ''}")
    for entry in item["revoked"][:SHOWN_ENTRIES]:
        since = f"; invalid since {moment_text(entry['invalidity_date'])}" if entry.get("invalidity_date") else ""
        lines.append(f"    {entry['serial']}  {moment_text(entry['revoked_at'])}  ({entry['reason']}{since})")
    if len(item["revoked"]) > SHOWN_ENTRIES:
        lines.append(f"    ... and {len(item['revoked']) - SHOWN_ENTRIES} more (--json lists them all)")
    return lines
