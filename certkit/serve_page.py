"""What ``certkit serve`` answers: the teaching page, and the same facts as text and JSON.

The page puts side by side the two certificates of a mutual-TLS connection: the one the browser checked (the
server's, ``serverAuth``) and the one the server checked (the visitor's, ``clientAuth``), each with the rule that
was applied and why a certificate of the other kind would have been refused. With ``serve --optional`` it also
explains a missing certificate (and how to import ``bundle.p12`` into a browser) or a refused one (the reasons).

The page is one self-contained HTML document: inline CSS (light and dark
through ``prefers-color-scheme``), no script, no external asset and no link
off the page, so it works offline and from any address. Every string taken
from a certificate or a request header is escaped twice over: control
characters made visible (:func:`certkit.text.shown`), then HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certkit.serve_json import (  # noqa: F401 (as_json, as_text: serve_page answers in three forms)
    as_json,
    as_text,
    dated_rows,
    proxied_by,
    proxy_note,
    status_of,
    text_time,
    time_problem,
)
from certkit.text import shown
from certkit.vocabulary import colons

if TYPE_CHECKING:
    from certkit.serve import InventoryVerdict, PeerIdentity

# Where the page points for the whole story: paths in certkit's source tree. A link would not
# resolve (the page is served from https://localhost:PORT/, and works offline), so it names them.
DOCS_SWAP = "docs/mtls.md, section 7 \u201cSwap the certificates\u201d"
DOCS_DEMO = "docs/demo.md"
DOCS_SERVE = "docs/serve.md"


@dataclass(frozen=True)
class Visit:
    """What the server concluded about one connection's client certificate."""

    client: "PeerIdentity | None"  # the certificate presented, if any
    refused: list[str]  # why the presented certificate is not accepted, in words; empty when accepted
    optional: bool  # serve --optional: connections without (or with a refused) certificate get this far
    # The lines of the rule the certificate breaks, from facts (OpenSSL's error codes, its dates and EKU, the
    # inventory's verdict), never from the words of ``refused``: "ca", "time", "purpose", "revoked", "unrecorded".
    failed: frozenset[str] = frozenset()
    inventory: "InventoryVerdict | None" = None  # what the serving CA's inventory said, when it was read
    # How a failed line fails, in certkit verify's words, where known (serve_optional.rule_causes): "ca", "purpose"
    causes: dict[str, str] = field(default_factory=dict)
    chain: tuple[str, ...] = ()  # the CAs above the certificate as the handshake verified it: its issuer first
    supplied: tuple[str, ...] = ()  # of those, the intermediate CAs the client did not send, which serve supplied
    proxied: str | None = None  # the request's proxy header (serve_json.proxied_by): a proxy ended the TLS

    @property
    def authenticated(self) -> bool:
        return self.client is not None and not self.refused

    def through(self, headers) -> "Visit":
        """This connection's visit, for one request on it: with the proxy header it carries, if any."""
        from dataclasses import replace

        return replace(self, proxied=proxied_by(headers))


@dataclass(frozen=True)
class ServerFacts:
    """What the page says about the server side: its certificate and whom it lets in."""

    certificate: "PeerIdentity | None"  # the server's own certificate, as the browser received it
    client_ca: str  # the CA(s) whose client certificates are accepted, by name
    revocation: bool = False  # revoked client certificates are refused (the CA's inventory; serve.InventoryRevocations)
    revocation_ca: str | None = None  # the CA whose inventory is read, by name (when revocation is checked)
    unchecked: str = "this server reads no inventory of that CA"  # why revocation is not checked, when it is not
    trusted: tuple[str, ...] = ()  # the intermediate CAs the handshake trusts too (the CA's inventory records them)
    self_issued: bool = False  # serve issued it itself, for a day; it cannot renew it (it keeps no CA key)
    # What the CA's inventory records against its chain now, as sentences ("it was revoked on ..."); never raises
    withdrawn: Callable[[], list[str]] = list
    chain_dates: Callable[[], list[str]] = list  # the CAs of the chain it sends out of their dates now, named


