"""The sixteenth round's fleet findings (audit helper "fleet"), each as a class:

1. an IPv6 address written in full (``2001:DB8:0:0:0:0:0:7``, as ``openssl x509 -text`` prints it, and as
   ``issue-server`` takes it) found no certificate in ``renew NAME``, ``list --name`` nor ``renew --expiring
   --name`` (a timer with it renewed nothing, quietly): the inventory holds the compressed form, and a
   name typed is now matched in that form too;
2. one damaged inventory row stopped a whole bulk renewal (``renew --expiring``: nothing renewed, one
   ``Error:`` line), where ``list`` lists the others and ``issue-*`` and ``renew NAME`` work: the row is now
   ``failed`` (stage ``plan``, the row's problem said), the others are renewed, the exit status is 1; a
   damaged row at the end of a page of 500 no longer ends the reading early either;
3. ``renew --install-timer`` without ``--p12-password-file`` said that its renewals remove bundle.p12 files only
   when $CERTKIT_P12_PASSWORD was set in that shell (renew.md: "installing says so"): a Java service's keystore
   went at the first nightly renewal without a word; installing now names a bundle.p12 the timer would remove;
4. a bulk renewal's warning about a moved bundle said only "renew it by name with --out DIR", which makes a new
   folder and leaves the moved bundle, the one a server reads, to expire; it now says to renew the folder where
   the bundle is now (certkit renew FOLDER), after which later runs renew it there;
5. a timer installed as root (a system unit) ran its hooks without HOME, which systemd gives a system service only
   with User= (systemd.exec(5)): a hook's ~ stayed "~" and "$HOME/certs" was "/certs" every night, while it
   worked by hand and under cron; the unit now sets HOME to root's home folder;
6. a bundle folder replaced by a symbolic link to where the bundle went (moved to a bigger disk) failed every
   bulk renewal with "The output folder ... is a symbolic link ... Give the real path" (no output folder was
   given, and a bulk renewal takes no path); it now says it is the bundle folder, where it leads, and to renew
   that folder, after which later runs renew it in place;
7. a standard error whose reader left (``certkit renew --expiring 30d ... 2>&1 | head``) stopped a bulk renewal at the
   first hook output it showed: the other due certificates were not renewed, ``--exec-once`` (the server reload)
   did not run for those that were, and nothing was reported, exit 1; a single renewal lost its --exec-once and
   its report the same way. The output is now lost, not the run;
8. ``certkit inspect`` and ``certkit verify`` of a ``--format k8s`` manifest (certkit's own output, which ``renew``
   reads) said "neither a PEM file nor a DER certificate ... (it may be truncated or not a certificate at all)",
   while they read a jsonl file; they now read each Secret's tls.crt, ca.crt and tls.key (and what kubectl
   itself writes), a cut manifest in one line; and a ``--format tar`` archive, read until then as loose PEM text,
   is read by its bundle folders: verify's note said "a server given this file sends the others as its chain";
   (minor) renew.md named the fields of a failed bulk outcome "stage and reason": they are stage and error.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from test_fleet_timer import exec_start, plain_env

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, openssl, run_certkit


def _env(ca_env: dict, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return ca_env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                     "XDG_DATA_HOME": str(home / ".local" / "share")}


def _serial(folder: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


def _verify(folder: Path) -> None:
    proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert proc.returncode == 0, proc.stderr


# --- 1: an IPv6 address in any written form ---------------------------------------------------------------------
def test_an_ipv6_address_written_in_full_finds_its_certificate(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    web = tmp_path / "v6"
    run_certkit("issue-server", "2001:db8:0:0:0:0:0:7", "--days", "10", "--out", web, env=env, check=True)
    shown = openssl("x509", "-in", web / "cert.pem", "-noout", "-ext", "subjectAltName").stdout.decode()
    full = re.search(r"IP Address:([0-9A-Fa-f:]+)", shown).group(1)
    assert full == "2001:DB8:0:0:0:0:0:7"  # what a user copies from openssl
    listed = json.loads(run_certkit("list", "--name", full, "--json", env=env, check=True).stdout)
    assert [c["names"] for c in listed["certificates"]] == [["IP:2001:db8::7"]]
    old = _serial(web)
    proc = run_certkit("renew", full, env=env)  # by the name, as openssl wrote it
    assert proc.returncode == 0, proc.stderr
    assert _serial(web) != old
    _verify(web)
    # a bulk renewal (what a timer runs) with the address in another long form renews it too
    proc = run_certkit("renew", "--all", "--name", "2001:0db8:0::7", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["renewed"] == 1 and report["certificates"][0]["names"] == ["IP:2001:db8::7"]
    assert _serial(web) == report["certificates"][0]["new_serial"]
    _verify(web)
    # another address, or a glob, still matches only what it says
    assert "No certificates match" in run_certkit("list", "--name", "2001:db8:0:0:0:0:0:8", env=env).stdout
    proc = run_certkit("renew", "--all", "--name", "2001:db8:0:0:0:0:0:8", env=env)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr  # nothing renewed, and (round 24) said so:
    assert proc.stderr.startswith("Warning: --name '2001:db8:0:0:0:0:0:8' matches no certificate"), proc.stderr
    assert len(json.loads(run_certkit("list", "--name", "2001:db8::*", "--json", env=env).stdout)["certificates"]) == 3


# --- 2: a damaged inventory row fails alone ---------------------------------------------------------------------
def _damage(ca_dir: Path, serial: str, column: str = "names", value: str = "garbage") -> None:
    from certkit.store import CADirectory

    with CADirectory(ca_dir).inventory.transaction(write=True) as tx:
        tx.execute(f"UPDATE certificates SET {column} = ? WHERE serial = ?", (value, serial))


@pytest.mark.both_inventories
def test_a_damaged_inventory_row_fails_alone_and_the_others_are_renewed(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    folders = {name: tmp_path / name for name in ("a.example.com", "b.example.com", "c.example.com")}
    for name, folder in folders.items():
        run_certkit("issue-server", name, "--days", "10", "--out", folder, env=env, check=True)
    before = {name: _serial(folder) for name, folder in folders.items()}
    _damage(ca_dir, before["b.example.com"])
    assert run_certkit("list", env=env).returncode == 0  # list reads on, with a warning
    proc = run_certkit("renew", "--expiring", "30d", "--days", "90", "--json", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Error: 1 of 3 renewals failed." in proc.stderr
    report = json.loads(proc.stdout)
    assert (report["ok"], report["renewed"], report["failed"]) == (False, 2, 1)
    [failed] = [c for c in report["certificates"] if c["outcome"] == "failed"]
    assert failed["serial"] == before["b.example.com"] and failed["stage"] == "plan"
    assert "is damaged (names is 'garbage', not a JSON list)" in failed["error"]
    assert failed["folder"] == str(folders["b.example.com"]) and failed["kind"] == "server"
    for name in ("a.example.com", "c.example.com"):  # renewed in place, and served by the same CA
        assert _serial(folders[name]) != before[name]
        _verify(folders[name])
    assert _serial(folders["b.example.com"]) == before["b.example.com"]  # untouched
    # the text report says it too, and a timer can be installed beside the damaged row
    proc = run_certkit("renew", "--expiring", "30d", "--name", "b.*", env=env)
    assert proc.returncode == 1 and "failed   " + before["b.example.com"] in proc.stdout, proc.stdout
    assert run_certkit("renew", "--expiring", "30d", "--name", "a.*", env=env).returncode == 0  # not this glob's
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    proc = run_certkit("renew", "--install-timer", "--expiring", "30d", "--passphrase-file", secret, "--unit-dir",
                       tmp_path / "units", env=env)
    assert proc.returncode == 0, proc.stderr
    units = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert units == ["certkit-renew.service", "certkit-renew.timer"]


def test_a_damaged_row_at_a_pages_end_ends_no_reading(tmp_path, ca_env, ca_dir):
    from certkit.fleet import Selection, selected
    from certkit.store import CADirectory

    env = _env(ca_env, tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"client,c{i:04d}\n" for i in range(503)))
    run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "m.jsonl", env=env, check=True)
    inventory = CADirectory(ca_dir).inventory
    order = [row["serial"] for row in selected(inventory, Selection())]
    assert len(order) == 503
    for serial in (order[0], order[499]):  # the first row, and the last of the first page of 500
        _damage(ca_dir, serial, "not_before", "0000-garbage")
    damaged: list = []
    read = [row["serial"] for row in selected(inventory, Selection(), damaged=damaged)]
    assert read == [s for s in order if s not in (order[0], order[499])]
    assert [exc.serial for exc, _raw in damaged] == [order[0], order[499]]


def test_renew_md_names_the_fields_a_failed_renewal_has(tmp_path, ca_env, ca_dir):
    """renew.md said "failed with the stage and reason": a script reading .reason of a failed one got null."""
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "f.example.com", "--days", "10", "--out", tmp_path / "f", env=env, check=True)
    (tmp_path / "f" / "privkey.pem").write_text("not a key\n")  # refused before anything is signed
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=env)
    assert proc.returncode == 1, proc.stderr
    [failed] = json.loads(proc.stdout)["certificates"]
    assert failed["outcome"] == "failed" and failed["stage"] == "plan" and failed["error"] and "reason" not in failed
    text = " ".join((Path(__file__).resolve().parent.parent / "docs" / "renew.md").read_text().split())
    assert "`failed` with its `stage`, `plan` or `renew`, and the `error`" in text
    assert "failed` with the stage and reason" not in text


# --- 3: installing a timer says which bundle.p12 files its renewals remove ----------------------------------------
def test_install_timer_names_a_bundle_p12_its_renewals_would_remove(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    keystore = tmp_path / "java"
    run_certkit("issue-server", "java.example.com", "--days", "10", "--p12", "--out", keystore,
                env=env | {"CERTKIT_P12_PASSWORD": "keystore pass"}, check=True)  # set for issuing, not here
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    units = tmp_path / "units"
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "remove the bundle.p12 of each bundle they renew" in proc.stderr
    assert f"1 bundle it renews holds one now, such as {keystore / 'bundle.p12'}" in proc.stderr
    # and so they do: the service's command, run as systemd runs it, renews the bundle without its keystore
    argv, unit_env = exec_start((units / "certkit-renew.service").read_text())
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), cwd="/", capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert not (keystore / "bundle.p12").exists() and "bundle.p12 was the old bundle's bundle.p12" in ran.stdout
    # with --p12-password-file, nothing to warn of, and the renewals write the keystore again (openssl reads it)
    password = tmp_path / "p12pass"
    password.write_text("keystore pass\n")
    password.chmod(0o600)
    run_certkit("export-p12", keystore, env=env | {"CERTKIT_P12_PASSWORD": "keystore pass"}, check=True)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret,
                       "--p12-password-file", password, "--force", env=env)
    assert proc.returncode == 0 and "bundle.p12" not in proc.stderr, proc.stderr
    argv, unit_env = exec_start((units / "certkit-renew.service").read_text())
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), cwd="/", capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    read = openssl("pkcs12", "-in", keystore / "bundle.p12", "-passin", "pass:keystore pass", "-nokeys",
                   "-clcerts")
    assert read.returncode == 0, read.stderr
    cert = x509.load_pem_x509_certificate(read.stdout[read.stdout.index(b"-----BEGIN"):])
    assert serial_hex(cert.serial_number) == _serial(keystore)
    # a timer of other certificates says nothing of this one's keystore
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u2", "--passphrase-file", secret,
                       "--name", "other.example.com", env=env)
    assert proc.returncode == 0 and "bundle.p12" not in proc.stderr, proc.stderr


# --- 4: a moved bundle's advice keeps the moved folder renewed -----------------------------------------------------
def test_a_moved_bundle_is_renewed_where_it_is_now_as_the_warning_says(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "moved.example.com", "--days", "10", "--out", tmp_path / "old", env=env, check=True)
    (tmp_path / "old").rename(tmp_path / "srv")  # where nginx reads it from now
    proc = run_certkit("renew", "--expiring", "30d", env=env)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout
    assert "if the bundle was moved, renew the folder it is in now (certkit renew FOLDER)" in proc.stderr
    before = _serial(tmp_path / "srv")
    run_certkit("renew", tmp_path / "srv", "--days", "90", env=env, check=True)  # as the warning says
    assert _serial(tmp_path / "srv") != before
    _verify(tmp_path / "srv")
    # later runs renew it there, without a word of a moved bundle
    proc = run_certkit("renew", "--all", "--json", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    [renewed] = [c for c in json.loads(proc.stdout)["certificates"] if c["outcome"] == "renewed"]
    assert renewed["folder"] == str(tmp_path / "srv") and _serial(tmp_path / "srv") == renewed["new_serial"]
    _verify(tmp_path / "srv")


# --- 5: a system unit's hooks get HOME, as by hand and under cron ----------------------------------------------------
def test_a_system_timers_hooks_have_a_home(tmp_path, ca_env, ca_dir):
    import os
    import pwd
    import shutil

    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "home.example.com", "--days", "10", "--out", tmp_path / "web", env=env, check=True)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    units, seen = tmp_path / "units", tmp_path / "seen"
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret, "--exec-once",
                       f'printf "%s|%s\\n" ~ "$HOME" > {seen}', env=env)
    assert proc.returncode == 0, proc.stderr
    service = (units / "certkit-renew.service").read_text()
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "verify", "--man=no", units / "certkit-renew.timer",
                                  units / "certkit-renew.service"], capture_output=True, text=True, timeout=60)
        assert "certkit-renew" not in checked.stderr, checked.stderr
    argv, unit_env = exec_start(service)
    if os.geteuid() != 0:  # a user unit: the user's systemd gives it HOME
        assert "HOME" not in unit_env
        return
    home = pwd.getpwuid(os.geteuid()).pw_dir
    # what systemd gives a system service: PATH, LANG and the unit's Environment=, started in /
    ran = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **unit_env}, cwd="/",
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert seen.read_text() == f"{home}|{home}\n"  # was "~|": the hook's ~ and $HOME named nothing
    assert unit_env["HOME"] == home
    # a unit an earlier certkit wrote (without HOME) is the same timer: installed again without --force
    (units / "certkit-renew.service").write_text("".join(
        line for line in service.splitlines(keepends=True) if not line.startswith('Environment="HOME=')))
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret, "--exec-once",
                       f'printf "%s|%s\\n" ~ "$HOME" > {seen}', env=env)
    assert proc.returncode == 0, proc.stderr
    assert (units / "certkit-renew.service").read_text() == service


# --- 6: a bundle folder that became a link is said as such, with the folder to renew --------------------------------
def test_a_bundle_folder_replaced_by_a_link_says_which_folder_to_renew(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    (tmp_path / "etc").mkdir()
    run_certkit("issue-server", "linked.example.com", "--days", "10", "--out", tmp_path / "etc" / "web", env=env,
                check=True)
    (tmp_path / "etc" / "web").rename(tmp_path / "big-disk")
    (tmp_path / "etc" / "web").symlink_to(tmp_path / "big-disk")
    before = _serial(tmp_path / "big-disk")
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [failed] = json.loads(proc.stdout)["certificates"]
    assert failed["outcome"] == "failed" and "output folder" not in failed["error"]
    assert (f"The bundle folder {tmp_path / 'etc' / 'web'} is a symbolic link now (to {tmp_path / 'big-disk'}); "
            f"certkit does not write through links: renew the folder it leads to (certkit renew "
            f"{tmp_path / 'big-disk'})") in failed["error"]
    assert _serial(tmp_path / "big-disk") == before and (tmp_path / "etc" / "web").is_symlink()  # nothing written
    run_certkit("renew", tmp_path / "big-disk", "--days", "90", env=env, check=True)  # as it says
    assert _serial(tmp_path / "big-disk") != before
    _verify(tmp_path / "big-disk")
    proc = run_certkit("renew", "--all", "--json", env=env)  # later runs renew it in place
    assert proc.returncode == 0, proc.stdout
    [renewed] = [c for c in json.loads(proc.stdout)["certificates"] if c["outcome"] == "renewed"]
    assert renewed["folder"] == str(tmp_path / "big-disk") and _serial(tmp_path / "big-disk") == renewed["new_serial"]
    _verify(tmp_path / "etc" / "web")  # what a server configured with the link reads


# --- 7: a standard error whose reader left loses the hooks' words, not the run ---------------------------------------
def _closing_stderr(args: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run certkit with standard error a pipe whose reader leaves after 100 bytes (as ``2>&1 | head -c 100``)."""
    import sys

    with (cwd / "stdout").open("w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], stdout=out,
                                stderr=subprocess.PIPE, env=env, cwd=cwd)
        proc.stderr.read(100)
        proc.stderr.close()  # the reader left: later writes get EPIPE
        code = proc.wait(timeout=300)
        out.seek(0)
        return subprocess.CompletedProcess(args, code, out.read(), "")


