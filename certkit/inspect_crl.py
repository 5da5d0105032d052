"""Describing a CRL for ``certkit inspect``: its issuer, number, dates and the certificates it revokes
(``certkit crl`` writes one; a CA directory's CRL is what servers are given to refuse revoked clients)."""

from __future__ import annotations

import datetime as dt

from certkit.vocabulary import iso, moment_text, serial_hex

SHOWN_ENTRIES = 20  # the text lists this many revoked certificates; --json lists them all


def describe_crl(crl, *, now: dt.datetime | None = None) -> dict:
    from cryptography import x509

    now = now or dt.datetime.now(dt.UTC)
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    entries = []
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = "unspecified"
        reason = _camel(reason)  # revocation_reason as list, revoke and verify name it; reason, as it always was
        entries.append({"serial": serial_hex(entry.serial_number), "revoked_at": iso(entry.revocation_date_utc),
                        "revocation_reason": reason, "reason": reason})
    next_update = crl.next_update_utc
    status = ("no nextUpdate" if next_update is None else "current" if next_update > now else
              "out of date: its nextUpdate has passed, and peers that check CRLs refuse every certificate of its CA")
    return {"type": "crl", "issuer": crl.issuer.rfc4514_string(), "crl_number": number,
            "this_update": iso(crl.last_update_utc), "next_update": iso(next_update) if next_update else None,
            "status": status, "revoked": entries}


def _camel(name: str) -> str:
    """cryptography's ReasonFlags name (key_compromise) as RFC 5280 and certkit revoke spell it."""
    special = {"ca_compromise": "cACompromise", "aa_compromise": "aACompromise"}
    head, *rest = name.split("_")
    return special.get(name) or head + "".join(part.capitalize() for part in rest)


def render_crl(item: dict, file: str) -> list[str]:
    lines = [f"Certificate revocation list ({file})",
             f"  issuer        {item['issuer'] or '(empty)'}",
             f"  CRL number    {item['crl_number'] if item['crl_number'] is not None else '(none)'}",
             f"  this update   {moment_text(item['this_update'])}",
             f"  next update   {moment_text(item['next_update']) if item['next_update'] else '(none)'}"
             + (f"  ({item['status']})" if item["status"] != "current" else ""),
             f"  revoked       {len(item['revoked'])} certificate{'s' if len(item['revoked']) != 1 else ''}"]
    for entry in item["revoked"][:SHOWN_ENTRIES]:
        lines.append(f"    {entry['serial']}  {moment_text(entry['revoked_at'])}  ({entry['reason']})")
    if len(item["revoked"]) > SHOWN_ENTRIES:
        lines.append(f"    ... and {len(item['revoked']) - SHOWN_ENTRIES} more (--json lists them all)")
    return lines
