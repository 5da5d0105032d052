"""integrity4 (audit of issue 9) and fleet4 finding 8: the inventory, the bundles and the CRL never
disagree, also when two commands race.

- Two renewals (or ``--force`` runs) of one bundle at once: one wins, the other is refused with
  nothing recorded or written, and the folder holds one matching certificate and key (a lock per
  folder, and the "already renewed" check inside the transaction that records the successor).
- Two ``certkit crl --out`` at once: the older CRL never replaces the newer one.
- A writer in another PID namespace is not declared dead; a writer whose row was settled as
  abandoned meanwhile makes it valid again when its bundle is complete.
- A bundle folder that is a bind mount is renewed (the journal), with its key kept.
- ``renew``/``revoke`` given an output file say what it is.

Races are made deterministic with the pause points (certkit.testhooks). The bundles are checked
as servers read them: ``openssl`` compares the key and the certificate.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import serial_hex, start_paused

pytestmark = pytest.mark.both_inventories


# --- helpers ---------------------------------------------------------------------------------
def cert_serial(folder: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()))


def assert_pair(folder: Path) -> None:
    """The folder's privkey.pem is the key of its cert.pem, as openssl reads them (what a server loads)."""
    from_cert = openssl("x509", "-in", folder / "cert.pem", "-noout", "-pubkey")
    from_key = openssl("pkey", "-in", folder / "privkey.pem", "-pubout")
    assert from_cert.returncode == 0 and from_key.returncode == 0, (from_cert.stderr, from_key.stderr)
    assert from_cert.stdout == from_key.stdout, f"{folder}: privkey.pem is not the key of cert.pem"


def rows(env: dict, *args: str) -> dict[str, dict]:
    """Every row of the inventory (``args`` filter them), by serial, as ``certkit list --json`` shows it."""
    out = {}
    for status in ("valid", "expired", "pending", "abandoned", "revoked"):
        listed = run_certkit("list", "--json", "--status", status, *args, env=env, check=True)
        out.update({r["serial"]: r for r in json.loads(listed.stdout)["certificates"]})
    return out


