"""``certkit trust install|status|uninstall``: the CA in the system, NSS and Java trust stores.

Parses, asks (a CA without name constraints is trusted only with consent),
calls :mod:`certkit.trust` and prints one line per store. Loaded lazily, like
every command module.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from certkit.cli.common import Failed, ca_dir_option, emit, json_option, warn
from certkit.cli.trust_manual import _manual, _platform

PLATFORMS = ("linux", "darwin", "win32")


def _store_options(f):
    for flag, text in reversed((
        ("--system", "The system store (OpenSSL, curl, Python's ssl, Go...); needs root."),
        ("--nss", "NSS databases: Chromium's ~/.pki/nssdb, Firefox and Thunderbird profiles."),
        ("--java", "The cacerts of the JDK in $JAVA_HOME and of the java on PATH."),
        ("--all", "All three (each one that cannot be used is an error, not skipped)."),
    )):
        f = click.option(flag, flag.lstrip("-").replace("-", "_") + "_store", is_flag=True, help=text)(f)
    return f


def _platform_option(f):
    # Hidden: lets the tests see the macOS and Windows instructions on Linux.
    return click.option("--platform", type=click.Choice(PLATFORMS), default=None, hidden=True)(f)


@click.group("trust")
def trust() -> None:
    """Put the CA into the system, browser (NSS) and Java trust stores, check it, take it out.

    Installs the root of the CA directory (for an intermediate CA, the root
    above it), named after its SHA-256 fingerprint (certkit-<16 hex digits>):
    installing again changes nothing, and uninstall removes exactly what
    certkit added. A CA without name constraints is trusted only after you
    confirm (or with --unconstrained). With no store flag, every store this
    user can write is used; the others are skipped with the reason.

    \b
    Examples:
      certkit trust install --nss
      sudo certkit trust install --system --ca-dir ~/.local/share/certkit
      certkit trust status
      certkit trust uninstall --every-certkit-ca
    """


def _self_command() -> list[str]:
    """How this certkit was started, so that a printed command runs the same one (also under sudo)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is None or argv0.name == "__main__.py":
        return [sys.executable, "-m", "certkit"]
    return [str(argv0.resolve())] if argv0.is_file() else ["certkit"]


def _as_root(action: str, kinds: list[str], anchor, extra: list[str], env_java: Path | None = None) -> str:
    """The exact command that does ``action`` for ``kinds`` as root; for Java, on the JDK in ``env_java`` alone. sudo
    keeps neither JAVA_HOME nor this PATH (its secure_path): without both, the command would change the keystore of
    whatever JDK root's PATH finds (the distribution's), and leave the one this user found not writable as it was."""
    argv = ["sudo"]
    if env_java:
        argv += ["env", f"JAVA_HOME={env_java}", f"PATH={env_java / 'bin'}:/usr/bin:/bin"]
    argv += [*_self_command(), "trust", action, *(f"--{k}" for k in kinds)]
    if anchor is not None and anchor.ca_dir is not None:
        argv += ["--ca-dir", str(anchor.ca_dir)]
    return shlex.join(argv + extra)


def _selected(system_store: bool, nss_store: bool, java_store: bool, all_store: bool) -> tuple[list[str], bool]:
    from certkit.trust import KINDS

    if all_store:
        return list(KINDS), True
    chosen = [k for k, on in zip(KINDS, (system_store, nss_store, java_store), strict=True) if on]
    return (chosen, True) if chosen else (list(KINDS), False)


def _load_anchor(ca_dir: Path | None, *, required: bool = True, unread: list[str] | None = None):
    """The CA to act on; without ``required`` (--every-certkit-ca), None when there is none or it cannot be read
    (its reason then in ``unread``): a half-deleted CA is when a clean-up is wanted most."""
    from certkit.errors import CABroken, CANotFound, CertkitError
    from certkit.store import resolve_ca_dir
    from certkit.text import shown
    from certkit.trust import Anchor

    resolve_ca_dir(ca_dir)  # a $CERTKIT_CA_DIR set but empty is refused, as every command refuses it: not "no CA"
    try:
        return Anchor.from_ca_dir(ca_dir)
    except (CertkitError, OSError) as exc:  # missing, damaged, or unreadable (its ca.pem, the folder itself)
        why = (str(exc).rstrip(".") if isinstance(exc, CertkitError)
               else f"{shown(exc.filename or ca_dir)}: {exc.strerror or exc}")
        if required:
            if isinstance(exc, CertkitError):
                raise
            raise CABroken(f"The CA directory cannot be read: {why}.") from None
        if not isinstance(exc, CANotFound) and unread is not None:
            unread.append(why)
        return None


