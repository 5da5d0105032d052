"""Renewing one issued certificate: :func:`plan_renewal` decides, without the CA key, what the successor is
and where it goes (every refusal made there: revoked, renewed already, a copy of another folder's bundle, a
CSR's key, a bundle.p12 to write again); :func:`renew` issues it through the pipeline
(:mod:`certkit.issuing`), replacing exactly the bundle's files in place. The certificate is found by
:func:`certkit.lifecycle.find_certificate`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import BUNDLE_FILES, KEY_FILE, MAX_CERT_FILE_BYTES, P12_FILE
from certkit.errors import CannotRenew, CertkitError, InvalidArgument
from certkit.folder_record import ca_option
from certkit.lifecycle import Found, find_certificate, holds
from certkit.names_carried import carried_name_notes
from certkit.renewal_key import old_key_of, refuse_key_left_behind
from certkit.text import shown
from certkit.vocabulary import moment_text

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.inventory import Inventory
    from certkit.issuing import Delivery, FolderTarget, Request


@dataclass
class RenewalPlan:
    """What renewing one certificate will do, decided before the CA key is touched."""

    found: Found
    request: "Request"
    target: "FolderTarget"
    in_place: bool
    notes: list[str] = field(default_factory=list)
    same_key: tuple[Path, ...] = ()  # secret files written again holding the key they held: their mode is kept


@dataclass
class Renewal:
    old_serial: str
    delivery: "Delivery"
    folder: Path
    in_place: bool

    @property
    def issued(self):
        return self.delivery.issued

    @property
    def files(self) -> list[Path]:
        return self.delivery.files

    @property
    def notes(self) -> list[str]:
        return self.delivery.notes


def _p12_again(target, p12_password, old_p12: Path, *, key_path: Path | None, notes: list[str]) -> None:
    """The renewed bundle's bundle.p12, in the format of the one it replaces (``old_p12``: a --p12-legacy one is
    for an importer that takes no other); its key read from ``key_path`` (in place, the key kept there), else
    the renewal's own. A password the rule of a new secret refuses (an old timer's) fails this bundle."""
    from certkit.pkcs12 import RefusedPassword, is_legacy, issued_pkcs12

    if isinstance(p12_password, RefusedPassword):  # nothing else of the bundle is renewed without it
        reason = p12_password.reason
        raise InvalidArgument(f"its {P12_FILE} cannot be written again: {reason[:1].lower()}{reason[1:]} "
                              "It is not renewed.")
    legacy = is_legacy(old_p12)
    if legacy:
        notes.append(f"{P12_FILE} written again the legacy way (3DES, HMAC-SHA1), as the one it replaces was")
    target.extra = lambda issued: {P12_FILE: issued_pkcs12(issued, p12_password, legacy=legacy, delivering=True,
                                                           key=None if key_path is None else _load_key(key_path))}


def plan_renewal(ca: "CA", ref: str, *, rekey: bool = False, key_type: str | None = None, days: int | None = None,
                 out: Path | None = None, force: bool = False, p12_password: bytes | None = None,
                 rekey_keeps_requesters: bool = False) -> RenewalPlan:
    """Find the certificate ``ref`` names and plan its successor: into the folder that holds the
    old bundle (its bundle files replaced, the key kept unless ``rekey``), or into ``out``.
    Every refusal happens here, before the CA key is needed. A certificate signed from a CSR is
    renewed with ``rekey`` only with ``rekey_keeps_requesters`` (bulk renewal), which keeps the
    requester's key: a key made here would not be the one its requester holds."""
    from certkit.issuing import FolderTarget, plan, renewal_request

    inventory = ca.require_inventory()
    found, target_folder, in_place = _renewable(ca, ref, out)
    source = target_folder if in_place else found.folder  # where the old certificate's key may be
    keyed = _written_with_key(inventory, found)
    notes = carried_name_notes(found.cert)  # carried over as it was certified: said, never dropped silently
    if rekey and not keyed:
        if not rekey_keeps_requesters:
            raise CannotRenew(f"{found.serial} was signed from a CSR: its requester holds the private key, so a new "
                              "key made here would not be theirs (nor should it be made on the CA's machine). "
                              "Renew it without --rekey (the requester's key is kept), or ask for a new CSR and sign "
                              "it: certkit sign-csr.")
        rekey, key_type = False, None
        notes.append("signed from a CSR: renewed with the requester's key (--rekey makes no key for a certificate "
                     "whose key its requester holds; ask for a new CSR to change it)")
    old_key = old_key_of(source, found, check=not rekey, keyed=keyed, notes=notes)
    kind = ca.kind_of(found.cert)
    if in_place:
        request = renewal_request(found.cert, kind, rekey=rekey, key_type=key_type, days=days, ca=ca.cert)
        # The folder's key stays, if it holds one: a CSR's bundle never did, nor does its renewal.
        target = FolderTarget(target_folder, force=True, keeps_key=not rekey and keyed, replaces=_replaced(rekey))
        target.replacing = found.serial  # checked again when it is written, the folder held
        if not rekey and keyed:
            from certkit.file_modes import kept_key_notes

            notes += kept_key_notes(target_folder / KEY_FILE)
        p12 = target_folder / P12_FILE
        if p12.is_file() and not p12.is_symlink():  # anything else there is refused (bundle.check_writable)
            target.p12 = p12_password is not None
            if p12_password is None:  # what it held is not read (it needs a password): only where it was
                notes.append(f"{shown(p12)} was the old bundle's {P12_FILE} and was removed; export it again: "
                             f"certkit export-p12 {shown(target_folder)}")
    else:
        request = renewal_request(found.cert, kind, rekey=rekey, key_type=key_type, days=days, key=old_key,
                                   ca=ca.cert)
        target = FolderTarget(target_folder, force=force)
        _refuse_to_bury(ca, found, target_folder, force)
        target.guard = lambda: _refuse_to_bury(ca, found, target_folder, force)  # again when it is written
        if not rekey and old_key is None:  # delivered into an output file: the one that holds the key may be named
            refuse_key_left_behind(found.folder if keyed else None, target_folder)  # or one it could not read
            notes.append("no private key written: the key stays with whoever holds the old one" + (
                " (a jsonl, k8s or tar file that holds it, alone, gives the new bundle its key: certkit renew FILE "
                "--out DIR)" if keyed and found.row.get("sink") in ("file", "stream") else ""))
        elif found.folder is not None and (found.folder / P12_FILE).exists():  # the new folder gets one too
            target.p12 = p12_password is not None
            if p12_password is None:
                notes.append(f"no {P12_FILE} written (no PKCS#12 password was given): certkit export-p12 "
                             f"{shown(target_folder)}")
    same_key: tuple[Path, ...] = ()
    if target.p12 and p12_password is not None:
        _p12_again(target, p12_password, (target_folder if in_place else found.folder) / P12_FILE,
                   key_path=None if rekey or not in_place else target_folder / KEY_FILE, notes=notes)
        if in_place and not rekey and keyed:  # the very key it held: its owner, group and mode stay, as privkey.pem's
            from certkit.file_modes import readable_key_notes

            same_key = (target_folder / P12_FILE,)
            notes += readable_key_notes(target_folder / P12_FILE)
    plan(ca, request, target)
    return RenewalPlan(found, request, target, in_place, notes, same_key)