def _e(value: object) -> str:
    return html.escape(shown(value))


# --- the page -----------------------------------------------------------------------
_CSS = """
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #ffffff; --ink: #1d2330; --soft: #5b6475;
  --line: #dde1e8; --server: #1f6feb; --client: #1a7f37; --bad: #b42318; --badbg: #fdecea; --code: #eef1f5; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #11151c; --card: #1a2029; --ink: #e6e9ef; --soft: #a3acbb; --line: #2c3440;
    --server: #58a6ff; --client: #3fb950; --bad: #ff7b72; --badbg: #3a1d1d; --code: #232b36; }
}
* { box-sizing: border-box; } p { margin: 4px 0; } .lead { color: var(--soft); max-width: 860px; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1140px; margin: 0 auto; padding: 18px 24px 32px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; } h2 { font-size: 1.2rem; margin: 0; }
h3 { font-size: .85rem; margin: 12px 0 2px; text-transform: uppercase; letter-spacing: .04em; color: var(--soft); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; margin-top: 14px; }
@media (max-width: 800px) { .pair { grid-template-columns: 1fr; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px;
  border-top: 6px solid var(--accent); }
.server { --accent: var(--server); } .client { --accent: var(--client); } .refusedcard { --accent: var(--bad); }
.role { display: inline-block; margin: 6px 0 2px; padding: 2px 10px; border-radius: 999px; font-weight: 600;
  color: var(--accent); border: 1px solid var(--accent); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 14px; margin: 8px 0 0; }
dt { color: var(--soft); } dd { margin: 0; overflow-wrap: anywhere; } dd.mono { font-size: .85em; }
.more { display: block; margin-top: 2px; color: var(--soft); font-size: .92em; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .9em; }
code { background: var(--code); padding: 1px 5px; border-radius: 4px; }
ul.rule { margin: 4px 0; padding-left: 20px; } ul.rule li.failed { color: var(--bad); font-weight: 600; }
.why { margin-top: 10px; padding: 6px 12px; border-left: 4px solid var(--bad); background: var(--badbg); }
.reasons { color: var(--bad); font-weight: 600; }
ol.howto { padding-left: 20px; margin: 4px 0; } ol.howto li { margin: 4px 0; }
footer { margin-top: 16px; color: var(--soft); font-size: .92rem; max-width: 900px; }
"""


_MONO = ("Serial", "SHA-256")


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<dt>{_e(k)}</dt><dd{' class=mono' if k in _MONO else ''}>{_e(v)}</dd>" for k, v in pairs)


def _subject_row(identity: "PeerIdentity") -> list[tuple[str, str]]:
    """The subject, unless it only repeats the common name shown already."""
    return [] if identity.subject == f"CN={identity.common_name}" else [("Subject", identity.subject)]


def _purpose_problem(cert: "PeerIdentity") -> str | None:
    """Why TLS clients do not take ``cert`` for a server, from its extendedKeyUsage, and who refuses it (HTML);
    None when they do: it has serverAuth, or no extendedKeyUsage at all, which TLS reads as any purpose."""
    if not cert.eku or "serverAuth" in cert.eku:
        return None
    if set(cert.eku) == {"anyExtendedKeyUsage"}:  # browsers differ on it; OpenSSL's verdict is certain
        return ("has only <code>anyExtendedKeyUsage</code> as its extendedKeyUsage: OpenSSL (curl, Python) refuses "
                "that for a TLS server")
    return (f"has only <code>{_e(', '.join(cert.eku))}</code> as its extendedKeyUsage, without "
            "<code>serverAuth</code>: TLS clients refuse it unless told to go on")


