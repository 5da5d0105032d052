"""Commands that issue one certificate: ``issue-server``, ``issue-client``, ``issue-peer`` and ``sign-csr``
(``export-p12``, its PKCS#12 form written later, is :mod:`certkit.cli.p12`).

Each follows the issuing pipeline's order (:mod:`certkit.issuing`): names are
checked first, then the CA is opened (its key still locked) and the whole
request planned against it and the output folder; only then are secrets read
and the key decrypted; then the certificate is delivered.
"""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import (
    ExistingPath,
    OutPath,
    ca_dir_option,
    days_option,
    emit,
    format_option,
    json_option,
    passphrase_file_option,
    read_secret,
    typed_out,
    unlock,
    warn,
)
from certkit.constants import ENV_P12_PASSWORD, KEY_TYPES, MAX_CERT_FILE_BYTES, OUTPUT_FORMATS

# Said every time issue-peer runs: the one certificate certkit issues with both usages.
PEER_WARNING = ("a peer certificate carries both serverAuth and clientAuth: whoever holds its key can act "
                "as the server and as a client; use it only for cluster members that cannot take separate "
                "server and client certificates (etcd 3.4 peers, Elasticsearch transport, Kafka brokers, "
                "Consul servers).")
PURPOSES = {"server": "TLS server authentication only (serverAuth)",
            "client": "TLS client authentication only (clientAuth)",
            "peer": "TLS server AND client authentication (serverAuth, clientAuth)"}
_SECRET_NOTES = {"privkey.pem": "  (private key, mode 0600)",
                 "bundle.p12": "  (PKCS#12: key, certificate and chain; password-protected, mode 0600)"}


def issue_options(f):
    for option in reversed([
        click.option("--out", type=OutPath(path_type=Path),
                     help="Output folder [default: ./<first name, made safe>]; with --format jsonl, k8s or tar, "
                          "the output file [default: standard output]."),
        format_option,
        click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True),
        days_option("Lifetime in days (default: the profile's, capped at the CA's expiry)."),
        click.option("--force", is_flag=True, help="Replace the bundle already in the output folder (only its "
                                                   "files; anything else there is left alone), or the --format "
                                                   "jsonl, k8s or tar output file."),
        click.option("--p12", is_flag=True, help="Also write bundle.p12 (PKCS#12: key, certificate, chain)."),
        click.option("--p12-legacy", is_flag=True,
                     help="Write bundle.p12 with legacy 3DES/SHA-1 encryption for older macOS, Windows "
                          "and Java imports (implies --p12)."),
        click.option("--p12-password-file",
                     type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True),
                     help="Read the PKCS#12 password from this file (else $CERTKIT_P12_PASSWORD, else a prompt)."),
        ca_dir_option, passphrase_file_option, json_option,
    ]):
        f = option(f)
    return f


def read_p12_password(path: Path | None) -> bytes:
    """The PKCS#12 password from --p12-password-file, $CERTKIT_P12_PASSWORD or a confirmed prompt."""
    from certkit.pkcs12 import check_password

    password = read_secret(path, ENV_P12_PASSWORD, "PKCS#12 password for bundle.p12", confirm=True)
    if password is None:
        raise click.ClickException(
            f"bundle.p12 needs a password: set ${ENV_P12_PASSWORD}, pass --p12-password-file, "
            "or run on a terminal to be asked."
        )
    return check_password(password)  # before anything is signed


def describe_p12(legacy: bool) -> str:
    return ("legacy 3DES/SHA-1 encryption, for older macOS, Windows and Java imports" if legacy
            else "AES-256-CBC, PBKDF2-SHA256, HMAC-SHA256")