def assert_one_current(env: dict, folder: Path, name: str) -> dict[str, dict]:
    """Exactly one current (valid, not renewed) certificate named ``name``, the one ``folder`` holds,
    with its key; no row pending; ``certkit check`` passes. Returns every row of the name."""
    everything = rows(env, "--name", name)
    assert not [s for s, r in everything.items() if r["status"] == "pending"], everything
    current = [s for s, r in everything.items() if r["status"] == "valid" and not r.get("renewed_by")]
    assert current == [cert_serial(folder)], (current, cert_serial(folder), everything)
    assert everything[current[0]]["folder"] == str(folder)
    assert_pair(folder)
    assert not [p for p in folder.parent.iterdir() if "certkit-tmp" in p.name]
    check = run_certkit("check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    return everything


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_refused(finished: tuple[int, str, str], fragment: str) -> None:
    """A finished command (:func:`finish`) failed with one ``Error:`` line holding ``fragment``."""
    assert_clean_error(subprocess.CompletedProcess(["certkit"], *finished), fragment)


def release(marker: Path) -> None:
    marker.unlink()


def waiting_on_the_folder(tmp_path: Path, args: list, env: dict) -> subprocess.Popen:
    """Start ``certkit ARGS`` and let it go from ``signed`` straight on to the folder's lock."""
    marker = tmp_path / "second"
    proc = start_paused(args, env, tmp_path, "signed", marker)
    release(marker)
    time.sleep(0.8)
    return proc


# --- 1. two renewals of one bundle ---------------------------------------------------------------
SECOND = {
    "same key twice": ["renew", "./web"],
    "then --rekey": ["renew", "./web", "--rekey"],
    "bulk renewal and a renewal by hand": ["renew", "./web", "--rekey", "--days", "30"],
}


@pytest.mark.parametrize("second", sorted(SECOND))
def test_two_renewals_of_one_bundle_at_once(second: str, tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "web.example.com", "--out", "web", "--days", "5", cwd=tmp_path, env=ca_env, check=True)
    old = cert_serial(tmp_path / "web")
    first = (["renew", "--expiring", "6d", "--days", "30"] if second.startswith("bulk") else ["renew", "./web"])
    a = start_paused(first, ca_env, tmp_path, "recorded", tmp_path / "first")  # recorded, nothing written
    b = waiting_on_the_folder(tmp_path, SECOND[second], ca_env)
    assert b.poll() is None, b.communicate()  # waits for the folder: it is being written
    release(tmp_path / "first")
    code_a, out_a, err_a = finish(a)
    assert code_a == 0, out_a + err_a
    assert_refused(finish(b), "no longer holds the certificate")
    everything = assert_one_current(ca_env, tmp_path / "web", "web.example.com")
    assert len(everything) == 2 and everything[old]["renewed_by"] == cert_serial(tmp_path / "web")


def test_a_renewal_signed_before_another_one_finished_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "web.example.com", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    a = start_paused(["renew", "./web"], ca_env, tmp_path, "signed", tmp_path / "first")  # planned and signed
    run_certkit("renew", "./web", "--rekey", cwd=tmp_path, env=ca_env, check=True)
    release(tmp_path / "first")
    assert_refused(finish(a), "no longer holds the certificate")
    assert len(assert_one_current(ca_env, tmp_path / "web", "web.example.com")) == 2


@pytest.mark.parametrize("exists", [True, False], ids=["over a bundle", "new folder"])
def test_two_forced_issues_into_one_folder_at_once(exists: bool, tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """Both are issued, one after the other: the second replaces the first, and is recorded as
    doing so (no valid row is left without its bundle, no key deleted from under a valid row)."""
    if exists:
        run_certkit("issue-server", "d.example.com", "--out", "d", cwd=tmp_path, env=ca_env, check=True)
    command = ["issue-server", "d.example.com", "--out", "d", "--force"]
    a = start_paused(command, ca_env, tmp_path, "recorded", tmp_path / "first")
    b = waiting_on_the_folder(tmp_path, command, ca_env)
    assert b.poll() is None, b.communicate()
    release(tmp_path / "first")
    assert finish(a)[0] == 0 and finish(b)[0] == 0
    everything = assert_one_current(ca_env, tmp_path / "d", "d.example.com")
    assert len(everything) == (3 if exists else 2)


def test_a_renewal_forced_into_a_folder_filled_meanwhile_is_refused(tmp_path: Path, ca_dir: Path,
                                                                      ca_env: dict) -> None:
    """``renew X --out Y --force`` planned while Y was empty; meanwhile another certificate was issued
    into Y: writing now would delete that one's key and leave it valid. Checked again, and refused."""
    run_certkit("issue-server", "x.example.com", "--out", "x", cwd=tmp_path, env=ca_env, check=True)
    a = start_paused(["issue-server", "y.example.com", "--out", "y"], ca_env, tmp_path, "recorded",
                     tmp_path / "first")
    b = waiting_on_the_folder(tmp_path, ["renew", "./x", "--out", "y", "--force"], ca_env)
    release(tmp_path / "first")
    assert finish(a)[0] == 0
    assert_refused(finish(b), "which is still valid: --force would delete its key")
    assert_one_current(ca_env, tmp_path / "y", "y.example.com")
    assert_one_current(ca_env, tmp_path / "x", "x.example.com")


def _block_the_folder_lock(ca_dir: Path) -> None:
    """A CA directory where the lock file cannot be made (a directory of that name stands there, as
    read-only media would refuse it): only the inventory's check is left."""
    lock = ca_dir / ".certkit-bundles.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()


def test_the_inventory_refuses_a_second_renewal_in_place_without_the_folder_lock(
        tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "web.example.com", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    _block_the_folder_lock(ca_dir)
    a = start_paused(["renew", "./web"], ca_env, tmp_path, "recorded", tmp_path / "first")
    b = start_paused(["renew", "./web", "--rekey"], ca_env, tmp_path, "signed", tmp_path / "second")
    before = rows(ca_env)
    release(tmp_path / "second")
    # nothing holds it back: it reaches the inventory while the first is pending
    assert_refused(finish(b), "is being renewed right now")
    assert rows(ca_env) == before  # its certificate was not recorded
    release(tmp_path / "first")
    assert finish(a)[0] == 0
    assert len(assert_one_current(ca_env, tmp_path / "web", "web.example.com")) == 2


def test_a_renewal_elsewhere_while_one_in_place_is_pending_is_refused(tmp_path: Path, ca_dir: Path,
                                                                       ca_env: dict) -> None:
    run_certkit("issue-server", "web.example.com", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    old = cert_serial(tmp_path / "web")
    a = start_paused(["renew", "./web"], ca_env, tmp_path, "recorded", tmp_path / "first")
    elsewhere = run_certkit("renew", old, "--out", tmp_path / "copy", cwd=tmp_path, env=ca_env)
    assert_clean_error(elsewhere, f"The certificate {old} is being renewed right now")
    assert not (tmp_path / "copy").exists()
    release(tmp_path / "first")
    assert finish(a)[0] == 0
    # and afterwards, as before: renewed already
    again = run_certkit("renew", old, "--out", tmp_path / "copy", cwd=tmp_path, env=ca_env)
    assert_clean_error(again, "already renewed as")
    assert len(assert_one_current(ca_env, tmp_path / "web", "web.example.com")) == 2


def test_the_inventory_refuses_a_successor_recorded_twice(ca_dir: Path, ca_env: dict, tmp_path: Path) -> None:
    """The library's own check, without the command line: a second successor of one certificate for
    the same folder is refused in the transaction that would record it, and nothing is recorded."""
    from certkit.errors import CannotRenew
    from certkit.inventory import Pending
    from certkit.issuing import renewal_request
    from certkit.store import CADirectory

    run_certkit("issue-server", "lib.example.com", "--out", tmp_path / "lib", env=ca_env, check=True)
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    old = ca.inventory.certificate(cert_serial(tmp_path / "lib"))
    serial = serial_hex(old)
    successors = [ca.sign(renewal_request(old, "server")) for _ in range(3)]
    folder = str(tmp_path / "lib")
    assert ca.inventory.record_pending([Pending(successors[0].cert, "server", folder, renewed_from=serial)]) == []
    with pytest.raises(CannotRenew, match="being renewed right now"):
        ca.inventory.record_pending([Pending(successors[1].cert, "server", folder, renewed_from=serial)])
    with pytest.raises(CannotRenew, match="being renewed right now"):  # elsewhere, not in place
        ca.inventory.record_pending([Pending(successors[2].cert, "server", str(tmp_path / "other"),
                                             renewed_from=serial, in_place=False)])
    assert ca.inventory.get(successors[1].serial_hex) is None and ca.inventory.get(successors[2].serial_hex) is None


# --- 2. the CRL ----------------------------------------------------------------------------------
SLOW_CRL = textwrap.dedent("""
    import os, sys, time
    import certkit.lifecycle as lifecycle
    write = lifecycle.write_crl
    def held_back(*args, **kwargs):
        open(os.environ["HOLD"] + ".tmp", "w").write("x"); os.replace(os.environ["HOLD"] + ".tmp", os.environ["HOLD"])
        while os.path.exists(os.environ["HOLD"]):
            time.sleep(0.02)
        return write(*args, **kwargs)
    lifecycle.write_crl = held_back
    from certkit.entry import main
    sys.argv[0] = "certkit"
    main()
""")


def test_an_older_crl_never_replaces_a_newer_one(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """The cron job signs CRL n and is descheduled before it writes; meanwhile a certificate is revoked
    for keyCompromise and CRL n+1 is written. CRL n, written last, must not take the revocation off."""
    run_certkit("issue-server", "victim.example.com", "--out", "victim", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("crl", "--out", "crl.pem", cwd=tmp_path, env=ca_env, check=True)
    (tmp_path / "slowcrl.py").write_text(SLOW_CRL)
    hold = tmp_path / "hold"
    slow = subprocess.Popen([sys.executable, tmp_path / "slowcrl.py", "crl", "--out", "crl.pem"], cwd=tmp_path,
                            env=dict(ca_env, HOLD=str(hold)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not hold.exists():
        assert slow.poll() is None and time.monotonic() < deadline, slow.communicate()
        time.sleep(0.02)
    run_certkit("revoke", tmp_path / "victim", "--reason", "keyCompromise", env=ca_env, check=True)
    newer = run_certkit("crl", "--out", "crl.pem", "--json", cwd=tmp_path, env=ca_env, check=True)
    number = json.loads(newer.stdout)["crl_number"]
    published = (tmp_path / "crl.pem").read_bytes()
    hold.unlink()
    assert_refused(finish(slow), f"already holds CRL number {number} of this CA, newer than this one ({number - 1}")
    assert (tmp_path / "crl.pem").read_bytes() == published
    refused = openssl("verify", "-x509_strict", "-crl_check", "-CRLfile", tmp_path / "crl.pem", "-CAfile",
                      ca_dir / "ca.pem", "-purpose", "sslserver", tmp_path / "victim" / "cert.pem")
    assert refused.returncode != 0 and b"certificate revoked" in refused.stdout + refused.stderr


def test_write_crl_compares_the_numbers(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    from certkit.errors import CertkitError
    from certkit.lifecycle import crl_bytes, write_crl
    from certkit.revocation import sign_crl
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    first, second = sign_crl(ca), sign_crl(ca)
    path = tmp_path / "crl.der"
    write_crl(path, crl_bytes(second, der=True), ca.cert.subject)
    for older, force in ((first, False), (first, True), (second, True)):  # older, or the same number
        with pytest.raises(CertkitError, match="a CRL is never replaced by an older one"):
            write_crl(path, crl_bytes(older), ca.cert.subject, force=force)
    assert path.read_bytes() == crl_bytes(second, der=True)
    third = sign_crl(ca)
    write_crl(path, crl_bytes(third), ca.cert.subject)  # newer: the usual refresh, PEM over DER
    assert x509.load_pem_x509_crl(path.read_bytes()) == third
    # A CRL of another CA of the same name (another key) numbers from 1 again: it is not "newer".
    other_env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "certkit test root", env=other_env, check=True)
    other = CADirectory(tmp_path / "other").load(PASSPHRASE.encode())
    stale = tmp_path / "stale.pem"
    stale.write_bytes(crl_bytes(sign_crl(ca)))
    write_crl(stale, crl_bytes(sign_crl(other)), other.cert.subject)
    assert x509.load_pem_x509_crl(stale.read_bytes()).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number == 1


# --- 3. writers in another PID namespace, rows settled meanwhile -----------------------------------
def _unshare_pid() -> list[str]:
    probe = subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"a PID namespace cannot be made here: {probe.stderr.decode().strip()}")
    return ["unshare", "-p", "-f", "--mount-proc"]


@pytest.mark.parametrize("where", ["reader", "writer"])
def test_a_writer_in_another_pid_namespace_is_not_declared_dead(where: str, tmp_path: Path, ca_dir: Path,
                                                                ca_env: dict) -> None:
    """The command that opens the inventory while the writer is between recording and marking runs in
    another PID namespace (a container sharing the CA directory), or the writer does."""
    unshare = _unshare_pid()
    env = dict(ca_env, CERTKIT_TEST_PAUSE_AT="recorded", CERTKIT_TEST_PAUSE_FILE=str(tmp_path / "paused"))
    command = [sys.executable, "-m", "certkit", "issue-server", "ns.example.com", "--out", "ns"]
    writer = subprocess.Popen((unshare if where == "writer" else []) + command, cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "paused").exists():
        assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()
        time.sleep(0.02)
    reader = [*(unshare if where == "reader" else []), sys.executable, "-m", "certkit", "list", "--json",
              "--status", "pending"]
    proc = subprocess.run(reader, env=ca_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [c["subject"] for c in json.loads(proc.stdout)["certificates"]] == ["CN=ns.example.com"]
    release(tmp_path / "paused")
    code, out, err = finish(writer)
    assert code == 0 and "abandoned" not in out + err, out + err
    assert_one_current(ca_env, tmp_path / "ns", "ns.example.com")
    run_certkit("revoke", tmp_path / "ns", env=ca_env, check=True)


def test_a_writer_whose_row_was_abandoned_meanwhile_makes_it_valid_again(tmp_path: Path, ca_dir: Path,
                                                                          ca_env: dict) -> None:
    """Whatever judged the writer dead (a command that could not see it), the writer that then marks a
    complete bundle must not leave it abandoned (unrevocable, "its key was never stored")."""
    from certkit.store import CADirectory

    writer = start_paused(["issue-server", "ns.example.com", "--out", "ns"], ca_env, tmp_path, "recorded",
                          tmp_path / "paused")
    (serial,) = [s for s, r in rows(ca_env).items() if r["status"] == "pending"]
    CADirectory(ca_dir).inventory.mark_abandoned([serial])  # as a command that misjudged it would
    assert rows(ca_env)[serial]["status"] == "abandoned"
    release(tmp_path / "paused")
    code, out, err = finish(writer)
    assert code == 0, err
    assert "recorded as valid again" in out + err and serial in out + err
    assert_one_current(ca_env, tmp_path / "ns", "ns.example.com")
    revoked = run_certkit("revoke", tmp_path / "ns", "--reason", "keyCompromise", env=ca_env)
    assert revoked.returncode == 0, revoked.stderr


def test_writer_liveness_by_namespace_and_lease() -> None:
    import datetime as dt

    from certkit.inventory import reconcile

    now = dt.datetime.now(dt.UTC)
    me = reconcile.writer_id()
    assert "#" in me.split(" ")[0]
    assert reconcile.writer_alive(me, now) and reconcile.is_local(me)
    host, pid, start = me.rsplit(" ", 2)
    legacy = f"{host.rpartition('#')[0]} {pid} {start}"  # written before the namespace was recorded
    assert reconcile.writer_alive(legacy, now) and reconcile.is_local(legacy)
    elsewhere = f"{host.rpartition('#')[0]}#1 {pid} {start}"  # another PID namespace of this machine
    assert reconcile.writer_alive(elsewhere, now)
    assert not reconcile.writer_alive(elsewhere, now - reconcile.FOREIGN_LEASE - dt.timedelta(seconds=1))
    assert reconcile.is_local(elsewhere)  # its folders are judged here once its lease is over
    gone = f"{host} 999999999 {start}"  # no such pid here
    assert not reconcile.writer_alive(gone, now)


# --- 4. a bundle folder that is a bind mount --------------------------------------------------------
BIND = textwrap.dedent("""
    set -e
    cd "$1"
    mount --bind web web
    mount --bind web2 web2
    {python} -m certkit renew ./web
    {python} -m certkit renew ./web2 --rekey
    {python} -m certkit renew --all --name 'web*.example.com'
    {python} -c "import sys; sys.path.insert(0, '{repo}'); from pathlib import Path; \\
        from certkit.bundle import is_mount_point; assert is_mount_point(Path('web')), 'not seen as a mount'"
""")


@pytest.mark.sqlite_only
def test_renewing_a_bundle_folder_that_is_a_bind_mount(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("a mount namespace cannot be made here (unshare -m is not permitted)")
    for name in ("web", "web2"):
        run_certkit("issue-server", f"{name}.example.com", "--out", name, cwd=tmp_path, env=ca_env, check=True)
    key_inode = (tmp_path / "web" / "privkey.pem").stat().st_ino
    script = tmp_path / "bind.sh"
    script.write_text(BIND.format(python=sys.executable, repo=Path(__file__).resolve().parent.parent))
    proc = subprocess.run(["unshare", "-m", "sh", str(script), str(tmp_path)], env=ca_env, capture_output=True,
                          text=True, timeout=300)
    if "mount: " in proc.stderr and "permission denied" in proc.stderr.lower():
        pytest.skip(f"bind mounts are not permitted here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Renewed 2 of 2" in proc.stdout, proc.stdout
    assert (tmp_path / "web" / "privkey.pem").stat().st_ino == key_inode  # the key kept, the very same file
    for name in ("web", "web2"):
        everything = assert_one_current(ca_env, tmp_path / name, f"{name}.example.com")
        assert len(everything) == 3
    assert not [s for s, r in rows(ca_env).items() if r["status"] == "abandoned"]


def test_a_link_across_a_mount_falls_back_to_the_journal(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                         monkeypatch) -> None:
    """Linking the kept key into the staging folder beside the bundle fails with EXDEV when the folder
    is a mount of its own (made here by making os.link fail as the kernel would): the journal
    replaces the files in place instead, and the key is the very same file."""
    import certkit.bundle

    run_certkit("issue-server", "x.example.com", "--out", tmp_path / "x", env=ca_env, check=True)
    key_inode = (tmp_path / "x" / "privkey.pem").stat().st_ino

    def cross_device(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))

    monkeypatch.setattr(certkit.bundle.os, "link", cross_device)
    proc = run_certkit("renew", tmp_path / "x", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x" / "privkey.pem").stat().st_ino == key_inode
    monkeypatch.undo()
    assert len(assert_one_current(ca_env, tmp_path / "x", "x.example.com")) == 2
    assert not [s for s, r in rows(ca_env).items() if r["status"] == "abandoned"]


def test_a_folder_that_cannot_be_renamed_falls_back_to_the_journal(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                   monkeypatch) -> None:
    """Where renameat2 is not available the old folder is renamed aside: refused (EBUSY, a mount
    point), the journal replaces the files instead."""
    import certkit.bundle

    run_certkit("issue-server", "y.example.com", "--out", tmp_path / "y", env=ca_env, check=True)
    monkeypatch.setattr(certkit.bundle, "exchange", lambda a, b: False)

    def busy(new, folder):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(folder))

    monkeypatch.setattr(certkit.bundle, "swap_by_renames", busy)
    proc = run_certkit("renew", tmp_path / "y", "--rekey", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.undo()
    assert len(assert_one_current(ca_env, tmp_path / "y", "y.example.com")) == 2


# --- fleet4 8: an output file given to renew or revoke ------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_renew_and_revoke_say_what_an_output_file_is(fmt: str, tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.com\nserver,b.example.com\n")
    run_certkit("issue-batch", "m.csv", "--format", fmt, "--out", f"many.{fmt}", cwd=tmp_path, env=ca_env, check=True)
    serials = sorted(s for s, r in rows(ca_env).items() if r["kind"] == "server")
    proc = run_certkit("renew", f"./many.{fmt}", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"many.{fmt} is an output file of --format {fmt} holding 2 certificates")
    assert all(s in proc.stderr for s in serials), proc.stderr
    assert "by its serial or name, and choose where the renewed bundle goes with --out FOLDER" in proc.stderr
    assert "readable" not in proc.stderr
    proc = run_certkit("revoke", f"many.{fmt}", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "revoke one of them by its serial")
    assert not [s for s, r in rows(ca_env).items() if r["status"] == "revoked"]
    # One certificate in the file: that is the one meant; it has no folder, so --out says where.
    run_certkit("issue-server", "one.example.com", "--format", fmt, "--out", f"one.{fmt}", cwd=tmp_path, env=ca_env,
                check=True)
    for ref in (f"./one.{fmt}", "one.example.com"):
        proc = run_certkit("renew", ref, cwd=tmp_path, env=ca_env)
        assert_clean_error(proc, "to renew it, choose where the renewed bundle goes with --out FOLDER")
        assert "instead of the serial" not in proc.stderr and "readable" not in proc.stderr
    renewed = run_certkit("renew", f"./one.{fmt}", "--out", "one", "--rekey", cwd=tmp_path, env=ca_env)
    assert renewed.returncode == 0, renewed.stderr
    assert_pair(tmp_path / "one")
