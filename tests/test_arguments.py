"""Arguments every command refuses alike: an empty value (an unset shell variable, which as a path
would mean the current folder) and a value that is not UTF-8. Each gives a usage error naming the
option, exit 2, and changes nothing: the bundle in the current folder is not revoked, a self-signed
certificate there is not trusted, no server listens on every interface."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certkit.store import CADirectory

from conftest import assert_clean_error, openssl, run_certkit

EMPTY = [
    (["verify", "cert.pem", "--purpose", "client", "--ca-file", ""], "--ca-file"),
    (["verify", "cert.pem", "--purpose", "client", "--untrusted", ""], "--untrusted"),
    (["verify", "", "--purpose", "server"], "certkit verify"),
    (["inspect", ""], "certkit inspect"),
    (["revoke", ""], "certkit revoke"),
    (["renew", ""], "certkit renew"),
    (["export-p12", ""], "certkit export-p12"),
    (["renew", "--all", "--name", ""], "--name"),
    (["list", "--name="], "--name"),
    (["serve", "--port", "0", "--host", ""], "--host"),
    (["acme", "serve", "--port", "0", "--host", ""], "--host"),
    (["issue-server", "web.example.com", "--out", ""], "--out"),
    (["issue-client", "   "], "certkit issue-client"),
    (["issue-client", "bob", "--email", ""], "--email"),
    (["probe", ""], "certkit probe"),
    (["crl", "--out", ""], "--out"),
    (["list", "--json", "--name", ""], "--name"),
    # after a flag, which takes no value: the argument is the command's, not the flag's
    (["revoke", "--json", ""], "certkit revoke"),
    (["inspect", "--json", ""], "certkit inspect"),
    (["issue-server", "--force", " "], "certkit issue-server"),
    (["sign-csr", "--server", ""], "certkit sign-csr"),
    (["issue-client", "--p12", "  "], "certkit issue-client"),
]


@pytest.fixture
def bundle_here(tmp_path, ca_dir, ca_env):
    """The current folder is a client bundle, and also holds a self-signed client certificate."""
    run_certkit("issue-client", "victim", "--out", "victim", cwd=tmp_path, env=ca_env, check=True)
    here = tmp_path / "victim"
    proc = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", here / "mallory.key", "-subj", "/CN=mallory", "-days", "30",
                   "-addext", "extendedKeyUsage=clientAuth", "-addext", "basicConstraints=critical,CA:FALSE",
                   "-out", here / "mallory.pem")
    assert proc.returncode == 0, proc.stderr
    return here


@pytest.mark.parametrize(("args", "named"), EMPTY, ids=[" ".join(a) for a, _ in EMPTY])
def test_an_empty_value_is_refused_and_nothing_happens(bundle_here, ca_dir, ca_env, args, named):
    args = ["mallory.pem" if a == "cert.pem" else a for a in args]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in bundle_here.iterdir())
    proc = run_certkit(*args, cwd=bundle_here, env=ca_env)
    assert_clean_error(proc, "empty value", code=2)
    assert named in (proc.stdout + proc.stderr)
    assert not any(f"{flag} was given" in proc.stdout + proc.stderr for flag in ("--json", "--force", "--server",
                                                                                 "--p12"))
    assert "VALID" not in proc.stdout and "Listening" not in proc.stdout
    assert sorted((p.name, p.stat().st_mtime_ns) for p in bundle_here.iterdir()) == before
    [row] = [r for r in CADirectory(ca_dir).inventory.rows() if r["subject"] == "CN=victim"]
    assert row["status"] == "valid"


NOT_UTF8 = [
    ["issue-server", "x.example.com", "--out", "o\udcffut"],
    ["issue-server", "h\udcff.example.com"],
    ["issue-client", "b\udce9b"],
    ["init-ca", "--ca-dir", "c\udcffa"],
    ["inspect", "c\udcff.pem"],
    ["probe", "https://h\udcff/"],
    ["inventory", "migrate", "--to", "postgresql://u@h/d\udcff"],
    ["issue-server", "--json", "x.example.com", "--out", "o\udcffut"],
    ["issue-server", "--force", "h\udcff.example.com"],
    ["inspect", "--json", "c\udcff.pem"],
]


@pytest.mark.parametrize("args", NOT_UTF8, ids=[" ".join(a).encode("utf-8", "surrogateescape").hex()[:24]
                                                  for a in NOT_UTF8])
def test_a_value_that_is_not_utf8_is_refused(tmp_path, ca_dir, ca_env, args):
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "not UTF-8", code=2)
    assert "\\xff" in proc.stdout + proc.stderr or "\\xe9" in proc.stdout + proc.stderr  # the byte, shown
    assert sorted(os.listdir(tmp_path)) == ["ca"]
    assert CADirectory(ca_dir).inventory.rows() == []


def test_a_value_that_starts_with_a_dash_is_still_an_option_value(tmp_path, ca_dir, ca_env):
    """Only empty and non-UTF-8 values are refused: an ordinary command still runs."""
    proc = run_certkit("issue-server", "web.example.com", "--out", "web", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert Path(tmp_path / "web" / "cert.pem").exists()


def test_a_current_folder_or_ca_directory_that_is_not_utf8_is_refused(tmp_path, ca_dir, ca_env):
    odd = tmp_path / "d\udcff"
    odd.mkdir()
    for args in (["issue-server", "y.example.com"], ["issue-server", "y.example.com", "--format", "jsonl",
                                                     "--out", "o.jsonl"], ["crl", "--out", "c.pem"]):
        assert_clean_error(run_certkit(*args, cwd=odd, env=ca_env), "current folder", code=1)
    assert run_certkit("list", cwd=odd, env=ca_env).returncode == 0  # it records no path: round nine
    assert list(odd.iterdir()) == [] and CADirectory(ca_dir).inventory.rows() == []
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "c\udcffa"))
    assert_clean_error(run_certkit("init-ca", cwd=tmp_path, env=env, subprocess=True), "CERTKIT_CA_DIR", code=1)
    assert sorted(os.listdir(tmp_path)) == ["ca", "d\udcff"]


@pytest.mark.parametrize(("period", "said"), [("0", "is an empty period"), ("0d", "is an empty period"),
                                              ("99999999999d", "is longer than 36500 days"),
                                              ("9" * 5000, "is longer than 36500 days"),
                                              ("30x", "is not a period")])
def test_a_period_out_of_range_says_which_end(tmp_path, ca_dir, ca_env, period, said):
    """--expiring 0 and --expiring 99999999999d are periods, out of range: they were called 'not a period'
    (and 5,000 digits went past int()'s limit)."""
    proc = run_certkit("list", "--expiring", period, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, said, code=2)