def issue(request, out: Path | None, first_name: str, fmt: str, **options) -> None:
    """Issue into a bundle folder, or (``--format``) into a file or standard output."""
    if fmt == "folder":
        given = typed_out(fmt, out)
        if given is None:
            _refuse_anothers_folder(_default_out(None, first_name), first_name)
        return issue_to_folder(request, _default_out(given, first_name), **options)
    from certkit.cli.output import bundle_name, check_format_options, issue_to_output

    want_p12 = options.pop("p12", False) or options.get("p12_legacy", False)
    out = check_format_options(fmt, out, options["as_json"], want_p12)
    if options.get("p12_password_file") is not None and not want_p12:
        raise click.UsageError("--p12-password-file needs --p12 or --p12-legacy.")
    password_file = options.pop("p12_password_file", None)
    issue_to_output(request, fmt, out, name=bundle_name(first_name),
                    p12_password=(lambda: read_p12_password(password_file)) if want_p12 else None, **options)


def issue_to_folder(request, out: Path, *, force: bool, ca_dir: Path | None, passphrase_file: Path | None,
                    as_json: bool, p12: bool = False, p12_legacy: bool = False,
                    p12_password_file: Path | None = None, requested: dict | None = None) -> None:
    """The flow every issuing command shares: plan against the locked CA, read the secrets,
    unlock, deliver, summarize."""
    from certkit.issuing import FolderTarget, deliver, plan
    from certkit.store import CADirectory

    want_p12 = p12 or p12_legacy
    if p12_password_file is not None and not want_p12:
        raise click.UsageError("--p12-password-file needs --p12 or --p12-legacy.")
    ca = CADirectory(ca_dir).open()
    target = FolderTarget(out, force=force, p12=want_p12)
    plan(ca, request, target)  # every refusal before any secret is asked for
    asked = warn_of_purpose(request, ca=ca, passphrase_file=passphrase_file)
    if want_p12:
        from certkit.pkcs12 import issued_pkcs12

        password = read_p12_password(p12_password_file)
        target.extra = lambda issued: {"bundle.p12": issued_pkcs12(issued, password, legacy=p12_legacy,
                                                                  delivering=True)}
    unlock(ca, passphrase_file)
    # --force over another CA's bundle, or over files of the old bundle the new one lacks (its bundle.p12): noted
    delivery = deliver(ca, request, target, planned=True)
    warn_of_purpose(request, told=asked)
    summarize(delivery, out, as_json, ca, p12_legacy if want_p12 else None, requested=requested)


def warn_of_purpose(request, *, ca=None, passphrase_file: Path | None = None, told: bool = False) -> bool:
    """A peer certificate's warning: before the passphrase is asked for at a prompt (given ``ca``), so
    that it is read before anyone types it; else once the certificate is issued (a refusal, a wrong
    passphrase too, is told its error alone: one line). Returns whether it was said."""
    if request.kind != "peer" or told:
        return told
    if ca is not None:
        import os
        import sys

        from certkit.cli.common import key_secret

        env, _ = key_secret(ca.store)
        if passphrase_file is not None or env in os.environ or sys.stdin is None or not sys.stdin.isatty():
            return False
    warn(PEER_WARNING)
    return True


def summarize(delivery, out: Path, as_json: bool, ca, p12_legacy: bool | None = None, *,
              requested: dict | None = None) -> None:
    """What was issued, where every file went and when it expires: as JSON or for people."""
    from certkit.cli.output import issued_data, summary_head, summary_tail
    from certkit.text import shown

    issued, written = delivery.issued, delivery.files
    data = issued_data(issued, ca, fmt="folder", name=Path(out).name, folder=str(out),
                       files={p.name: str(p) for p in written}, file=None, notes=delivery.notes, released=[])
    lines = [*summary_head(issued, data),
             "  files     " + "\n            ".join(shown(p) + _SECRET_NOTES.get(p.name, "") for p in written),
             *summary_tail(issued, data, requested, p12_legacy, delivery.notes)]
    emit(as_json, data, "\n".join(lines))


def _default_out(out: Path | None, first_name: str) -> Path:
    from certkit.names import safe_folder_name

    return out or Path(safe_folder_name(first_name))