def _server_card(server: ServerFacts, host: str | None, now: dt.datetime | None = None) -> str:
    cert = server.certificate
    where = f"<code>{_e(host)}</code>" if host else "the host in the address bar"
    if cert is None:
        facts = "<p>(This server could not read its own certificate back.)</p>"
        issuer = "a CA your browser trusts"
    else:
        facts = "<dl>" + _rows([
            ("Names", ", ".join(cert.sans) or "(none)"),
            *_subject_row(cert),
            ("Signed by", cert.issuer),
            ("Usage (EKU)", ", ".join(cert.eku) or "(none)"),
            *([("Valid from", text_time(cert.not_before))] if cert.not_before else []),
            *[(label.capitalize(), words) for label, words in dated_rows(cert) if label != "valid from"],
            ("Serial", cert.serial),
        ]) + "</dl>"
        issuer = f"<code>{_e(cert.issuer)}</code>"
    named = cert is None or not host or names_host(cert, host)
    withdrawn = server.withdrawn() if cert is not None else []
    return f"""
<section class="card server" id="server-card">
  <h2>The certificate your browser checked</h2>
  <p>The <strong>server\u2019s</strong> certificate: {_claim(cert, host, where, now, withdrawn)}.</p>
  <span class="role">serverAuth: TLS server authentication</span>
  {facts}
  <h3>The rule your browser applied</h3>
  <ul class="rule">
    <li>signed by {issuer}, a CA your browser trusts or one whose chain leads to a CA it trusts
    (the root CA you imported from <code>ca.pem</code>)</li>
    {_time_rule(server, now)}
    <li{'' if named else ' class="failed"'}>{_name_rule(cert, host, where)}</li>
    {_purpose_rule(cert)}
    {"".join(f'<li class="failed">not revoked; <strong>{_e(w)}</strong>: {_NO_CRL}</li>' for w in withdrawn)}
  </ul>
  <p class="why">A client certificate here would be refused because its extendedKeyUsage is
  <code>clientAuth</code> only: a browser accepts a server only with a certificate for <code>serverAuth</code>.
  <span class="more">Why: <code>{_e(DOCS_SWAP)}</code> (see below)</span></p>
</section>"""


_REFUSES = "a browser refuses it unless told to go on"
_NO_CRL = ("your browser took it, since the certificate names no CRL it could check; a client given the CA\u2019s "
           "CRL (<code>certkit crl</code>) refuses it")
_NOT_READ_BACK = " (not known here: this server could not read its certificate back)"


def _time_rule(server: ServerFacts, now: dt.datetime | None) -> str:
    """The time line of the rule, true of this certificate at this request, by this server's clock."""
    cert = server.certificate
    if cert is None:
        return f"<li>valid now, not expired{_NOT_READ_BACK}</li>"
    if (problem := time_problem(cert, now)) is None:
        since = f"from {_e(text_time(cert.not_before))} " if cert.not_before else ""
        until = _e(text_time(cert.not_after))
        return f"<li>valid now, by this server\u2019s clock ({since}until {until}): not expired</li>"
    renew = (" (serve issued it for one day and does not renew it: restart <code>certkit serve</code>)"
             if server.self_issued and problem.startswith("expired") else "")
    return f'<li class="failed">valid now, not expired; <strong>it {_e(problem)}</strong>: {_REFUSES}{renew}</li>'


def _purpose_rule(cert: "PeerIdentity | None") -> str:
    """The purpose line of the rule, true of this certificate's extendedKeyUsage."""
    if cert is None:
        return f"<li>its extendedKeyUsage includes <code>serverAuth</code>{_NOT_READ_BACK}</li>"
    if "serverAuth" in cert.eku:
        return "<li>its extendedKeyUsage includes <code>serverAuth</code></li>"
    if not cert.eku:  # TLS takes a certificate without the extension for any purpose
        return ("<li>it has no extendedKeyUsage, which TLS clients accept for any purpose, so <code>serverAuth</code> "
                "too (certkit issues server certificates with <code>serverAuth</code>)</li>")
    return f'<li class="failed">its extendedKeyUsage includes <code>serverAuth</code>; it {_purpose_problem(cert)}</li>'