def _renewable(ca: "CA", ref: str, out: Path | None) -> tuple[Found, Path, bool]:
    """The certificate ``ref`` names, where its renewal goes, and whether that is in place (the folder
    holds it): or the refusal, before anything else is looked at."""
    if out is not None:
        from certkit.paths import check_name

        check_name(out, "output folder")  # before any look at it: an over-long name is refused in words
    found = find_certificate(ca.require_inventory(), ref, ca_cert=ca.cert, ca_parents=tuple(ca.parents))
    ca.kind_of(found.cert)  # an intermediate's certificate is refused as what it is, before where it went
    from certkit.fleet.plan import refuse_acme_renewal

    refuse_acme_renewal(ca.require_inventory(), found.row)  # its ACME client's (or server's), whatever --out says
    if found.folder is not None and not os.path.isdir(ref):  # found by serial or name: its folder settled too
        from certkit.bundle import settle_folder

        settle_folder(found.folder)
    recorded = Path(found.row["folder"]) if found.row.get("folder") else None
    if (out is None and found.folder is not None and recorded is not None
            and os.path.realpath(found.folder) != os.path.realpath(recorded) and holds(recorded, found.serial)):
        raise CannotRenew(f"{shown(found.folder)} holds a copy of the certificate {found.serial}, whose bundle is "
                          f"{shown(recorded)}; renew that folder (certkit renew {shown(recorded)}{ca_option(ca)}), "
                          "or give --out to write the renewed bundle somewhere new.")
    target_folder = Path(out) if out is not None else found.folder
    in_place = target_folder is not None and holds(target_folder, found.serial)
    if in_place and out is None:  # (a name --out gave was checked as an output folder's, above)
        from certkit.paths import check_renewable_in_place

        check_renewable_in_place(target_folder)
    if found.successors and not in_place:
        _refuse_renewed(ca, found)
    if found.row["status"] == "revoked":
        raise CannotRenew(f"The certificate {found.serial} was revoked on {moment_text(found.row['revoked_at'])} "
                          f"(reason: {found.row['revocation_reason']}); a revoked certificate is not renewed. Issue a "
                          "new one (with a new key) instead.")
    if target_folder is None and (pending := ca.inventory.rows(
            "WHERE renewed_from = ? AND status = 'pending' ORDER BY issued_at DESC LIMIT 1", [found.serial])):
        raise CannotRenew(f"The certificate {found.serial} is being renewed by another certkit command (its successor "
                          f"{pending[0]['serial']} is being written to {shown(pending[0].get('folder') or '-')}); "
                          "nothing was done: run again once it is done ('certkit list' shows it).")
    if target_folder is None:
        from certkit.fleet.folders import not_in_place

        raise CannotRenew(f"The certificate {found.serial} cannot be renewed in place: {not_in_place(found.row)}"
                          "choose where the renewed bundle goes.")
    return found, target_folder, in_place


