"""Whose CA issued the certificate of a bundle that ``export-p12`` packs (:func:`issuing_store`: the CA
directory given or the per-user one, or an intermediate it recorded), and the refusal to pack one that CA, or a
CA above it, revoked (:func:`refuse_revoked_export`), or whose revocation cannot be told."""

from __future__ import annotations

from pathlib import Path

from certkit.errors import CertkitError


def issuing_store(cert, ca_dir: str | Path | None, *, chain=()):
    """The CA directory (``ca_dir``, else $CERTKIT_CA_DIR or the default one) if its CA issued ``cert``, or
    the directory of an intermediate it recorded that did: where the certificate's revocation is known and its
    folder's writers take turns; else None. One given (--ca-dir, $CERTKIT_CA_DIR) must hold a CA, as every
    command's does: a typo would turn the check off. ``chain`` (the bundle's CA certificates) tells which
    recorded intermediates are above ``cert``: one of them that cannot be opened, or that the CA above it
    revoked, refuses the export (:func:`_issuer_below`)."""
    import os

    from certkit.constants import ENV_CA_DIR
    from certkit.store import CADirectory, resolve_ca_dir

    if ca_dir is not None or ENV_CA_DIR in os.environ:  # set but empty: refused as every command refuses it
        store = CADirectory(resolve_ca_dir(ca_dir))
        return _issuer_below(store, store.open(), cert, list(chain), depth=3)  # None: another CA's bundle
    from certkit.errors import UnreadableFile

    try:
        store = CADirectory(resolve_ca_dir(ca_dir, strict=False))
        try:
            own = store.load_certificates()[0]
        except UnreadableFile as exc:  # whether this CA issued it (and revoked it) cannot be told: not "no CA"
            raise UnreadableFile(f"{exc} Whether the per-user CA issued (and revoked) this certificate cannot be "
                                 "told, so it is not exported; give --ca-dir for its CA.", exc.errno) from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise UnreadableFile(f"Cannot read {exc.filename or store.path} ({exc.strerror or exc}). Whether the "
                                 "per-user CA issued (and revoked) this certificate cannot be told, so it is not "
                                 "exported; give --ca-dir for its CA.", exc.errno) from None
        if own.subject == cert.issuer:
            return store  # its inventory is asked (refuse_revoked_export), and refuses if it cannot be read
        ca = _open_above(store, own, cert, list(chain))
    except UnreadableFile:
        raise
    except (CertkitError, OSError, ValueError):
        return None  # no CA directory to ask (a bundle copied to another machine)
    return _issuer_below(store, ca, cert, list(chain), depth=3)


def _open_above(store, own, cert, chain: list):
    """The per-user CA ``own`` of ``store``, opened. One that cannot be opened (its inventory unreadable, its
    certkit-ca.json damaged) is no CA to ask for another CA's bundle; for a bundle whose chain passes through it
    (an intermediate it may have recorded, and revoked, issued the certificate) it refuses the export."""
    from certkit.errors import UnreadableFile
    from certkit.signatures import signed_by
    from certkit.verify_names import cn_text
    from certkit.vocabulary import serial_hex

    try:
        return store.open()
    except (CertkitError, OSError, ValueError) as exc:
        if own in chain or any(signed_by(c, own) for c in (cert, *chain)):
            why = f"{exc.filename or store.path}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            raise UnreadableFile(f"Whether the certificate {serial_hex(cert.serial_number)} was revoked cannot be "
                                 f"told, so it is not exported: the per-user CA {cn_text(own.subject)}, above its "
                                 f"issuer in its chain, cannot be opened: {why.rstrip('.')}.") from None
        raise


