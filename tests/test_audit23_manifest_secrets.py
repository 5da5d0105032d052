"""Round 23 (secrets), merged first: issue-batch given a key or secret file for its manifest printed it
(a DER key's bytes, a .pgpass line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit

SECRET = "Zq8sEcReT-pw"


@pytest.fixture
def ca(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Secrets CA", env=env, check=True)
    return env


def test_a_key_or_secret_file_given_for_the_manifest_is_not_printed(tmp_path: Path, ca) -> None:
    """`issue-batch privkey.der` (a key file tab-completed for the manifest) printed the key's bytes in its error,
    "line 1 is '0w\\x02\\x01\\x01\\x04 <the private scalar>'", as it quotes a Latin-1 spreadsheet's line; a .p12, a
    passphrase file or ~/.pgpass was quoted as the header "found". Neither is repeated now; a manifest's own mistakes
    (a mistyped header, a Latin-1 line) are still quoted."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from certkit.text import shown

    env = dict(ca, CERTKIT_P12_PASSWORD="bundle-password-1")
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", "--p12", env=env, check=True)
    der = tmp_path / "key.der"
    subprocess.run(["openssl", "pkey", "-in", tmp_path / "alice" / "privkey.pem", "-outform", "DER", "-out", der],
                   check=True)
    scalar = load_pem_private_key((tmp_path / "alice" / "privkey.pem").read_bytes(), None).private_numbers() \
        .private_value.to_bytes(32, "big")
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    (tmp_path / "pgpass").write_text(f"db.internal:5432:*:certkit:{SECRET}\n")
    for name, secret in (("key.der", shown(scalar.decode("latin-1"))[:12]), ("alice/bundle.p12", None),
                         ("pass", PASSPHRASE), ("pgpass", SECRET)):
        for how in ("file", "stdin"):
            if how == "file":
                proc = run_certkit("issue-batch", name, "--out-dir", tmp_path / "out", env=env, cwd=tmp_path)
            else:  # the bytes themselves on standard input
                proc = subprocess.run([sys.executable, "-m", "certkit", "issue-batch", "-", "--out-dir", "out"],
                                      input=(tmp_path / name).read_bytes(), capture_output=True, env=env,
                                      cwd=tmp_path, timeout=120)
                proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                                   proc.stderr.decode())
            assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
            # (a random key may hold a NUL byte before a line end: refused for it, unquoted, as before)
            assert any(said in proc.stderr for said in ("not shown here", "not repeated here", "holds a NUL byte")), \
                (name, how, proc.stderr)
            assert "line 1 is '" not in proc.stderr and "found:" not in proc.stderr, (name, how, proc.stderr)
            if secret:
                assert secret.lower() not in proc.stderr.lower(), (name, how, proc.stderr)
    assert not (tmp_path / "out").exists()
    # What a manifest gets wrong is still shown.
    (tmp_path / "typo.csv").write_text("knd,names\nserver,a.example\n")
    assert "(found: knd, names)" in run_certkit("issue-batch", "typo.csv", "--out-dir", "o", env=env,
                                                cwd=tmp_path).stderr
    (tmp_path / "latin.csv").write_bytes(b"kind,names\nclient,Jos\xe9\n")
    assert "line 2 is 'client,Jos\\xe9'" in run_certkit("issue-batch", "latin.csv", "--out-dir", "o", env=env,
                                                         cwd=tmp_path).stderr


# --- 6. probe's refusals of a URL ---------------------------------------------------------------------------------