def _refuse_anothers_folder(folder: Path, name: str) -> None:
    """The folder named after ``name`` (no --out), when it holds the certificate of another name that gives the
    same folder: refused, --force or not (:func:`certkit.san_identities.anothers_bundle`)."""
    from certkit.san_identities import anothers_bundle
    from certkit.text import shown

    if (other := anothers_bundle(folder, name)) is not None:
        raise click.ClickException(
            f"{shown(folder)} holds the certificate of '{shown(other)}', another name that certkit writes to the same "
            f"folder (a folder's name keeps letters, digits and . _ @ + - only); give the one for '{shown(name)}' "
            "its own folder with --out.")


@click.command("issue-server")
@click.argument("names", nargs=-1, required=True)
@issue_options
def issue_server(names, out, fmt, key_type, days, force, p12, p12_legacy, p12_password_file, ca_dir,
                 passphrase_file, as_json):
    """Issue a TLS server certificate (serverAuth only) for NAMES.

    NAMES are DNS names (internationalized names become A-labels; a wildcard
    only as the whole left-most label), IPv4 and IPv6 addresses. All of them
    go in subjectAltName; the subject CN is the first DNS name (else the
    first address; empty if that name is over 64 bytes). Default lifetime
    200 days (the CA/Browser Forum limit); at most 825.

    \b
    Examples:
      certkit issue-server localhost 127.0.0.1 ::1
      certkit issue-server '*.dev.example.com' dev.example.com --out ./certs/dev
      certkit issue-server db.internal --days 90 --key-type rsa-3072
    """
    from certkit.issuing import server_request

    request = server_request(names, key_type=key_type, days=days)
    issue(request, out, request.identities[0].value, fmt, force=force, ca_dir=ca_dir,
          passphrase_file=passphrase_file, as_json=as_json, p12=p12, p12_legacy=p12_legacy,
          p12_password_file=p12_password_file)


@click.command("issue-peer")
@click.argument("names", nargs=-1, required=True)
@issue_options
def issue_peer(names, out, fmt, key_type, days, force, p12, p12_legacy, p12_password_file, ca_dir,
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
    from certkit.issuing import server_request

    request = server_request(names, kind="peer", key_type=key_type, days=days)
    issue(request, out, request.identities[0].value, fmt, force=force, ca_dir=ca_dir,
          passphrase_file=passphrase_file, as_json=as_json, p12=p12, p12_legacy=p12_legacy,
          p12_password_file=p12_password_file)


@click.command("issue-client")
@click.argument("name")
@click.option("--email", multiple=True, help="Email address for the SAN (repeatable).")
@click.option("--uri", multiple=True, help="URI for the SAN, e.g. a SPIFFE ID (repeatable).")
@click.option("--dns", multiple=True, help="DNS name for the SAN, e.g. a device's host name (repeatable).")
@issue_options
def issue_client(name, email, uri, dns, out, fmt, key_type, days, force, p12, p12_legacy, p12_password_file,
                 ca_dir, passphrase_file, as_json):
    """Issue a TLS client certificate (clientAuth only) for NAME.

    NAME is the subject common name: what nginx ($ssl_client_s_dn),
    PostgreSQL and Mosquitto map to a user. If NAME is an email address it
    also goes in subjectAltName. With neither that nor --email/--uri/--dns,
    the SAN holds the subject DN, since many verifiers require a SAN.
    Default lifetime 365 days.

    \b
    Examples:
      certkit issue-client alice
      certkit issue-client alice@example.com
      certkit issue-client billing --uri spiffe://example.org/billing
      certkit issue-client sensor-17 --dns sensor-17.iot.example.com --days 730
      CERTKIT_P12_PASSWORD=... certkit issue-client alice --p12   # also bundle.p12 for browsers
    """
    from certkit.issuing import client_request

    request = client_request(name, emails=email, uris=uri, dns_names=dns, key_type=key_type, days=days)
    issue(request, out, name, fmt, force=force, ca_dir=ca_dir, passphrase_file=passphrase_file,
          as_json=as_json, p12=p12, p12_legacy=p12_legacy, p12_password_file=p12_password_file)


@click.command("sign-csr")
@click.argument("csr_file", type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True))
@click.argument("names", nargs=-1)
@click.option("--server", "kinds", flag_value="server", multiple=True,
              help="Issue a TLS server certificate (serverAuth only).")
