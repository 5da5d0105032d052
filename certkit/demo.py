"""The worked example of client versus server certificates, run for real.

:func:`run_demo` creates a CA, a server certificate and client certificates
(plus a second CA, an expired client certificate, a client certificate that
also names ``localhost`` and a peer certificate with both usages, certkit's one
exception), writes them into a folder, then runs one loopback
TLS handshake per scenario with :mod:`certkit.tlscheck` and records what
OpenSSL said. Each scenario states the outcome it expects; a scenario whose
observed outcome differs (or, refused, is refused by the other side or for another reason) is
reported, and ``certkit demo`` exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.text import shown

SERVER_NAMES = ("localhost", "127.0.0.1")
WRONG_HOSTNAME = "www.example.com"

GROUP_SERVER = "The server requires a client certificate"
GROUP_CLIENT = "The client verifies the server's certificate"
GROUP_PEER = "The one exception: a peer certificate (serverAuth and clientAuth) on either side"
GROUPS = (GROUP_SERVER, GROUP_CLIENT, GROUP_PEER)

# Why a certificate from the wrong side fails, in one line under the table.
EXPLANATION = (
    "Why: a client certificate carries extendedKeyUsage clientAuth, a server certificate serverAuth. "
    "OpenSSL checks that usage on each side (\"unsuitable certificate purpose\"), so neither can stand "
    "in for the other, even when the same CA signed both and the name matches."
)

# Why the exception stays one, in one sentence under the peer rows.
PEER_EXPLANATION = (
    "Why certkit still prefers two certificates: whoever holds a peer certificate's key can act as the "
    "server and as a client, so where the system takes a separate client certificate (Redis "
    "tls-client-cert-file, etcd 3.5 and later --peer-client-cert-file) each member gets a server and a "
    "client certificate instead (docs/peers.md)."
)

# The folders written, one per certificate: what each holds, for the summary.
FOLDERS = {
    "ca": "the demo CA's certificate (ca.pem); both sides trust it",
    "server": "server certificate for localhost, 127.0.0.1 (serverAuth)",
    "client": "client certificate for CN=alice (clientAuth)",
    "other-ca-client": "client certificate for CN=eve from a second, untrusted CA",
    "expired-client": "client certificate for CN=bob that expired 10 days ago",
    "client-localhost": "client certificate for CN=device-1 that also names localhost (clientAuth only)",
    "peer": "peer certificate for localhost, 127.0.0.1 (serverAuth and clientAuth: certkit issue-peer)",
}


@dataclass
class DemoRow:
    """One scenario: what was presented, what should happen, what did."""

    group: str
    scenario: str
    expected: str  # "accepted" | "rejected"
    observed: str  # "accepted" | "rejected"
    reason: str  # OpenSSL's words from the side that refused, or "ok"
    expected_reason: str  # a fragment the reason should contain, e.g. "unsuitable certificate purpose"
    explanation: str  # the lesson of this row in plain words
    tls_version: str | None = None
    server_error: str | None = None
    client_error: str | None = None
    # For a row expected accepted: the certificate it is about, as the other side must receive it (its subject
    # and extendedKeyUsage, :func:`described`), and the one that side received
    expected_certificate: str | None = None
    received_certificate: str | None = None

    @property
    def refused_by(self) -> str | None:
        """The side whose own check must refuse a row expected rejected: the server's rows are refused by
        the server, the client's by the client; None for a row expected accepted."""
        if self.expected != "rejected":
            return None
        return "server" if self.group == GROUP_SERVER else "client"

    @property
    def as_expected(self) -> bool:
        """The outcome expected, and for a refusal the expected reason, from the expected side: a row
        refused for another reason (an expired server certificate refused by the client, where the server
        was to refuse a client certificate's purpose) proves nothing of what the row says."""
        if self.observed != self.expected:
            return False
        if self.refused_by is None:  # accepted: with the certificate the row is about, not another that passes
            return self.expected_certificate is None or self.received_certificate == self.expected_certificate
        own = self.server_error if self.refused_by == "server" else self.client_error
        return own is not None and self.expected_reason.lower() in own.lower()

    @property
    def mismatch(self) -> str:
        """What differs from the expected, in words (for a row not as expected)."""
        if self.observed != self.expected:
            return f"expected {self.expected}, observed {self.observed} ({self.reason})"
        if self.refused_by is None:
            return (f"expected accepted with {self.expected_certificate}, observed accepted with "
                    f"{self.received_certificate}")
        found = "; ".join(f"the {side} said: {said}" for side, said in (("server", self.server_error),
                                                                     ("client", self.client_error)) if said)
        return (f"expected {self.expected} by the {self.refused_by} ({self.expected_reason}), observed "
                f"{self.observed} for another reason ({found})")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["as_expected"] = self.as_expected
        data["expected_refused_by"] = self.refused_by
        return data


