"""What ``certkit acme serve`` says when it starts: its summary, as text and as the JSON object of
``--json`` (the directory URL, the server's own certificate, the lifetime it issues, the names it
allows, how it validates, whether accounts need an External Account Binding, and what clients
must trust)."""

from __future__ import annotations

from certkit.cli.common import when
from certkit.vocabulary import iso, san_entries


def _lifetime(ca, days: int | None) -> tuple[str, int]:
    """The lifetime a certificate issued now gets, in words and in days: ``--days``, else the server
    profile's default, neither past the CA's expiry."""
    import datetime as dt

    from certkit.profiles import PROFILES

    default = PROFILES["server"].default_days
    left = (ca.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    if days is None and default > left:
        span = f"{left} day{'s' if left != 1 else ''}" if left >= 1 else "less than a day"
        return f"{span} (the server profile's {default}-day default ends with the CA)", left
    return (f"{days} days", days) if days else (f"{default} days (the server profile's default)", default)


def _summary(ca, config, host: str, names: list[str], listener, server, eab_kid: str | None) -> tuple[dict, str]:
    """What the server prints at start: (the JSON object, the text)."""
    validator = config.validator
    days, policy, eab, resolve = config.days, config.policy, config.eab, validator.resolve
    issued = listener.issued
    if ca.parents:
        trust = f"the root CA \"{_common_name(ca.root)}\" (the ca.pem of its CA directory), not this intermediate"
    else:
        trust = str(ca.store.cert_path.absolute())
    lifetime, effective = _lifetime(ca, days)
    data = {
        "directory": server.directory_url, "host": host, "port": server.server_address[1],
        "ca": ca.common_name, "root": _common_name(ca.root), "intermediate": bool(ca.parents),
        "days": effective, "days_default": days is None,
        "allowed": {"domains": list(policy.allow_domains), "ips": [str(n) for n in policy.allow_ips]},
        "challenges": {"http-01": validator.http_port, "tls-alpn-01": validator.tls_port}, "resolve": resolve,
        "external_account_required": bool(eab),
        "server_certificate": {"names": san_entries(issued.cert), "serial": issued.serial_hex,
                               "not_after": iso(issued.not_after)},
    }
    pairs = [f"{name}={address}" for name, addresses in resolve.items() for address in addresses]
    resolving = f"; resolving {', '.join(pairs)}" if resolve else ""
    human = "\n".join([
        f"ACME directory: {server.directory_url}",
        f"  server certificate  issued now for {', '.join(names)} (serial {issued.serial_hex}, "
        f"expires {when(issued.not_after)})",
        f"  issuing             serverAuth certificates from \"{ca.common_name}\", {lifetime}",
        f"  names allowed       {policy.describe(ca)}",
        f"  validation          http-01 on port {validator.http_port}, tls-alpn-01 on port {validator.tls_port}"
        f"{resolving}",
        f"  accounts            {'External Account Binding required (key id ' + eab_kid + ')' if eab else 'open'}",
        f"  clients must trust  {trust}",
        "Stop with Ctrl-C.",
    ])
    return data, human


def _common_name(cert) -> str:
    from certkit.pkcs12 import common_name

    return common_name(cert) or cert.subject.rfc4514_string()
