"""``certkit crl``: sign a revocation list of every certificate the CA revoked, and write it to a file (never over
a newer one, nor over a file certkit recorded) or to standard output. (``revoke`` is :mod:`certkit.cli.lifecycle`.)"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from functools import partial
from pathlib import Path

import click

from certkit.cli.arguments import on_stop
from certkit.cli.common import (
    OutPath,
    Whole,
    ca_dir_option,
    emit,
    file_out,
    json_option,
    passphrase_file_option,
    unlock,
    when,
)
from certkit.constants import MAX_CRL_DAYS, MIN_CRL_DAYS
from certkit.vocabulary import iso


def _check_crl_to_stdout(der: bool, force: bool, as_json: bool) -> None:
    """What a CRL on standard output cannot be: --force (it replaces nothing), nowhere (closed), DER on a
    terminal or in JSON."""
    from certkit.errors import CertkitError
    from certkit.text import stdout_closed

    if force:
        raise click.UsageError("--force replaces an existing --out file; standard output replaces nothing: add --out "
                               "FILE, or leave out --force.")
    if closed := stdout_closed("the CRL"):
        raise CertkitError(closed)
    if der and (as_json or sys.stdout.isatty()):
        raise click.UsageError("--json without --out prints the PEM CRL in the JSON; drop --der or add --out."
                               if as_json else "A DER CRL is binary: give --out FILE or redirect stdout.")


def _check_crl_output(out: Path | None, der: bool, force: bool, as_json: bool) -> None:
    """What standard output cannot take (:func:`_check_crl_to_stdout`); and, a CRL being written uncompressed,
    an --out (or ``> FILE``) named as a compressed file is refused, as the jsonl, k8s and tar outputs do (not
    standard output that takes a JSON report), and so is ``> FILE`` named as the other encoding."""
    if out is None:
        _check_crl_to_stdout(der, force, as_json)
    if out is not None or not as_json:
        from certkit.cli.common import out_as_typed
        from certkit.formats.recorded import refuse_compressed_name

        refuse_compressed_name(out, out_as_typed() or "", sys.stdout, "crl-der" if der else "crl")
    if out is None and not as_json:  # standard output redirected to a file (> crl.der): its name, as the kernel has it
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _refuse_other_encoding(os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}"), der)


def _refuse_other_encoding(name: str, der: bool) -> None:
    """Refuse a CRL file named as the other encoding: a PEM one as ``.der`` (openssl crl -inform DER, and readers
    that go by the name, refuse it), a DER one as ``.pem`` (nginx's ssl_crl, HAProxy's crl-file refuse it)."""
    from certkit.formats.encoding import FormatRefused
    from certkit.text import shown

    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".pem" and der:
        raise FormatRefused(f"{shown(name)} is named as a PEM file, but --der writes a DER CRL (binary), which readers "
                            f"of PEM (nginx's ssl_crl, HAProxy's crl-file) refuse; name it {shown(name[:-4])}.der, or "
                            "leave out --der.")
    if suffix == ".der" and not der:
        raise FormatRefused(f"{shown(name)} is named as a DER file, but without --der certkit writes a PEM CRL, which "
                            f"readers of DER (openssl crl -inform DER) refuse; add --der, or name it "
                            f"{shown(name[:-4])}.pem.")


@click.command("crl")
@click.option("--out", type=OutPath(path_type=Path, dir_okay=False),
              help="Write the CRL here [default, or -: stdout; with --der, a stdout that is no terminal]. "
                   "An older CRL of this CA is replaced.")
@click.option("--der", is_flag=True, help="DER instead of PEM.")
@click.option("--days", type=Whole(MIN_CRL_DAYS, MAX_CRL_DAYS), default=30, show_default=True,
              help="Days until nextUpdate: publish a new CRL before then.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not a CRL of this CA.")
@ca_dir_option
@passphrase_file_option
@json_option
def crl(out, der, days, force, ca_dir, passphrase_file, as_json):
    """Sign a certificate revocation list of every certificate this CA revoked.

    Each CRL gets the next CRL number; thisUpdate is now (less five minutes
    for slow clocks) and nextUpdate --days later, or, with a warning, when
    the CA (or a CA above it) expires, if sooner. Point nginx's ssl_crl,
    HAProxy's crl-file or openssl's -CRLfile at it, and publish a new one
    before nextUpdate: an expired CRL makes those servers refuse everyone.

    \b
    Examples:
      certkit crl --out crl.pem
      certkit crl --der --out crl.der --days 7
      certkit crl > crl.pem
    """
    import datetime as dt

    from cryptography import x509

    from certkit.cli.common import warn
    from certkit.crl_file import check_published
    from certkit.errors import OutputExists
    from certkit.formats.recorded import refuse_a_recorded_file
    from certkit.lifecycle import check_crl_target, crl_bytes, write_crl
    from certkit.revocation import check_can_sign_crl, sign_crl

    out = file_out(out, "a CRL is one file", "crl.der" if der else "crl.pem")
    _check_crl_output(out, der, force, as_json)
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()
    if out is not None:
        from certkit.ca import subject_key_identifier

        try:
            check_crl_target(out, ca.cert.subject, force=force, ca_dirs=ca.directories,  # before taking a number
                             key_id=subject_key_identifier(ca.cert))
        except OutputExists:  # what --force would not replace either is said as such, not "pass --force"
            refuse_a_recorded_file(out, ca.inventory)
            raise
        refuse_a_recorded_file(out, ca.inventory)  # a jsonl output's keys, a bundle's privkey.pem
        _refuse_other_encoding(str(out), der)  # after those: what is there is said first
    signed: list[tuple[int, bytes]] = []  # the CRL, once signed: what a stop signal looks for at --out
    if out is not None:
        on_stop(partial(_stopped_crl, out, signed))
    ca.inventory.revoked()  # a damaged revoked row refuses the CRL before the passphrase is asked for
    check_can_sign_crl(ca)  # so do an expired CA and another CA's certificates in the inventory
    published, carried = check_published(out, ca) if out is not None else (0, [])
    _warn_carried(out, carried)
    unlock(ca, passphrase_file)
    revocation_list = sign_crl(ca, days=days, checked=True, above=published, carried=carried)
    if revocation_list.next_update_utc < revocation_list.last_update_utc + dt.timedelta(days=days):
        warn(f"nextUpdate is {when(revocation_list.next_update_utc)}, when the CA '{ca.common_name}' expires, not "
             f"{days} days from now: no CRL of it is valid after that. Create its successor with 'certkit init-ca'.")
    data_bytes = crl_bytes(revocation_list, der=der)
    number = revocation_list.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    info = {
        "crl_number": number, "issuer": ca.cert.subject.rfc4514_string(),
        "this_update": iso(revocation_list.last_update_utc), "next_update": iso(revocation_list.next_update_utc),
        "revoked": len(revocation_list), "format": "DER" if der else "PEM",
        "sha256": _sha256(data_bytes),
    }
    signed.append((number, data_bytes))
    if out is not None:
        write_crl(out, data_bytes, ca.cert.subject, force=force, ca_dirs=ca.directories, inventory=ca.inventory)
        info["file"] = str(out)
        emit(as_json, info, "\n".join([
            f"Wrote CRL number {number} of \"{ca.common_name}\" to {out} ({info['format']})",
            f"  revoked      {len(revocation_list)} certificate{'s' if len(revocation_list) != 1 else ''}",
            f"  this update  {when(revocation_list.last_update_utc)}",
            f"  next update  {when(revocation_list.next_update_utc)}  (publish a new CRL before then)",
        ]))
    else:
        _crl_to_stdout(data_bytes, info, number, as_json)


def _stopped_crl(out: Path, signed: list[tuple[int, bytes]]) -> str | None:
    """What a crl stopped by a signal left at ``out``: its CRL in place (the rename done just before), or not."""
    from certkit.crl_file import placed_crl
    from certkit.text import shown

    if not signed:
        return f"Interrupted: no CRL was signed, and {shown(out)} was not written."
    number, data = signed[0]
    placed = placed_crl(out, data)
    if placed is None:
        return None
    if placed:
        return f"Interrupted, but CRL number {number} was written to {shown(out)} (it is in place)."
    return f"Interrupted: CRL number {number} was not written to {shown(out)}."


def _crl_to_stdout(data_bytes: bytes, info: dict, number: int, as_json: bool) -> None:
    """The CRL on standard output (in the JSON with --json); one standard output cannot take is said to be
    lost, not a report cut short after the work: the CRL was the work."""
    from certkit.text import unnamed_os_error

    try:
        if as_json:
            click.echo(json.dumps(info | {"pem": data_bytes.decode()}, indent=2))
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data_bytes)
            sys.stdout.buffer.flush()
    except OSError as exc:
        said = unnamed_os_error(exc)
        if said is None:
            raise
        raise click.ClickException(f"{said.rstrip('.')}; the CRL (number {number}) was not delivered whole: run "
                                   "certkit crl again, or give --out FILE.") from None


def _warn_carried(out: Path | None, carried: list) -> None:
    """What a CRL carries over from the one it replaces: revocations the inventory does not hold at all."""
    from certkit.cli.common import warn

    if carried:
        them = "them" if len(carried) != 1 else "it"
        serials = ", ".join(serial for serial, _, _ in carried[:3]) + (", ..." if len(carried) > 3 else "")
        warn(f"{out} lists {len(carried)} revoked certificate{'s' if len(carried) != 1 else ''} this CA's inventory "
             f"does not hold at all (restored from a backup older than {them}?): {serials}; the new CRL lists {them} "
             "too, with the date and reason it gives.")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
