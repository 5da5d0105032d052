"""Commands for demo, inspect and verify: parse, call the library, print.

Loaded by :mod:`certkit.cli` when one of its commands runs (LAZY_COMMANDS); the commands register on ``main``.
Like cli.py, this module imports only click and the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli import ca_dir_option, emit, json_option, main


# --- demo ---------------------------------------------------------------------------
@main.command("demo")
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False),
              help="Write the demo's CAs and certificates into this new (or empty) folder and keep them.")
@click.option("--tls", type=click.Choice(["1.2", "1.3"]),
              help="Use only this TLS version [default: the highest both sides support].")
@json_option
def demo(keep, tls, as_json):
    """Show what a client certificate does that a server certificate does not.

    Creates a CA, a server certificate (localhost, 127.0.0.1) and client
    certificates, then runs one real TLS handshake per scenario on
    127.0.0.1 and prints what was expected, what happened, and OpenSSL's
    reason. Exits 1 if any outcome differs from the expected one. Nothing is
    written outside a temporary folder unless --keep is given.

    \b
    Examples:
      certkit demo
      certkit demo --tls 1.2
      certkit demo --keep ./demo-certs
      certkit demo --json
    """
    from certkit.demo import render, run_demo

    result = run_demo(keep, tls)
    emit(as_json, result.to_dict(), render(result))
    if not result.ok:
        bad = "; ".join(f"{r.scenario}: expected {r.expected}, observed {r.observed} ({r.reason})"
                        for r in result.mismatches)
        raise click.ClickException(f"{len(result.mismatches)} outcome(s) differ from the expected: {bad}.")


# --- inspect ------------------------------------------------------------------------
@main.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def inspect_(path, as_json):
    """Describe a certificate, CSR or bundle in plain words.

    PATH is a PEM or DER certificate, a CSR, a PEM file holding several
    certificates (and perhaps a key), or a bundle folder written by certkit
    (cert.pem, privkey.pem, fullchain.pem, ca.pem). For each certificate:
    subject, issuer, serial, validity and days left, key type, names,
    key usage, extended key usage, constraints, fingerprints, and what it
    may be used for. A private key is never shown; certkit only says
    whether it matches a certificate.

    \b
    Examples:
      certkit inspect localhost/cert.pem
      certkit inspect alice/
      certkit inspect request.csr
      certkit inspect server.der --json
    """
    from certkit.inspect import inspect_path, render

    report = inspect_path(path)
    emit(as_json, report, render(report))


# --- verify -------------------------------------------------------------------------
@main.command("verify")
@click.argument("cert", type=click.Path(path_type=Path))
@click.option("--purpose", type=click.Choice(["server", "client"]), required=True,
              help="The TLS role the certificate must be valid for.")
@click.option("--name", metavar="HOST", help="Name to check: a server's DNS name or IP address, or a client's "
                                              "CN, email, URI or DNS name.")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Trust the CA certificate(s) in this PEM file instead of a CA directory.")
@click.option("--untrusted", type=click.Path(path_type=Path, dir_okay=False),
              help="Intermediate CA certificates to build the chain with (e.g. chain.pem).")
@ca_dir_option
@json_option
def verify(cert, purpose, name, ca_file, untrusted, ca_dir, as_json):
    """Check CERT against the CA: chain, validity period, purpose and name.

    CERT is a certificate file (a fullchain.pem's intermediates are used) or
    a bundle folder. The CA is the one in --ca-dir (else $CERTKIT_CA_DIR,
    else the per-user data dir) or the certificate(s) in --ca-file. Exit 0
    if valid; exit 1 if not, with the reason in words. Verification is done
    by cryptography's X.509 verifier.

    \b
    Examples:
      certkit verify localhost/cert.pem --purpose server --name localhost
      certkit verify alice/cert.pem --purpose client --name alice
      certkit verify fullchain.pem --purpose server --ca-file root.pem
      certkit verify cert.pem --purpose client --untrusted chain.pem --json
    """
    from certkit.verify import verify_path

    if ca_file is not None and ca_dir is not None and click.get_current_context().get_parameter_source(
            "ca_dir") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("Give either --ca-file or --ca-dir, not both.")
    verdict, trust = verify_path(cert, purpose=purpose, name=name, ca_file=ca_file,
                                 ca_dir=None if ca_file else ca_dir, untrusted=untrusted)
    role = f"TLS {purpose} certificate"
    data = {**verdict.to_dict(), "file": str(cert), "trusted_ca": trust}
    name_line = (f"{name}: {'matches' if verdict.name_ok else 'does not match'}" if verdict.name_checked
                 else "not checked (no --name)")
    lines = [f"{cert}: {'VALID' if verdict.valid else 'NOT VALID'} as a {role}",
             f"  subject   {verdict.subject or '(empty)'}",
             f"  issuer    {verdict.issuer or '(empty)'}",
             f"  expires   {verdict.not_after:%Y-%m-%d %H:%M:%S} UTC",
             f"  name      {name_line}",
             f"  trusted   {trust}"]
    if verdict.valid:
        lines.append(f"  chain     {' -> '.join(verdict.chain)}")
    else:
        lines += [f"  reason    {r}" for r in verdict.reasons]
        if verdict.verifier_error:
            lines.append(f"  verifier  {verdict.verifier_error}")
    emit(as_json, data, "\n".join(lines))
    if not verdict.valid:
        raise click.ClickException(f"{cert} is not valid as a {role}: {'; '.join(verdict.reasons)}.")