def _prepare(action: str, kinds: list[str], explicit: bool, anchor, extra: list[str], *, writing: bool):
    """The stores to act on; for a store asked for by name (``explicit``) that cannot be changed, an error before
    any change (``writing``). Under sudo, the browser databases only when asked for by name, whatever the action."""
    import os

    from certkit.trust import JavaStore, find_stores

    stores, skipped = find_stores(kinds)
    usable, blocked = [], list(skipped)
    homes = {}  # id of a Java store's result -> the home of its JDK, which the command as root names
    sudo_user = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    for store in stores:
        if sudo_user and store.kind == "nss" and not explicit:
            # Under sudo these are root's browser databases (or, with the user's HOME kept, files root
            # would own in it): only when asked for by name.
            blocked.append(store.skipped("sudo", f"running under sudo: not {sudo_user}'s own browsers; run "
                                         f"'certkit trust {action} --nss' as {sudo_user}, without sudo"))
            continue
        reason = store.blocked(anchor, removing=action == "uninstall") if writing else None
        if reason is None:
            usable.append(store)
        else:
            code, text = reason
            blocked.append(store.skipped(code, text, needs_root=os.geteuid() != 0 and store.kind != "nss"
                                         and code not in ("password", "unread")))
            homes[id(blocked[-1])] = Path(os.path.abspath(store.home)) if isinstance(store, JavaStore) else None
    for result in blocked:
        if result.needs_root:
            java_home = homes.get(id(result)) if result.kind == "java" else None
            result.reason = f"{result.reason}; run: {_as_root(action, [result.kind], anchor, extra, java_home)}"
    if explicit and writing:
        for kind in kinds:
            if not any(s.kind == kind for s in usable):
                reasons = [r.reason for r in blocked if r.kind == kind] or [f"no {kind} store was found"]
                where = "from" if action == "uninstall" else "in"
                raise click.ClickException(_sentence(f"Cannot {action} the CA {where} the {kind} store: "
                                                     + "; ".join(dict.fromkeys(reasons))))
    elif writing and not usable:
        raise click.ClickException(_sentence("No trust store can be changed by this user: "
                                             + "; ".join(f"{r.kind}: {r.reason}" for r in blocked)))
    return usable, blocked


def _sentence(text: str) -> str:
    # A message that ends with a command to copy ends there: a full stop would become part of a path.
    last = text.rsplit(";", 1)[-1]
    return text if "run: " in last or "yourself: " in last or text.endswith(".") else text + "."


def _in_order(results):
    from certkit.trust import KINDS

    return sorted(results, key=lambda r: KINDS.index(r.kind) if r.kind in KINDS else len(KINDS))


def _show(results, anchor, action: str, as_json: bool, notes: list[str], warnings: list[str]) -> None:
    from certkit.text import shown
    from certkit.time_words import ends

    results = _in_order(results)
    data = {"action": action, "ca": anchor.summary() if anchor else None,
            "stores": [r.to_dict() for r in results], "warnings": warnings, "notes": notes}
    lines = []
    if anchor is not None:
        own = anchor.intermediate_cert
        lines.append(f"CA \"{shown(anchor.common_name)}\" ({anchor.name}), {ends(anchor.not_after)}"
                     + (f", root of the intermediate \"{shown(anchor.intermediate)}\" ("
                        f"{ends(own.not_valid_after_utc)})" if own is not None else ""))
        lines.append(f"  may sign: {anchor.scope()}")
        if anchor.java_scope() and any(r.java_reads for r in results):  # stores Java reads
            lines.append(f"  for Java: {anchor.java_scope()}")
    lines += notes
    width = max([len(r.outcome) for r in results] + [7])
    for r in results:
        where = f": {shown(r.location)}" if r.location else ""
        lines.append(f"{r.outcome:<{width}}  {r.kind:<6}  {r.label}{where}")
        pad = " " * (width + 10)
        if r.reason and r.outcome != "incomplete":
            lines.append(f"{pad}{shown(r.reason)}")
        state = r.state
        if state is not None:
            if state.current is not None and r.outcome in ("added", "unchanged", "trusted", "incomplete"):
                lines.append(f"{pad}as {shown(state.current.name)}")
            if r.removed:
                lines.append(f"{pad}removed {', '.join(map(shown, r.removed))}")
            if state.pending:
                lines.append(f"{pad}{shown(state.pending)}")
            also = "also " if state.current is not None else ""  # without certkit's copy, the only one
            for name in state.elsewhere:
                lines.append(f"{pad}this CA is {also}trusted as {shown(name)} (not certkit's copy)")
            for name in state.untrusted:
                lines.append(f"{pad}this CA is {also}there as {shown(name)} (not certkit's entry), not trusted to "
                             "identify websites")
            for name in state.intermediate:
                lines.append(f"{pad}{also}trusted as {shown(name)} (added by hand: the intermediate "
                             f"\"{shown(anchor.intermediate)}\" itself, not the root certkit installs)")
            same_key = {id(e) for e in state.same_key}  # this CA's own earlier certificates (its name and key)
            for entry in state.older:
                via = f", through {entry.via}" if entry.via else ""
                one = "an earlier certificate of this CA" if id(entry) in same_key else "another certkit CA" \
                    if anchor is not None else "certkit CA"
                what, why = f"{one} also trusted" if anchor is not None else f"{one} trusted", ""
                if entry.not_trusted:  # there, but its clients do not trust it
                    what = f"{one} there but not trusted"
                    why = f"; {shown(entry.not_trusted)}"
                lines.append(f"{pad}{what}: {shown(entry.name)} ({shown(entry.subject)}{via}){why}")
        for alias in r.aliases:
            lines.append(f"{pad}also {shown(alias)} (the same database)")
        for note in r.notes:
            lines.append(f"{pad}{shown(note)}")
    emit(as_json, data, "\n".join(lines))
    if not as_json:
        for text in warnings:
            warn(text)


