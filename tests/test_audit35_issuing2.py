"""Round 35, issuing pipeline (the promise: nothing the user did not name is destroyed or left behind).

1. ``export-p12 FOLDER`` killed (SIGKILL) while writing left ``.FOLDER.PID-RANDOM.certkit-tmp`` beside the folder: a
   whole copy of the bundle, its private key included (a hard link), since it swapped the folder whole to add one
   file. ``certkit list`` and ``certkit check`` never removed it (no inventory row names it), nor did ``rm -r
   FOLDER``: a key the user retired stayed on disk under a hidden name. Now bundle.p12 is written alone, a private
   temporary file in the folder renamed into place; a kill leaves no copy of the bundle anywhere.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import run_certkit
from integrity_helpers import interrupt, listed, spki, start_paused, temporaries_under

P12 = "p12-password-35"


def _key_copies(root: Path, key_der: bytes, allowed: Path) -> list[Path]:
    """Every file below ``root`` but in ``allowed`` that is a PEM private key equal to ``key_der``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and allowed not in path.parents and b"PRIVATE KEY" in (
                data := path.read_bytes()):
            try:
                key = serialization.load_pem_private_key(data, None)
            except (ValueError, TypeError):
                continue
            if spki(key) == key_der:
                found.append(path)
    return found


