"""Faults of a CA key in a real SoftHSM2 token (tests/team_hsm.py): the token deleted while
``issue-batch`` signs through it (one worker, two forked workers), and keys left under the label a
new key would take (team audit round 2, findings 3 and 6).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest
from test_team_hsm import _real_processes, env_for, init_token_ca, load  # noqa: F401 (an autouse fixture)

from conftest import assert_clean_error, certkit_env, run_certkit


def _folders(out) -> int:
    """Bundles in place (hidden staging folders not counted)."""
    return sum(1 for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else 0


def delete_token(token) -> None:
    """``softhsm2-util --delete-token``, again if it fails to remove a file that the signing process is
    rewriting just then."""
    for _ in range(20):
        proc = subprocess.run(["softhsm2-util", "--delete-token", "--token", token.label], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(proc.stdout + proc.stderr)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_token_deleted_mid_batch_is_said_in_one_line(tmp_path, token, softhsm, jobs):
    """The token holding the CA key goes away while a batch signs: one Error line naming the token and
    the module, the count of bundles written true to the disk, and --resume finishes once it is back."""
    init_token_ca(tmp_path, token)
    saved = tmp_path / "token-copy"
    folder = softhsm.token_folder(token)
    shutil.copytree(folder, saved)
    (tmp_path / "fleet.csv").write_text("kind,names\n" + "".join(f"client,d{i}\n" for i in range(600)))
    env = env_for(tmp_path, token, CERTKIT_TEST_CHUNK_SIZE="10")
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", "fleet.csv", "--out-dir", "out",
                              "--jobs", str(jobs)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _folders(out) < 40:
            assert batch.poll() is None, batch.communicate()
            assert time.monotonic() < deadline, "the batch wrote too few bundles"
            time.sleep(0.05)
        delete_token(token)
        _, err = batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == 1 and "Traceback" not in err, err
    assert err.count("Error:") == 1 and len(err.strip().splitlines()) == 1, err
    assert f"The token '{token.label}' holding the CA key ({token.uri('root')}, module {token.module}) is no " \
           "longer present or stopped answering" in err, err
    written = re.search(r"The batch stopped after ([\d,]+) bundles? (?:was|were) written and recorded", err)
    assert written, err
    assert int(written.group(1).replace(",", "")) == _folders(out) < 600, err
    # The token back (its folder restored from the copy): --resume issues the rest.
    shutil.copytree(saved, folder)
    proc = run_certkit("issue-batch", "fleet.csv", "--out-dir", "out", "--resume", "--jobs", str(jobs),
                       cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert _folders(out) == 600


_VANISH = """
import subprocess, sys
from certkit.store import CADirectory
ca = CADirectory(sys.argv[1]).load(sys.argv[2].encode())  # logged in to the token
subprocess.run(["softhsm2-util", "--delete-token", "--token", sys.argv[3]], check=True, capture_output=True)
try:
    ca.issue_server(["late.internal"])
except Exception as exc:
    print(type(exc).__name__, exc, sep="\\n")
"""


def test_a_token_gone_between_login_and_signing(tmp_path, token):
    """The single-certificate path (a command that unlocked the CA, then signs): the same error."""
    init_token_ca(tmp_path, token)
    proc = subprocess.run([sys.executable, "-c", _VANISH, str(tmp_path / "ca"), token.pin, token.label],
                          env=certkit_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    name, _, message = proc.stdout.strip().partition("\n")
    assert name == "TokenGone", proc.stdout
    assert f"The token '{token.label}' holding the CA key" in message and token.module in message
    present = re.search(r"tokens present now: ([^)]*)\)", message)
    assert present and token.label not in present.group(1), message


def test_a_label_any_key_object_has_is_refused_before_generating(tmp_path, token):
    """A public key left under the label (its private half deleted, as a half-followed cleanup
    leaves it): init-ca refuses in one line naming it and the command that removes it, generating
    nothing; once removed, init-ca generates the pair and the CA signs."""
    made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "lonepub", "--id", "11")
    assert made.returncode == 0, made.stderr
    assert token.tool("--delete-object", "--type", "privkey", "--id", "11").returncode == 0
    token.tool("--keygen", "--key-type", "AES:16", "--label", "lonepub", "--id", "12")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    init = ("init-ca", "--name", "Lone", "--key-uri", token.uri("lonepub"), "--pkcs11-module", token.module)
    proc = run_certkit(*init, env=env)
    assert_clean_error(proc, f"The token '{token.label}' already holds a public key labelled 'lonepub', id 11; "
                             "a secret key labelled 'lonepub', id 12")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "ca").exists()
    listed = token.tool("--list-objects").stdout
    assert "Private Key Object" not in listed and listed.count("label:      lonepub") == 2
    # The commands it gives remove them (pkcs11-tool takes the PIN on its command line here).
    commands = proc.stderr.split("remove these 2 objects with: ", 1)[1].strip().split("; ")
    assert len(commands) == 2
    for command in commands:
        removed = subprocess.run([*command.split(), "--pin", token.pin], capture_output=True, text=True,
                                 timeout=60, env=certkit_env())
        assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "lonepub" not in token.tool("--list-objects").stdout
    run_certkit(*init, env=env, check=True)
    run_certkit("issue-server", "lone.internal", "--out", tmp_path / "lone", env=env, check=True)


def test_public_key_of_chooses_the_public_key_with_the_private_keys_id(tmp_path, token):
    """Two public keys under the key's label (public_key_of, reached by init-ca using a key already
    in the token): the one whose CKA_ID is the private key's is the key's public half, and the CA
    signs; when none has it, the message says so (not 'no public key')."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    for label, key_id in (("twin", "21"), ("twin", "22"), ("stray", "31"), ("stray", "32")):
        made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", label, "--id", key_id)
        assert made.returncode == 0, made.stderr
    for key_id in ("22", "31", "32"):  # twin keeps one pair and a lone public half; stray two lone halves
        assert token.tool("--delete-object", "--type", "privkey", "--id", key_id).returncode == 0
    token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "stray", "--id", "33")
    assert token.tool("--delete-object", "--type", "pubkey", "--id", "33").returncode == 0
    data = init_token_ca(tmp_path, token, obj="twin")
    assert data["key_generated"] is False
    der = tmp_path / "twin.der"
    assert token.tool("--read-object", "--type", "pubkey", "--id", "21", "--output-file", der).returncode == 0
    assert load(tmp_path / "ca" / "ca.pem").public_key() == load_der_public_key(der.read_bytes())
    run_certkit("issue-server", "twin.internal", "--out", tmp_path / "twin", env=env_for(tmp_path, token),
                check=True)
    proc = run_certkit("init-ca", "--name", "Stray", "--key-uri", token.uri("stray"), "--pkcs11-module",
                       token.module, env=env_for(tmp_path, token, name="stray"))
    assert_clean_error(proc, "several public keys for the private key 'stray'")
    assert "(ids 31, 32), none with the private key's id (33)" in proc.stderr, proc.stderr
    assert "no public key" not in proc.stderr and not (tmp_path / "stray").exists()
