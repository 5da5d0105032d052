"""``certkit acme``: the ACME server (``acme serve``). Loaded lazily, like every command module;
the server itself (:mod:`certkit.acme`) is imported only when it runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certkit.cli.acme_summary import _summary
from certkit.cli.common import (
    ExistingPath,
    Whole,
    ca_dir_option,
    emit,
    json_option,
    passphrase_file_option,
    unlock,
    warn,
    when,
)
from certkit.text import shown

# The server profile's limit (Apple's for locally trusted roots), as issue-server enforces it.
MAX_SERVER_DAYS = 825
# How long a stop waits for the requests under way: a finalize takes well under a second, unless
# the inventory is locked (it then waits certkit.acme.db.BUSY_TIMEOUT_S per write).
DRAIN_TIMEOUT_S = 10.0


@click.group("acme")
def acme() -> None:
    """An ACME server (RFC 8555) issuing serverAuth certificates from this CA.

    certbot, lego and Caddy (each tested) obtain and renew certificates from
    it as they would from Let's Encrypt; every certificate is recorded in the
    CA's inventory and revoked through its CRL. Needs the acme extra: pip
    install 'certkit[acme]'.

    \b
    Examples:
      certkit acme serve --allow-domain internal.example.com
      certkit acme serve --port 14000 --http01-port 8080 --json
    """


def _parse_resolve(ctx, param, values) -> dict[str, list[str]]:
    """NAME -> its addresses, in the order given: a name given twice has both (as DNS answers with
    several), tried in turn as the system resolver's are; the same pair twice counts once."""
    import ipaddress

    from certkit.errors import InvalidName
    from certkit.names_dns import parse_dns_name

    mapping: dict[str, list[str]] = {}
    for item in values:
        name, sep, address = item.partition("=")
        try:
            if not sep:
                raise ValueError
            canonical = parse_dns_name(name, allow_wildcard=False).value
            addresses = mapping.setdefault(canonical, [])
            text = str(ipaddress.ip_address(address.strip()))
            if text not in addresses:
                addresses.append(text)
        except (ValueError, InvalidName) as exc:
            reason = f": {exc}" if str(exc) else ""
            raise click.BadParameter(f"'{item}' is not NAME=ADDRESS with a DNS name and an IP address{reason}") \
                from None
    return mapping


# What an empty value of an option would do, and what to give instead.
_EMPTY = {
    "host": "it would listen on every interface; give an address such as 127.0.0.1 (0.0.0.0 or :: to listen on "
            "every one)",
    "eab_kid": "clients need a key identifier to bind their account with; give one such as team-1",
}


def _not_empty(ctx, param, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter(f"'{value}' is empty: {_EMPTY[param.name]}.")
    return value


def _kid(ctx, param, value: str | None) -> str | None:
    """A key identifier clients can send and people can read: printable, not empty, not a page long."""
    from certkit.text import shown

    value = _not_empty(ctx, param, value)
    if value is not None and (not value.isprintable() or len(value) > 256):
        what = "holds a character that is not printable (a line break, a control)" if not value.isprintable() \
            else f"has {len(value)} characters"
        raise click.BadParameter(f"'{shown(value)[:80]}' {what}: a key identifier is up to 256 printable "
                                 "characters, such as team-1.")
    return value


@acme.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_not_empty,
              help="Address to listen on. Use 0.0.0.0 or :: only on networks you trust.")
@click.option("--port", type=Whole(0, 65535), default=14000, show_default=True,
              help="TCP port; 0 picks a free one (the directory URL printed says which).")
@click.option("--allow-domain", "allow_domains", multiple=True, metavar="SUFFIX",
              help="Issue only for this domain and its subdomains (repeatable) [default: any name the CA may sign].")
@click.option("--allow-ip", "allow_ips", multiple=True, metavar="CIDR",
              help="Also issue for IP addresses in this range (RFC 8738; repeatable) [default: none].")
@click.option("--days", type=Whole(1, MAX_SERVER_DAYS),
              help=f"Certificate lifetime, at most {MAX_SERVER_DAYS} [default: 200, capped at the CA's expiry].")
@click.option("--http01-port", type=Whole(1, 65535), default=80, show_default=True,
              help="Port to connect to for http-01 validation.")