def test_a_closed_standard_error_stops_no_renewal_nor_exec_once(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    folders = [tmp_path / f"w{i}" for i in range(3)]
    for i, folder in enumerate(folders):
        run_certkit("issue-server", f"w{i}.example.com", "--days", "10", "--out", folder, env=env, check=True)
    before = [_serial(folder) for folder in folders]
    reloaded = tmp_path / "reloaded"
    proc = _closing_stderr(["renew", "--expiring", "30d", "--days", "90", "--exec", "seq 1 20000", "--exec-once",
                            f"echo $CERTKIT_RENEWED > {reloaded}"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("Renewed 3 of 3 certificates expiring within 30 days"), proc.stdout
    assert reloaded.read_text() == "3\n"  # the servers were reloaded once, for all three
    for folder, old in zip(folders, before, strict=True):
        assert _serial(folder) != old
        _verify(folder)
    # a single renewal: its --exec-once and its report too
    reloaded.unlink()
    proc = _closing_stderr(["renew", folders[0], "--exec", "seq 1 20000", "--exec-once",
                            f"echo $CERTKIT_RENEWED > {reloaded}", "--json"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["exec"]["exit"] == 0 and report["exec_once"]["exit"] == 0
    assert report["exec"]["output_truncated"] is True  # what it printed is kept, its last 64 KiB
    assert reloaded.read_text() == "1\n" and _serial(folders[0]) == report["new_serial"]
    _verify(folders[0])


# --- 8: inspect and verify read a --format k8s manifest -------------------------------------------------------------
def test_inspect_and_verify_read_secrets_as_they_read_json_lines(tmp_path, ca_env, ca_dir):
    import shutil

    env = _env(ca_env, tmp_path)
    (tmp_path / "m.csv").write_text("kind,names\nserver,s1.example.com\nserver,s2.example.com\n")
    run_certkit("issue-batch", tmp_path / "m.csv", "--format", "k8s", "--out", tmp_path / "s.yaml", env=env,
                check=True)
    proc = run_certkit("inspect", tmp_path / "s.yaml", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Certificate (s.yaml Secret 1: tls.crt" in proc.stdout and "CN=s2.example.com" in proc.stdout
    assert "s.yaml Secret 2: tls.key: private key (ecdsa-p256) matches the certificate CN=s2.example.com" in proc.stdout
    proc = run_certkit("verify", tmp_path / "s.yaml", "--purpose", "server", env=env)
    assert proc.returncode == 0 and "VALID as a TLS server certificate" in proc.stdout, proc.stdout + proc.stderr
    assert "CN=s1.example.com" in proc.stdout and "holds 2 Secrets: this is the verdict on the first, Secret 1 " \
        "(s1.example.com)" in proc.stdout
    proc = run_certkit("inspect", "-", env=env, input=(tmp_path / "s.yaml").read_text())  # kubectl get ... | inspect -
    assert proc.returncode == 0 and "Certificate (standard input Secret 1: tls.crt" in proc.stdout, proc.stderr
    # a manifest cut off inside a value: one line, no traceback
    text = (tmp_path / "s.yaml").read_text()
    (tmp_path / "cut.yaml").write_text(text[:text.index("tls.key: ") + 30] + "\n")
    proc = run_certkit("inspect", tmp_path / "cut.yaml", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "Secret 1 of" in proc.stderr, proc.stderr
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return
    # what kubectl itself writes of a bundle folder's files reads the same
    run_certkit("issue-server", "kube.example.com", "--out", tmp_path / "web", env=env, check=True)
    made = subprocess.run([kubectl, "create", "secret", "tls", "web", "--cert", tmp_path / "web" / "fullchain.pem",
                           "--key", tmp_path / "web" / "privkey.pem", "--dry-run=client", "-o", "yaml"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (tmp_path / "kube.yaml").write_text(made.stdout)
    proc = run_certkit("verify", tmp_path / "kube.yaml", "--purpose", "server", "--name", "kube.example.com", env=env)
    assert proc.returncode == 0 and "VALID" in proc.stdout, proc.stdout + proc.stderr
    assert "private key (ecdsa-p256) matches the certificate CN=kube.example.com" in run_certkit(
        "inspect", tmp_path / "kube.yaml", env=env, check=True).stdout



def test_verify_reads_a_tar_archive_by_its_bundle_folders(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,t1.example.com,web/t1\nserver,t2.example.com,web/t2\n")
    run_certkit("issue-batch", tmp_path / "m.csv", "--format", "tar", "--out", tmp_path / "f.tar", env=env, check=True)
    proc = run_certkit("verify", tmp_path / "f.tar", "--purpose", "server", "--name", "t1.example.com", env=env)
    assert proc.returncode == 0 and "VALID as a TLS server certificate" in proc.stdout, proc.stdout + proc.stderr
    assert "sends the others as its chain" not in proc.stdout
    assert "f.tar holds 2 bundle folders: this is the verdict on the first, web/t1; to verify another: tar -xOf " \
        in proc.stdout
    proc = run_certkit("inspect", tmp_path / "f.tar", env=env, check=True)
    assert "Certificate (f.tar: web/t2/cert.pem" in proc.stdout
    assert "f.tar: web/t2/privkey.pem: private key (ecdsa-p256) matches the certificate CN=t2.example.com" \
        in proc.stdout
    # the way the note gives to verify another, with the real tar
    member = subprocess.run(["tar", "-xOf", tmp_path / "f.tar", "web/t2/fullchain.pem"], capture_output=True,
                            timeout=60)
    assert member.returncode == 0, member.stderr
    proc = run_certkit("verify", "-", "--purpose", "server", "--name", "t2.example.com", env=env,
                       input=member.stdout.decode())
    assert proc.returncode == 0 and "VALID" in proc.stdout, proc.stdout + proc.stderr
    (tmp_path / "cut.tar").write_bytes((tmp_path / "f.tar").read_bytes()[:3000])
    proc = run_certkit("inspect", tmp_path / "cut.tar", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "cut off or damaged" in proc.stderr