@click.option("--client", "kinds", flag_value="client", multiple=True,
              help="Issue a TLS client certificate (clientAuth only).")
@click.option("--peer", "kinds", flag_value="peer", multiple=True,
              help="Issue a cluster peer certificate (serverAuth and clientAuth; see issue-peer).")
@click.option("--out", type=OutPath(path_type=Path),
              help="Output folder [default: ./<first name, made safe>]; with --format jsonl or tar, the output "
                   "file [default: standard output].")
# No k8s: a kubernetes.io/tls Secret holds the private key, which the requester of a CSR keeps.
@click.option("--format", "fmt", type=click.Choice([f for f in OUTPUT_FORMATS if f != "k8s"]), default="folder",
              show_default=True, help="folder (a bundle folder), jsonl (one JSON object: names, serial, PEMs) or "
                                      "tar (an archive of the bundle folder); jsonl and tar go to --out FILE, else "
                                      "to standard output.")
@days_option("Lifetime in days (default: the profile's, capped at the CA's expiry).")
@click.option("--force", is_flag=True, help="Replace the bundle already in the output folder, or the --format "
                                            "jsonl or tar output file.")
@ca_dir_option
@passphrase_file_option
@json_option
def sign_csr(csr_file, names, kinds, out, fmt, days, force, ca_dir, passphrase_file, as_json):
    """Sign CSR_FILE (PEM or DER; - reads standard input) as a server, client or peer certificate.

    The requester keeps the private key: only cert.pem, fullchain.pem,
    chain.pem (under an intermediate) and ca.pem are written. The CSR's
    signature is checked, and every name it asks for is checked as
    issue-server / issue-client check names. Requested extensions are never
    copied: the certificate gets exactly the profile's (one EKU, both only
    with --peer; CA:FALSE; no name constraints), and the summary lists what
    was requested but dropped.

    With --server (or --peer) the names are the CSR's CN and DNS/IP
    subjectAltNames, plus any NAMES given after the file; the subject CN is
    the CSR's, else (as issue-server's) the first DNS name, else the first
    address. With --client the identity is the CN, plus email, URI and DNS
    subjectAltNames.

    \b
    Examples:
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
          -keyout web.key -subj /CN=web.internal -out web.csr
      certkit sign-csr web.csr --server
      certkit sign-csr web.csr --server web2.internal 10.0.0.7 --out ./web
      certkit sign-csr alice.csr --client --json
      ssh device cat /etc/device.csr | certkit sign-csr - --client --out ./device
    """
    from certkit.csr import load_csr, san_text
    from certkit.files import read_limited
    from certkit.issuing import csr_request
    from certkit.text import shown

    if len(set(kinds)) != 1:  # the purpose is the point: two of them is a mistake, not "the last one"
        raise click.UsageError("Say what the certificate is for: one of --server, --client or --peer"
                               + (f", not {' and '.join(f'--{k}' for k in dict.fromkeys(kinds))}." if kinds else "."))
    [kind] = set(kinds)
    source = "the CSR on standard input" if str(csr_file) == "-" else f"the CSR {shown(csr_file)}"
    csr = load_csr(read_limited(csr_file, MAX_CERT_FILE_BYTES, what="CSR"), source=source)
    request = csr_request(csr, kind, extra_names=names, days=days)  # bad names refused before any passphrase
    requested = {"subject": csr.subject, "names": [san_text(k, v) for k, v in csr.san], "extensions": csr.extensions}
    first = request.common_name if kind == "client" else request.identities[0].value  # as issue-server/-client
    issue(request, out, first, fmt, force=force, ca_dir=ca_dir,
          passphrase_file=passphrase_file, as_json=as_json, requested=requested)
