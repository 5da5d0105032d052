"""The certkit commands serve's page tells a visitor to run, run as shown (with FOLDER and NAME filled in), and
their results read by real peers: openssl reading the legacy bundle.p12 the page's advice writes, openssl verify
refusing the revoked certificate with the CRL the page's advice writes.

The page is taken from a running ``certkit serve --optional`` through curl: for a browser that sent no certificate,
and for one that sent a revoked one."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from serve_process import serving

P12_PASSWORD = "serve page p12 password"


def _env(top: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(top / "ca"), HOME=str(top / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       CERTKIT_P12_PASSWORD=P12_PASSWORD)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> tuple[Path, str, str]:
    """A CA with localhost/ (the server), alice/ (a client) and rv/ (a client, revoked); the page for no client
    certificate and the page for rv's, as served."""
    require("curl")
    top = tmp_path_factory.mktemp("serve-page-commands")
    (top / "home").mkdir()
    env = _env(top)
    run_certkit("init-ca", "--name", "Page CA", env=env, check=True)
    for args in (("issue-server", "localhost", "127.0.0.1"), ("issue-client", "alice"), ("issue-client", "rv")):
        run_certkit(*args, env=env, cwd=top, check=True)
    run_certkit("revoke", top / "rv", env=env, check=True)
    with serving("--optional", env=env, cwd=top) as srv:
        def page(*args: str) -> str:
            got = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(top / "ca" / "ca.pem"),
                                  *args, srv.url + "?format=html"], capture_output=True, text=True, timeout=30)
            assert got.returncode == 0, got.stderr
            return html.unescape(got.stdout)

        return top, page(), page("--cert", str(top / "rv" / "cert.pem"), "--key", str(top / "rv" / "privkey.pem"))


def shown(page: str) -> list[str]:
    """Every certkit command the page shows in <code>."""
    return re.findall(r"<code>(certkit [^<]*)</code>", page)


def run_shown(command: str, top: Path, **fill: str) -> subprocess.CompletedProcess:
    for placeholder, value in fill.items():
        command = command.replace(placeholder, value)
    return run_certkit(*command.split()[1:], env=_env(top), cwd=top)


def test_the_legacy_advice_for_an_older_system_is_a_command_that_writes_a_legacy_bundle(pages) -> None:
    """Before: the page said 'use the --p12-legacy file', a file no command names so; it now shows the command
    that writes one, and openssl reads the 3DES (not AES) encryption in what it wrote over the modern file."""
    top, no_certificate, _revoked = pages
    legacy = [c for c in shown(no_certificate) if "--legacy" in c]
    assert legacy == ["certkit export-p12 FOLDER --legacy --force"], shown(no_certificate)
    modern = run_shown("certkit export-p12 FOLDER", top, FOLDER="alice")
    assert modern.returncode == 0, modern.stderr
    assert "AES-256-CBC" in _p12_info(top / "alice" / "bundle.p12")
    made = run_shown(legacy[0], top, FOLDER="alice")
    assert made.returncode == 0, made.stderr
    info = _p12_info(top / "alice" / "bundle.p12")
    assert "3-KeyTripleDES-CBC" in info and "AES-256-CBC" not in info, info


def test_every_command_on_the_no_certificate_page_runs_as_shown(pages) -> None:
    top, no_certificate, _revoked = pages
    commands = shown(no_certificate)
    assert {c.split()[1] for c in commands} >= {"issue-client", "export-p12"}, commands
    run_certkit("issue-client", "carol", env=_env(top), cwd=top, check=True)  # FOLDER: a client folder without one
    (top / "alice" / "bundle.p12").unlink(missing_ok=True)  # the page's example names alice/ (another test's)
    for command in commands:
        proc = run_shown(command, top, FOLDER="carol", NAME="bob")
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    assert (top / "bob" / "bundle.p12").is_file()  # issue-client NAME --p12


def test_the_crl_the_revoked_page_says_to_write_makes_openssl_refuse_the_certificate(pages) -> None:
    top, _none, revoked = pages
    assert "refused" in revoked and "revoked" in revoked
    crl = [c for c in shown(revoked) if c.startswith("certkit crl")]
    assert crl == ["certkit crl --out crl.pem"], shown(revoked)
    proc = run_shown(crl[0], top)
    assert proc.returncode == 0, proc.stderr
    for folder, verdict in (("rv", "certificate revoked"), ("alice", "OK")):
        checked = subprocess.run(["openssl", "verify", "-crl_check", "-CRLfile", str(top / "crl.pem"), "-CAfile",
                                  str(top / "ca" / "ca.pem"), str(top / folder / "cert.pem")],
                                 capture_output=True, text=True, timeout=30)
        assert verdict in checked.stdout + checked.stderr, (folder, checked.stdout, checked.stderr)


def _p12_info(path: Path) -> str:
    proc = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "env:P12"],
                          env={"P12": P12_PASSWORD, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr
