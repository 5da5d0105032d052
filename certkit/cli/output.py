"""``--format folder|jsonl|k8s|tar`` for the issuing commands: the option, and issuing one
certificate into a file or standard output (:mod:`certkit.formats`).

The folder format stays the issuing commands' own code (:mod:`certkit.cli.issue`);
this module takes over when another format is asked for. With ``--out FILE``
the output is written whole and renamed into place; without it, it goes to
standard output (a pipe: ``| kubectl apply -f -``), and the summary for people
goes to standard error so that it never mixes with the data.
"""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import emit, typed_out, unlock, when
from certkit.vocabulary import iso

_WHAT = {"jsonl": "one JSON line", "k8s": "a kubernetes.io/tls Secret", "tar": "a tar archive of the bundle folder"}


def check_format_options(fmt: str, out: Path | None, as_json: bool, p12: bool = False) -> Path | None:
    """Usage mistakes of ``--format`` and ``--out``, before anything else happens; returns the
    output file (None: standard output, also what ``--out -`` says)."""
    out = typed_out(fmt, out)
    if fmt == "folder":
        return out
    if out is None and as_json:
        raise click.UsageError(f"--json prints its summary on standard output, where --format {fmt} writes too; "
                               "add --out FILE.")
    if p12 and fmt != "tar":
        raise click.UsageError(f"--p12 adds bundle.p12 to a folder or a tar archive, not to --format {fmt}.")
    return out


def bundle_name(first_name: str) -> str:
    """What the bundle is called inside the output: the folder ``--format folder`` would write,
    with a name that could not be a folder made harmless instead of refused."""
    import re

    from certkit.errors import UnsafeOutputPath
    from certkit.names import safe_folder_name

    try:
        return safe_folder_name(first_name)
    except UnsafeOutputPath:
        return re.sub(r"^\.+", "_", re.sub(r"[/\\\0]", "_", first_name)) or "certificate"


def issue_to_output(request, fmt: str, out: Path | None, *, name: str, force: bool, ca_dir: Path | None,
                    passphrase_file: Path | None, as_json: bool, p12_password=None, p12_legacy: bool = False,
                    requested: dict | None = None) -> None:
    """Plan against the locked CA and the output, read secrets, unlock, deliver, summarize."""
    from certkit.formats import Output
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()
    output = Output(fmt, out, force=force)
    with output.held(ca):
        _issue_held(ca, output, request, name=name, passphrase_file=passphrase_file, as_json=as_json,
                    p12_password=p12_password, p12_legacy=p12_legacy, requested=requested)


def _issue_held(ca, output, request, *, name: str, passphrase_file, as_json: bool, p12_password, p12_legacy: bool,
                requested: dict | None) -> None:
    from certkit.issuing import deliver, plan

    output.check(ca.directories, keyed=request.keyed, inventory=ca.inventory)
    output.held_before(ca.inventory)
    foreign = output.foreign_held(ca) + replaced_file(output)  # read before the file goes: said once it has
    target = output.target(name)
    plan(ca, request, target)  # every refusal before any secret is asked for
    from certkit.cli.issue import warn_of_purpose

    asked = warn_of_purpose(request, ca=ca, passphrase_file=passphrase_file)
    if p12_password is not None:
        from certkit.pkcs12 import issued_pkcs12

        password = p12_password()
        target.extra = lambda issued: {"bundle.p12": issued_pkcs12(issued, password, legacy=p12_legacy,
                                                                  delivering=True)}
    unlock(ca, passphrase_file)
    warn_made_private(output)  # every refusal made: keys go there now
    delivery = deliver(ca, request, target, planned=True)
    delivery.notes += foreign
    warn_of_purpose(request, told=asked)
    released = output.released(ca.inventory)
    if released:
        delivery.notes.append(released_note(output, released))
    _summarize(delivery, output, name, as_json, ca, requested, released,
               p12_legacy if p12_password is not None else None)


def replaced_file(output) -> list[str]:
    """Before --force replaces the existing output file: the note saying what it held."""
    from certkit.formats.replaced import replaced_notes

    return replaced_notes(output.path if output.force else None, output.file_text or "")


def warn_made_private(output) -> None:
    """Make standard output's file, readable by others, 0600 before keys go into it, and say so."""
    if output.made_private is not None:
        from certkit.cli.common import warn
        from certkit.files import private_stream

        private_stream(output.stream, change=True)

        warn(f"standard output is a file others could read (mode {output.made_private:04o}); certkit made it 0600 "
             "before writing private keys into it, as --out FILE would have created it.")


def released_note(output, serials: list[str]) -> str:
    """What --force over an output file did to the certificates it held that no new one replaces."""
    these = f"{len(serials)} other certificate{'s' if len(serials) != 1 else ''}"
    listed = ", ".join(s[:16] for s in serials[:5]) + (", ..." if len(serials) > 5 else "")
    return (f"{output.file_text} held {these} still valid that this output does not replace ({listed}); their "
            "keys went with the old file, and the inventory no longer says they are in it. Revoke any that nobody "
            "else holds: certkit revoke SERIAL")


