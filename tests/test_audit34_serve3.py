"""Round thirty-four, area serve3: serve's advice for an out-of-date certificate of an intermediate, TLS Feature
values cryptography cannot parse, and probe's verdicts against misconfigured openssl s_server peers on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, run_certkit


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found, (pattern, text)
    return found.group(1)


def _serve(cert: Path, key: Path, env: dict, *more):
    return run_certkit("serve", "--host", "127.0.0.1", "--port", "0", "--cert", cert, "--key", key, *more, env=env)


def _serves(cert: Path, key: Path, env: dict, *more) -> None:
    """serve starts with these files: listening, it prints its JSON."""
    served = subprocess.Popen(["certkit", "serve", "--host", "127.0.0.1", "--port", "0", "--json", "--cert", cert,
                               "--key", key, *more], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert served.stdout.readline() == "{\n"
    finally:
        served.terminate()
        served.wait(timeout=30)


# --- 1. serve --cert of an expired certificate an intermediate issued: "with the CA that issued it (CN=...)" --------
def _tier(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A root backdated 30 days (its CA directory found alone) with an intermediate below it, saved as init-ca
    --parent-ca-dir saves one; its environment, the root's folder and the intermediate's."""
    from certkit import CA
    from certkit.store import CADirectory

    from conftest import certkit_env

    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    root, inter = tmp_path / "ca", tmp_path / "inter"
    CADirectory(root).save_new(CA.create("certkit backdated root", not_before=start), PASSPHRASE.encode())
    parent = CADirectory(root).load(PASSPHRASE)
    ca = CA.create("Issuing CA 1", parent=parent, not_before=start, directory=inter)
    CADirectory(inter).save_new(ca, PASSPHRASE.encode(), parent=parent)
    sibling = CA.create("Issuing CA 2", parent=parent, not_before=start, directory=tmp_path / "sibling")
    CADirectory(tmp_path / "sibling").save_new(sibling, PASSPHRASE.encode(), parent=parent)
    return certkit_env(CERTKIT_CA_DIR=str(root), CERTKIT_CA_PASSPHRASE=PASSPHRASE), root, inter


@pytest.mark.parametrize(("issuer", "served_with"), [("inter", "ca"), ("ca", "inter"), ("sibling", "inter")])
def test_serve_advises_a_renew_command_for_an_expired_certificate_of_an_intermediate(
        tmp_path: Path, issuer: str, served_with: str):
    """Before: 'Renew it with the CA that issued it (CN=Issuing CA 1), give a current server certificate', though
    the root's inventory records the intermediate's folder, whose inventory holds the certificate (and the
    intermediate's records its parent's folder, for a certificate the root issued)."""
    from certkit.store import CADirectory

    ca_env, _root, _inter = _tier(tmp_path)
    now = dt.datetime.now(dt.UTC)
    CADirectory(tmp_path / issuer).load(PASSPHRASE).issue_server(
        "localhost", not_before=now - dt.timedelta(days=20), days=10).write(tmp_path / "localhost")
    folder = tmp_path / "localhost"
    proc = _serve(folder / "fullchain.pem", folder / "privkey.pem", ca_env, "--ca-dir", tmp_path / served_with)
    assert_clean_error(proc, "it expired on ")
    command = _first(r"Renew it \((certkit renew [0-9A-F]+(?: --ca-dir \S+)?)\), or leave out --cert/--key",
                     proc.stderr)
    assert "the CA that issued it" not in proc.stderr, proc.stderr
    assert (issuer == "ca") == (" --ca-dir " not in command), command
    renewed = run_certkit(*shlex.split(command)[1:], env=ca_env)  # the command given renews it
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    _serves(folder / "fullchain.pem", folder / "privkey.pem", ca_env, "--ca-dir", tmp_path / served_with)


# --- 2. TLS Feature values cryptography cannot parse (not 5 or 17): "a damaged certificate: a name uses an unknown
# string type" from probe, inspect, verify and serve, of a certificate OpenSSL reads and serves --------------------
@pytest.mark.parametrize(("der", "named"), [
    ("3003020106", "names 6: cryptography"),
    ("3006020105020106", "names status_request (5), 6: cryptography"),
    ("300402020100", "names 256: cryptography"),
    ("3000", "names no feature (an empty list), which cryptography")])