@pytest.mark.parametrize("force", [False, True])
def test_export_p12_killed_while_writing_leaves_no_copy_of_the_bundle_beside_its_folder(ca_dir, ca_env, tmp_path,
                                                                                          force):
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12)
    run_certkit("issue-server", "web.test", "--out", "web", cwd=tmp_path, env=env, check=True)
    if force:
        run_certkit("export-p12", "web", cwd=tmp_path, env=env, check=True)
    old_p12 = (tmp_path / "web" / "bundle.p12").read_bytes() if force else None
    key = serialization.load_pem_private_key((tmp_path / "web" / "privkey.pem").read_bytes(), None)
    args = ["export-p12", "web", *(["--force"] if force else [])]
    proc = start_paused(args, env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    run_certkit("list", env=env, check=True)
    run_certkit("check", env=env, check=True)

    beside = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("web", "ca", "pause"))
    assert beside == [], beside  # was ['.web.PID-RANDOM.certkit-tmp'], holding privkey.pem
    assert _key_copies(tmp_path, spki(key), tmp_path / "web") == []
    # the bundle as it was: its files, and the old bundle.p12 (or none) untouched
    names = {p.name for p in (tmp_path / "web").iterdir() if not p.name.startswith(".")}
    assert names == {"cert.pem", "privkey.pem", "fullchain.pem", "ca.pem"} | ({"bundle.p12"} if force else set())
    if force:
        assert (tmp_path / "web" / "bundle.p12").read_bytes() == old_p12

    again = run_certkit("export-p12", "web", "--force", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert not temporaries_under(tmp_path), temporaries_under(tmp_path)
    assert oct((tmp_path / "web" / "bundle.p12").stat().st_mode & 0o777) == "0o600"
    read = subprocess.run(["openssl", "pkcs12", "-in", str(tmp_path / "web" / "bundle.p12"), "-passin", f"pass:{P12}",
                           "-nodes"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert (tmp_path / "web" / "cert.pem").read_text().strip() in read.stdout
    # the folder removed, no copy of its key is left anywhere
    subprocess.run(["rm", "-r", str(tmp_path / "web")], check=True)
    assert _key_copies(tmp_path, spki(key), tmp_path / "web") == []


# --- 2. a batch's folders are checked against the CA directories again as they are written ---------------------
def _tree(folder: Path) -> dict[str, bytes]:
    """The CA directory's files but its inventory (and the lock of its bundle folders), which issuing changes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.startswith(("inventory.sqlite3", ".certkit-bundles.lock"))}


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("which", ["own", "another"])
def test_a_batch_folder_sent_into_a_ca_directory_after_the_plan_is_refused_as_it_is_written(
        ca_dir, ca_env, tmp_path, jobs, which):
    """The --out-dir replaced by a link to a CA directory once the manifest was checked (at "recorded"): the batch
    wrote its bundles, private keys and all, into the CA directory (ca/web, ca/api) and recorded them valid there;
    issue-server checks its folder again as it writes it, the batch did not."""
    from conftest import new_ca

    other = tmp_path / "other"
    other.mkdir()
    if which == "another":
        new_ca(other, "Another CA")  # (a CA directory certkit was not asked to use: never written either)
    into = ca_dir if which == "own" else other / "ca"
    before = _tree(into)
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,web.example,web\nserver,api.example,api\n")
    (tmp_path / "out").mkdir()
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", jobs], ca_env, tmp_path, "recorded",
                        tmp_path / "pause")
    (tmp_path / "out").rename(tmp_path / "planned")
    (tmp_path / "out").symlink_to(into)
    outcome = interrupt(proc, 0, tmp_path / "pause")  # (signal 0: the pause released, nothing sent)

    assert outcome.returncode == 1 and "Traceback" not in outcome.stderr, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The output folder out/"), lines
    assert "never writes there" in lines[0] and "stopped after 0 bundles were written" in lines[0], lines
    assert _tree(into) == before  # was: web/ and api/ with their privkey.pem among the CA's files
    rows = listed(ca_env)
    assert [r for r in rows if r["status"] == "valid" and r["kind"] != "ca"] == [], rows
    run_certkit("check", env=ca_env, check=True)


# --- 3. --force over the bundle of a certificate for other names says so --------------------------------------
def _serial_in(folder: Path) -> str:
    from cryptography import x509

    from integrity_helpers import serial_hex

    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()))


FORCED = {
    "issue-server": (["issue-server", "web.example", "--out", "web"], ["issue-server", "api.example", "--out", "web",
                                                                        "--force"]),
    "issue-client": (["issue-client", "alice", "--out", "web"], ["issue-client", "bob", "--out", "web", "--force"]),
    "sign-csr": (["issue-server", "web.example", "--out", "web"], ["sign-csr", "api.csr", "--server", "--out", "web",
                                                                    "--force"]),
    "issue-batch": (["issue-server", "web.example", "--out", "web"], ["issue-batch", "m.csv", "--force", "--jobs",
                                                                       "1"]),
}


@pytest.mark.parametrize("command", list(FORCED))
def test_force_over_the_bundle_of_other_names_says_the_old_certificate_stays_valid_with_its_key_gone(
        ca_dir, ca_env, tmp_path, command):
    """issue-server api.example --out web --force over web.example's bundle: the old certificate (valid, this CA's,
    the same kind) lost its key without a word, and 'certkit list' then called it "renewed" by a certificate for
    another name. A peer's over a server's was already said ("not renewed"); other names were not."""
    first, forced = FORCED[command]
    run_certkit(*first, cwd=tmp_path, env=ca_env, check=True)
    old = _serial_in(tmp_path / "web")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "api.key"), "-out", str(tmp_path / "api.csr"),
                    "-subj", "/CN=api.example"], check=True, capture_output=True)
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,api.example,web\n")
    proc = run_certkit(*forced, cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())
    assert f"the bundle replaced held the {'client' if command == 'issue-client' else 'server'} certificate {old} for" \
           in said, said
    assert "with its key gone" in said and f"certkit revoke {old} --reason superseded" in said, said
    new = _serial_in(tmp_path / "web")
    rows = {r["serial"]: r for r in listed(ca_env)}
    assert rows[old]["status"] == "valid" and rows[old]["renewed_by"] == new  # as the note says
    check = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"),
                            str(tmp_path / "web" / "cert.pem")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_force_over_a_bundle_of_the_same_names_adds_no_note(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "web.example", "www.example", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    proc = run_certkit("issue-server", "www.example", "web.example", "--out", "web", "--force", cwd=tmp_path,
                       env=ca_env)
    assert proc.returncode == 0 and "the bundle replaced held" not in proc.stdout + proc.stderr, proc.stdout


# --- 4. a killed writer its parent has not reaped (a zombie) is a dead writer -------------------------------------
def _zombie_of(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (SIGKILL) and leave it unreaped, as a container's first process that reaps no orphans leaves a
    killed batch worker: its pid answers kill(pid, 0) and /proc/PID/stat keeps its start time, state Z."""
    import os
    import time

    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:  # never proc.poll() nor wait(): that would reap it
        stat = Path(f"/proc/{proc.pid}/stat").read_bytes()
        if stat[stat.rfind(b")") + 2:][:1] == b"Z":
            return
        assert time.monotonic() < deadline, stat
        time.sleep(0.02)


@pytest.mark.parametrize("point", ["recorded", "staged"])
@pytest.mark.parametrize("command", ["issue-server", "renew"])
def test_a_killed_writer_left_a_zombie_is_settled_by_the_next_command(ca_dir, ca_env, tmp_path, command, point):
    """A writer killed and not reaped was taken for a live one: its row stayed pending (never valid, never
    abandoned) and its staging folder, the private key in it, beside the bundle folder, for as long as the zombie
    lasted (for ever under a container's init that reaps no orphans)."""
    if command == "renew":
        run_certkit("issue-server", "web.example", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    before = _serial_in(tmp_path / "web") if command == "renew" else None
    args = ["issue-server", "web.example", "--out", "web"] if command == "issue-server" else ["renew", "web"]
    proc = start_paused(args, ca_env, tmp_path, point, tmp_path / "pause")
    try:
        _zombie_of(proc)
        rows = listed(ca_env, "--status", "pending")
        assert rows == [], rows  # was: the killed certificate, pending
        assert not temporaries_under(tmp_path), temporaries_under(tmp_path)
        valid = [r["serial"] for r in listed(ca_env) if r["kind"] != "ca"]
        assert valid == ([before] if before else []), valid
        again = run_certkit(*args, cwd=tmp_path, env=ca_env)
        assert again.returncode == 0, again.stderr
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"),
                                 str(tmp_path / "web" / "cert.pem")], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr
    finally:
        proc.wait()
