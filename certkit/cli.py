"""The command line: parse, call the library, print. Nothing else lives here.

This module imports only click and the standard library at start-up; each
command imports the parts of certkit (and so ``cryptography``) it needs when it
runs, which keeps ``certkit --help`` fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from certkit import __version__
from certkit.errors import CertkitError

ENV_PASSPHRASE = "CERTKIT_CA_PASSPHRASE"
ENV_P12_PASSWORD = "CERTKIT_P12_PASSWORD"  # the same as certkit.pkcs12's, which loads cryptography
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")


# Commands kept in their own modules, imported only when that command (or the full
# command list) is asked for: a one-shot issue-server does not pay for the others.
LAZY_COMMANDS = {
    "check": "certkit.cli_check",
    "crl": "certkit.cli_lifecycle",
    "demo": "certkit.cli_tls",
    "export-p12": "certkit.cli_serve",
    "inspect": "certkit.cli_tls",
    "issue-batch": "certkit.cli_batch",
    "list": "certkit.cli_lifecycle",
    "renew": "certkit.cli_lifecycle",
    "revoke": "certkit.cli_lifecycle",
    "serve": "certkit.cli_serve",
    "sign-csr": "certkit.cli_lifecycle",
    "verify": "certkit.cli_tls",
}


class CertkitGroup(click.Group):
    """Loads command modules on demand, and turns every library error into click's
    ``Error: ...`` line and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            import importlib

            importlib.import_module(LAZY_COMMANDS[cmd_name])  # registers itself on ``main``
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CertkitError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file-system failure the library did not anticipate
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}.") from None


@click.group(cls=CertkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="certkit")
def main() -> None:
    """certkit: a local CA for TLS server and client (mutual TLS) certificates.

    \b
    Examples:
      certkit init-ca --name "Home Lab CA"
      certkit issue-server localhost 127.0.0.1 ::1
      certkit issue-client alice --email alice@example.com
      certkit demo

    The CA lives in --ca-dir, else $CERTKIT_CA_DIR, else a per-user data
    directory. The CA key passphrase comes from a prompt, $CERTKIT_CA_PASSPHRASE
    or --passphrase-file; never from the command line.
    """
    import warnings

    # A library warning (cryptography's about a non-conforming certificate, say) is news
    # for the user, in one line like every other message, not a Python source excerpt.
    warnings.showwarning = _one_line_warning


_WARNED: set[str] = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if str(message) not in _WARNED:  # the same news once, wherever the library raised it
        _WARNED.add(str(message))
        click.echo(f"Warning: {message}", err=True)


# --- shared options ---------------------------------------------------------------
def ca_dir_option(f):
    return click.option(
        "--ca-dir", type=click.Path(path_type=Path, file_okay=False), envvar="CERTKIT_CA_DIR",
        help="CA directory [default: $CERTKIT_CA_DIR, else the per-user data dir].",
    )(f)


def passphrase_file_option(f):
    return click.option(
        "--passphrase-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help=f"Read the CA key passphrase from this file (else ${ENV_PASSPHRASE}, else a prompt).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(f)


def read_secret(path: Path | None, env: str, prompt: str, *, confirm: bool = False) -> bytes | None:
    """A secret from a file, else an environment variable, else a prompt on a terminal.

    A file's single trailing newline is dropped, as ``echo pw > file`` adds one.
    Returns None when none of the three is available.
    """
    if path is not None:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise click.ClickException(f"Cannot read {path}: {exc.strerror}.") from None
        secret = text[:-2] if text.endswith(b"\r\n") else text[:-1] if text.endswith(b"\n") else text
        if not secret:
            raise click.ClickException(f"The file {path} holds an empty secret.")
        return secret
    if env in os.environ:
        if not os.environ[env]:
            raise click.ClickException(f"${env} is set but empty.")
        return os.environ[env].encode()
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True).encode()
    return None


def load_ca(ca_dir: Path | None, passphrase_file: Path | None):
    from certkit.errors import PassphraseRequired
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    try:
        ca = store.load(lambda: read_secret(passphrase_file, ENV_PASSPHRASE, "CA key passphrase"))
    except PassphraseRequired as exc:
        raise click.ClickException(
            f"{exc} Set ${ENV_PASSPHRASE}, pass --passphrase-file, or run on a terminal to be asked."
        ) from None
    for warning in ca.warnings:
        click.echo(f"Warning: {warning}", err=True)
    return ca


def emit(as_json: bool, data: dict, human: str) -> None:
    if as_json:
        import json  # only for --json: certkit --help should not load it

        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(human)


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