@click.option("--tls-alpn01-port", type=Whole(1, 65535), default=443, show_default=True,
              help="Port to connect to for tls-alpn-01 validation.")
@click.option("--resolve", "resolve", multiple=True, metavar="NAME=ADDRESS", callback=_parse_resolve,
              help="Validate NAME at ADDRESS instead of asking DNS (repeatable; a NAME given twice has both "
                   "addresses, tried in turn).")
@click.option("--eab-kid", metavar="KID", callback=_kid,
              help="Require External Account Binding with this key identifier.")
@click.option("--eab-hmac-file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="File (mode 0600) holding the base64url HMAC key of --eab-kid.")
@click.option("--verbose", is_flag=True, help="Also log every HTTP request.")
@ca_dir_option
@passphrase_file_option
@json_option
def serve(host, port, allow_domains, allow_ips, days, http01_port, tls_alpn01_port, resolve, eab_kid,
          eab_hmac_file, verbose, ca_dir, passphrase_file, as_json):
    """Run an ACME server (RFC 8555) that issues serverAuth certificates from the CA.

    Clients prove control of each name with http-01 (this server fetches
    http://NAME/.well-known/acme-challenge/TOKEN) or tls-alpn-01 (RFC 8737),
    then send a CSR; only its key and names are used, as sign-csr does, and
    the certificate gets the server profile (serverAuth only). Accounts,
    orders and nonces are kept in the CA's inventory, so a restart loses
    nothing. The server speaks HTTPS with its own certificate from the CA
    (recorded like any other): clients must trust the CA (certkit's ca.pem).

    Stop with Ctrl-C, SIGTERM or SIGHUP.

    \b
    Examples:
      certkit acme serve --allow-domain internal.example.com
      certkit acme serve --port 0 --json
      certkit acme serve --http01-port 8080 --tls-alpn01-port 8443 \\
          --resolve app.test=127.0.0.1
      REQUESTS_CA_BUNDLE=ca.pem certbot certonly --standalone \\
          --server https://127.0.0.1:14000/directory -d app.internal.example.com
    """
    eab = _eab_keys(eab_kid, eab_hmac_file)  # first: it says when the ACME server cannot run here
    from certkit.cli.serve import _listen_address

    host = _listen_address(host)  # a URL or a port told to use --port; ::0 listens where :: does
    from certkit.acme.challenges import Validator
    from certkit.acme.policy import Policy
    from certkit.acme.server import AcmeConfig

    policy = Policy.build(allow_domains, allow_ips)
    _check_listenable(host, port)  # a port in use is said before the passphrase is asked for
    ca = _open_ca(ca_dir, days, passphrase_file, policy)
    config = AcmeConfig(policy, Validator(http01_port, tls_alpn01_port, resolve), days, eab)
    names, listener, service, server = _start(ca, config, host, port, verbose)
    data, human = _summary(ca, config, host, names, listener, server, eab_kid)
    _run(ca, service, listener, server, as_json, data, human)


def _eab_keys(eab_kid: str | None, eab_hmac_file: Path | None) -> dict[str, bytes]:
    """The External Account Binding keys (key id -> HMAC key) the options give; first, that the
    ACME server can run at all (josepy is an optional dependency)."""
    try:
        import josepy  # noqa: F401
    except ImportError:
        raise click.ClickException("certkit acme needs josepy (the JOSE library certbot uses); install it with: "
                                   "pip install 'certkit[acme]'") from None
    from certkit.acme.server import decode_hmac_key
    from certkit.cli.common import read_secret_file
    from certkit.cli.secrets_input import refuse_byte_order_mark
    from certkit.text import shown

    if (eab_kid is None) != (eab_hmac_file is None):
        raise click.UsageError("--eab-kid and --eab-hmac-file go together.")
    eab = {}
    if eab_kid is not None:
        secret = read_secret_file(eab_hmac_file)
        refuse_byte_order_mark(secret, f"The file {shown(eab_hmac_file)}")  # named, not "not base64url"
        try:
            eab[eab_kid] = decode_hmac_key(secret.decode("ascii", "replace"))
        except ValueError as exc:
            raise click.ClickException(f"The EAB key in {eab_hmac_file} is unusable: {exc}.") from None
    return eab


def _open_ca(ca_dir, days: int | None, passphrase_file, policy):
    """The CA, unlocked, once it can issue for ``days`` (None: the profile's default) and ``policy``
    asks for nothing outside its name constraints."""
    import datetime as dt

    from certkit.errors import InvalidLifetime
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    ca = store.open()
    store.hold_inventory()  # for as long as the server runs: not moved from under it (inventory migrate)
    from certkit.acme.db import BUSY_TIMEOUT_S

    ca.inventory.db.busy_timeout = BUSY_TIMEOUT_S  # finalize too: clients give up long before 60 s
    expires = ca.cert.not_valid_after_utc
    if days is not None and dt.datetime.now(dt.UTC) + dt.timedelta(days=days) > expires:
        from certkit.validity import longest_text

        most = (expires - dt.datetime.now(dt.UTC)).days
        raise InvalidLifetime(f"A lifetime of {days} day{'s' if days != 1 else ''} would end after the CA expires on "
                              f"{when(expires)}; " + longest_text(most, expires))
    policy.check_within(ca)
    ca.check_usable()
    unlock(ca, passphrase_file)
    return ca


def _start(ca, config, host: str, port: int, verbose: bool):
    """The ACME service started (its tables created, what a dead server left settled), the HTTPS
    server bound to ``host``:``port``, and only then the server's own certificate (for the names
    the CA may sign): (names, listener, service, server). Whatever fails first, nothing was issued:
    a certificate is recorded valid only for a server that runs."""
    from functools import partial

    from certkit.acme.db import Database
    from certkit.acme.https import AcmeHTTPServer
    from certkit.acme.listener import Listener
    from certkit.acme.server import AcmeService
    from certkit.acme.state import AcmeState
    from certkit.cli.serve import _local_names
    from certkit.serve import stderr_log
    from certkit.testhooks import pause_at

    _check_listenable(host, port)  # a clear error for a host that does not resolve, before the database
    names, url_host = _permitted_names(ca, _local_names(host), host)
    service = AcmeService(ca, AcmeState(Database(ca.inventory)), config, log=stderr_log)
    service.start()
    try:
        listener = Listener(ca, names, issue=False, hold=partial(service.state.hold_listener, renews=True))
        try:
            server = AcmeHTTPServer((host, port), service, lambda: listener.context, log=stderr_log, verbose=verbose,
                                    url_host=url_host)
        except OSError as exc:
            raise click.ClickException(f"Cannot listen on {shown(host)}:{port}: {exc.strerror or exc}.") from None
        try:
            listener.renew()
        except BaseException:
            server.server_close()
            raise
        pause_at("listener")
    except BaseException:
        service.stop()
        raise
    return names, listener, service, server


def _check_listenable(host: str, port: int) -> None:
    """Refuse a host that does not resolve, or an address and port that cannot be bound, before
    the database is touched (the port is bound for real before the certificate is issued)."""
    import socket

    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
            probe.bind(address)
    except (OSError, UnicodeError) as exc:  # gaierror included: a host that does not resolve
        reason = f"{getattr(exc, 'strerror', None) or exc}."
        if isinstance(exc, socket.gaierror | UnicodeError):  # 256.0.0.1, a..b: why, in words
            from certkit.errors import InvalidName, cli_text
            from certkit.names import parse_host

            try:
                parse_host(host)
            except InvalidName as bad:
                reason = cli_text(bad)
        raise click.ClickException(f"Cannot listen on {shown(host)}:{port}: {reason}") from None


def _run(ca, service, listener, server, as_json: bool, data: dict, human: str) -> None:
    """Print the summary and serve until Ctrl-C or SIGTERM; then stop the service, and exit as a
    command stopped by that signal does (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    import signal
    import threading

    from certkit.acme.listener import maintain, retire_served
    from certkit.cli.serve import exit_stopped
    from certkit.errors import handle_stop_signals, restore_signals
    from certkit.issuing import uninterrupted
    from certkit.serve import serve_until_stopped, stderr_log

    stopped_by: list[int] = []

    def interrupted(signum, frame):
        stopped_by.append(signum)
        raise KeyboardInterrupt

    # From here on SIGTERM (and SIGHUP) stops the server as Ctrl-C does, even before it serves its
    # first request; the exit status says which (exit_stopped: 130, 143, 129), once it has drained.
    previous = handle_stop_signals(interrupted)
    stop = threading.Event()
    serving = failed = False
    try:
        service.state.hold_listener(listener.issued.serial_hex)  # a server killed outright: the next revokes it
        emit(as_json, data, human)
        if not ca.parents:
            warn(f"\"{ca.common_name}\" is a root CA: certificates come without an intermediate, which certbot "
                 "refuses ('less than 2 certificates in chain'; lego and Caddy accept it). Serve ACME from an "
                 "intermediate CA (docs/two-tier-pki.md), which also keeps the root's key offline.")
        sys.stdout.flush()  # a script waiting for the URL reads it through a pipe
        with uninterrupted():  # a stop signal inside Thread.start() breaks its lock: it lands right after instead
            threading.Thread(target=maintain, args=(service, listener, stop, stderr_log), daemon=True).start()
        stderr_log(f"listening on {server.directory_url}")
        serving = True
        signum = serve_until_stopped(server, received=stopped_by)
    except KeyboardInterrupt:
        signum = stopped_by[0] if stopped_by else signal.SIGINT  # (Python's own SIGINT handler: Ctrl-C)
        server.server_close()
    except BaseException:
        failed = not serving  # a start that failed: its own error is the one to report
        raise
    finally:
        stop.set()
        try:
            _drain(server)  # with the stop signals still raising KeyboardInterrupt: a second one ends the wait
        finally:
            restore_signals(previous)
            try:  # stopped or failed, the key of its own certificate dies with this process: no valid row for it
                retire_served(ca, service.state, listener, None if failed else stderr_log)
            finally:
                service.stop()
    stderr_log("stopped")
    exit_stopped(signum)


def _drain(server) -> None:
    """A clean stop: no connection is accepted any more (the listening socket is closed), and the
    requests under way get up to DRAIN_TIMEOUT_S to be answered before the database is closed, so a
    finalize in flight answers its client and leaves its order valid, ready or invalid."""
    from certkit.serve import stderr_log

    try:
        left = server.drain(DRAIN_TIMEOUT_S)
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: stop now
        left = server.active
    if left:
        stderr_log(f"stopping with {left} request(s) still running after {DRAIN_TIMEOUT_S:g} s; an order "
                   "being finalized goes back to ready")


def _permitted_names(ca, names: list[str], host: str) -> tuple[list[str], str]:
    """The listening names the CA may sign (a name-constrained CA may not sign localhost), and the
    one the directory URL gives: the --host name or address itself, or for 0.0.0.0 and :: the
    local name that reaches it. A URL the server's own certificate does not cover is refused: no
    client could verify the server there."""
    import ipaddress

    from certkit.errors import CertkitError, NameNotPermitted
    from certkit.names import parse_host
    from certkit.text import shown

    permitted = []
    for name in names:
        try:
            ca.check_permitted([parse_host(name)])
        except NameNotPermitted:
            continue
        permitted.append(name)
    if not permitted:
        raise CertkitError(f"The CA '{ca.common_name}' may not sign a server certificate for "
                           f"{', '.join(names)} (its name constraints); listen with --host on a name or "
                           "address it permits.")
    if host in ("0.0.0.0", "::"):
        candidates = ["localhost", "127.0.0.1" if host == "0.0.0.0" else "::1"]
    else:
        try:
            candidates = [str(ipaddress.ip_address(host.strip("[]")))]  # as _local_names names it
        except ValueError:
            candidates = [host.lower().rstrip(".")]
    url_host = next((name for name in candidates if name in permitted), None)
    if url_host is None:
        raise CertkitError(f"The CA '{shown(ca.common_name)}' may not sign a server certificate for "
                           f"{' or '.join(map(shown, candidates))} (its name constraints), so no client could "
                           f"verify this server at the address it listens on ({shown(host)}); listen with --host "
                           f"on a name or address it permits, such as {' or '.join(permitted)}.")
    return permitted, url_host
