"""What a newcomer gets for the mistakes newcomers make: the exact advice, in certkit's own words;
output that agrees with the certificate; standard input as '-'; errors as JSON under --json;
Ctrl-C as exit status 130."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from certkit.cli import main

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A CA created once for this module (through the library: the CLI's init-ca is tested elsewhere)."""
    from certkit.ca import CA
    from certkit.store import CADirectory

    folder = tmp_path_factory.mktemp("newcomer") / "ca"
    CADirectory(folder).save_new(CA.create("Newcomer CA"), PASSPHRASE.encode())
    return certkit_env(CERTKIT_CA_DIR=str(folder), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def cli(env: dict, *args: str, input: str | None = None, cwd: Path | None = None):
    """certkit in this process (click's runner): same code, no interpreter start-up."""
    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        return CliRunner().invoke(main, list(args), env={k: v for k, v in env.items() if k.startswith("CERTKIT_")},
                                  input=input, catch_exceptions=False)
    finally:
        os.chdir(old)


def refused(result, advice: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert advice in lines[0], lines[0]


@pytest.mark.parametrize(("args", "advice"), [
    (["issue-server", "alice@example.com"],
     "'alice@example.com' is an email address, not a host name. A certificate for a person or a mailbox is a "
     "client certificate: 'certkit issue-client NAME --email alice@example.com'."),
    (["issue-server", "https://www.example.com/"],
     "'https://www.example.com/' is a URL; a certificate names the host alone (the host is 'www.example.com'). "
     "The scheme, port and path are not part of it."),
    (["issue-server", "localhost:8443"],
     "'localhost:8443' has a port (:8443); a certificate names the host alone ('localhost'), and is valid on "
     "every port."),
    (["issue-server", "[::1]:443"], "'[::1]:443' has a port (:443); a certificate names the host alone ('::1')"),
    (["issue-peer", "db.internal:5432"], "has a port (:5432)"),
    (["issue-client", "10.0.0.5"],
     "'10.0.0.5' is an IP address. A client certificate's NAME is the identity a server maps to a user or "
     "service (alice, billing-api); to certify an address, use certkit issue-server 10.0.0.5."),
    (["issue-client", "spiffe://example.org/billing"],
     "to put a URI such as a SPIFFE ID in it, add --uri spiffe://example.org/billing."),
    (["issue-server", "fe80::1%eth0"], "has an IPv6 zone (%eth0)"),
])
def test_mistakes_get_the_advice(env, tmp_path, args, advice) -> None:
    result = cli(env, *args, cwd=tmp_path)
    refused(result, advice)
    assert list(tmp_path.iterdir()) == []


def test_output_agrees_with_the_certificate(env, tmp_path) -> None:
    out = cli(env, "issue-client", "alice", cwd=tmp_path).output
    cert = x509.load_pem_x509_certificate((tmp_path / "alice" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DirectoryName)[0].rfc4514_string() == "CN=alice"
    assert "  names     DirName:CN=alice  (the subject DN: no DNS, email or URI identity)" in out
    # The serial as openssl prints it: whole octets, leading zero kept.
    printed = re.search(r"serial    ([0-9A-F]+)", out).group(1)
    by_openssl = openssl("x509", "-noout", "-serial", "-in", tmp_path / "alice" / "cert.pem").stdout.decode()
    assert by_openssl.strip() == f"serial={printed}" and len(printed) % 2 == 0
    # revoke and crl print moments the same way.
    revoked = cli(env, "revoke", printed, cwd=tmp_path).output
    crl = cli(env, "crl", "--out", "crl.pem", cwd=tmp_path).output
    moment = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    assert moment.search(re.search(r"  at        (.*)", revoked).group(1))
    assert moment.search(re.search(r"  this update  (.*)", crl).group(1))
    assert "T" not in re.search(r"  at        (.*)", revoked).group(1).replace("UTC", "")


def test_verify_reasons_hold_no_python_repr(env, tmp_path) -> None:
    cli(env, "issue-server", "web.example.com", cwd=tmp_path)
    result = cli(env, "verify", "web.example.com/cert.pem", "--purpose", "client", cwd=tmp_path)
    assert result.exit_code == 1
    assert "<Certificate" not in result.output and "<Name(" not in result.output, result.output


def test_standard_input_is_dash(env, tmp_path) -> None:
    cli(env, "issue-server", "stdin.example.com", cwd=tmp_path)
    pem = (tmp_path / "stdin.example.com" / "cert.pem").read_text()
    assert "CN=stdin.example.com" in cli(env, "inspect", "-", input=pem, cwd=tmp_path).output
    verdict = cli(env, "verify", "-", "--purpose", "server", "--name", "stdin.example.com", input=pem, cwd=tmp_path)
    assert verdict.exit_code == 0 and "VALID" in verdict.output
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "k.pem", "-subj", "/CN=piped.internal", "-out", tmp_path / "r.csr"],
                   check=True, capture_output=True)
    signed = cli(env, "sign-csr", "-", "--server", "--out", "piped", input=(tmp_path / "r.csr").read_text(),
                 cwd=tmp_path)
    assert signed.exit_code == 0, signed.output
    assert (tmp_path / "piped" / "cert.pem").exists()
    batch = cli(env, "issue-batch", "-", "--out-dir", "b", input="kind,names\nserver,one.internal\nclient,two\n",
                cwd=tmp_path)
    assert batch.exit_code == 0, batch.output
    assert (tmp_path / "b" / "one.internal" / "cert.pem").exists() and (tmp_path / "b" / "two" / "cert.pem").exists()
    no_env = {k: v for k, v in env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    by_pipe = cli(no_env, "issue-client", "carol", "--passphrase-file", "-", input=PASSPHRASE + "\n", cwd=tmp_path)
    assert by_pipe.exit_code == 0, by_pipe.output


@pytest.mark.parametrize("args", [
    ["issue-server", "bad..name", "--json"],
    ["issue-client", "10.0.0.5", "--json"],
    ["verify", "missing.pem", "--purpose", "server", "--json"],
    ["list", "--json", "--expiring", "soon"],  # a usage error (exit 2)
    ["revoke", "00DEADBEEF00", "--json"],
])
def test_json_errors_are_one_object(env, tmp_path, args) -> None:
    result = cli(env, *args, cwd=tmp_path)
    assert result.exit_code in (1, 2)
    data = json.loads(result.stdout)
    assert set(data) == {"error", "exit"} and data["exit"] == result.exit_code and data["error"], result.stdout


def test_ctrl_c_exits_130_quietly(env, tmp_path) -> None:
    """SIGINT at the passphrase prompt: exit status 130, no traceback, no 'Aborted!'."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "certkit", "issue-client", "dave"],
                  {k: v for k, v in env.items() if k != "CERTKIT_CA_PASSPHRASE"})
    seen, deadline = b"", time.monotonic() + 60
    while b"passphrase" not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 4096)
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    try:
        while select.select([fd], [], [], 0.2)[0]:
            seen += os.read(fd, 4096)
    except OSError:
        pass
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130, seen
    assert b"Traceback" not in seen and b"Aborted" not in seen
    assert not (tmp_path / "dave").exists()


def test_init_ca_on_a_terminal_asks_twice_and_warns_when_short(tmp_path) -> None:
    from test_secrets import run_on_terminal

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    code, screen = run_on_terminal(["init-ca"], [(b"New CA key passphrase:", b"short"),
                                                 (b"Repeat for confirmation:", b"short")], env, tmp_path)
    assert code == 0, screen
    assert b"Warning: the passphrase has 5 characters" in screen and b"use at least 12" in screen
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "ca2",
                       env=certkit_env(CERTKIT_CA_PASSPHRASE="a long passphrase"))
    assert proc.returncode == 0 and "Warning" not in proc.stderr