# --- init-ca ----------------------------------------------------------------------
@main.command("init-ca")
@click.option("--name", "common_name", metavar="CN", help="CA common name [default: certkit CA user@host].")
@click.option("--org", help="Organization (O) of the CA's subject.")
@click.option("--org-unit", help="Organizational unit (OU).")
@click.option("--country", metavar="CC", help="Two-letter country code (C).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True)
@click.option("--days", type=click.IntRange(min=1),
              help="Lifetime in days [default: 3650 for a root, 1825 for an intermediate].")
@click.option("--permit-dns", multiple=True, metavar="DOMAIN",
              help="Name constraint: only this DNS domain and its subdomains (repeatable). "
                   "IP addresses are then excluded unless --permit-ip is given.")
@click.option("--permit-ip", multiple=True, metavar="CIDR", help="Name constraint: only this IP range (repeatable).")
@click.option("--parent-ca-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Create an intermediate CA signed by the CA in this directory.")
@click.option("--parent-passphrase-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Passphrase file for the parent CA's key (else $CERTKIT_PARENT_CA_PASSPHRASE, else a prompt).")
@click.option("--no-passphrase", is_flag=True, help="Store the CA key unencrypted (not recommended).")
@ca_dir_option
@passphrase_file_option
@json_option
def init_ca(common_name, org, org_unit, country, key_type, days, permit_dns, permit_ip,
            parent_ca_dir, parent_passphrase_file, no_passphrase, ca_dir, passphrase_file, as_json):
    """Create a CA: a root, or with --parent-ca-dir an intermediate.

    The CA key is encrypted (PKCS#8, scrypt + AES-256) with a passphrase from
    --passphrase-file, $CERTKIT_CA_PASSPHRASE or a prompt. An existing CA is
    never overwritten.

    \b
    Examples:
      certkit init-ca --name "Home Lab CA"
      CERTKIT_CA_PASSPHRASE=... certkit init-ca --ca-dir ./ca --key-type ecdsa-p384
      certkit init-ca --ca-dir ./ca --permit-dns example.internal --permit-ip 10.0.0.0/8
      certkit init-ca --ca-dir ./issuing --parent-ca-dir ./root --name "Issuing CA 1"
    """
    from certkit.ca import CA
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    if store.exists():  # before asking for any passphrase
        from certkit.errors import CAExists

        raise CAExists(f"A CA already exists in {store.path}; certkit will not overwrite a CA. "
                       "Choose another --ca-dir or remove it yourself.")
    if no_passphrase:
        if passphrase_file:
            raise click.UsageError("--no-passphrase and --passphrase-file contradict each other.")
        click.echo("Warning: the CA key will be stored unencrypted; anyone who can read "
                   f"{store.key_path} can issue certificates your machines trust.", err=True)
        passphrase = None
    else:
        passphrase = read_secret(passphrase_file, ENV_PASSPHRASE, "New CA key passphrase", confirm=True)
        if passphrase is None:
            raise click.ClickException(
                "The CA key needs a passphrase: set $CERTKIT_CA_PASSPHRASE, pass --passphrase-file, "
                "run on a terminal to be asked, or pass --no-passphrase."
            )
    parent = None
    if parent_ca_dir is not None:
        from certkit.errors import PassphraseRequired

        try:
            parent_store = CADirectory(parent_ca_dir)
            # A parent that may not sign CAs is refused before its passphrase is asked for.
            parent_cert, grandparents = parent_store.load_certificates()
            CA(parent_cert, None, grandparents)._check_can_sign_ca()
            parent = parent_store.load(
                lambda: read_secret(parent_passphrase_file, "CERTKIT_PARENT_CA_PASSPHRASE",
                                    "Parent CA key passphrase"))
        except PassphraseRequired as exc:
            raise click.ClickException(
                f"{exc} Set $CERTKIT_PARENT_CA_PASSPHRASE or pass --parent-passphrase-file.") from None
        except CertkitError as exc:
            raise click.ClickException(f"The parent CA in {parent_ca_dir} cannot be used: {exc}") from None
    ca = CA.create(common_name, organization=org, organizational_unit=org_unit, country=country,
                   key_type=key_type, days=days, permitted_dns=permit_dns, permitted_ips=permit_ip,
                   parent=parent)
    files = store.save_new(ca, passphrase)
    from cryptography.hazmat.primitives import hashes

    kind = "intermediate" if parent else "root"
    data = {
        "ca_dir": str(store.path), "kind": kind, "subject": ca.cert.subject.rfc4514_string(),
        "serial": format(ca.cert.serial_number, "X"), "key_type": key_type,
        "not_after": ca.cert.not_valid_after_utc.isoformat(), "encrypted": passphrase is not None,
        "fingerprint_sha256": ca.cert.fingerprint(hashes.SHA256()).hex(),
        "files": [str(f) for f in files],
    }
    human = "\n".join([
        f"Created {kind} CA \"{ca.common_name}\" in {store.path}",
        f"  certificate  {store.cert_path}  (the file peers must trust{' via the root' if parent else ''})",
        f"  private key  {store.key_path}  ({'encrypted' if passphrase else 'UNENCRYPTED'}, mode 0600)",
        f"  key type     {key_type}",
        f"  expires      {_when(ca.cert.not_valid_after_utc)}",
        f"  SHA-256      {data['fingerprint_sha256']}",
    ])
    emit(as_json, data, human)


# --- issue-server / issue-client ---------------------------------------------------
def issue_options(f):
    for option in reversed([
        click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                     help="Output folder [default: ./<first name, made safe>]."),
        click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True),
        click.option("--days", type=int, help="Lifetime in days (default: the profile's, capped at the CA's expiry)."),
        click.option("--force", is_flag=True, help="Replace existing files in the output folder."),
        click.option("--p12", is_flag=True, help="Also write bundle.p12 (PKCS#12: key, certificate, chain)."),
        click.option("--p12-legacy", is_flag=True,
                     help="Write bundle.p12 with legacy 3DES/SHA-1 encryption for older macOS, Windows "
                          "and Java imports (implies --p12)."),
        click.option("--p12-password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                     help="Read the PKCS#12 password from this file (else $CERTKIT_P12_PASSWORD, else a prompt)."),
        ca_dir_option, passphrase_file_option, json_option,
    ]):
        f = option(f)
    return f