def _consent(anchor, unconstrained: bool, as_json: bool, stores=()) -> None:
    """A CA that may sign any website is trusted only with --unconstrained or a yes on a terminal."""
    from certkit.text import shown

    if anchor.limited or unconstrained:
        return
    if anchor.limits_dns:  # its IP addresses are what is wide
        risk = (f"The CA \"{shown(anchor.common_name)}\" ({anchor.name}) may sign {anchor.scope()}: "
                f"{', '.join(anchor.wide_ips)} holds public addresses, other people's servers among them. Once "
                "trusted, whoever holds its key can impersonate any server reached by those addresses to this "
                "machine's programs.")
    elif anchor.public_suffixes:
        risk = (f"The CA \"{shown(anchor.common_name)}\" ({anchor.name}) is limited to DNS names under "
                f"{', '.join(shown(d) for d in anchor.public_suffixes)}, a public suffix: every website there "
                f"belongs to someone else. It may sign {anchor.scope()}. Once trusted, whoever holds its key can "
                "impersonate those websites to this machine's programs.")
    else:
        risk = (f"The CA \"{shown(anchor.common_name)}\" ({anchor.name}) has no name constraints limiting its DNS "
                f"names: it may sign {anchor.scope()}. Once trusted, whoever holds its key can impersonate any "
                "website to this machine's programs.")
    advice = ("A CA limited to the addresses you own, e.g. 'certkit init-ca --permit-ip 192.168.0.0/16', can only "
              "vouch for those" if anchor.limits_dns else "A CA created with name constraints, e.g. 'certkit "
              "init-ca --permit-dns home.arpa --permit-ip 192.168.0.0/16', can only vouch for those names") + \
        " (except to Java, which ignores a root's constraints: issue from a constrained intermediate, " \
        "docs/two-tier-pki.md)."
    if not as_json and sys.stdin is not None and sys.stdin.isatty():
        where = "".join(f"\n  {s.kind}: {s.label} ({shown(s.location)})" for s in stores)
        click.echo(f"{risk}\n{advice}" + (f"\nIt would be added to:{where}" if where else ""), err=True)
        if click.confirm("Trust it anyway?", default=False, err=True):
            return
        raise click.ClickException("Nothing was installed: the CA was not confirmed.")
    raise click.ClickException(f"{risk} {advice} Pass --unconstrained to trust it anyway.")


@trust.command("install")
@_store_options
@click.option("--unconstrained", is_flag=True,
              help="Trust without asking a CA whose name constraints do not limit its DNS names or its public IP "
                   "ranges (it may sign other people's websites).")
@ca_dir_option
@json_option
@_platform_option
def install(system_store, nss_store, java_store, all_store, unconstrained, ca_dir, as_json, platform):
    """Add the CA's root to the trust stores.

    Idempotent: a store that holds it already is left as it is. A CA whose
    name constraints do not limit its DNS names (or allow a public IP range
    wider than a /16 or an IPv6 /32) needs your confirmation on a terminal, or
    --unconstrained.

    \b
    Examples:
      certkit trust install                 # every store this user can write
      certkit trust install --nss           # Chromium, Firefox, Thunderbird
      sudo certkit trust install --system --ca-dir /home/me/.local/share/certkit
      certkit trust install --java --json
    """
    from certkit import trust as lib

    anchor = _load_anchor(ca_dir)
    platform = _platform(platform)
    if (refused := lib.refusal(anchor)) is not None:
        raise lib.TrustError(refused)
    if platform != "linux":
        _consent(anchor, unconstrained, as_json)
        return _manual(anchor, "install", platform, as_json, lib.validity_warnings(anchor, java="java"))
    kinds, explicit = _selected(system_store, nss_store, java_store, all_store)
    extra = ["--unconstrained"] if unconstrained else []
    stores, skipped = _prepare("install", kinds, explicit, anchor, extra, writing=True)
    if not anchor.limited:
        # Ask only when something would change: a repeated install is a no-op without a question.
        lacking = [store for store in stores if _lacks(store, anchor)]
        if lacking:
            _consent(anchor, unconstrained, as_json, lacking)
    results = lib.install(anchor, stores) + skipped
    _finish(results, anchor, "install", as_json, lib.warnings(anchor, results))


