r"""The twenty-first round's fleet findings (audit helper "fleet"), each as a class:

1. A ``--format k8s`` (or ``jsonl``) output appended to a file that already held a Secret of the same name
   (``certkit issue-server 2001:db8::1 --format k8s >> secrets.yaml``, then ``2001:db8:1::``: both are Secret
   ``2001-db8-1``) was written: the file then held two Secrets of one name, and ``kubectl apply -f`` puts the
   second in place of the first, so the first certificate is gone from the cluster while the inventory says it
   was delivered. Two lines of one batch with one Secret name were refused; across an append they were not. The
   names the appended file holds are now read, and a certificate whose Secret name (jsonl name) is among them is
   refused before anything is signed.
2. ``renew --install-timer`` said what the timer runs while a drop-in of another hand (``systemctl edit``) replaced
   its ExecStart=, and ``--remove-timer`` left that drop-in for the next timer of the name without a word. Both now
   name each drop-in systemd applies to the units.
3. A batch whose reader went early (``issue-batch --format jsonl | head``) said how many certificates were written
   and recorded, and to rerun the remaining lines; the records still in the pipe (up to 64 KiB) reached nobody, and
   a rerun of the remaining lines left them out. The records the reader never read whole are now named.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_certkit


def _appended(env: dict, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``certkit ARGS >> OUT``, as a shell runs it: standard output opened for appending."""
    with out.open("ab") as f:
        return subprocess.run([sys.executable, "-m", "certkit", *args], stdout=f, stderr=subprocess.PIPE, env=env,
                              text=True, timeout=120, cwd=out.parent)


def _kubectl_names(manifest: Path) -> list[str]:
    """The objects kubectl reads in ``manifest``, with no cluster (``annotate --local -o name``)."""
    made = subprocess.run(["kubectl", "annotate", "--local", "-f", manifest, "reviewed=yes", "-o", "name"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.split()


def _valid(env: dict, name: str) -> list[str]:
    listed = json.loads(run_certkit("list", "--name", name, "--json", env=env, check=True).stdout)
    return [c["serial"] for c in listed["certificates"] if c["status"] == "valid"]


def test_an_appended_output_refuses_a_secret_name_the_file_holds_already(tmp_path, ca_env, ca_dir):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    secrets = tmp_path / "secrets.yaml"
    assert _appended(ca_env, secrets, "issue-server", "2001:db8::1", "--format", "k8s").returncode == 0
    assert _appended(ca_env, secrets, "issue-server", "web.example", "--format", "k8s").returncode == 0
    before = secrets.read_bytes()
    assert _kubectl_names(secrets) == ["secret/2001-db8-1", "secret/web.example"]

    # another address, the same Secret name: one command, or a batch line (the other line is fine)
    single = _appended(ca_env, secrets, "issue-server", "2001:db8:1::", "--format", "k8s")
    assert single.returncode == 1, single.stderr
    assert single.stderr.startswith("Error: Standard output is a file that already holds a Secret named "
                                    "'2001-db8-1' (>>?): kubectl apply -f would replace that Secret"), single.stderr
    assert len(single.stderr.splitlines()) == 1, single.stderr
    manifest = tmp_path / "more.csv"
    manifest.write_text("kind,names\nserver,new.example\nserver,2001:db8:1::\n")
    batch = _appended(ca_env, secrets, "issue-batch", str(manifest), "--format", "k8s")
    assert batch.returncode == 1, batch.stderr
    assert "line 3: Standard output is a file that already holds a Secret named '2001-db8-1'" in batch.stderr
    assert secrets.read_bytes() == before  # nothing appended, nothing signed
    assert _kubectl_names(secrets) == ["secret/2001-db8-1", "secret/web.example"]
    assert _valid(ca_env, "2001:db8:1::") == [] and _valid(ca_env, "new.example") == []

    # jsonl: a record of that name already there; a new name is appended as before
    records = tmp_path / "fleet.jsonl"
    assert _appended(ca_env, records, "issue-server", "a.example", "--format", "jsonl").returncode == 0
    again = _appended(ca_env, records, "issue-server", "a.example", "--format", "jsonl")
    assert again.returncode == 1 and "already holds a record named 'a.example'" in again.stderr, again.stderr
    assert _appended(ca_env, records, "issue-server", "b.example", "--format", "jsonl").returncode == 0
    assert [json.loads(line)["name"] for line in records.read_text().splitlines()] == ["a.example", "b.example"]
    # a Secret kubectl wrote (its metadata with more than a name) counts too
    got = subprocess.run(["kubectl", "annotate", "--local", "-f", secrets, "reviewed=yes", "-o", "yaml"],
                         capture_output=True, timeout=120, check=True).stdout
    (tmp_path / "kubectl.yaml").write_bytes(got)
    third = _appended(ca_env, tmp_path / "kubectl.yaml", "issue-server", "web.example", "--format", "k8s")
    assert third.returncode == 1 and "a Secret named 'web.example'" in third.stderr, third.stderr


def test_install_and_remove_timer_name_the_drop_ins_systemd_applies_to_it(tmp_path, ca_env, ca_dir):
    """2. ``renew --install-timer`` said "runs: certkit renew --expiring 30d ..." while a drop-in left by ``systemctl
    edit certkit-renew.service`` (kept by ``--remove-timer``, which said nothing of it) replaced its ExecStart=:
    systemd ran the old command instead. Both now name each drop-in systemd applies to the units."""
    import os

    from conftest import PASSPHRASE

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units" if os.geteuid() == 0 else tmp_path / "config" / "systemd" / "user"
    env = ca_env | {"CERTKIT_SYSTEMD_SYSTEM_DIR": str(tmp_path / "units"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "HOME": str(tmp_path)}
    drop_in = units / "certkit-renew.service.d" / "override.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Service]\nExecStart=\nExecStart=/opt/old-tool/renew-everything\n")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    installed = run_certkit("renew", "--install-timer", "--expiring", "30d", "--passphrase-file", secret,
                            "--unit-dir", units, "--json", env=env, check=True)
    said = json.loads(installed.stdout)
    assert said["notes"] == [f"systemd also applies {drop_in} to this timer (a drop-in certkit did not write, as "
                             "'systemctl edit' makes one): what it sets wins over the unit (an ExecStart= there runs "
                             "instead of the renewal said here); remove it if it was made for an earlier timer."]
    # systemd itself runs the drop-in's command, not the renewal the unit says
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", units / "certkit-renew.service"],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:"))
    assert "/opt/old-tool/renew-everything is not executable" in verified.stderr, verified.stderr
    text = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env, check=True).stdout
    assert f"  note     left {drop_in}, a drop-in certkit did not write: a timer installed later under this name " \
           "takes it; remove it if it was for this one." in text, text
    assert drop_in.exists() and not (units / "certkit-renew.service").exists()


