"""The twelfth round's documentation findings (audit docs12), each as a class:

1. a chain under an Ed448 CA is one Go's crypto/x509 refuses (etcd says "bad certificate"), and verify's note
   says so, as it says it of RSA-PSS, DSA and SHA-224;
2. a secret file refused for its mode is refused for what the mode allows (read, change, or only execute),
   not always "other users can read it";
3. a bulk ``--rekey`` that made no key (certificates signed from CSRs) does not say "new keys";
4. check.md's table says what each check fails on, modes included (proven by running check).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, free_port, openssl, require, run_certkit, wait_or_kill

REPO = Path(__file__).resolve().parent.parent


def _chain(tmp_path: Path, algorithm: str) -> tuple[Path, Path, Path]:
    """A root of ``algorithm`` made by openssl and a P-256 server leaf for localhost it signed."""
    root, root_key = tmp_path / f"{algorithm}-root.pem", tmp_path / f"{algorithm}-root.key"
    leaf, leaf_key = tmp_path / f"{algorithm}-leaf.pem", tmp_path / f"{algorithm}-leaf.key"
    made = openssl("req", "-x509", "-newkey", algorithm, "-nodes", "-keyout", root_key, "-subj",
                   f"/CN={algorithm} Root", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                   "keyUsage=critical,keyCertSign,cRLSign", "-out", root)
    assert made.returncode == 0, made.stderr
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                   leaf_key, "-subj", "/CN=localhost", "-out", tmp_path / "leaf.csr")
    assert made.returncode == 0, made.stderr
    (tmp_path / "ext.cnf").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                      "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    made = openssl("x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", root, "-CAkey", root_key, "-days", "20",
                   "-extfile", tmp_path / "ext.cnf", "-set_serial", "0x1234", "-out", leaf)
    assert made.returncode == 0, made.stderr
    return root, leaf, leaf_key


def _etcd_health(tmp_path: Path, root: Path, leaf: Path, key: Path) -> tuple[subprocess.CompletedProcess, str]:
    """One etcd member serving ``leaf`` on its client port, and etcdctl (Go) trusting ``root`` asking it: what
    etcdctl said, and etcd's log. gRPC retries a handshake the client refused until its deadline and says only
    that, so a refusal is read where etcd logs it (the client's "bad certificate" alert)."""
    etcd, etcdctl = require("etcd"), require("etcdctl")
    client, peer = free_port(), free_port()
    data, log = tmp_path / f"etcd-{leaf.stem}", tmp_path / f"etcd-{leaf.stem}.log"
    member = subprocess.Popen(
        [etcd, "--name", "n", "--data-dir", str(data), "--listen-client-urls", f"https://127.0.0.1:{client}",
         "--advertise-client-urls", f"https://127.0.0.1:{client}", "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", "--initial-cluster", f"n=http://127.0.0.1:{peer}",
         "--cert-file", str(leaf), "--key-file", str(key)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=(out := log.open("w")))
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"}
        deadline = time.monotonic() + 30
        while True:
            asked = subprocess.run([etcdctl, "--endpoints", f"https://127.0.0.1:{client}", "--cacert", str(root),
                                    "--dial-timeout", "2s", "--command-timeout", "3s", "endpoint", "health"],
                                   env=env, capture_output=True, text=True, timeout=30)
            # refused for its certificate, or answered: either is the verdict; anything else, retried
            if asked.returncode == 0 or "bad certificate" in log.read_text() or time.monotonic() > deadline:
                return asked, log.read_text()
            assert member.poll() is None, "etcd exited"
            time.sleep(0.3)
    finally:
        member.terminate()
        wait_or_kill(member)
        out.close()


def test_an_ed448_chain_is_one_go_refuses_and_verify_says_so(tmp_path: Path) -> None:
    env = certkit_env(HOME=str(tmp_path))
    verdicts = {}
    for algorithm in ("ed448", "ed25519"):
        root, leaf, key = _chain(tmp_path, algorithm)
        said = run_certkit("verify", leaf, "--purpose", "server", "--ca-file", root, "--name", "localhost", env=env)
        assert said.returncode == 0 and "VALID" in said.stdout, said.stdout + said.stderr
        note = next(line for line in said.stdout.splitlines() if line.strip().startswith("note"))
        verdicts[algorithm] = (note, _etcd_health(tmp_path, root, leaf, key))
    ed448_note, ed448_go = verdicts["ed448"]
    ed25519_note, ed25519_go = verdicts["ed25519"]
    # Go (etcdctl) refuses the Ed448 chain and takes the Ed25519 one: the notes say just that
    assert ed448_go[0].returncode != 0 and "bad certificate" in ed448_go[1], ed448_go
    assert ed25519_go[0].returncode == 0 and "bad certificate" not in ed25519_go[1], ed25519_go
    assert "Go's crypto/x509" in ed448_note and "refuses" in ed448_note, ed448_note
    assert "Go's crypto/x509" not in ed25519_note, ed25519_note
    assert "Ed448, RSA-PSS, DSA and SHA-224" in (REPO / "docs" / "verify.md").read_text().replace("\n", " ")


@pytest.mark.parametrize("mode,said", [(0o640, "other users can read it"), (0o620, "other users can change it"),
                                       (0o602, "other users can change it"), (0o666, "can read and change it"),
                                       (0o610, "execute"), (0o601, "execute")])
def test_a_secret_files_mode_is_said_as_it_is(tmp_path: Path, mode: int, said: str) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    secret = tmp_path / "pw"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(mode)
    proc = run_certkit("init-ca", "--name", "Mode CA", "--passphrase-file", secret, env=env)
    assert_clean_error(proc, said)
    if "read" not in said:
        assert "can read" not in proc.stderr
    assert not (tmp_path / "ca").exists()


def test_a_bulk_rekey_that_made_no_key_does_not_say_new_keys(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "CSR CA", "--no-passphrase", env=env, check=True)
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                   tmp_path / "r.key", "-subj", "/CN=csr.example", "-addext", "subjectAltName=DNS:csr.example",
                   "-out", tmp_path / "r.csr")
    assert made.returncode == 0, made.stderr
    run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--days", "10", "--out", tmp_path / "csr", env=env,
                check=True)
    single = run_certkit("renew", "csr.example", "--rekey", env=env)
    assert_clean_error(single, "signed from a CSR")
    bulk = run_certkit("renew", "--all", "--rekey", env=env)
    assert bulk.returncode == 0, bulk.stderr
    headline = bulk.stdout.splitlines()[0]
    assert "new keys" not in headline and "no new key" in headline, headline
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    new = next(row for row in rows if not row.get("renewed_by"))
    assert len(rows) == 2 and new["serial"] != rows[0]["serial"] or new is not rows[0]
    # renewed with the requester's key: the new bundle's certificate holds r.key's public key
    same = [openssl(*args).stdout for args in (("pkey", "-in", tmp_path / "r.key", "-pubout"),
                                              ("x509", "-in", tmp_path / "csr" / "cert.pem", "-noout", "-pubkey"))]
    assert same[0] == same[1] and b"PUBLIC KEY" in same[0]


def test_check_md_says_what_modes_fail(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Check CA", "--no-passphrase", env=env, check=True)
    table = (REPO / "docs" / "check.md").read_text()
    cases = {"directory": (tmp_path / "ca", 0o770, 0o700), "certificate": (tmp_path / "ca" / "ca.pem", 0o664, 0o644),
             "inventory": (tmp_path / "ca" / "inventory.sqlite3", 0o666, 0o600)}
    for check, (path, loose, tight) in cases.items():
        os.chmod(path, loose)
        proc = run_certkit("check", env=env)
        os.chmod(path, tight)
        assert proc.returncode == 1 and any(line.startswith("ERROR") and f" {check} " in line
                                            for line in proc.stdout.splitlines()), proc.stdout
        row = next(line for line in table.splitlines() if line.startswith(f"| {check}"))
        assert "writ" in row, row  # the table names it
    os.chmod(tmp_path / "ca", 0o750)
    listed = run_certkit("check", env=env)
    assert listed.returncode == 0 and "WARNING directory" in listed.stdout, listed.stdout
