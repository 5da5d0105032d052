r"""The twentieth round's fleet findings (audit helper "fleet"), each as a class:

1. ``renew FILE``, ``revoke FILE`` and ``--force`` over an output file said "FILE does not hold a readable
   certificate" (``--force``: "holds a private key and is no jsonl, k8s or tar output") of certkit outputs as the
   usual tools hand them back: a Secret in JSON (``kubectl get secret NAME -o json``, a ``List`` of them, or one per
   line with ``jq -c``), jsonl records pretty-printed by ``jq .``, and compressed files (``fleet.tar.gz``,
   ``secrets.yaml.xz``), which hold a certificate but which certkit reads uncompressed. JSON values over several
   lines are now read as jq reads them (whole ones only), and a compressed file is refused as such, with the
   command that decompresses it.
2. ``issue-batch --resume`` said a folder holding a client certificate without subject alternative names held "a
   client certificate for no names": it is for CN=Rob.
3. A hook that started something which left its session (``setsid cmd &``, a daemon's double fork) while holding the
   hook's output, or that hung with such a child, was reported "so it was stopped", yet that process went on
   running: the hook's process group, which certkit killed, no longer held it. certkit now also kills every process
   that holds the hook's output pipe (found in /proc); a daemon whose output is redirected is left alone, as
   documented.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import openssl, run_certkit


def _env(ca_env: dict, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return ca_env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def _kubectl_json(manifest: Path, out: Path) -> None:
    """``manifest`` as kubectl prints it in JSON, with no cluster (``annotate --local -o json``): one pretty
    object per Secret, keys in kubectl's order."""
    made = subprocess.run(["kubectl", "annotate", "--local", "-f", manifest, "reviewed=yes", "-o", "json"],
                          capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    out.write_bytes(made.stdout)


def _jq(*args, out: Path) -> None:
    with out.open("wb") as f:
        made = subprocess.run(["jq", *map(str, args)], stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert made.returncode == 0, made.stderr


def _statuses(env: dict, name: str) -> list[str]:
    listed = json.loads(run_certkit("list", "--name", name, "--json", env=env, check=True).stdout)
    return sorted(c["status"] for c in listed["certificates"])


def test_renew_revoke_and_force_read_secrets_in_json_and_jq_pretty_printed_records(tmp_path, ca_env, ca_dir):
    if shutil.which("kubectl") is None or shutil.which("jq") is None:
        pytest.skip("kubectl or jq is not installed")
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "one.example.com", "--format", "k8s", "--out", tmp_path / "one.yaml", env=env,
                cwd=tmp_path, check=True)
    _kubectl_json(tmp_path / "one.yaml", tmp_path / "one.json")  # kubectl get secret one.example.com -o json
    assert (tmp_path / "one.json").read_bytes().startswith(b"{\n")
    proc = run_certkit("renew", tmp_path / "one.json", "--out", tmp_path / "one", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "one.json does not hold a readable certificate."
    assert "privkey.pem" in json.loads(proc.stdout)["files"]  # the key the Secret holds, kept
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", tmp_path / "one/ca.pem",
                   tmp_path / "one/cert.pem").returncode == 0
    assert openssl("x509", "-in", tmp_path / "one/cert.pem", "-noout", "-pubkey").stdout == \
        openssl("pkey", "-in", tmp_path / "one/privkey.pem", "-pubout").stdout

    # a List of Secrets (kubectl get secrets -o json) is named as the k8s output it is, its certificates listed
    manifest = tmp_path / "fleet.yaml"
    lines = "kind,names\n" + "".join(f"server,w{n}.example.com\n" for n in range(3))
    (tmp_path / "fleet.csv").write_text(lines + "client,Zoë Ünal\n", encoding="utf-8")
    run_certkit("issue-batch", tmp_path / "fleet.csv", "--format", "k8s", "--out", manifest, env=env, cwd=tmp_path,
                check=True)
    _kubectl_json(manifest, tmp_path / "stream.json")
    _jq("-s", '{apiVersion: "v1", kind: "List", items: .}', tmp_path / "stream.json", out=tmp_path / "list.json")
    proc = run_certkit("renew", tmp_path / "list.json", "--out", tmp_path / "x", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "list.json is an output file of --format k8s holding 4 certificates" in proc.stderr, proc.stderr

    # one Secret of it on one line (jq -c): revoked; a Secret cut off holds nothing
    _jq("-c", 'select(.metadata.name == "w1.example.com")', tmp_path / "stream.json", out=tmp_path / "w1.json")
    proc = run_certkit("revoke", tmp_path / "w1.json", "--reason", "superseded", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "w1.json does not hold a readable certificate."
    assert _statuses(env, "w1.example.com") == ["revoked"]
    whole = (tmp_path / "stream.json").read_bytes()
    (tmp_path / "cut.json").write_bytes(whole[:whole.index(b'"tls.key"') + 40])  # a dead writer's file
    proc = run_certkit("revoke", tmp_path / "cut.json", env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "does not hold a readable certificate" in proc.stderr

    # certkit's own jsonl, pretty-printed by jq (jq . fleet.jsonl > fleet.json): read record by record
    run_certkit("issue-client", "Ada Ç", "--format", "jsonl", "--out", tmp_path / "ada.jsonl", env=env, cwd=tmp_path,
                check=True)
    _jq(".", tmp_path / "ada.jsonl", out=tmp_path / "ada.json")
    proc = run_certkit("revoke", tmp_path / "ada.json", "--reason", "superseded", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _statuses(env, "Ada Ç") == ["revoked"]

    # --force over the Secrets in JSON (kubectl get secrets -o json > fleet.yaml): the k8s output they are; w0's
    # certificate recorded as renewed by the new one, the others released (still valid, named), but w1, revoked
    shutil.copyfile(tmp_path / "stream.json", manifest)
    proc = run_certkit("issue-server", "w0.example.com", "--format", "k8s", "--out", manifest, "--force", "--json",
                       env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # was: "... is no jsonl, k8s or tar output certkit wrote"
    others = [json.loads(run_certkit("list", "--name", n, "--json", env=env, check=True).stdout)["certificates"][0]
              for n in ("w2.example.com", "Zoë Ünal")]
    assert sorted(json.loads(proc.stdout)["released"]) == sorted(c["serial"] for c in others)
    listed = json.loads(run_certkit("list", "--name", "w0.example.com", "--json", env=env, check=True).stdout)
    assert sorted(bool(c["renewed_by"]) for c in listed["certificates"]) == [False, True], listed


@pytest.mark.parametrize("tool, suffix, name", [("gzip", ".gz", "gzip"), ("xz", ".xz", "xz")])
def test_renew_and_revoke_say_a_compressed_output_is_compressed(tmp_path, ca_env, ca_dir, tool, suffix, name):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "tgz.example.com", "--format", "tar", "--out", tmp_path / "fleet.tar", env=env,
                cwd=tmp_path, check=True)
    assert subprocess.run([tool, "-k", tmp_path / "fleet.tar"], timeout=60).returncode == 0
    packed = tmp_path / f"fleet.tar{suffix}"
    for command in (("renew", packed, "--out", tmp_path / "x"), ("revoke", packed)):
        proc = run_certkit(*command, env=env, cwd=tmp_path)
        assert proc.returncode == 1
        # was: "fleet.tar.gz does not hold a readable certificate.", of a file that holds one
        assert proc.stderr.startswith(f"Error: {packed} is compressed ({name})"), proc.stderr
        assert f"-k {packed}" in proc.stderr and proc.stderr.count("\n") == 1
    assert _statuses(env, "tgz.example.com") == ["valid"]
    assert not (tmp_path / "x").exists()


def test_resume_names_the_client_certificate_a_folder_holds_by_its_subject(tmp_path, ca_env, ca_dir):
    """A folder holding a client certificate without subject alternative names was said to hold a certificate "for no
    names" when --resume would not keep it for another line: it is for CN=Rob."""
    env = _env(ca_env, tmp_path)
    (tmp_path / "one.csv").write_text("kind,names,out\nclient,Rob,r\n", encoding="utf-8")
    run_certkit("issue-batch", tmp_path / "one.csv", "--out-dir", tmp_path / "out", env=env, cwd=tmp_path, check=True)
    (tmp_path / "two.csv").write_text("kind,names,out\nserver,rob.example.com,r\n", encoding="utf-8")
    proc = run_certkit("issue-batch", tmp_path / "two.csv", "--out-dir", tmp_path / "out", "--resume", env=env,
                       cwd=tmp_path)
    assert proc.returncode == 1
    assert "its certificate is a client certificate for CN=Rob; the line asks for a server certificate for " \
           "DNS:rob.example.com; pass --force" in proc.stderr, proc.stderr  # was: "a client certificate for no names"
    subject = openssl("x509", "-in", tmp_path / "out/r/cert.pem", "-noout", "-subject").stdout.strip()
    assert subject == b"subject=CN = Rob"  # the folder is left as it was


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie that nobody reaped has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_hook_timeout_stops_what_left_the_hooks_session_holding_its_output(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "hook.example.com", "--out", tmp_path / "hook", env=env, cwd=tmp_path, check=True)
    pids = tmp_path / "pids"
    escaped = f'setsid sh -c \'echo $$ >> "{pids}"; exec sleep 300\' &'  # holds the hook's output
    daemon = f'setsid sh -c \'echo $$ > "{pids}.daemon"; exec sleep 300\' >/dev/null 2>&1 &'  # a proper daemon
    hooks = {"left": f"{escaped} {daemon} echo started", "hung": f"{escaped} sleep 300"}
    try:
        for case, hook in hooks.items():
            proc = run_certkit("renew", "--all", "--name", "hook.example.com", "--exec-timeout", "2", "--exec", hook,
                               "--json", env=env, cwd=tmp_path, subprocess=True)
            assert proc.returncode == 1, proc.stderr
            run = json.loads(proc.stdout)["certificates"][0]["hook"]
            assert run["error"].startswith("exit 0, but what it started still held its output after 2 s, so it was "
                                           "stopped (" if case == "left" else
                                           "still running after 2 s, so it was stopped"), run
            started = [int(p) for p in pids.read_text().split()]
            # was: the setsid'd process went on running (sleep 300), though the report said it was stopped
            assert not any(_alive(pid) for pid in started), (case, started)
        assert _alive(int(Path(f"{pids}.daemon").read_text()))  # redirected: left running, as docs/renew.md says
    finally:
        for name in (pids, Path(f"{pids}.daemon")):
            for pid in (name.read_text().split() if name.exists() else ()):
                if _alive(int(pid)):
                    os.kill(int(pid), 9)
