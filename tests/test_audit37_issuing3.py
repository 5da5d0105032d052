"""Round 37, issuing pipeline (the promise: nothing is written where the user did not say, nothing left behind).

1. issue-batch checks that no line writes outside --out-dir when it checks the manifest; the out-dir (or a folder
   below it) replaced afterwards by a link to another folder of the same user was followed as the bundles were
   written, private keys and all, and recorded valid there. Each folder is now checked again as it is written
   against where --out-dir led at the check: each bundle in turn, uncached (the --out-dir's device and inode, an
   lstat per folder below it), not once per chunk, also for an --out-dir the batch itself made.
2. What a killed writer left that no inventory row points to stayed unsaid: export-p12 killed while writing left
   its bundle.p12 under a temporary name in the folder (0600, the key in it under the export password), and
   ``certkit check`` said everything was OK; init-ca of an intermediate killed with its CA directory staged left
   that copy beside --ca-dir (its ca-key.pem in it), though list settled its row (abandoned). check now names each
   dead writer's leftover in or beside a recorded place with the command that removes it, and the settling of an
   intermediate's row removes its staged copy, as an issuing command's is; and check of a CA directory that an
   init-ca died creating names the copy it assembled beside it.
3. A batch into one file (--format jsonl|k8s|tar --out FILE) killed just after putting the file in place is
   complete (its rows are settled valid by the next command), but its rerun said only "FILE already exists; pass
   --force to replace it", and --resume said "run the batch again instead", which led there: --force issued every
   certificate again, the first ones staying valid. The refusal now says the file holds N certificates recorded
   valid and that the command that wrote it finished; --resume's refusal says a file in place is a complete batch.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_certkit
from integrity_helpers import interrupt, listed, start_paused, temporaries_under

P12 = "p12-password-37"


# --- 1. a batch's folders stay inside --out-dir as they are written ---------------------------------------------
@pytest.mark.both_inventories
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("swapped", ["out", "out/sub"])
def test_a_batch_folder_sent_out_of_its_out_dir_after_the_plan_is_refused_as_it_is_written(ca_dir, ca_env, tmp_path,
                                                                                             jobs, swapped):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("the user's own\n")
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,web.example,sub/web\nserver,api.example,sub/api\n")
    (tmp_path / "out" / "sub").mkdir(parents=True)
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", jobs], ca_env, tmp_path, "recorded",
                        tmp_path / "pause")
    (tmp_path / swapped).rename(tmp_path / "planned")
    (tmp_path / swapped).symlink_to(elsewhere)
    outcome = interrupt(proc, 0, tmp_path / "pause")  # (signal 0: the pause released, nothing sent)

    assert outcome.returncode == 1 and "Traceback" not in outcome.stderr, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The output folder out/sub/"), lines
    assert "leads outside the batch's output folder out now" in lines[0], lines
    assert "stopped after 0 bundles were written" in lines[0], lines
    # was: elsewhere/web (or elsewhere/sub/web) and api with their privkey.pem, recorded valid there
    assert sorted(p.relative_to(elsewhere).as_posix() for p in elsewhere.rglob("*")) == ["notes.txt"]
    rows = listed(ca_env)
    assert [r for r in rows if r["status"] in ("valid", "pending") and r["kind"] != "ca"] == [], rows
    run_certkit("check", env=ca_env, check=True)


def test_a_batch_whose_out_dir_is_a_link_from_the_start_still_writes_there(ca_dir, ca_env, tmp_path):
    """The check is against where --out-dir led at the plan: an out-dir that is a link all along is written."""
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,web.example,web\n")
    proc = run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"),
                             str(tmp_path / "real" / "web" / "cert.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert [r["status"] for r in listed(ca_env) if r["kind"] != "ca"] == ["valid"]
    assert Path(tmp_path / "real" / "web" / "privkey.pem").stat().st_mode & 0o777 == 0o600


# --- 2. a dead writer's leftover that no row points to is said by check (or removed by the settling) ------------
def _check_words(env: dict) -> tuple[int, str]:
    proc = run_certkit("check", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.both_inventories
@pytest.mark.parametrize("force", [False, True])
def test_a_killed_export_p12s_temporary_file_is_named_by_check_with_the_command_that_removes_it(
        ca_dir, ca_env, tmp_path, force):
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12)
    run_certkit("issue-server", "web.test", "--out", "web", cwd=tmp_path, env=env, check=True)
    if force:
        run_certkit("export-p12", "web", cwd=tmp_path, env=env, check=True)
    proc = start_paused(["export-p12", "web", *(["--force"] if force else [])], env, tmp_path, "staged",
                        tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    left = temporaries_under(tmp_path / "web")
    assert len(left) == 1 and left[0].stat().st_mode & 0o777 == 0o600, left
    # what it holds: the whole key, under the export password
    read = subprocess.run(["openssl", "pkcs12", "-in", str(left[0]), "-passin", f"pass:{P12}", "-nodes"],
                          capture_output=True, text=True)
    assert read.returncode == 0 and "PRIVATE KEY" in read.stdout, read.stderr

    code, said = _check_words(env)
    assert code == 0, said  # a warning: nothing of the CA fails
    assert f"WARNING leftovers {left[0]} was left by a certkit command killed while writing it" in said, said
    assert f"Remove it: rm -r -- {left[0]}" in said, said  # was: every line OK, the file never named
    assert left[0].exists()  # check changes nothing
    subprocess.run(["rm", "-r", "--", str(left[0])], check=True)  # the command it gives
    code, said = _check_words(env)
    assert code == 0 and "leftovers" not in said, said


def test_check_does_not_name_a_live_writers_temporary_file(ca_dir, ca_env, tmp_path):
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12)
    run_certkit("issue-server", "web.test", "--out", "web", cwd=tmp_path, env=env, check=True)
    proc = start_paused(["export-p12", "web"], env, tmp_path, "staged", tmp_path / "pause")
    try:
        assert temporaries_under(tmp_path / "web")
        code, said = _check_words(env)
        assert code == 0 and "leftovers" not in said, said
    finally:
        outcome = interrupt(proc, 0, tmp_path / "pause")
    assert outcome.returncode == 0, outcome
    assert not temporaries_under(tmp_path / "web")


@pytest.mark.both_inventories
def test_a_killed_intermediate_init_cas_staged_directory_goes_when_its_row_is_settled(ca_dir, ca_env, tmp_path):
    env = dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=ca_env["CERTKIT_CA_PASSPHRASE"])
    args = ["init-ca", "--name", "Inter", "--parent-ca-dir", str(ca_dir), "--ca-dir", str(tmp_path / "inter")]
    proc = start_paused(args, env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    staged = [p for p in tmp_path.iterdir() if p.name.startswith(".inter.")]
    assert len(staged) == 1 and (staged[0] / "ca-key.pem").is_file(), staged

    rows = listed(ca_env)  # settles the dead writer's row
    assert [r["status"] for r in rows if r["kind"] == "ca"] == [], rows  # abandoned: not listed
    assert not staged[0].exists()  # was: left for good beside --ca-dir, the intermediate's key in it
    assert not (tmp_path / "inter").exists()
    code, said = _check_words(ca_env)
    assert code == 0 and "leftovers" not in said, said
    again = run_certkit(*args, env=env)  # and the same init-ca runs again
    assert again.returncode == 0, again.stderr
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"),
                             str(tmp_path / "inter" / "ca.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_check_of_a_ca_directory_an_init_ca_died_creating_names_what_it_left(tmp_path):
    """init-ca killed with its CA directory assembled beside --ca-dir: check said only that the directory does
    not exist, while its copy, the CA key in it, lay beside it under a hidden name."""
    from conftest import PASSPHRASE, certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = start_paused(["init-ca", "--name", "Root 37"], env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    staged = [p for p in tmp_path.iterdir() if p.name.startswith(".root.")]
    assert len(staged) == 1 and (staged[0] / "ca-key.pem").is_file(), staged
    assert staged[0].stat().st_mode & 0o777 == 0o700

    code, said = _check_words(env)
    assert code == 1 and f"{tmp_path / 'root'} does not exist" in said, said
    assert f"WARNING leftovers {staged[0]} was left by a certkit init-ca killed while creating" in said, said
    assert f"or remove it: rm -r -- {staged[0]}" in said, said
    assert staged[0].exists()  # check changes nothing
    again = run_certkit("init-ca", "--name", "Root 37", env=env)  # as it says: init-ca removes it as it starts
    assert again.returncode == 0, again.stderr
    assert not staged[0].exists()
    code, said = _check_words(env)
    assert code == 0 and "leftovers" not in said, said
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root" / "ca.pem"),
                             str(tmp_path / "root" / "ca.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


# --- 3. a batch file in place is a finished batch: its rerun says so, rather than pointing at --force ---------------
@pytest.mark.both_inventories
@pytest.mark.parametrize("fmt", ["jsonl", "tar", "k8s"])
def test_the_rerun_of_a_batch_killed_once_its_file_was_in_place_says_the_batch_is_complete(ca_dir, ca_env, tmp_path,
                                                                                            fmt):
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example\nserver,b.example\nserver,c.example\n")
    args = ["issue-batch", "m.csv", "--format", fmt, "--out", f"out.{fmt}"]
    proc = start_paused(args, ca_env, tmp_path, "placed", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    held = (tmp_path / f"out.{fmt}").read_bytes()

    again = run_certkit(*args, cwd=tmp_path, env=ca_env)
    said = " ".join(again.stderr.split())
    assert again.returncode == 1 and "Traceback" not in said and len(again.stderr.strip().splitlines()) == 1, said
    # was: "out.jsonl already exists; pass --force to replace it." alone
    assert f"out.{fmt} already exists, holding 3 certificates this CA recorded valid ('certkit list' shows them): " \
           "the command that wrote it finished, even if stopped just after putting it in place. --force issues them " \
           "again (the 3 in it stay valid); pass --force to replace it." in said, said
    resumed = run_certkit(*args, "--resume", cwd=tmp_path, env=ca_env)
    said = " ".join(resumed.stderr.split())
    assert resumed.returncode == 2 and "if that file is there, the batch is complete" in said, said  # was: "run the
    assert "run the batch again instead" not in said  # batch again instead", which the refusal above met
    assert (tmp_path / f"out.{fmt}").read_bytes() == held  # neither run changed it
    rows = [r for r in listed(ca_env) if r["kind"] != "ca"]
    assert sorted(r["status"] for r in rows) == ["valid"] * 3, rows  # as the refusal says
    assert {r["folder"] for r in rows} == {str(tmp_path / f"out.{fmt}")}


def test_an_existing_file_no_certificate_is_recorded_in_is_refused_as_before(ca_dir, ca_env, tmp_path):
    (tmp_path / "taken.jsonl").write_text("")
    proc = run_certkit("issue-server", "a.example", "--format", "jsonl", "--out", "taken.jsonl", cwd=tmp_path,
                       env=ca_env)
    assert proc.returncode == 1 and proc.stderr.strip() == "Error: taken.jsonl already exists; pass --force to " \
                                                           "replace it.", proc.stderr


@pytest.mark.both_inventories
def test_check_leaves_a_pending_rows_leftovers_to_the_settling_it_names(ca_dir, ca_env, tmp_path):
    """A batch killed with a bundle staged beside its folder: its rows are pending, and check says the next command
    settles them (which removes the staged folder); the leftovers warning does not send the user to rm -r it too."""
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example\nserver,b.example\n")
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out"], ca_env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    assert temporaries_under(tmp_path / "out")
    code, said = _check_words(ca_env)
    assert code == 0 and "certificates are pending" in said and "leftovers" not in said, said
    listed(ca_env)  # settles them, as check says
    assert not temporaries_under(tmp_path / "out")


@pytest.mark.parametrize("swapped", ["out", "out/sub"])
def test_a_batch_folder_sent_out_of_its_out_dir_while_its_chunk_is_written_is_refused(ca_dir, ca_env, tmp_path,
                                                                                        swapped):
    """The swap made once the chunk's first bundle is written, before the next: each bundle is checked as it is
    written (not once per chunk, with the folders above resolved once), so none of the chunk's later bundles
    follows the link; the first stays whole where it was written, recorded valid there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lines = "".join(f"server,h{i}.example,sub/h{i}\n" for i in range(4))
    (tmp_path / "m.csv").write_text("kind,names,out\n" + lines)
    (tmp_path / "out" / "sub").mkdir(parents=True)
    marker = tmp_path / "pause"
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", "1"], ca_env, tmp_path, "writing",
                        marker)
    first = marker.read_text()
    marker.unlink()  # the first bundle is written; the batch pauses again before the second
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text() == first and (tmp_path / "out" / "sub" / "h0").is_dir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
        time.sleep(0.01)
    (tmp_path / swapped).rename(tmp_path / "planned")
    (tmp_path / swapped).symlink_to(elsewhere)
    outcome = interrupt(proc, 0, tmp_path / "pause")

    assert outcome.returncode == 1 and "Traceback" not in outcome.stderr, outcome
    assert len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
    assert sorted(p.name for p in elsewhere.rglob("*")) == [], sorted(elsewhere.rglob("*"))
    rows = [r for r in listed(ca_env) if r["kind"] != "ca"]
    valid = {r["folder"] for r in rows if r["status"] == "valid"}
    assert not any(str(elsewhere) in f for f in valid), rows
    assert len(valid) == 1 and valid == {str(tmp_path / "out" / "sub" / "h0")}, rows  # (its path at the time)
    first_bundle = tmp_path / "planned" / ("h0" if swapped == "out/sub" else "sub/h0")  # whole where it was written
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"), str(first_bundle / "cert.pem")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert "leads outside the batch's output folder out now" in outcome.stderr, outcome.stderr


def test_a_new_out_dir_made_a_link_between_two_bundles_of_a_later_chunk_is_refused(ca_dir, ca_env, tmp_path):
    """--out-dir not there when the manifest was checked (the batch makes it): from the second chunk on, each bundle
    is checked against the folder the batch made, uncached, as for an --out-dir that was there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(4)))
    marker = tmp_path / "pause"
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="2")
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", "1"], env, tmp_path, "writing", marker)
    deadline = time.monotonic() + 60
    while True:  # released at each bundle until paused with the second chunk's first written: before its second
        assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
        if marker.exists():
            if (tmp_path / "out" / "h2.example").is_dir():
                break
            marker.unlink()
        time.sleep(0.01)
    (tmp_path / "out").rename(tmp_path / "planned")
    (tmp_path / "out").symlink_to(elsewhere)
    outcome = interrupt(proc, 0, marker)

    assert outcome.returncode == 1 and "leads outside the batch's output folder out now" in outcome.stderr, outcome
    assert sorted(elsewhere.rglob("*")) == []  # was: elsewhere/h3.example, its key in it
    assert sorted(p.name for p in (tmp_path / "planned").iterdir()) == ["h0.example", "h1.example", "h2.example"]
