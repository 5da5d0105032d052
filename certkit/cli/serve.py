"""Commands that show certificates at work: ``demo`` (real handshakes, side by side) and
``serve`` (an HTTPS server that requires a client certificate and shows whom it authenticated)."""

from __future__ import annotations

import ipaddress
import signal
import sys
from pathlib import Path

import click

from certkit.cli.common import (
    ExistingPath,
    Failed,
    Whole,
    WrittenPath,
    ca_dir_option,
    emit,
    json_option,
    passphrase_file_option,
    unlock,
)
from certkit.cli.serve_client_ca import _client_ca
from certkit.text import shown


# --- serve ------------------------------------------------------------------------
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Use 0.0.0.0 or :: only on networks you trust.")
@click.option("--port", type=Whole(0, 65535), default=8443, show_default=True,
              help="TCP port; 0 picks a free one (the URL printed says which).")
@click.option("--cert", "cert_file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Server certificate chain (fullchain.pem) [default: issue one now from the CA].")
@click.option("--key", "key_file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Private key of --cert (privkey.pem).")
@click.option("--client-ca", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Accept client certificates from this CA certificate [default: the CA in --ca-dir].")
@click.option("--optional", is_flag=True,
              help="Ask for a client certificate but do not require one (as nginx's ssl_verify_client "
                   "optional): without one, or with one that is refused, the page says why (HTTP 403).")
@ca_dir_option
@passphrase_file_option
@json_option
def serve(host, port, cert_file, key_file, client_ca, optional, ca_dir, passphrase_file, as_json):
    """Run an HTTPS server that requires a client certificate and shows whom it authenticated.

    Each request gets the client certificate's subject CN, SAN entries,
    serial, issuer and EKU: as text, as JSON (Accept: application/json or
    ?format=json) or as a web page (browsers) that shows the server's and
    the client's certificate side by side and the rule each one passed.
    A connection without a client certificate, or with one OpenSSL refuses
    (another CA's, expired, not for clientAuth), is refused in the
    handshake. A certificate the CA signed that its inventory records as
    revoked, or has no record of, passes the handshake (the inventory is
    read after it) and gets HTTP 403 with the page that says why: curl
    exits 0 then; use curl --fail to see the 403 in its exit status. Every
    connection gets a log line on stderr, with the reason when refused.
    With --optional the handshake completes without a certificate, or with
    a refused one, and the answer (HTTP 403) says which and why: a way to
    see what a browser sends.

    Without --cert/--key, serve issues itself a one-day server certificate
    for localhost, 127.0.0.1 and ::1 from the CA (this needs the CA key's
    passphrase; the certificate is recorded in the CA's inventory like any
    other, and revoked when serve stops, or by the next server to start
    here if serve was killed: its key lives in serve's memory alone). serve
    keeps no CA key, so it does not renew that certificate: when it
    expires, the log says so; restart serve then. Stop with Ctrl-C, SIGTERM or SIGHUP.

    \b
    Examples:
      certkit serve
      certkit serve --port 0 --json
      certkit serve --optional
      certkit serve --cert ./localhost/fullchain.pem --key ./localhost/privkey.pem
      curl --cacert ca.pem --cert alice/cert.pem --key alice/privkey.pem https://localhost:8443/
    """
    from certkit.der_input import server_files
    from certkit.serve import chain_dates, serve_until_stopped, stderr_log, tls_context
    from certkit.serve_json import certificate_json, server_identity, unchecked
    from certkit.serve_page import ServerFacts
    from certkit.verify_names import cn_text

    if (cert_file is None) != (key_file is None):
        raise click.UsageError("--cert and --key go together: give both, or neither to issue a certificate now.")
    if cert_file is not None and passphrase_file is not None:
        raise click.UsageError("--passphrase-file unlocks the CA key, which serve needs only to issue its own "
                               "certificate; with --cert and --key it opens none: leave it out.")
    host = _listen_address(host)  # [::1], as in the URL, is the address ::1: bound and named the same
    client_ca_pem, verify_pem, ca_name, revocations = _client_ca(client_ca, ca_dir)
    names = _local_names(host)
    if cert_file is not None:
        chain_pem, key_pem = server_files(cert_file, key_file)  # before OpenSSL reads them: a CSR, a CRL said so
        context = tls_context(cert_file, key_file, verify_pem)  # checks the files, with clear errors
        _check_server_certificate(cert_file, chain_pem, ca_dir)
        server = _listen(host, port)
        server_cert, own = {"source": "files", "cert": str(cert_file), "key": str(key_file)}, None
    else:
        server, context, chain_pem, key_pem, own = _issue_and_listen(ca_dir, passphrase_file, names, host, port,
                                                                     verify_pem)
        server_cert = {"source": "issued"}
    if (identity := server_identity(chain_pem)) is not None:  # its facts, in the keys issue-*, list, inspect use
        server_cert.update(certificate_json(identity))
    server.context = _optional_context(chain_pem, key_pem, client_ca_pem, revocations) if optional else context
    server.facts = ServerFacts(certificate=identity, client_ca=ca_name, revocation=revocations is not None,
                               revocation_ca=revocations.name if revocations else None,
                               unchecked=unchecked(ca_name), trusted=tuple(cn_text(c.subject) for c in
                                                                          getattr(revocations, "trusted", [])),
                               self_issued=cert_file is None, withdrawn=_withdrawn_check(ca_dir, chain_pem),
                               chain_dates=chain_dates(chain_pem))
    server.revocations = revocations
    del key_pem
    from certkit.errors import handle_stop_signals
    from certkit.serve_own import stopped

    stopped_by: list[int] = []

    def interrupted(signum, frame):
        stopped_by.append(signum)
        raise KeyboardInterrupt

    # From here on SIGTERM (and SIGHUP) stops the server as Ctrl-C does, even before serve_forever runs:
    # a script that stops it as soon as it printed its URL gets the same exit status (exit_stopped).
    previous = handle_stop_signals(interrupted)
    try:
        _announce(server, host, names, cert_file, key_file, ca_name, optional, server_cert, as_json, client_ca_pem)
        sys.stdout.flush()  # a script waiting for the URL reads it through a pipe
        _say_when_expired(chain_pem, self_issued=cert_file is None)
        stderr_log(f"listening on {server.url}")
        signum = serve_until_stopped(server, received=stopped_by)
    except KeyboardInterrupt:
        signum = stopped_by[0] if stopped_by else signal.SIGINT  # (Python's own SIGINT handler: Ctrl-C)
        server.server_close()
    finally:
        stopped(previous, own)  # the signals as they were, and serve's own certificate revoked
    stderr_log("stopped")
    exit_stopped(signum)


def _optional_context(chain_pem: bytes, key_pem: bytes, client_ca_pem: bytes, revocations):
    """--optional's TLS layer; when the client CA is the CA directory's own, its inventory says which intermediate
    CAs it signed, and which it withdrew, for the words of a refusal."""
    from certkit.serve import OptionalContext

    context = OptionalContext(chain_pem, key_pem, client_ca_pem)
    if revocations is not None and revocations.ca_cert in context.client_cas:
        from certkit.anchors import recorded_cas

        context.recorded = lambda: recorded_cas(revocations.store.path)
        context.withdrawn_issuer = revocations.withdrawn_issuer
    return context


def exit_stopped(signum: int | None) -> None:
    """A server stopped cleanly by signal ``signum`` exits as every command does when that signal
    stops it (and as shells report it): 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    if signum is not None:
        raise click.exceptions.Exit(128 + signum)


def _issue_and_listen(ca_dir: Path | None, passphrase_file: Path | None, names: list[str], host: str, port: int,
                      client_ca_pem: bytes):
    """A one-day server certificate from the CA, issued once the port is taken (no certificate for a
    server that cannot run) and recorded valid once the server holds it: the listening server, its
    TLS context, and the chain and key PEM."""
    from certkit.issuing import Target, begin, plan, server_request
    from certkit.serve import issued_context, stderr_log
    from certkit.serve_own import OwnCertificate
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()
    request = server_request(names, days=1)
    plan(ca, request, Target())  # refused before the passphrase is asked for
    server = _listen(host, port)  # the port first: no passphrase asked, no certificate issued, for a server that
    try:  # cannot run
        unlock(ca, passphrase_file)
        own = OwnCertificate(ca, stderr_log)  # revokes what servers killed on this host left
        with begin(ca, request) as issued:  # recorded pending, valid once the server holds it
            own.hold(issued.serial_hex)  # killed from here on, the next server revokes it
            context = issued_context(issued, client_ca_pem)
    except BaseException:
        server.server_close()
        raise
    ca.key = None  # serve signs nothing else: the CA key does not stay in this process
    return server, context, issued.fullchain_pem, issued.private_key_pem, own


def _announce(server, host: str, names: list[str], cert_file: Path | None, key_file: Path | None, ca_name: str,
              optional: bool, server_cert: dict, as_json: bool, client_ca_pem: bytes = b"") -> None:
    """Where the server listens, with which certificate, and whose client certificates it takes."""
    from certkit.serve_json import client_ca_warning, client_cas, url_to_visit
    from certkit.serve_revocations import revocation_line

    revocations, url = server.revocations, url_to_visit(server.url, host, server_cert.get("names", []))
    data = {"url": url, "host": host, "port": server.server_address[1],
            "client_ca": ca_name, "client_cas": client_cas(client_ca_pem),
            "client_certificate": "optional" if optional else "required",
            "revocation": str(revocations.store.inventory_location) if revocations else None,
            "revocation_inventories": [str(revocations.store.inventory_location),
                                       *(where for _who, where in revocations.intermediates())] if revocations else [],
            "server_certificate": server_cert}
    if server_cert["source"] == "issued":
        from certkit.serve_json import text_time

        # serve keeps no CA key (it drops it once this is issued), so it cannot renew it: it says so, and logs
        # the expiry when it comes (_say_when_expired).
        made = (f"issued now for {', '.join(names)} (serial {server_cert['serial']}, "
                f"expires {text_time(server_cert['not_after'])}; serve does not renew it: restart serve for a new one)")
    else:
        made = f"{cert_file} (key {key_file})"
    human = "\n".join([
        f"Listening on {url}" + (f" (every interface: {server.url})" if url != server.url else ""),
        f"  server certificate  {made}",
        f"  client certificates must be issued by \"{ca_name}\""
        + (" (optional: without one, or with a refused one, the page says why)" if optional else "")
        + client_ca_warning(data["client_cas"]),
        revocation_line(revocations, ca_name),
        "Stop with Ctrl-C.",
    ])
    emit(as_json, data, human)


def _say_when_expired(chain_pem: bytes, *, self_issued: bool) -> None:
    """When the server's certificate expires while serve runs, the log says so, once, with what to do: serve
    keeps no CA key (it drops it once its own certificate is issued), so it cannot renew it. The wall clock
    is read again at least every minute, so a machine that slept meanwhile does not delay the line."""
    import datetime as dt
    import threading
    import time

    from cryptography import x509

    from certkit.serve import stderr_log

    try:
        not_after = x509.load_pem_x509_certificates(chain_pem)[0].not_valid_after_utc
    except (ValueError, IndexError):
        return
    fix = ("serve issued it for one day and does not renew it (it keeps no CA key): restart certkit serve for a "
           "new one" if self_issued else "give serve a current one (--cert, --key) and restart it")

    def watch() -> None:
        while (left := (not_after - dt.datetime.now(dt.UTC)).total_seconds()) >= 0:
            time.sleep(min(left + 0.1, 60))
        stderr_log(f"warning: this server's certificate expired on {not_after:%Y-%m-%d %H:%M:%S} UTC: clients that "
                   f"check it refuse to connect; {fix}")

    threading.Thread(target=watch, name="certkit-serve-expiry", daemon=True).start()


def _listen(host: str, port: int):
    """The listening server, its TLS context set once the certificate is ready."""
    from certkit.serve import IdentityServer, stderr_log

    host = _unbracketed(host)
    try:
        return IdentityServer((host, port), None, log=stderr_log)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise click.ClickException(f"Cannot listen on {where}: {exc.strerror or exc}.") from None


def _listen_address(host: str) -> str:
    """--host as bind() takes it (``[::1]`` unbracketed), or a usage error naming --host with advice that fits an
    address to listen on, for what people type when they mean the server's URL: a URL, a port, a mailbox."""
    import re
    from urllib.parse import urlsplit

    def refuse(why: str, address: str | None, port: int | None) -> click.BadParameter:
        fix = f"--host {address}" if address else "--host 127.0.0.1 (or localhost, or 0.0.0.0 for every interface)"
        fix += f" --port {port}" if port is not None else " (and the port, if not 8443, with --port)"
        return click.BadParameter(f"'{shown(host)}' {why}; --host takes the address to listen on, an IP address or "
                                  f"a name of this machine, and --port the port: give {fix}.", param_hint="'--host'")

    text = host.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            address, port = parts.hostname, parts.port
        except ValueError:
            address, port = None, None
        raise refuse("is a URL", address, port)
    if (found := re.fullmatch(r"\[([^\]]*)\]:(\d+)|([^:\[\]]*):(\d+)", text)) is not None:
        address = found[1] if found[1] is not None else found[3]
        raise refuse(f"has a port (:{found[2] or found[4]})", address or None, int(found[2] or found[4]))
    if why := "is an email address" if "@" in text else "has whitespace around it" if text != host else None:
        raise refuse(why, None if "@" in text else text or None, None)  # no name of a host holds whitespace
    return _unbracketed(host)


def _unbracketed(host: str) -> str:
    """The address in ``[::1]`` (a URL's way of writing an IPv6 address), which bind() takes bare; every
    spelling of the unspecified address (``::0``, ``0:0:0:0:0:0:0:0``) as ``::`` (``0.0.0.0`` for IPv4)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return bare
    return str(address) if address.is_unspecified else bare


def _check_server_certificate(cert_file: Path, chain_pem: bytes, ca_dir: Path | None) -> None:
    """Refuse to serve with a certificate no TLS client takes from a server: not for a TLS server (certkit verify's
    words), outside its validity period, recorded as revoked (the page would teach a rule the server breaks);
    warn of one Firefox refuses (OCSP Must-Staple)."""
    from cryptography import x509

    from certkit.der_input import refuse_unread_extensions
    from certkit.errors import CertkitError
    from certkit.handshake_keys import tls_feature_note, unusable_leaf_key
    from certkit.text import shown
    from certkit.time_words import outside_dates
    from certkit.verify_purpose import purpose_problem
    from certkit.withdrawals import out_of_dates_advice

    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    refuse_unread_extensions(cert_file, leaf)
    if note := tls_feature_note(leaf, lead=f"{shown(cert_file)}: its TLS Feature extension names "):
        click.echo(f"Warning: {note}.", err=True)  # served all the same: clients other than Firefox take it
    dates = outside_dates(leaf.not_valid_before_utc, leaf.not_valid_after_utc)  # verify's, inspect's words
    problem = (purpose_problem(leaf, "server") or unusable_leaf_key(leaf)  # brainpool: no handshake completes
               or (f"it {dates}" if dates else None))
    if problem:
        advice = ("Give a server certificate (certkit issue-server)" if not dates or purpose_problem(leaf, "server")
                  or unusable_leaf_key(leaf) else out_of_dates_advice(leaf, ca_dir))
        raise CertkitError(f"{shown(cert_file)} is not a certificate a TLS client takes from a server: {problem}. "
                           f"{advice}, or leave out --cert/--key to have serve issue one.")
    from certkit.anchors import unread_inventory

    if unread := unread_inventory(ca_dir, x509.load_pem_x509_certificates(chain_pem)):  # never taken for "none"
        raise CertkitError(f"{shown(cert_file)} is not served: whether its CA revoked it cannot be told "
                           f"({unread.rstrip('.')}).")
    if withdrawn := _withdrawn_check(ca_dir, chain_pem)():  # as certkit verify, from the same inventory
        raise CertkitError(f"{shown(cert_file)} is not a certificate to serve with: {withdrawn[0]}; clients "
                           "refuse it once they load the next CRL (certkit crl). Give a current server certificate "
                           "(certkit issue-server), or leave out --cert/--key to have serve issue one.")


def _withdrawn_check(ca_dir: Path | None, chain_pem: bytes):
    """What the CA directory's inventory records against the server's chain, read anew at each call (the page
    asks at each request: a certkit revoke counts at once): sentences such as "it was revoked on ...", none
    when the inventory holds none of it, or there is no CA directory, or its inventory cannot be read."""
    from cryptography import x509

    from certkit.anchors import withdrawn
    from certkit.store import CADirectory

    store, chain = CADirectory(ca_dir), x509.load_pem_x509_certificates(chain_pem)

    def check() -> list[str]:
        try:
            found = withdrawn(store.path, chain, fail_closed=False) if store.exists() else []
        except Exception:  # noqa: BLE001 (a damaged inventory: the page and the start say nothing, never a traceback)
            return []
        # verify's words, the fact without the advice to servers, about this certificate (or the CA above it)
        return [("it was " if w.startswith(("revoked", "never")) else "") + (w.rpartition("; ")[0] or w) for w in found]

    return check


def _local_names(host: str) -> list[str]:
    """localhost, 127.0.0.1 and ::1, plus the listening address if it is a specific one."""
    from certkit.serve import LOCAL_NAMES

    names = list(LOCAL_NAMES)
    if host in ("0.0.0.0", "::", ""):
        return names
    try:
        name = str(ipaddress.ip_address(_unbracketed(host).partition("%")[0]))  # 0:0:0:0:0:0:0:1 is ::1; no zone
    except ValueError:
        from certkit.names import parse_host
        name = host.lower().rstrip(".")  # LOCALHOST is localhost
        try:
            parse_host(name)  # the name its certificate is issued for: refused as --host's, as a URL or port is
        except ValueError as exc:  # InvalidName
            raise click.BadParameter(f"'{shown(host)}' cannot name this server: {exc}", param_hint="'--host'") from None
    if name not in names:
        names.append(name)
    return names


# --- demo ---------------------------------------------------------------------------
@click.command("demo")
@click.option("--keep", type=WrittenPath(path_type=Path, file_okay=False),
              help="Write the demo's CAs and certificates into this new (or empty) folder and keep them.")
@click.option("--tls", type=click.Choice(["1.2", "1.3"]),
              help="Use only this TLS version [default: the highest both sides support].")
@json_option
def demo(keep, tls, as_json):
    """Show what a client certificate does that a server certificate does not.

    Creates a CA, a server certificate (localhost, 127.0.0.1) and client
    certificates, then runs one real TLS handshake per scenario on
    127.0.0.1 and prints what was expected, what happened, and OpenSSL's
    reason. A last section shows the one exception, a peer certificate
    (both usages, certkit issue-peer), accepted on either side. Exits 1
    if any outcome differs from the expected one, or a refusal comes
    from the other side or for another reason. Nothing is written
    outside a temporary folder unless --keep is given.

    \b
    Examples:
      certkit demo
      certkit demo --tls 1.2
      certkit demo --keep ./demo-certs
      certkit demo --json
    """
    from certkit.demo import render, run_demo
    from certkit.errors import Terminated
    from certkit.text import shown

    if keep is not None:  # the demo's CAs and keys never go into a CA directory, as no output does
        from certkit.paths import check_output
        from certkit.store import resolve_ca_dir

        check_output(keep, [resolve_ca_dir(None, strict=False)], what="--keep folder")
    try:
        result = run_demo(keep, tls)
    except (KeyboardInterrupt, Terminated) as exc:
        if keep is not None and keep.exists():  # written whole before the handshakes began
            exc.certkit_interrupted = (f"Interrupted: the demo's certificates and keys are in {shown(keep)}; "
                                       "not every handshake ran.")
        raise
    emit(as_json, result.to_dict(), render(result))
    if not result.ok:
        bad = "; ".join(f"{r.scenario}: {r.mismatch}" for r in result.mismatches)
        raise Failed(f"{len(result.mismatches)} outcome(s) differ from the expected: {bad}.")