_READER = r"""
import os, sys
seen, after = 0, 0
while seen < 3 or after < 10:  # three whole records, and ten bytes of the fourth: then the reader goes
    byte = os.read(0, 1)
    if not byte:
        break
    sys.stdout.buffer.write(byte)
    if seen == 3:
        after += 1
    seen += byte == b"\n"
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_batch_whose_reader_went_says_which_records_it_never_read(tmp_path, ca_env, ca_dir, jobs):
    """3. ``issue-batch --format jsonl | head`` said "The batch stopped after 16 certificates were written to standard
    output and recorded. Rerun the manifest's remaining lines.", while the reader had read 3 records: the others
    were still in the pipe when it went, and reached nobody; a rerun of the remaining lines left them out. The
    records never read whole (the pipe's unread bytes, FIONREAD) are now named."""
    manifest = tmp_path / "many.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,n{i:02}.pipe.example\n" for i in range(40)))
    with (tmp_path / "got.jsonl").open("wb") as got:
        reader = subprocess.Popen([sys.executable, "-c", _READER], stdin=subprocess.PIPE, stdout=got)
        batch = subprocess.run([sys.executable, "-m", "certkit", "issue-batch", manifest, "--format", "jsonl",
                                "--jobs", jobs], stdout=reader.stdin, stderr=subprocess.PIPE, text=True, env=ca_env,
                               timeout=300)
        reader.stdin.close()
        reader.wait(timeout=60)
    assert batch.returncode == 1, batch.stderr
    lines = (tmp_path / "got.jsonl").read_bytes().split(b"\n")
    read = [json.loads(line)["name"] for line in lines[:3]]
    assert len(lines) == 4 and len(lines[3]) == 10  # three records read whole, and ten bytes of the fourth
    listed = json.loads(run_certkit("list", "--name", "*.pipe.example", "--json", env=ca_env, check=True).stdout)
    written = {c["subject"].removeprefix("CN=") for c in listed["certificates"] if c["status"] == "valid"}
    never = len(written - set(read))
    assert never >= 1 and set(read) <= written
    count = "1 record" if never == 1 else f"{never} records"
    assert batch.stderr.startswith("Error: The reader of standard output closed it (a broken pipe) before everything "
                                   f"was written. It never read whole the last {count} written to it ("), batch.stderr
    shown = batch.stderr.split(" written to it (", 1)[1].split(")", 1)[0]
    named = shown.split(" and ")[0].split(", ")
    assert set(named) <= written - set(read) and len(named) == min(never, 5), (shown, written - set(read))
    assert "nobody received them or their keys; issue them again too." in batch.stderr