def _p12_password(p12: bool, p12_legacy: bool, p12_password_file: Path | None) -> bytes | None:
    """The PKCS#12 password if bundle.p12 was asked for, read before anything is issued."""
    if not (p12 or p12_legacy):
        if p12_password_file is not None:
            raise click.UsageError("--p12-password-file needs --p12 or --p12-legacy.")
        return None
    return read_p12_password(p12_password_file)


def read_p12_password(path: Path | None) -> bytes:
    """The PKCS#12 password from --p12-password-file, $CERTKIT_P12_PASSWORD or a confirmed prompt."""
    password = read_secret(path, ENV_P12_PASSWORD, "PKCS#12 password for bundle.p12", confirm=True)
    if password is None:
        raise click.ClickException(
            f"bundle.p12 needs a password: set ${ENV_P12_PASSWORD}, pass --p12-password-file, "
            "or run on a terminal to be asked."
        )
    return password


def describe_p12(legacy: bool) -> str:
    return ("legacy 3DES/SHA-1 encryption, for older macOS, Windows and Java imports" if legacy
            else "AES-256-CBC, PBKDF2-SHA256, HMAC-SHA256")


def _issue_and_write(issue, out: Path, force: bool, p12: bool, p12_legacy: bool, p12_password_file: Path | None,
                     ca_dir: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """The flow both issue commands share: refuse an occupied folder before asking for any
    secret, read the secrets, load the CA, ``issue(ca)``, write the bundle."""
    from certkit.bundle import bundle_names, check_writable

    check_writable(out, bundle_names(chain=False, p12=p12 or p12_legacy), force=force)
    password = _p12_password(p12, p12_legacy, p12_password_file)
    ca = load_ca(ca_dir, passphrase_file)
    check_writable(out, bundle_names(chain=bool(ca.parents), p12=password is not None), force=force)
    _write_issued(issue(ca), out, force, as_json, ca, password, p12_legacy)


_SECRET_NOTES = {"privkey.pem": "  (private key, mode 0600)",
                 "bundle.p12": "  (PKCS#12: key, certificate and chain; password-protected, mode 0600)"}


def _write_issued(issued, out: Path, force: bool, as_json: bool, ca, p12: bytes | None = None,
                  p12_legacy: bool = False, *, from_csr: dict | None = None) -> None:
    from cryptography.hazmat.primitives import hashes

    extra = {}
    if p12 is not None:
        from certkit.pkcs12 import issued_pkcs12

        extra["bundle.p12"] = issued_pkcs12(issued, p12, legacy=p12_legacy)
    written = issued.write(out, force=force, extra=extra)
    days_left = (issued.not_after - issued.cert.not_valid_before_utc).days + 1
    purpose = {"server": "TLS server authentication only (serverAuth)",
               "client": "TLS client authentication only (clientAuth)"}[issued.kind]
    data = {
        "kind": issued.kind, "serial": issued.serial_hex,
        "subject": issued.cert.subject.rfc4514_string(),
        "names": [str(i) for i in issued.identities],
        "not_before": issued.cert.not_valid_before_utc.isoformat(),
        "not_after": issued.not_after.isoformat(),
        "fingerprint_sha256": issued.cert.fingerprint(hashes.SHA256()).hex(),
        "issuer": ca.cert.subject.rfc4514_string(),
        "folder": str(out), "files": {p.name: str(p) for p in written}, "notes": issued.notes,
    }
    if from_csr is not None:  # what the CSR asked for, and what of it the certificate does not carry
        data |= {"requested": from_csr, "granted": issued.granted, "dropped": issued.dropped}
    shown = ", ".join(f"{i.value} ({i.display})" if i.display else i.value
                      for i in issued.identities) or "(none: identified by its subject DN)"
    lines = [
        f"Issued a {issued.kind} certificate: {purpose}",
        f"  subject   {data['subject']}",
        f"  names     {shown}",
        f"  serial    {issued.serial_hex}",
        f"  expires   {_when(issued.not_after)} ({days_left} days)",
        "  files     " + "\n            ".join(
            str(p) + _SECRET_NOTES.get(p.name, "") for p in written),
    ]
    if p12 is not None:
        data["p12_encryption"] = "legacy" if p12_legacy else "modern"
        lines.append(f"  bundle.p12 encryption: {describe_p12(p12_legacy)}")
    if from_csr is not None:
        lines += [f"  granted   {g} (as requested)" for g in issued.granted]
        lines += [f"  dropped   {d}" for d in issued.dropped]
        lines.append("  key       none written: the requester keeps the private key")
    lines += [f"  note      {n}" for n in issued.notes]
    emit(as_json, data, "\n".join(lines))


@main.command("issue-server")
@click.argument("names", nargs=-1, required=True)
@issue_options
def issue_server(names, out, key_type, days, force, p12, p12_legacy, p12_password_file, ca_dir,
                 passphrase_file, as_json):
    """Issue a TLS server certificate (serverAuth only) for NAMES.

    NAMES are DNS names (internationalized names become A-labels; a wildcard
    only as the whole left-most label), IPv4 and IPv6 addresses. The first
    name is the subject CN; all of them go in subjectAltName. Default
    lifetime 200 days (the CA/Browser Forum limit); at most 825.

    \b
    Examples:
      certkit issue-server localhost 127.0.0.1 ::1
      certkit issue-server '*.dev.example.com' dev.example.com --out ./certs/dev
      certkit issue-server db.internal --days 90 --key-type rsa-3072
    """
    from certkit.names import parse_hosts, safe_folder_name

    identities = parse_hosts(names)  # validate before asking for a passphrase
    out = out or Path(safe_folder_name(identities[0].value))
    _issue_and_write(lambda ca: ca.issue_server(names, key_type=key_type, days=days), out, force, p12,
                     p12_legacy, p12_password_file, ca_dir, passphrase_file, as_json)


@main.command("issue-client")
@click.argument("name")
@click.option("--email", multiple=True, help="Email address for the SAN (repeatable).")
@click.option("--uri", multiple=True, help="URI for the SAN, e.g. a SPIFFE ID (repeatable).")
@click.option("--dns", multiple=True, help="DNS name for the SAN, e.g. a device's host name (repeatable).")
@issue_options
def issue_client(name, email, uri, dns, out, key_type, days, force, p12, p12_legacy, p12_password_file,
                 ca_dir, passphrase_file, as_json):
    """Issue a TLS client certificate (clientAuth only) for NAME.

    NAME is the subject common name: what nginx ($ssl_client_s_dn),
    PostgreSQL and Mosquitto map to a user. If NAME is an email address it
    also goes in subjectAltName. Without --email/--uri/--dns the SAN holds
    the subject DN, since many verifiers require a SAN. Default lifetime 365
    days.

    \b
    Examples:
      certkit issue-client alice
      certkit issue-client alice@example.com
      certkit issue-client billing --uri spiffe://example.org/billing
      certkit issue-client sensor-17 --dns sensor-17.iot.example.com --days 730
      CERTKIT_P12_PASSWORD=... certkit issue-client alice --p12   # also bundle.p12 for browsers
    """
    from certkit.names import client_identities, safe_folder_name

    client_identities(name, email, uri, dns)  # validate before asking for a passphrase
    out = out or Path(safe_folder_name(name))
    _issue_and_write(lambda ca: ca.issue_client(name, emails=email, uris=uri, dns_names=dns, key_type=key_type,
                                                days=days),
                     out, force, p12, p12_legacy, p12_password_file, ca_dir, passphrase_file, as_json)