@dataclass
class DemoResult:
    folder: Path
    kept: bool
    tls: str | None
    rows: list[DemoRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.as_expected for r in self.rows)

    @property
    def mismatches(self) -> list[DemoRow]:
        return [r for r in self.rows if not r.as_expected]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "tls_version": self.tls or "default",
            "folder": str(self.folder) if self.kept else None,
            "files": {name: str(self.folder / name) for name in FOLDERS} if self.kept else None,
            "rows": [r.to_dict() for r in self.rows],
            "explanation": EXPLANATION,
            "peer_explanation": PEER_EXPLANATION,
        }


def _check_target(folder: Path) -> None:
    from certkit.paths import check_folders_above, refuse_controlled_above

    check_folders_above(folder, "demo folder")
    refuse_controlled_above(folder, "demo folder")  # said of the folder given, not of its temporary name
    if folder.is_symlink():  # to nothing, or to a folder: said as every command that writes says it
        raise UnsafeOutputPath(f"The demo folder {shown(folder)} is a symbolic link; certkit does not write through "
                               "links. Give the real path.")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputExists(
            f"{folder} already exists and is not an empty folder; the demo writes only into a new "
            "or empty folder. Choose another folder.", replaceable=False
        )


@contextmanager
def _whole_folder(folder: Path) -> Iterator[Path]:
    """The folder to fill with the demo's files, whole or not at all. A new one is assembled under a
    temporary name and renamed into place (the folders above it created for it are removed if
    that fails); an existing empty one is filled, and emptied again if that fails."""
    from certkit.atomic import new_folder, remove_tree, unlink_quietly

    if not folder.is_dir():
        with new_folder(folder) as staging:
            yield staging
        return
    try:
        yield folder
    except BaseException:
        for entry in os.scandir(folder):  # it was empty: everything in it is the demo's
            if entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            else:
                unlink_quietly(Path(entry.path))
        raise


def make_certificates(folder: Path) -> None:
    """Create the demo's CAs and certificates and write one bundle folder per certificate into
    ``folder``, a new or empty one: whole, or (on any failure) not at all."""
    from certkit.bundle import write_new_file
    from certkit.ca import CA

    now = dt.datetime.now(dt.UTC)
    # Backdated so it can have issued a client certificate that has since expired.
    ca = CA.create("certkit demo CA", days=365, not_before=now - dt.timedelta(days=30))
    other = CA.create("another CA (not trusted)", days=365)
    try:
        with _whole_folder(folder) as target:
            try:
                (target / "ca").mkdir(mode=0o755)  # not the umask's 0777 (umask 000): no folder others write to
                write_new_file(target / "ca" / "ca.pem", ca.cert_pem, 0o644)
                ca.issue_server(SERVER_NAMES).write(target / "server")
                ca.issue_client("alice").write(target / "client")
                other.issue_client("eve").write(target / "other-ca-client")
                ca.issue_client("bob", not_before=now - dt.timedelta(days=20), days=10).write(target / "expired-client")
                # It names localhost, so when presented as a server certificate the only thing wrong is its purpose.
                ca.issue_client("device-1", dns_names=["localhost"]).write(target / "client-localhost")
                ca.issue_peer(SERVER_NAMES).write(target / "peer")
            except CertkitError as exc:  # a bundle's words name the temporary folder it was assembled in
                if target != folder and exc.args and isinstance(exc.args[0], str):
                    exc.args = (exc.args[0].replace(shown(target), shown(folder)).replace(str(target), str(folder)),
                                *exc.args[1:])
                raise
    except OSError as exc:  # the folder given, not a temporary name in it, nor no name at all (a failed write())
        from certkit.bundle import os_reason

        raise CertkitError(f"Cannot write the demo's certificates in {shown(folder)}: {os_reason(exc)}; nothing "
                           "was kept.") from None