def _claim(cert: "PeerIdentity | None", host: str | None, where: str, now: dt.datetime | None = None,
           withdrawn: list[str] | None = None) -> str:
    """What the server's certificate proves about the name the client connected to: that the server
    is that name only when the certificate names it, is valid now, is for a TLS server and was not revoked
    (else only a client told to go on, or one that cannot know of the revocation, got here)."""
    if cert is None:
        return f"it should prove that this server is {where}"
    if host and not names_host(cert, host):
        return f"it does <strong>not</strong> name {where}, so it does not prove that this server is {where}"
    time = time_problem(cert, now)
    problems = [f"{_e(time)}: {_REFUSES}" if time else "", _purpose_problem(cert) or "",
                *(f"cannot be trusted any more: <strong>{_e(w)}</strong>" for w in withdrawn or [])]
    if any(problems):
        return f"it would prove that this server is {where}, but it {'; and it '.join(p for p in problems if p)}"
    return f"it proves that this server is {where}"


def names_host(cert: "PeerIdentity", host: str) -> bool:
    """Whether a DNS or IP name of ``cert`` covers ``host`` (a wildcard covers one label)."""
    wanted = host.lower().rstrip(".").strip("[]")
    for san in cert.sans:
        kind, _, value = san.partition(":")
        value = value.lower()
        if kind in ("DNS", "IP") and (value == wanted or (kind == "DNS" and value.startswith("*.")
                                                          and wanted.partition(".")[2] == value[2:])):
            return True
    return False


def _name_rule(cert, host: str | None, where: str) -> str:
    """The name line of the rule, true of this certificate: a name it holds matches the name the
    client connected to, or (a visitor who told the browser to go on) none does."""
    if cert is None or not host or names_host(cert, host):
        return f"one of its names is {where}, the name you connected to"
    return (f"one of its names is the name you connected to; <strong>none is</strong> {where} (it names "
            f"{_e(', '.join(cert.sans) or 'nothing')}): a browser refuses it unless told to go on")


_WHY_NOT_SERVER = (
    '<p class="why">A server certificate here would be refused because its extendedKeyUsage is '
    "<code>serverAuth</code> only: signed by the same CA or not, it does not prove a client (OpenSSL: "
    "\u201cunsuitable certificate purpose\u201d), or whoever holds a web server\u2019s key could log in as it."
    f'<span class="more">Why: <code>{_e(DOCS_SWAP)}</code> (see below)</span></p>')


def _client_card(visit: Visit, server: ServerFacts) -> str:
    from certkit.serve_client_rule import _client_rule  # when called: that module reads this one's escaping (_e)

    cert = visit.client
    if cert is None:
        return _no_certificate_card(server)
    facts = "<dl>" + _rows([
        ("Identity (CN)", cert.common_name or "(none)"),
        *_subject_row(cert),
        ("Other identities", ", ".join(cert.sans) or "(none)"),
        ("Signed by", cert.issuer),
        ("Usage (EKU)", ", ".join(cert.eku) or "(none)"),
        *[(label.capitalize(), words) for label, words in dated_rows(cert)],
        ("Serial", cert.serial),
        ("SHA-256", colons(cert.fingerprint_sha256)),
        ("TLS", cert.tls_version or "?"),
    ]) + "</dl>"
    if visit.authenticated:
        return f"""
<section class="card client" id="client-card">
  <h2>The certificate the server checked</h2>
  <p><strong>Your</strong> certificate: it proves who you are.</p>
  <span class="role">clientAuth: TLS client authentication</span>
  {facts}
  {_client_rule(server, visit)}
  {_WHY_NOT_SERVER}
</section>"""
    reasons = "".join(f"<li>{_e(r)}</li>" for r in visit.refused)
    return f"""
<section class="card client refusedcard" id="client-card">
  <h2>The certificate the server checked</h2>
  <p>Your browser sent this certificate, and <strong>the server refused it</strong>:</p>
  <ul class="reasons" id="refused">{reasons}</ul>
  <span class="role">needed: clientAuth, TLS client authentication</span>
  {facts}
  {_client_rule(server, visit)}
  {_WHY_NOT_SERVER}
  {_after_handshake(visit)}
</section>"""