def issued_data(issued, ca, *, fmt: str, name: str, folder: str | None, files: dict, file: str | None, notes: list,
                released: list[str]) -> dict:
    """A single issuing command's ``--json``, one shape for every --format: ``folder`` and ``files`` for a bundle
    folder (null and empty for the others), ``file`` for an output file or standard output (null for a folder),
    ``released`` empty for a folder (a bundle that --force replaces is recorded as renewed)."""
    from cryptography.hazmat.primitives import hashes

    from certkit.vocabulary import san_entries

    return {
        "kind": issued.kind, "serial": issued.serial_hex, "subject": issued.cert.subject.rfc4514_string(),
        "names": san_entries(issued.cert), "not_before": iso(issued.cert.not_valid_before_utc),
        "not_after": iso(issued.not_after), "fingerprint_sha256": issued.cert.fingerprint(hashes.SHA256()).hex(),
        "issuer": ca.cert.subject.rfc4514_string(), "format": fmt, "name": name, "folder": folder, "files": files,
        "file": file, "key_included": issued.private_key is not None, "notes": notes, "released": released,
    }


def lifetime_words(issued) -> str:
    """How long ``issued`` lives, counted inclusively (notAfter is its last second): 200 days, 1 day; 10 minutes
    at its CA's very end."""
    import datetime as dt

    from certkit.fleet.plan import period_words

    span = issued.not_after - issued.cert.not_valid_before_utc + dt.timedelta(seconds=1)
    return f"{span.days} day{'s' if span.days != 1 else ''}" if span.days else period_words(span)


def summary_head(issued, data: dict) -> list[str]:
    """The first lines of an issuing command's summary, whatever the format: what, its names (with an IDN's
    Unicode form), serial and expiry."""
    from certkit.cli.issue import PURPOSES
    from certkit.text import shown

    sans = data["names"]
    displays = {str(i): i.display for i in issued.identities if i.display}
    shown_names = ", ".join(shown(n) + (f" ({shown(displays[n])})" if n in displays else "") for n in sans)
    if sans and all(n.startswith("DirName:") for n in sans):
        shown_names += "  (the subject DN: no DNS, email or URI identity)"
    return [f"Issued a {issued.kind} certificate: {PURPOSES[issued.kind]}",
            f"  subject   {shown(data['subject']) or '(empty)'}",
            f"  names     {shown_names or '(none)'}",
            f"  serial    {issued.serial_hex}",
            f"  expires   {when(issued.not_after)} ({lifetime_words(issued)})"]


def summary_tail(issued, data: dict, requested: dict | None, p12_legacy: bool | None, notes: list[str]) -> list[str]:
    """The last lines of an issuing command's summary, whatever the format (and their fields in ``data``): the
    bundle.p12's encryption, what of a CSR's request was granted and dropped, the notes."""
    from certkit.cli.issue import describe_p12
    from certkit.text import shown

    lines = []
    if p12_legacy is not None:
        data["p12_encryption"] = "legacy" if p12_legacy else "modern"
        lines.append(f"  bundle.p12 encryption: {describe_p12(p12_legacy)}")
    if requested is not None:  # what the CSR asked for, and what of it the certificate does not carry
        data |= {"requested": requested, "granted": issued.granted, "dropped": issued.dropped}
        lines += [f"  granted   {shown(g)} (as requested)" for g in issued.granted]
        lines += [f"  dropped   {shown(d)}" for d in issued.dropped]
        lines.append("  key       none written: the requester keeps the private key")
    return lines + [f"  note      {shown(n)}" for n in notes]


def _summarize(delivery, output, name: str, as_json: bool, ca, requested: dict | None,
               released: list[str], p12_legacy: bool | None = None) -> None:
    from certkit.text import shown

    issued = delivery.issued
    keyed = issued.private_key is not None
    data = issued_data(issued, ca, fmt=output.format, name=name, folder=None, files={}, file=output.file_text,
                       notes=delivery.notes, released=released)
    if output.format == "k8s":  # the object's name in the cluster (kubectl get secret NAME)
        from certkit.formats import secret_name
        from certkit.formats.encoding import typed_name

        data["secret"] = secret_name(name, typed_name(issued))
    where = output.describe()
    mode = " (mode 0600: it holds the private key)" if keyed and output.given is not None else ""
    lines = [*summary_head(issued, data),
             f"  output    {_WHAT[output.format]} ({shown(data.get('secret', name))}) to {where}{mode}",
             *summary_tail(issued, data, requested, p12_legacy, delivery.notes)]
    if output.given is None:  # the data is on standard output: people read the summary on stderr
        from certkit.text import terminal_safe

        click.echo(terminal_safe("\n".join(lines)), err=True)
    else:
        emit(as_json, data, "\n".join(lines))


def batch_summary(output, manifest, result, ca, as_json: bool, released: list[str], sync: str) -> None:
    """issue-batch's closing report for a single output (on standard error when the data is on stdout)."""
    from certkit.cli.batch import summary_data, summary_head, summary_notes
    from certkit.text import shown, terminal_safe

    where = output.describe()
    data = summary_data(result, manifest, ca, fmt=output.format, out_dir=None, file=output.file_text, sync=sync,
                        released=released)
    lines = [summary_head(result, manifest),
             f"  output     {_WHAT_MANY[output.format]} to {where}"
             + (f" (mode 0600: it holds the private key{'s' if result.issued != 1 else ''})"
                if output.given is not None else ""),
             f"  inventory  {shown(ca.inventory.location)}",
             *summary_notes(result)]
    if released:
        lines.append(f"  note       {shown(released_note(output, released))}")
    if output.given is None:
        click.echo(terminal_safe("\n".join(lines)), err=True)
    else:
        emit(as_json, data, "\n".join(lines))


_WHAT_MANY = {"jsonl": "one JSON line per certificate", "k8s": "a kubernetes.io/tls Secret per certificate",
              "tar": "a tar archive with a folder per certificate"}