def run_handshakes(folder: Path, tls: str | None = None) -> list[DemoRow]:
    """Run every scenario against the certificates :func:`make_certificates` wrote in ``folder``."""
    from certkit.testhooks import pause_at
    from certkit.tlscheck import Endpoint, client_context, handshake, server_context

    pause_at("handshakes")

    def ep(name: str) -> Endpoint:
        return Endpoint(folder / name / "fullchain.pem", folder / name / "privkey.pem")

    ca_file = folder / "ca" / "ca.pem"
    rows: list[DemoRow] = []
    server_ctx = server_context(ep("server"), ca_file, version=tls)
    purpose = "unsuitable certificate purpose"
    server_side = [
        ("client certificate (CN=alice)", "client", "accepted", "ok",
         "clientAuth, signed by the CA the server trusts: the server lets alice in"),
        ("server certificate presented as client", "server", "rejected", purpose,
         "its extendedKeyUsage is serverAuth only; the server wants clientAuth"),
        ("no certificate", None, "rejected", "did not return a certificate",
         "the server requires one, as nginx does with ssl_verify_client on"),
        ("client certificate from another CA", "other-ca-client", "rejected", "unable to get local issuer",
         "right purpose, but signed by a CA the server does not trust"),
        ("expired client certificate (CN=bob)", "expired-client", "rejected", "certificate has expired",
         "right purpose and CA, but past its notAfter date"),
    ]
    for scenario, client, expected, fragment, why in server_side:
        result = handshake(server_ctx, client_context(ca_file, ep(client) if client else None, version=tls))
        rows.append(_row(GROUP_SERVER, scenario, expected, fragment, why, result))

    # The client side: no client certificate is asked for, only the server's is checked.
    plain_server = server_context(ep("server"), None, require_client_cert=False, version=tls)
    swapped_server = server_context(ep("client-localhost"), None, require_client_cert=False, version=tls)
    client_side = [
        ("server certificate, right name (localhost)", plain_server, "localhost", "accepted", "ok",
         "serverAuth and the name the client asked for is in its subjectAltName"),
        (f"wrong hostname ({WRONG_HOSTNAME})", plain_server, WRONG_HOSTNAME, "rejected", "hostname mismatch",
         "the certificate names localhost and 127.0.0.1 only"),
        ("client certificate presented as server", swapped_server, "localhost", "rejected", purpose,
         "it names localhost, but its extendedKeyUsage is clientAuth only"),
    ]
    for scenario, ctx, hostname, expected, fragment, why in client_side:
        result = handshake(ctx, client_context(ca_file, None, version=tls), server_hostname=hostname)
        rows.append(_row(GROUP_CLIENT, scenario, expected, fragment, why, result))

    # The exception: one certificate both sides accept, against the same checks that refused the
    # swapped certificates above.
    peer_server = server_context(ep("peer"), None, require_client_cert=False, version=tls)
    result = handshake(peer_server, client_context(ca_file, None, version=tls), server_hostname="localhost")
    rows.append(_row(GROUP_PEER, "peer certificate presented as server", "accepted", "ok",
                     "serverAuth and localhost in its subjectAltName: the client takes it as a server", result))
    result = handshake(server_ctx, client_context(ca_file, ep("peer"), version=tls))
    rows.append(_row(GROUP_PEER, "peer certificate presented as client", "accepted", "ok",
                     "clientAuth too: the server that refused the server certificate lets it in", result))
    return rows