def _issuer_below(store, ca, cert, chain: list, depth: int):
    """``store`` (holding ``ca``) if its CA issued ``cert``, else the CA directory of an intermediate it recorded
    (sink ca-dir), and so on ``depth`` levels down, that did; None when none did. A recorded intermediate above
    ``cert`` (it signed it, or is in its ``chain``) is asked, never skipped: one whose directory cannot be opened
    refuses (whether it revoked the certificate cannot be told), and so does one ``ca`` revoked (every verifier
    that loads its CRL refuses the chain)."""
    if ca.cert.subject == cert.issuer:
        return store
    if depth == 0 or ca.inventory is None:
        return None
    from certkit.signatures import signed_by

    for row in ca.inventory.rows("WHERE kind = 'ca' AND sink = 'ca-dir' AND folder IS NOT NULL ORDER BY issued_at"):
        recorded = ca.inventory.certificate(row["serial"])
        above = signed_by(cert, recorded) or recorded in chain
        try:
            child, child_ca = _recorded_directory(row["folder"], recorded)
        except (CertkitError, OSError) as exc:
            if not above:  # another intermediate's directory gone or damaged: not this one
                continue
            raise CertkitError(_unknown(cert, recorded, row["folder"], exc)) from None
        if (found := _issuer_below(child, child_ca, cert, chain, depth - 1)) is not None:
            _refuse_withdrawn_issuer(row, recorded, store, cert)
            return found
    return None


def _recorded_directory(folder: str, recorded):
    """The CA directory an intermediate ``recorded`` was created in, and its CA, opened; a CertkitError if it
    cannot be opened or now holds another CA."""
    from certkit.store import CADirectory
    from certkit.verify_names import cn_text

    child = CADirectory(folder)
    child_ca = child.open()
    if child_ca.cert != recorded:
        raise CertkitError(f"its folder {folder} now holds another CA ({cn_text(child_ca.cert.subject)})")
    return child, child_ca


def _unknown(cert, recorded, folder: str, exc: Exception) -> str:
    """Why the revocation of ``cert`` cannot be told: the directory of ``recorded``, above it, cannot be opened."""
    from certkit.signatures import signed_by
    from certkit.text import shown
    from certkit.verify_names import cn_text
    from certkit.vocabulary import serial_hex

    if not Path(folder).exists():
        why = (f"{shown(folder)}, where it was created, is gone (moved or removed: export with --ca-dir of its new "
               "place)")
    elif isinstance(exc, OSError):
        why = f"{shown(exc.filename or folder)}: {exc.strerror or exc}"
    else:
        why = str(exc).rstrip(".")
    role = "which issued it" if signed_by(cert, recorded) else "above its issuer"
    return (f"Whether the certificate {serial_hex(cert.serial_number)} was revoked cannot be told, so it is not "
            f"exported: the inventory of {cn_text(recorded.subject)}, {role}, cannot be read: {why}.")


def _refuse_withdrawn_issuer(row: dict, recorded, store, cert) -> None:
    """A CA above ``cert`` that the CA of ``store`` revoked (its inventory's ``row``) refuses the export, as
    verify says NOT VALID: every verifier that loads the CRL refuses every certificate it issued."""
    from certkit.text import shown
    from certkit.vocabulary import serial_hex
    from certkit.withdrawals import issuer_withdrawn

    if row["status"] == "revoked":
        problem = issuer_withdrawn(row, recorded, f"the inventory of {shown(store.path)}")
        raise CertkitError(f"The certificate {serial_hex(cert.serial_number)} is not exported: {problem}. Issue "
                           "a new one (with a new key) from a CA that is not revoked instead.")


def refuse_revoked_export(store, cert) -> None:
    """A certificate its CA revoked is not packed for import: the browser or keystore it goes to would
    offer a certificate every verifier refuses."""
    from certkit.parent_record import recorded_parent_dir, revoked_by_parent
    from certkit.vocabulary import moment_text, serial_hex

    try:
        ca = store.open() if store is not None else None
        row = ca.inventory.get(serial_hex(cert.serial_number)) if ca is not None else None
    except (CertkitError, OSError, ValueError) as exc:  # its CA's, unread: whether it was revoked is not known
        raise CertkitError(f"Whether the certificate {serial_hex(cert.serial_number)} was revoked cannot be told, so "
                           f"it is not exported: {str(exc).rstrip('.')}.") from None
    if ca is not None and ca.parents and (why := revoked_by_parent(ca.cert, ca.parents[0],
                                                                   recorded_parent_dir(ca.inventory))):
        raise CertkitError(f"The certificate {serial_hex(cert.serial_number)} is not exported: its issuing "
                           f"{why[4:].replace(', so it issues nothing.', '.')}")
    if row is not None and row["status"] == "revoked":
        raise CertkitError(f"The certificate {row['serial']} was revoked on {moment_text(row['revoked_at'])} "
                           f"(reason: {row['revocation_reason']}); every verifier refuses it, so it is not exported. "
                           "Issue a new one (with a new key) instead.")