_OPTIONAL_ONLY = ("<p>Without <code>--optional</code> this server would have ended the handshake, and your browser "
                  "would show only its own error page; this page is here to say why.</p>")
_AFTER_HANDSHAKE = ("<p>The handshake accepted this certificate (the CA signed it, and it is in date); revocation is "
                    "checked after it, in the CA’s inventory, so this server answers with this page. nginx, "
                    "HAProxy or PostgreSQL refuse it once they are given a CRL that lists it: "
                    "<code>certkit crl --out crl.pem</code>, then <code>ssl_crl</code>, <code>crl-file</code> or "
                    "<code>ssl_crl_file</code>.</p>")


def _after_handshake(visit: Visit) -> str:
    unread = visit.inventory is not None and visit.inventory.unread  # nothing recorded: no CRL advice
    return _INVENTORY_UNREAD if unread else _AFTER_HANDSHAKE if "revoked" in visit.failed else \
        _UNRECORDED if "unrecorded" in visit.failed else _OPTIONAL_ONLY if visit.optional else ""


_INVENTORY_UNREAD = ("<p>The handshake accepted this certificate (the CA signed it, and it is in date); this server "
                     "then asks the CA’s inventory whether it was revoked, and could not read it, so it refuses every "
                     "client until it can: restore the inventory from a backup, or start its database. Nothing says "
                     "this certificate was revoked.</p>")
_UNRECORDED = ("<p>The handshake accepted this certificate (the CA’s key signed it, and it is in date); this "
               "server also asks the CA’s inventory, which has no record of it, so it refuses it. It is not "
               "revoked: no CRL from <code>certkit crl</code> lists it, and nginx, HAProxy or PostgreSQL given that "
               "CRL accept it. Issue certificates with certkit, or restore the inventory that recorded it.</p>")


def _make_it(server: ServerFacts) -> str:
    """How to make the bundle: with this CA directory's CA, or, for another CA's clients (--client-ca), with that CA's
    (a certificate this CA directory issues is refused here)."""
    if server.revocation:
        return "Make it with <code>certkit issue-client NAME --p12</code>"
    return (f"This server takes the client certificates of <code>{_e(server.client_ca)}</code> alone "
            "(<code>--client-ca</code>), not those of the CA in its CA directory: make it with that CA, "
            "<code>certkit issue-client NAME --p12 --ca-dir ITS_FOLDER</code>")


