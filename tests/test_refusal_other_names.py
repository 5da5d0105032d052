"""A folder that holds the bundle of a certificate of the same kind for other names, none in common (another host's,
in the folder --out names), is refused naming it, in every path that writes a bundle: issue-server, issue-client,
sign-csr, an issue-batch line and the library's IssuedCert.write. Before, the refusal said only "already holds
...; pass --force", and --force then took the key of a certificate that stays valid. Nothing is written; the same
names (a re-issue), or names in common (the same host's, names changed), keep the plain refusal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit

OTHER = "while it stays valid (whatever uses that bundle would lose its key)"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _csr(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.csr"
    made = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                           "-keyout", str(tmp_path / f"{name}.key"), "-subj", f"/CN={name}", "-addext",
                           f"subjectAltName=DNS:{name}", "-out", str(path)], capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return path


@pytest.mark.parametrize("command", ["issue-server", "issue-client", "sign-csr", "issue-batch"])
def test_a_bundle_for_other_names_is_refused_naming_them(tmp_path, ca_env, ca_dir, command):
    first = ("issue-client", "alice", "--out", "held") if command == "issue-client" else \
        ("issue-server", "web.example", "--out", "held")
    run_certkit(*first, cwd=tmp_path, env=ca_env, check=True)
    before = _snapshot(tmp_path / "held")
    theirs, ours = ("DirName:CN=alice", "DirName:CN=bob") if command == "issue-client" else \
        ("DNS:web.example", "DNS:api.example")
    args = {"issue-server": ("issue-server", "api.example", "--out", "held"),
            "issue-client": ("issue-client", "bob", "--out", "held"),
            "sign-csr": ("sign-csr", _csr(tmp_path, "api.example"), "--server", "--out", "held"),
            "issue-batch": ("issue-batch", "m.csv")}[command]
    if command == "issue-batch":
        (tmp_path / "m.csv").write_text("kind,names,out\nserver,api.example,held\n")
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, OTHER)
    assert f"certificate for {theirs}, which this one would replace" in proc.stderr, proc.stderr
    assert f"give the certificate for {ours} a folder of its own" in proc.stderr, proc.stderr
    assert _snapshot(tmp_path / "held") == before  # nothing written
    listed = run_certkit("list", "--json", env=ca_env, check=True).stdout
    assert "api.example" not in listed and "CN=bob" not in listed  # nothing signed


@pytest.mark.parametrize("again", [("web.example",), ("web.example", "www.web.example"), ("www.web.example",)])
def test_the_same_host_again_keeps_the_plain_refusal(tmp_path, ca_env, ca_dir, again):
    run_certkit("issue-server", "web.example", "www.web.example", "--out", "held", cwd=tmp_path, env=ca_env,
                check=True)
    proc = run_certkit("issue-server", *again, "--out", "held", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "already holds cert.pem, privkey.pem, fullchain.pem, ca.pem; pass --force")
    assert OTHER not in proc.stderr


def test_the_library_says_it_too(tmp_path, ca_env, ca_dir):
    from certkit.errors import OutputExists
    from certkit.store import CADirectory

    run_certkit("issue-server", "web.example", "--out", "held", cwd=tmp_path, env=ca_env, check=True)
    before = _snapshot(tmp_path / "held")
    ca = CADirectory(ca_dir).open()
    ca.unlock(ca_env["CERTKIT_CA_PASSPHRASE"].encode())
    with pytest.raises(OutputExists, match="certificate for DNS:web.example, which this one would replace"):
        ca.issue_server(["api.example"]).write(tmp_path / "held")
    assert _snapshot(tmp_path / "held") == before