# For each row expected accepted: the side that receives the certificate the row is about, and that
# certificate as it must arrive (:func:`described`): a row accepted with another certificate proves nothing.
RECEIVED = {
    "client certificate (CN=alice)": ("server", "CN=alice (clientAuth)"),
    "server certificate, right name (localhost)": ("client", "CN=localhost (serverAuth)"),
    "peer certificate presented as server": ("client", "CN=localhost (serverAuth, clientAuth)"),
    "peer certificate presented as client": ("server", "CN=localhost (serverAuth, clientAuth)"),
}


def described(der: bytes | None) -> str | None:
    """A certificate received in a handshake, as :data:`RECEIVED` names it: its subject and extendedKeyUsage."""
    from cryptography import x509

    from certkit.vocabulary import eku_names

    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    eku = eku_names(cert)
    return f"{cert.subject.rfc4514_string()} ({', '.join(eku) if eku is not None else 'no extendedKeyUsage'})"


def _row(group: str, scenario: str, expected: str, fragment: str, why: str, result) -> DemoRow:
    side, certificate = RECEIVED.get(scenario, (None, None))
    received = described(result.client_cert if side == "server" else result.server_cert) if side else None
    return DemoRow(group, scenario, expected, "accepted" if result.accepted else "rejected", result.reason,
                   fragment, why, result.version, result.server_error, result.client_error, certificate, received)


def run_demo(keep: Path | None = None, tls: str | None = None) -> DemoResult:
    """Create the certificates (in ``keep``, else a temporary folder removed afterwards) and run
    every scenario. ``tls`` pins the protocol version ("1.2" or "1.3")."""
    import tempfile

    if keep is not None:
        keep = Path(keep)
        _check_target(keep)
        make_certificates(keep)
        return DemoResult(keep, True, tls, run_handshakes(keep, tls))
    with tempfile.TemporaryDirectory(prefix="certkit-demo-") as tmp:
        folder = Path(tmp) / "demo"
        make_certificates(folder)
        return DemoResult(folder, False, tls, run_handshakes(folder, tls))


def render(result: DemoResult) -> str:
    """The table a person reads: scenario, expected, observed, OpenSSL's reason."""
    version = f"TLS {result.tls} only" if result.tls else "the highest TLS version both sides support"
    lines = [f"certkit demo: one real TLS handshake per row on 127.0.0.1 ({version}).", ""]
    width = max(len(r.scenario) for r in result.rows)
    for group in GROUPS:
        rows = [r for r in result.rows if r.group == group]
        if not rows:
            continue
        lines.append(group + ":")
        lines.append(f"  {'scenario':<{width}}  {'expected':<8}  {'observed':<8}  reason (OpenSSL)")
        for r in rows:
            mark = "" if r.as_expected else "   <-- NOT AS EXPECTED" + (
                "" if r.observed != r.expected else f" (the {r.refused_by} was to refuse: {r.expected_reason})"
                if r.refused_by else f" (it was {r.received_certificate}, not {r.expected_certificate})")
            reason = f"handshake completed ({r.tls_version})" if r.reason == "ok" else r.reason
            lines.append(f"  {r.scenario:<{width}}  {r.expected:<8}  {r.observed:<8}  {reason}{mark}")
            lines.append(f"      why: {r.explanation}")
        if group == GROUP_PEER:
            lines += textwrap.wrap(PEER_EXPLANATION, 100, break_on_hyphens=False)
        lines.append("")
    done = sum(r.as_expected for r in result.rows)
    lines.append(f"{done} of {len(result.rows)} outcomes as expected.")
    lines += textwrap.wrap(EXPLANATION, 100)
    if result.kept:
        lines += ["", f"Certificates kept in {result.folder}{os.sep}:"]
        lines += [f"  {name + os.sep:<18}{what}" for name, what in FOLDERS.items()]
    return "\n".join(lines)
