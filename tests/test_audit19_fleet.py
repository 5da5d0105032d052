r"""The nineteenth round's fleet findings (audit helper "fleet"), each as a class:

1. ``renew FILE``, ``revoke FILE`` and ``--force`` over an output file read it more strictly than kubectl, jq and
   ``inspect`` do: a Secret kubectl wrote back (its annotations in raw UTF-8: ``certkit/subject: CN=José Ñ``), a
   manifest with CRLF line ends or a comment above it, a file saved with a byte-order mark, a jsonl whose last
   line has no line break (``jq -j``), and the List ``kubectl get secrets -o yaml`` prints were all "FILE does not
   hold a readable certificate" (``--force``: "is no jsonl, k8s or tar output certkit wrote").
2. ``renew --expiring`` run by hand on a terminal said nothing after "Checking ... before anything is renewed..."
   when the only due certificates were delivered into output files (jsonl, k8s, tar) or to standard output, as
   when nothing is due, though they expire unrenewed. It now lists them, with what to do; run by cron (no
   terminal) it stays quiet, as documented.
3. A bundle folder renewed whole (swapped with the new one) lost who could reach it: its POSIX ACLs (access and
   default: ``setfacl -m u:postgres:rx``), and, renewed by its owner, its group (``chgrp ssl-cert``); a group the
   owner is not in left its bits to the owner's own group.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import ssl
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from test_audit13_fleet import open_dir  # noqa: F401 (a fixture: a folder every user can reach)
from test_audit18_integrity import _nobody_reads

from conftest import openssl, run_certkit
from fleet_helpers import run_in_pty


def _env(ca_env: dict, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return ca_env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


# --- 1: a Secret as kubectl writes it (UTF-8), with CRLF line ends, with a comment on top -----------------------------
def _through_kubectl(manifest: Path, out: Path) -> None:
    """``manifest`` as kubectl writes it back (its key order, its UTF-8), with no cluster: ``annotate --local``."""
    made = subprocess.run(["kubectl", "annotate", "--local", "-f", manifest, "reviewed=yes", "-o", "yaml"],
                          capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    out.write_bytes(made.stdout)


def test_renew_revoke_and_force_read_a_secret_kubectl_wrote_in_utf8_or_with_crlf(tmp_path, ca_env, ca_dir):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env = _env(ca_env, tmp_path)
    for name, out in (("José Ñ", "jose.yaml"), ("Zoë Ünal", "zoe.yaml"), ("Ada Ç", "ada.yaml")):
        run_certkit("issue-client", name, "--format", "k8s", "--out", tmp_path / out, env=env, cwd=tmp_path,
                    check=True)
    _through_kubectl(tmp_path / "jose.yaml", tmp_path / "jose-kubectl.yaml")
    assert "CN=José Ñ".encode() in (tmp_path / "jose-kubectl.yaml").read_bytes()  # raw UTF-8, as kubectl writes it
    renewed = tmp_path / "jose-renewed"
    proc = run_certkit("renew", tmp_path / "jose-kubectl.yaml", "--out", renewed, "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "jose-kubectl.yaml does not hold a readable certificate."
    assert "privkey.pem" in json.loads(proc.stdout)["files"]  # the key the Secret holds, kept
    assert openssl("verify", "-purpose", "sslclient", "-CAfile", renewed / "ca.pem",
                   renewed / "cert.pem").returncode == 0
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(renewed / "fullchain.pem", renewed / "privkey.pem")

    # a GitOps checkout: a comment on top, CRLF line ends
    _through_kubectl(tmp_path / "zoe.yaml", tmp_path / "zoe-kubectl.yaml")
    text = "# tls for zoe, from certkit\n" + (tmp_path / "zoe-kubectl.yaml").read_text(encoding="utf-8")
    (tmp_path / "zoe-crlf.yaml").write_bytes(text.replace("\n", "\r\n").encode())
    proc = run_certkit("revoke", tmp_path / "zoe-crlf.yaml", "--reason", "superseded", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "zoe-crlf.yaml does not hold a readable certificate."
    listed = json.loads(run_certkit("list", "--name", "Zoë Ünal", "--json", env=env, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["revoked"]

    # --force over it (kubectl get secret ... -o yaml > ada.yaml): taken for the k8s output it is, its certificate
    # replaced and recorded as renewed by the new one
    _through_kubectl(tmp_path / "ada.yaml", tmp_path / "ada-kubectl.yaml")
    (tmp_path / "ada-kubectl.yaml").replace(tmp_path / "ada.yaml")
    proc = run_certkit("issue-client", "Ada Ç", "--format", "k8s", "--out", tmp_path / "ada.yaml", "--force",
                       "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # was: "... is no jsonl, k8s or tar output certkit wrote"
    listed = json.loads(run_certkit("list", "--name", "Ada Ç", "--json", env=env, check=True).stdout)
    assert sorted(bool(c["renewed_by"]) for c in listed["certificates"]) == [False, True], listed
    assert json.loads(proc.stdout)["released"] == []


def test_renew_and_revoke_read_jsonl_and_secrets_as_jq_and_kubectl_read_them(tmp_path, ca_env, ca_dir):
    """A byte-order mark (PowerShell's and Notepad's UTF-8), and a jsonl line without its line break (jq -j,
    printf '%s'): jq and kubectl read them; certkit said 'does not hold a readable certificate'."""
    from certkit.formats.reading import certificates_in

    if shutil.which("jq") is None or shutil.which("kubectl") is None:
        pytest.skip("jq or kubectl is not installed")
    env = _env(ca_env, tmp_path)
    for name, fmt in (("bom.example.com", "jsonl"), ("bare.example.com", "jsonl"), ("bomk.example.com", "k8s")):
        run_certkit("issue-server", name, "--format", fmt, "--out", tmp_path / f"{name}.{fmt}", env=env, cwd=tmp_path,
                    check=True)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "bom.example.com.jsonl").read_bytes())
    bare = tmp_path / "bare.jsonl"
    with bare.open("wb") as out:  # jq -j: the line without its line break
        assert subprocess.run(["jq", "-j", "-c", ".", tmp_path / "bare.example.com.jsonl"], stdout=out,
                              timeout=60).returncode == 0
    assert not bare.read_bytes().endswith(b"\n")
    bomk = tmp_path / "bomk.yaml"
    bomk.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "bomk.example.com.k8s").read_bytes())
    for path in (bom, bare):  # what jq reads
        assert json.loads(subprocess.run(["jq", "-c", ".", path], capture_output=True, timeout=60).stdout)["cert"]
    assert subprocess.run(["kubectl", "annotate", "--local", "-f", bomk, "r=y", "-o", "name"], capture_output=True,
                          timeout=120).returncode == 0
    proc = run_certkit("renew", bom, "--out", tmp_path / "bom-renewed", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # was: "bom.jsonl does not hold a readable certificate."
    assert "privkey.pem" in json.loads(proc.stdout)["files"]
    proc = run_certkit("renew", bomk, "--out", tmp_path / "bomk-renewed", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "privkey.pem" in json.loads(proc.stdout)["files"]
    proc = run_certkit("revoke", bare, "--reason", "superseded", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(run_certkit("list", "--name", "bare.example.com", "--json", env=env, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["revoked"]
    # a line a dead writer cut off still holds nothing
    whole = (tmp_path / "bom.example.com.jsonl").read_bytes()
    (tmp_path / "cut.jsonl").write_bytes(whole[:whole.index(b'"chain"')])
    assert certificates_in(tmp_path / "cut.jsonl") == []


def test_renew_reads_a_list_of_secrets_as_kubectl_get_writes_it(tmp_path, ca_env, ca_dir):
    """kubectl get secrets -o yaml of several writes a List (items:, each Secret a '- ' entry, its data 4 deep), which
    inspect reads; renew FILE and revoke FILE said 'does not hold a readable certificate'."""
    from certkit.formats.reading import certificates_in

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env = _env(ca_env, tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,l1.example.com\nserver,l2.example.com\nclient,Lé Ü\n")
    run_certkit("issue-batch", manifest, "--format", "k8s", "--out", tmp_path / "s.yaml", env=env, cwd=tmp_path,
                check=True)
    _through_kubectl(tmp_path / "s.yaml", tmp_path / "objects.yaml")
    lines = ["apiVersion: v1", "items:"]  # the List kubectl get prints around those same objects (go-yaml's style)
    for document in (tmp_path / "objects.yaml").read_text(encoding="utf-8").split("---\n"):
        first, *rest = document.rstrip("\n").split("\n")
        lines += ["- " + first] + ["  " + line for line in rest]
    listed = tmp_path / "list.yaml"
    listed.write_text("\n".join([*lines, "kind: List", "metadata:", '  resourceVersion: ""']) + "\n", encoding="utf-8")
    serials = sorted(c["serial"] for c in json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
                     ["certificates"])
    assert len(certificates_in(listed)) == 3
    for command in ("renew", "revoke"):
        proc = run_certkit(command, listed, *(["--out", tmp_path / "r"] if command == "renew" else []), env=env,
                           cwd=tmp_path)
        # was: "list.yaml does not hold a readable certificate."; now it names the three, and asks for one
        assert proc.returncode == 1 and "holding 3 certificates" in proc.stderr, proc.stderr
        assert all(serial in proc.stderr for serial in serials), proc.stderr


# --- 2: a manual bulk renewal on a terminal names the due certificates it does not renew ------------------------------
def test_bulk_renewal_on_a_terminal_names_due_certificates_it_does_not_renew(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "sec.example.com", "--days", "10", "--format", "k8s", "--out", tmp_path / "s.yaml",
                env=env, cwd=tmp_path, check=True)
    serial = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"][0]["serial"]
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d"], env=env, cwd=tmp_path, cols=400)
    assert code == 0, shown
    # was: only "Checking certificates expiring within 30 days before anything is renewed...", as if none were due
    assert "Renewed none of 1 certificate expiring within 30 days" in shown, shown
    assert serial in shown and str(tmp_path / "s.yaml") in shown, shown
    assert "certkit renew FILE --out DIR" in shown and "delivered into no bundle folder" in shown, shown
    # cron (no terminal) stays quiet, as documented: nothing on either output
    proc = run_certkit("renew", "--expiring", "30d", env=env, cwd=tmp_path, subprocess=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc


# --- 3: a bundle folder swapped whole keeps who may reach it: its ACLs, its group -------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to other users needs root")


def _folder_acl(user_uid: int) -> bytes:
    """u::rwx, u:UID:r-x, g::---, m::r-x, o::--- as the kernel stores it (what setfacl -m u:UID:rx writes)."""
    entries = [(1, 7, 0xFFFFFFFF), (2, 5, user_uid), (4, 0, 0xFFFFFFFF), (0x10, 5, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


@needs_root
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_renewal_keeps_the_acl_of_the_bundle_folder(open_dir, ca_env, ca_dir, bulk):  # noqa: F811
    env = _env(ca_env, open_dir)
    folder = open_dir / "db"
    run_certkit("issue-server", "db.example.com", "--days", "10", "--out", folder, env=env, check=True)
    folder.chmod(0o700)
    nobody = pwd.getpwnam("nobody").pw_uid
    try:  # the service's user may enter the folder (setfacl -m u:postgres:rx), and read its certificate
        os.setxattr(folder, "system.posix_acl_access", _folder_acl(nobody))
        os.setxattr(folder, "system.posix_acl_default", _folder_acl(nobody))
    except OSError as exc:
        pytest.skip(f"this file system keeps no POSIX ACL: {exc}")
    before = folder.stat().st_ino
    assert _nobody_reads(folder / "cert.pem")
    proc = run_certkit("renew", *(["--expiring", "30d"] if bulk else [folder]), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder.stat().st_ino != before  # the folder was swapped whole (the case at stake)
    assert _nobody_reads(folder / "cert.pem")  # was: Permission denied, the folder's ACL gone with the old folder
    assert os.getxattr(folder, "system.posix_acl_access") == _folder_acl(nobody)
    assert os.getxattr(folder, "system.posix_acl_default") == _folder_acl(nobody)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750  # the ACL's mask, as before
    assert openssl("verify", "-CAfile", folder / "ca.pem", folder / "cert.pem").returncode == 0


@needs_root
def test_a_renewal_by_its_owner_keeps_the_group_of_the_bundle_folder(open_dir, ca_env, ca_dir):  # noqa: F811
    """A user (not root) renews a bundle folder it gave to a group it is in (chgrp ssl-cert; chmod 750): the
    folder swapped whole had the user's primary group, and the group's services could no longer enter it (nor,
    with a group it is not in, ever: that folder's group bits are then not the primary group's to have)."""
    owner, group, member, foreign = 42001, 42002, 42003, 42004  # ids of no account: no change to this machine
    shutil.copytree(ca_dir, open_dir / "ca")  # where the user can reach it (pytest's folders are root's alone)
    env = _env(ca_env, open_dir) | {"CERTKIT_CA_DIR": str(open_dir / "ca")}
    folder, other = open_dir / "web", open_dir / "other"
    run_certkit("issue-server", "web.example.com", "--days", "10", "--out", folder, env=env, check=True)
    run_certkit("issue-server", "other.example.com", "--days", "10", "--out", other, env=env, check=True)
    run_certkit("renew", folder, env=env, check=True)  # (loads what renewing needs, before the user cannot)
    for path in [open_dir, *open_dir.rglob("*")]:
        os.chown(path, owner, owner, follow_symlinks=False)
    os.chown(folder, owner, group)
    os.chown(other, owner, foreign)  # given by root to a group the owner is not in
    folder.chmod(0o750)
    other.chmod(0o750)
    assert _reads_as(member, group, folder / "cert.pem")
    before = folder.stat().st_ino
    _load_all_of_certkit()  # the owner cannot read CI's checkout (under a 0700 folder), nor root's site-packages
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the owner, in its groups, renews its bundle
        code = 1
        try:
            os.close(read)
            os.chdir(open_dir)  # not CI's checkout, which the owner cannot enter
            os.setgroups([group])
            os.setresgid(owner, owner, owner)
            os.setresuid(owner, owner, owner)
            proc = run_certkit("renew", "--expiring", "30d", env=env, cwd=open_dir)
            os.write(write, f"{proc.returncode}\n{proc.stdout}{proc.stderr}".encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 (said to the test)
            os.write(write, f"the owner's run failed: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as said:
        told = said.read().decode()
    assert os.waitpid(pid, 0)[1] == 0, told
    assert told.startswith("0\n"), told
    info = folder.stat()
    assert info.st_ino != before  # the folder was swapped whole
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (owner, group, 0o750)  # was: gid 42001
    assert _reads_as(member, group, folder / "cert.pem")
    info = other.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (owner, owner, 0o700)  # was: 0750, gid 42001
    assert not _reads_as(42005, owner, other / "cert.pem")  # the owner's primary group got nothing it lacked


def _load_all_of_certkit() -> None:
    """Import every module of certkit here, as root: the forked owner's run then reads none of their files."""
    import importlib
    import pkgutil

    import certkit

    for module in pkgutil.walk_packages(certkit.__path__, "certkit."):
        if module.name.endswith("__main__"):  # runs the command line
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional dependency (python-pkcs11, psycopg) this run does not use
            pass


def _reads_as(uid: int, gid: int, path: Path) -> bool:
    """Whether a process of the user ``uid`` in the group ``gid`` alone can read ``path`` (a real open by head)."""
    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return subprocess.run(["head", "-c", "1", str(path)], capture_output=True, timeout=30,
                          preexec_fn=drop).returncode == 0