def test_a_tls_feature_cryptography_cannot_read_is_said_as_such(ca_dir: Path, ca_env: dict, tmp_path: Path, der,
                                                                named):
    """Before: '... is a damaged certificate: a name uses an unknown string type' (cryptography's KeyError), or
    'features must be a list of elements from the TLSFeatureType enum' for an empty list."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID
    from test_audit24_serve import _signed_by_ca
    from test_probe import openssl_server

    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", x509.UnrecognizedExtension(ExtensionOID.TLS_FEATURE,
                                                                                bytes.fromhex(der)))
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", leaf / "cert.pem"], capture_output=True,
                          text=True, check=True).stdout
    assert "TLS Feature" in text  # valid X.509 that OpenSSL reads
    said = f"certkit cannot read: its TLS Feature extension (1.3.6.1.5.5.7.1.24) {named}"
    firefox = "Firefox refuses every server presenting it whatever it staples"
    runs = [run_certkit("inspect", leaf / "cert.pem", env=ca_env),
            run_certkit("verify", leaf / "cert.pem", "--purpose", "server", env=ca_env),
            _serve(leaf / "cert.pem", leaf / "privkey.pem", ca_env)]
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem") as port:
        runs += [run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, env=ca_env),
                 run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, "--json", env=ca_env)]
    for proc in runs:
        assert_clean_error(proc, said)
        words = proc.stdout + proc.stderr
        assert firefox in words and "unknown string type" not in words and "TLSFeatureType" not in words, words



# --- 3. probe's one-line cause, against openssl s_server configured wrongly -----------------------------------------
def test_probe_s_error_says_the_server_does_not_send_the_intermediate(tmp_path: Path):
    """Before: 'Error: ...: the server's certificate is not trusted by the CA in DIR (unable to get local issuer
    certificate)', while the report above it had the cause: the intermediate the server does not send."""
    from test_probe import openssl_server

    from certkit.store import CADirectory

    ca_env, root, inter = _tier(tmp_path)
    CADirectory(inter).load(PASSPHRASE).issue_server("localhost").write(tmp_path / "localhost")
    leaf = tmp_path / "localhost"
    for anchors in (("--ca-dir", root), ("--ca-file", root / "ca.pem")):
        with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem") as port:
            proc = run_certkit("probe", f"https://localhost:{port}/", *anchors, env=ca_env)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
        said = proc.stderr
        assert "issued by CN=Issuing CA 1" in said and "configure the server with fullchain.pem" in said, said
        assert ("which the server does not send" if anchors[0] == "--ca-dir" else "the server must send its "
                "certificate after its own") in proc.stderr, proc.stderr
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem", "-cert_chain",
                        leaf / "chain.pem") as port:  # sent: good
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", root, env=ca_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_probe_s_error_names_a_ca_certificate_served_as_the_server_s_own(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """Before: '...: the server's certificate is not valid for localhost: the name is not among its names' for the
    CA's own certificate and key given to the server (a CA certificate names no host): the purpose first, as for a
    client certificate served by mistake."""
    from test_probe import openssl_server

    key = tmp_path / "ca.key"
    subprocess.run(["openssl", "pkey", "-in", ca_dir / "ca-key.pem", "-passin", "env:CERTKIT_CA_PASSPHRASE", "-out",
                    key], check=True, env=ca_env)
    with openssl_server("-cert", ca_dir / "ca.pem", "-key", key) as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, env=ca_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == (f"Error: localhost:{port}: the server's certificate is a CA certificate (basicConstraints "
                           "CA:TRUE), not a TLS server certificate, and it is not trusted by the CA in "
                           f"{ca_dir} (unsuitable certificate purpose).\n"), proc.stderr


# --- 4. the serve page's commands, run as shown ----------------------------------------------------------------------
def _optional_page(ca_env: dict, cwd: Path) -> str:
    """The page ``certkit serve --optional`` shows a browser that sends no client certificate."""
    import html
    import socket
    import ssl

    from serve_process import serving

    with serving("--optional", env=ca_env, cwd=cwd) as srv:
        ctx = ssl.create_default_context(cafile=str(Path(ca_env["CERTKIT_CA_DIR"]) / "ca.pem"))
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=20),
                             server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return html.unescape(answer.decode())


def test_the_pk12util_command_the_page_shows_imports_into_a_fresh_account(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """Before: 'pk12util -d sql:$HOME/.pki/nssdb -i bundle.p12' failed (exit 255, no database) for an account
    where Chromium never ran, ~/.pki/nssdb not made yet; the command shown now makes the folder first."""
    from conftest import require

    require("pk12util")
    env = dict(ca_env, CERTKIT_P12_PASSWORD="p12 password here")
    shown_commands = re.findall(r"<code>([^<]*pk12util[^<]*)</code>", _optional_page(ca_env, tmp_path))
    assert len(shown_commands) == 1, shown_commands
    issue = run_certkit("issue-client", "alice", "--p12", cwd=tmp_path, env=env)  # as the page says to make it
    assert issue.returncode == 0, issue.stdout + issue.stderr
    home = tmp_path / "fresh-home"  # an account where no browser ran yet
    home.mkdir()
    # as shown, but for the password, which pk12util otherwise asks for on the terminal
    proc = subprocess.run(["bash", "-c", shown_commands[0] + " -W \"$CERTKIT_P12_PASSWORD\""],
                          cwd=tmp_path / "alice", env=dict(env, HOME=str(home)), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "PKCS12 IMPORT SUCCESSFUL" in proc.stdout, proc.stdout + proc.stderr
    listed = subprocess.run(["certutil", "-d", f"sql:{home}/.pki/nssdb", "-L"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert "alice" in listed.stdout, listed.stdout + listed.stderr
