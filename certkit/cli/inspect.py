"""Commands that read certificates: ``inspect`` describes one, ``verify`` checks it against a CA,
``probe`` reads what a live server presents and asks of clients."""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import CheckedPath, ExistingPath, Failed, ca_dir_option, emit, json_option


# --- inspect ------------------------------------------------------------------------
@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path, readable=False))  # certkit says an unreadable one
@json_option
def inspect_(path, as_json):
    """Describe a certificate, CSR, CRL or bundle in plain words.

    PATH is a PEM or DER certificate (- reads standard input), a CSR, a PEM file holding several
    certificates (and perhaps a key), a CRL file (its issuer, number, dates and the certificates
    it revokes), a bundle folder written by certkit (cert.pem, privkey.pem,
    fullchain.pem, ca.pem), or a --format jsonl, k8s or tar output (every
    bundle in it). For each certificate:
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
@click.command("verify")
@click.argument("cert", type=click.Path(path_type=Path, readable=False))  # certkit says an unreadable one
@click.option("--purpose", type=click.Choice(["server", "client", "peer"]),
              help="The TLS role the certificate must be valid for (required); peer: both, as a cluster member's "
                   "certificate (certkit issue-peer) is used.")
@click.option("--name", metavar="HOST", help="Name to check: a server's DNS name or IP address, or a client's "
                                              "CN, email, URI or DNS name.")
@click.option("--ca-file", type=CheckedPath(path_type=Path, dir_okay=False),
              help="Trust the CA certificate(s) in this PEM file instead of a CA directory.")
@click.option("--untrusted", type=CheckedPath(path_type=Path, dir_okay=False),
              help="Intermediate CA certificates to build the chain with (e.g. chain.pem).")
@ca_dir_option
@json_option
def verify(cert, purpose, name, ca_file, untrusted, ca_dir, as_json):
    """Check CERT against the CA: chain, validity period, purpose and name.

    CERT is a certificate file (a fullchain.pem's intermediates are used;
    - reads standard input), a bundle folder (what its server sends), or a
    --format jsonl, k8s or tar output (its first bundle; a note says when
    there are more). The CA is the one in --ca-dir (else $CERTKIT_CA_DIR,
    else the per-user data dir) or the certificate(s) in --ca-file. Exit 0
    if valid; exit 1 if not, with the reason in words. Verification is done
    by cryptography's X.509 verifier.

    \b
    Examples:
      certkit verify localhost/cert.pem --purpose server --name localhost
      certkit verify alice/cert.pem --purpose client --name alice
      certkit verify etcd-2.cluster.internal/ --purpose peer --name 10.0.0.12
      certkit verify fullchain.pem --purpose server --ca-file root.pem
      certkit verify cert.pem --purpose client --untrusted chain.pem --json
    """
    from certkit.text import cut_long_lines, shown
    from certkit.time_words import dated
    from certkit.verify import verify_path

    if purpose is None:  # in one line (click's own says the choices on lines of their own)
        raise click.UsageError("Missing option '--purpose': give --purpose server, --purpose client or --purpose peer "
                               "(both).")
    if ca_file is not None and ca_dir is not None and click.get_current_context().get_parameter_source(
            "ca_dir") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("Give either --ca-file or --ca-dir, not both.")
    if name is not None:
        _check_name(name, purpose)
    if ca_file is None and ca_dir is not None:  # $CERTKIT_CA_DIR blank: said as every command says it
        from certkit.store import resolve_ca_dir

        ca_dir = resolve_ca_dir(ca_dir)
    verdict, trust = verify_path(cert, purpose=purpose, name=name, ca_file=ca_file,
                                 ca_dir=None if ca_file else ca_dir, untrusted=untrusted)
    role = f"TLS {purpose} certificate" + (" (server and client)" if purpose == "peer" else "")
    data = {**verdict.to_dict(), "file": str(cert), "trusted_ca": trust}
    name_line = (f"{shown(name)}: {'matches' if verdict.name_ok else 'does not match'}" if verdict.name_checked
                 else "not checked (no --name)")
    lines = [f"{shown(cert)}: {'VALID' if verdict.valid else 'NOT VALID'} as a {role}",
             f"  subject   {shown(verdict.subject) or '(empty)'}",
             f"  issuer    {shown(verdict.issuer) or '(empty)'}",
             *(f"  {label:<9} {words}" for label, words in dated(verdict.not_before, verdict.not_after)),
             f"  name      {name_line}",
             f"  trusted   {shown(trust)}"]
    if verdict.valid:
        lines.append(f"  chain     {' -> '.join(shown(c) for c in verdict.chain)}")
    lines += [f"  {side:<9} {'valid' if v['valid'] else 'NOT VALID'}" for side, v in (verdict.purposes or {}).items()]
    lines += [f"  reason    {shown(r)}" for r in verdict.reasons]
    if verdict.verifier_error:
        lines.append(f"  verifier  {shown(verdict.verifier_error)}")
    if verdict.peer:  # added to the reasons, never in their place; the other side only once this one holds
        other = "client" if purpose == "server" else "server"
        lines.append("  peer      it carries serverAuth and clientAuth, so it is meant for either side" +
                     (f": check it as a TLS {other} certificate with --purpose {other}, or as both with --purpose "
                      "peer" if verdict.valid and purpose != "peer" else ""))
    lines += [f"  note      {shown(note)}" for note in verdict.notes]
    emit(as_json, _cut_report(data), cut_long_lines("\n".join(lines)))  # a long value echoed: cut as in errors
    if not verdict.valid:
        raise Failed(f"{shown(cert)} is not valid as a {role}: {shown('; '.join(verdict.reasons)).rstrip('.')}.")


def _cut_report(data: dict) -> dict:
    """verify's JSON with its text (the name given, reasons, notes, the verifier's words) cut as the lines of an
    error are (:func:`certkit.text.cut_long_lines`): a --name of thousands of characters is echoed in a few."""
    from certkit.text import cut_long_lines

    cut = {key: cut_long_lines(data[key]) for key in ("name", "verifier_error") if data.get(key)}
    return data | cut | {key: [cut_long_lines(text) for text in data[key]] for key in ("reasons", "notes")}


def _check_name(name: str, purpose: str) -> None:
    """Refuse a bad --name as the argument it is, before any certificate is read (a server's must
    be a host name or IP address; a client's may be any name a certificate can hold)."""
    from certkit.errors import InvalidName
    from certkit.names import parse_host
    from certkit.names_notation import refuse_surrounding_space
    from certkit.text import shown, unseen

    if not name.strip():
        what = "host name or IP address" if purpose != "client" else "name (CN, email, URI or DNS name)"
        raise InvalidName(f"--name '{shown(name)}' is blank; give the {what} to check.")
    refuse_surrounding_space(name, f"--name '{shown(name)}'")
    if (bad := unseen(name)) is not None:
        raise InvalidName(f"--name '{shown(name)}' contains {bad}, which no name in a certificate holds.")
    if purpose != "client":  # a server's, and a peer's (a server too)
        try:
            parse_host(name)
        except InvalidName as exc:
            from certkit.errors import cli_text

            raise InvalidName(f"--name: {cli_text(exc)}") from None


# --- probe --------------------------------------------------------------------------
class _Seconds(click.FloatRange):
    """A number of seconds written in the digits 0 to 9 (float() also reads '１', '1_0', 'nan' and 'inf')."""

    def convert(self, value, param, ctx):
        import re

        from certkit.text import shown

        if isinstance(value, str) and not re.fullmatch(r"[ \t]*\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)[ \t]*", value):
            self.fail(f"'{shown(value)}' is not a number of seconds in the digits 0 to 9.", param, ctx)
        return super().convert(value, param, ctx)


def _finite(ctx, param, value):
    # click's FloatRange lets NaN through (every comparison with NaN is false).
    if value is not None and value != value:
        raise click.BadParameter("nan is not a number of seconds.")
    return value


@click.command("probe")
@click.argument("url")
@click.option("--ca-file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Verify the server against the CA certificate(s) in this PEM file.")
@click.option("--ca-dir", type=ExistingPath(path_type=Path, file_okay=False),
              help="Verify the server against this certkit CA directory [default, without --ca-file: the "
                   "system trust store; $CERTKIT_CA_DIR is not used, since servers on the internet are probed too].")
@click.option("--cert", "cert_file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Also try this client certificate (cert.pem or fullchain.pem) ...")
@click.option("--key", "key_file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="... with this key (privkey.pem, unencrypted).")
@click.option("--bundle", type=ExistingPath(path_type=Path, file_okay=False),
              help="Also try the client certificate in this bundle folder (fullchain.pem and privkey.pem).")
@click.option("--timeout", type=_Seconds(0.5, 120), default=10.0, show_default=True, callback=_finite,
              help="Seconds to wait for the connection, the handshake and the answer.")
@json_option
def probe(url, ca_file, ca_dir, cert_file, key_file, bundle, timeout, as_json):
    """Say what a live TLS server presents and what it asks of clients.

    URL is https://HOST[:PORT][/PATH] (port 443 by default). probe connects
    without a client certificate and reports the chain the server sends
    (who issued each certificate, its names, what it may be used for, when
    it expires), whether it verifies against the CA (--ca-file, --ca-dir)
    or the system trust store and names HOST, and whether the server asks
    for a client certificate, with the CA names it accepts. It then sends
    one HTTP request, to see what the server does without a certificate.

    With --cert/--key (or --bundle) it connects again presenting that
    client certificate and says whether the server accepts it: from a real
    handshake and an HTTP round trip, since in TLS 1.3 a refused client
    certificate shows only on the first read.

    Exit 0 when the server's certificate is valid for HOST (and the client
    certificate given, if any, is accepted); 1 otherwise, after the report.
    With a client certificate given, also 1 when the server never asks for
    one, or answers an HTTP error (4xx, 5xx) that does not say whether it
    accepts it, or gives no HTTP answer at all; without one, only the
    server's certificate decides.

    \b
    Examples:
      certkit probe https://localhost:8443/ --ca-file ca/ca.pem
      certkit probe https://localhost:8443/ --ca-dir ./ca --bundle alice/
      certkit probe https://localhost:8443/ --ca-file ca.pem --cert alice/cert.pem --key alice/privkey.pem
      certkit probe https://example.com --json
    """
    from certkit.probe import ClientFiles, render
    from certkit.probe import probe as run_probe
    from certkit.probe_client_verdict import client_problem
    from certkit.probe_report import server_problem

    if ca_file is not None and ca_dir is not None:
        raise click.UsageError("Give either --ca-file or --ca-dir, not both.")
    if bundle is not None and (cert_file is not None or key_file is not None):
        raise click.UsageError("Give either --bundle or --cert/--key, not both.")
    if (cert_file is None) != (key_file is None):
        raise click.UsageError("--cert and --key go together.")
    client = ClientFiles.from_bundle(bundle) if bundle is not None else \
        ClientFiles(cert_file, key_file) if cert_file is not None else None
    result = run_probe(url, ca_file=ca_file, ca_dir=ca_dir, client=client, timeout=timeout)
    emit(as_json, result.to_dict(), render(result))
    problems = [p for p in (server_problem(result), client_problem(result)) if p is not None]
    if problems:
        raise Failed(f"{result.target.label}: {'; '.join(problems)}.")
