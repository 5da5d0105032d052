"""Commands that issue one certificate, and its PKCS#12 form: ``issue-server``, ``issue-client``,
``sign-csr`` and ``export-p12``."""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import (
    ca_dir_option,
    emit,
    json_option,
    load_ca,
    passphrase_file_option,
    read_secret,
    when,
)
from certkit.constants import ENV_P12_PASSWORD, KEY_TYPES, MAX_CERT_FILE_BYTES


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
               "client": "TLS client authentication only (clientAuth)",
               "peer": "TLS server AND client authentication (serverAuth, clientAuth)"}[issued.kind]
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
        f"  expires   {when(issued.not_after)} ({days_left} days)",
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


@click.command("issue-server")
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


# Said every time issue-peer runs: the one certificate certkit issues with both usages.
PEER_WARNING = ("a peer certificate carries both serverAuth and clientAuth: whoever holds its key can act "
                "as the server and as a client; use it only for cluster members that cannot take separate "
                "server and client certificates (etcd 3.4 peers, some Kafka, Consul and MongoDB setups).")


@click.command("issue-peer")
@click.argument("names", nargs=-1, required=True)
@issue_options
def issue_peer(names, out, key_type, days, force, p12, p12_legacy, p12_password_file, ca_dir,
               passphrase_file, as_json):
    """Issue a cluster peer certificate (serverAuth AND clientAuth) for NAMES.

    The one exception to certkit's rule of one purpose per certificate, for
    cluster members that are server and client to each other and cannot take
    two certificates (etcd 3.4 --peer-cert-file, for one). Where the system
    can, use issue-server and issue-client instead (docs/peers.md). NAMES and
    lifetimes follow issue-server's rules.

    \b
    Examples:
      certkit issue-peer etcd-1.cluster.internal 10.0.0.11
      certkit issue-peer node-2.db.internal --out ./peers/node-2 --days 90
    """
    from certkit.cli.common import warn
    from certkit.names import parse_hosts, safe_folder_name

    identities = parse_hosts(names)  # validate before asking for a passphrase
    out = out or Path(safe_folder_name(identities[0].value))
    warn(PEER_WARNING)
    _issue_and_write(lambda ca: ca.issue_peer(names, key_type=key_type, days=days), out, force, p12,
                     p12_legacy, p12_password_file, ca_dir, passphrase_file, as_json)


@click.command("issue-client")
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



# --- sign-csr ---------------------------------------------------------------------
@click.command("sign-csr")
@click.argument("csr_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("names", nargs=-1)
@click.option("--server", "kind", flag_value="server", help="Issue a TLS server certificate (serverAuth only).")
@click.option("--client", "kind", flag_value="client", help="Issue a TLS client certificate (clientAuth only).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output folder [default: ./<first name, made safe>].")
@click.option("--days", type=int, help="Lifetime in days (default: the profile's, capped at the CA's expiry).")
@click.option("--force", is_flag=True, help="Replace existing files in the output folder.")
@ca_dir_option
@passphrase_file_option
@json_option
def sign_csr(csr_file, names, kind, out, days, force, ca_dir, passphrase_file, as_json):
    """Sign CSR_FILE (PEM or DER) as a server or client certificate.

    The requester keeps the private key: only cert.pem, fullchain.pem,
    chain.pem (under an intermediate) and ca.pem are written. The CSR's
    signature is checked, and every name it asks for is checked as
    issue-server / issue-client check names. Requested extensions are never
    copied: the certificate gets exactly the profile's (one EKU, CA:FALSE, no
    name constraints), and the summary lists what was requested but dropped.

    With --server the names are the CSR's CN and DNS/IP subjectAltNames, plus
    any NAMES given after the file. With --client the identity is the CN, plus
    email, URI and DNS subjectAltNames.

    \b
    Examples:
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
          -keyout web.key -subj /CN=web.internal -out web.csr
      certkit sign-csr web.csr --server
      certkit sign-csr web.csr --server web2.internal 10.0.0.7 --out ./web
      certkit sign-csr alice.csr --client --json
    """
    from certkit.bundle import check_writable
    from certkit.csr import load_csr, plan
    from certkit.names import safe_folder_name

    if kind is None:
        raise click.UsageError("Say what the certificate is for: --server or --client.")
    from certkit.files import read_limited

    request = load_csr(read_limited(csr_file, MAX_CERT_FILE_BYTES, what="CSR"), source=f"the CSR {csr_file}")
    _identities, cn, _dropped = plan(request, kind, names)  # refuse bad names before asking for a passphrase
    out = out or Path(safe_folder_name(cn))
    ca = load_ca(ca_dir, passphrase_file)
    files = ["cert.pem", "fullchain.pem", "ca.pem"] + (["chain.pem"] if ca.parents else [])
    check_writable(out, files, force=force)
    issued = ca.sign_csr(request, kind, extra_names=names, days=days)
    requested = {"subject": request.subject, "names": [f"{k}:{v}" for k, v in request.san],
                 "extensions": request.extensions}
    _write_issued(issued, out, force, as_json, ca, from_csr=requested)



# --- export-p12 -------------------------------------------------------------------
@click.command("export-p12")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--legacy", "--p12-legacy", "legacy", is_flag=True,
              help="Legacy encryption (3DES, SHA-1 MAC) for older macOS, Windows and Java imports.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.p12.")
@click.option("--password-file", "--p12-password-file", "password_file",
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help=f"Read the password from this file (else ${ENV_P12_PASSWORD}, else a prompt).")
@json_option
def export_p12(folder, legacy, force, password_file, as_json):
    """Write FOLDER/bundle.p12 (PKCS#12) from an issued certificate's folder.

    Reads cert.pem, privkey.pem and the CA certificates in chain.pem and
    ca.pem; the friendly name is the certificate's common name. Browsers,
    curl --cert-type P12, Java keystores and Windows import this file. The
    password comes from --password-file, $CERTKIT_P12_PASSWORD or a prompt.

    \b
    Examples:
      certkit export-p12 ./alice
      CERTKIT_P12_PASSWORD=... certkit export-p12 ./alice --legacy --force
      certkit export-p12 ./alice --password-file ~/.config/p12-password
    """
    from certkit.bundle import check_writable
    from certkit.pkcs12 import P12_FILE, export_folder, read_bundle_folder

    check_writable(folder, [P12_FILE], force=force)
    bundle = read_bundle_folder(folder)  # a broken folder is reported before asking for a password
    path = export_folder(folder, read_p12_password(password_file), legacy=legacy, force=force)
    from certkit.pkcs12 import common_name

    data = {"file": str(path), "friendly_name": common_name(bundle.cert),
            "encryption": "legacy" if legacy else "modern", "certificates": 1 + len(bundle.chain)}
    human = (f"Wrote {path} (PKCS#12, mode 0600): key, certificate and {len(bundle.chain)} CA "
             f"certificate{'s' if len(bundle.chain) != 1 else ''}\n"
             f"  friendly name  {data['friendly_name']}\n  encryption     {describe_p12(legacy)}")
    emit(as_json, data, human)