def _lacks(store, anchor) -> bool:
    from certkit.trust import TrustError

    try:
        return store.needs_adding(store.state(anchor))
    except TrustError:
        return True  # install will report the store's failure; ask as if it would change


def _uninstall_ca_dir_option(f):
    """--ca-dir of uninstall: a folder that cannot be read is said by the command (--every-certkit-ca needs
    none, and goes ahead), not refused by the option."""
    from certkit.cli.common import CheckedPath

    return click.option("--ca-dir", type=CheckedPath(path_type=Path, file_okay=False, readable=False),
                        envvar="CERTKIT_CA_DIR",
                        help="CA directory [default: $CERTKIT_CA_DIR, else the per-user data dir].")(f)


@trust.command("uninstall")
@_store_options
@click.option("--every-certkit-ca", is_flag=True,
              help="Remove every certificate certkit named, of every certkit CA: replaced ones, those still in "
                   "use, and this one; no CA directory needed.")
@_uninstall_ca_dir_option
@json_option
@_platform_option
def uninstall(system_store, nss_store, java_store, all_store, every_certkit_ca, ca_dir, as_json, platform):
    """Remove the CA's root from the trust stores; nothing certkit did not add is touched.

    \b
    Examples:
      certkit trust uninstall
      sudo certkit trust uninstall --system --ca-dir /home/me/.local/share/certkit
      certkit trust uninstall --every-certkit-ca   # every certkit CA, this one too
    """
    from certkit import trust as lib
    from certkit.text import shown

    unread: list[str] = []
    anchor = _load_anchor(ca_dir, required=not every_certkit_ca, unread=unread)
    platform = _platform(platform)
    if platform != "linux":
        return _manual(anchor, "uninstall", platform, as_json)
    kinds, explicit = _selected(system_store, nss_store, java_store, all_store)
    extra = ["--every-certkit-ca"] if every_certkit_ca else []
    stores, skipped = _prepare("uninstall", kinds, explicit, anchor, extra, writing=True)
    results = lib.uninstall(anchor, stores, every_certkit_ca=every_certkit_ca) + skipped
    # --every-certkit-ca removes the same with or without the CA: a --ca-dir that holds none is said, not refused.
    where = f"no CA in {shown(ca_dir)}" if ca_dir is not None else "no CA directory"
    where = f"the CA cannot be read ({unread[0]})" if unread else where
    notes = [] if anchor else [f"({where}: removing every certificate certkit named)"]
    _finish(results, anchor, "uninstall", as_json, [], notes)


@trust.command("status")
@_store_options
@ca_dir_option
@json_option
@_platform_option
def status(system_store, nss_store, java_store, all_store, ca_dir, as_json, platform):
    """Show, per store, whether the CA is trusted, which other certkit CAs are, and what was skipped.

    Warns when a trusted certkit CA's key is not encrypted, or the CA (or,
    for an intermediate CA directory, its intermediate) has expired, expires
    within 30 days or is not valid yet; names the command that removes each
    other certkit CA alone. Changes nothing.

    \b
    Examples:
      certkit trust status
      certkit trust status --nss --json
    """
    from certkit import trust as lib

    anchor = _load_anchor(ca_dir, required=ca_dir is not None)  # only the default CA directory may be missing
    platform = _platform(platform)
    if platform != "linux":
        return _manual(anchor, "status", platform, as_json)
    kinds, explicit = _selected(system_store, nss_store, java_store, all_store)
    stores, skipped = _prepare("status", kinds, explicit, anchor, [], writing=False)
    results = lib.status(anchor, stores) + skipped
    notes = [] if anchor else ["No CA directory here: showing every certkit CA the stores trust."]
    _finish(results, anchor, "status", as_json, lib.warnings(anchor, results), notes)


def _finish(results, anchor, action: str, as_json: bool, warnings: list[str], notes: list[str] | None = None):
    _show(results, anchor, action, as_json, notes or [], warnings)
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        raise Failed(f"{action} failed in {len(failed)} store{'s' if len(failed) > 1 else ''}: "
                     + "; ".join(f"{r.label}: {r.reason}" for r in failed))