def _no_certificate_card(server: ServerFacts) -> str:
    return f"""
<section class="card client refusedcard" id="client-card">
  <h2>The certificate the server checked</h2>
  <p id="none"><strong>None: your browser sent no client certificate.</strong> The server asked for one
  (from <code>{_e(server.client_ca)}</code>); your browser had none from that CA, or you chose not to send one.</p>
  <span class="role">needed: clientAuth, TLS client authentication</span>
  <p>This server runs with <code>--optional</code>, so it let the connection through to tell you. A server that
  requires client certificates (certkit serve without <code>--optional</code>, nginx with
  <code>ssl_verify_client on</code>) ends the handshake instead, and Chromium shows
  <code>ERR_BAD_SSL_CLIENT_AUTH_CERT</code>.</p>
  <h3>How to send one: import your <code>bundle.p12</code></h3>
  <p>{_make_it(server)}, or, for a certificate issued already,
  <code>certkit export-p12 FOLDER</code> with the folder issue-client wrote (<code>certkit export-p12 alice</code>
  for <code>alice/</code>); it holds your certificate, its key and the CA. Then:</p>
  <ol class="howto">
    <li><strong>Chromium / Chrome on Linux</strong>: Settings \u2192 Privacy and security \u2192 Security \u2192
      Manage certificates \u2192 Your certificates \u2192 Import, or
      <code>mkdir -p $HOME/.pki/nssdb &amp;&amp; pk12util -d sql:$HOME/.pki/nssdb -i bundle.p12</code> (the folder
      is Chromium\u2019s certificate database, made when it first runs).</li>
    <li><strong>Firefox</strong>: Settings \u2192 Privacy &amp; Security \u2192 Certificates \u2192 View
      Certificates \u2192 Your Certificates \u2192 Import.</li>
    <li><strong>macOS</strong> (Safari, Chrome): double-click <code>bundle.p12</code>; Keychain Access adds it
      to the login keychain.</li>
    <li><strong>Windows</strong> (Edge, Chrome): double-click <code>bundle.p12</code>; the Certificate Import
      Wizard puts it in Current User \u2192 Personal.</li>
  </ol>
  <p>Each asks for the bundle\u2019s password. If an older system says the password is wrong although it is not,
  write the file again with the encryption it knows: <code>certkit export-p12 FOLDER --legacy --force</code>.
  Then restart the browser (Chromium remembers \u201cno certificate\u201d
  for a site until then) and reload: it asks which certificate to send.</p>
</section>"""


def _proxied(visit: Visit) -> str:
    return f'\n<p class="why" id="proxied">{_e(proxy_note(visit.proxied))}</p>' if visit.proxied else ""


def render_page(visit: Visit, server: ServerFacts, host: str | None = None, now: dt.datetime | None = None) -> str:
    """The whole HTML page for one request. ``host`` is the name the client connected to, the one
    it checked the server's certificate against: the connection's TLS SNI name, or without SNI the
    address it reached (:meth:`certkit.serve.IdentityServer.name_connected_to`); never the HTTP Host
    header, which any client sets to anything. ``now`` (default: the request's moment) judges the server
    certificate's dates."""
    if visit.authenticated:
        who = visit.client.common_name or visit.client.subject
        title, heading = f"certkit serve: {_e(who)}", f'Hello, <span id="cn">{_e(who)}</span>'
        lead = ("This connection used <strong>mutual TLS</strong>: each side showed a certificate and the other "
                "side checked it. The same CA may sign both; one extension tells them apart, extendedKeyUsage: "
                "<code>serverAuth</code> for a server, <code>clientAuth</code> for a client.")
    elif visit.client is None:
        title, heading = "certkit serve: no client certificate", "No client certificate was sent"
        lead = ("Your browser checked the server\u2019s certificate, but showed none of its own, so this server "
                "does not know who you are.")
    else:
        title, heading = "certkit serve: certificate refused", "Your certificate was not accepted"
        lead = ("Your browser showed a certificate, but it does not pass the rule this server applies to "
                "clients. The reason is on the right.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>{_CSS}</style>
</head><body><main>
<h1>{heading}</h1>
<p class="lead">{lead}</p>{_proxied(visit)}
<div class="pair">
{_server_card(server, host, now)}
{_client_card(visit, server)}
</div>
<footer>
<p>The whole story: <code>{_e(DOCS_SWAP)}</code>, and <code>{_e(DOCS_DEMO)}</code>, in certkit\u2019s source
(the <code>docs</code> folder). This page links to nothing outside itself, so that it works offline; open those files
from your copy of certkit, or run <code>certkit demo</code> to watch each refusal happen in a real handshake.</p>
<p>For scripts: the same answer as JSON with <code>?format=json</code>, as text with <code>?format=text</code>.</p>
</footer>
</main></body></html>
"""