def _refuse_to_bury(ca: "CA", found: Found, folder: Path, force: bool) -> None:
    """``renew X --out Y --force`` where Y holds the bundle of another valid certificate: its key
    would go, and the certificate stay valid with nothing to record it as replaced (the renewal
    succeeds X). Refused: revoke that one (superseded) first, or choose another folder."""
    from certkit.inventory.succession import replaced_certificate

    other = replaced_certificate(ca, folder) if force else None
    if other is not None and other != found.serial:
        raise CannotRenew(f"{shown(folder)} holds the bundle of certificate {other}, which is still valid: --force "
                          "would delete its key and leave it recorded as valid. Choose another folder, or first "
                          f"revoke it: certkit revoke {other} --reason superseded{ca_option(ca)}.")


def _replaced(rekey: bool) -> tuple[str, ...]:
    """The bundle files an in-place renewal replaces or removes: all but a kept private key."""
    return tuple(n for n in BUNDLE_FILES if rekey or n != KEY_FILE)


def _written_with_key(inventory: "Inventory", found: Found) -> bool:
    """Whether the bundle of ``found`` was written with its private key. A CSR's bundle was not,
    nor is its renewal with the key kept (recorded as keyed by certkit before 2026-12; told by its
    predecessor: unkeyed, with the same public key)."""
    from certkit.keys import public_key_der

    if not found.row.get("keyed", True):
        return False
    before = found.row.get("renewed_from")
    row = inventory.get(before) if before else None
    if row is None or row.get("keyed", True):
        return True
    try:
        return public_key_der(inventory.certificate(before).public_key()) != public_key_der(found.cert.public_key())
    except CertkitError:
        return True


def _load_key(path: Path):
    from certkit.files import read_limited
    from certkit.keys import load_private_key

    try:
        return load_private_key(read_limited(path, MAX_CERT_FILE_BYTES, what="private key"), None,
                                source=f"key {path}")
    except CertkitError:
        return None  # encrypted or exotic: not ours to check; it stays as it is


def renew(ca: "CA", planned: RenewalPlan) -> Renewal:
    """Issue the planned successor through the pipeline (signed, recorded pending, written, marked valid). An
    inventory that went away once the new bundle was in place raises, its ``certkit_renewal`` the renewal done
    (in place, its row pending until the next command reaches the inventory): its hooks are still to run."""
    from certkit.errors import InventoryError
    from certkit.file_modes import same_key
    from certkit.issuing import deliver

    def done(delivery) -> Renewal:
        delivery.notes = planned.notes + delivery.notes
        return Renewal(planned.found.serial, delivery, planned.target.given, planned.in_place)

    try:
        with same_key(*planned.same_key):
            delivery = deliver(ca, planned.request, planned.target, planned=True)
    except InventoryError as exc:
        if getattr(exc, "certkit_deliveries", None):
            exc.certkit_renewal = done(exc.certkit_deliveries[0])
            exc.certkit_renewal.notes.append(UNMARKED)
        raise
    return done(delivery)


UNMARKED = ("its inventory row is still pending (the inventory went away as it was written): the next certkit "
            "command that reaches the inventory records it as issued")


def renew_bundle(ca: "CA", ref: str, *, rekey: bool = False, key_type: str | None = None, days: int | None = None,
                 out: Path | None = None, force: bool = False) -> Renewal:
    """:func:`plan_renewal` then :func:`renew`, for callers that hold an unlocked CA."""
    return renew(ca, plan_renewal(ca, ref, rekey=rekey, key_type=key_type, days=days, out=out, force=force))


def _refuse_renewed(ca: "CA", found: Found) -> None:
    """Refuse to renew ``found`` again: it was renewed, or its bundle was replaced (--force) with a
    certificate of another kind, which renewed nothing: a renewal keeps the kind."""
    newest = found.successors[-1]
    row = ca.inventory.get(newest) if ca.inventory is not None else None
    if row is not None and row["kind"] != found.row["kind"]:
        raise CannotRenew(f"The {found.row['kind']} certificate {found.serial} was not renewed: its bundle was "
                          f"replaced (--force) with the {row['kind']} certificate {newest}, and its key went with it. "
                          f"Issue a new {found.row['kind']} certificate (into a folder of its own), or revoke "
                          f"{found.serial} if nothing uses it (certkit revoke {found.serial} --reason superseded).")
    raise CannotRenew(f"The certificate {found.serial} was already renewed as {newest}; "
                      "renew that one (or give the folder that still holds the old certificate).")
