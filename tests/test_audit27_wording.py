"""Audit 27, wording: one case said one way across commands.

1. ``renew --remove-timer --unit-dir X`` where X cannot be a folder (a FIFO, /dev/null, a dangling link, a path
   below a file) said "No certkit-renew timer to remove in X." and exited 0, while ``--install-timer`` with the
   same X is refused ("X is not a folder"). A --unit-dir that cannot be a folder is a mistake on both sides: remove
   refuses it now, naming what is there, as install does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit

IN_THE_WAY = {
    "fifo": ("fifo", "fifo is not a folder"),
    "devnull": ("/dev/null", "/dev/null is not a folder"),
    "dangling": ("dangling", "dangling is a symbolic link to nothing, not a folder"),
    "below-a-file": ("file/x", "file is a file, not a folder"),
}


def _in_the_way(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")


@pytest.mark.parametrize("case", sorted(IN_THE_WAY))
def test_a_unit_dir_that_cannot_be_a_folder_is_refused_by_remove_as_by_install(tmp_path, ca_dir, ca_env, case):
    _in_the_way(tmp_path)
    given, said = IN_THE_WAY[case]
    env = {**ca_env, "HOME": str(tmp_path / "home")}
    secret = tmp_path / "passphrase"
    secret.touch(0o600)
    secret.write_text(ca_env["CERTKIT_CA_PASSPHRASE"])
    before = sorted(os.listdir(tmp_path))
    for action, *more in (("--install-timer", "--passphrase-file", secret), ("--remove-timer",)):
        verb = "write" if more else "remove"
        proc = run_certkit("renew", action, *more, "--unit-dir", given, cwd=tmp_path, env=env)
        assert_clean_error(proc, f"Cannot {verb} the timer units")
        assert said in proc.stderr and "nothing there was changed" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_remove_timer_still_finds_nothing_to_remove_in_a_folder_or_a_new_path(tmp_path, ca_dir, ca_env):
    (tmp_path / "units").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "units")
    env = {**ca_env, "HOME": str(tmp_path / "home")}
    for given in ("units", "linked", "missing/below"):
        proc = run_certkit("renew", "--remove-timer", "--unit-dir", given, cwd=tmp_path, env=env)
        assert proc.returncode == 0 and "No certkit-renew timer to remove" in proc.stdout, proc.stderr
    assert not (tmp_path / "missing").exists()


# --- 2. a path under a folder the user may not search, said one way by every command ---------------------------
# Before: inspect, verify CERT, export-p12, renew and issue-server --out said "Error: permission denied (PATH).";
# sign-csr, probe --ca-file and serve --cert said "PATH does not exist.", which is false.
UNREACHABLE = {
    "inspect-file": (("inspect", "{b}/cert.pem"), "{b}/cert.pem"),
    "inspect-folder": (("inspect", "{b}"), "{b}"),
    "verify": (("verify", "--purpose", "server", "{b}/cert.pem"), "{b}/cert.pem"),
    "verify-ca-file": (("verify", "--purpose", "server", "web/cert.pem", "--ca-file", "{b}/ca.pem"), "{b}/ca.pem"),
    "export-p12": (("export-p12", "{b}"), "{b}"),
    "renew": (("renew", "{b}"), "{b}"),
    "sign-csr": (("sign-csr", "{b}/cert.pem"), "{b}/cert.pem"),
    "probe-ca-file": (("probe", "127.0.0.1:9", "--ca-file", "{b}/ca.pem"), "{b}/ca.pem"),
    "serve-cert": (("serve", "--cert", "{b}/cert.pem", "--key", "{b}/privkey.pem", "--port", "0"), "{b}/cert.pem"),
}


@pytest.fixture
def behind_a_locked_folder(tmp_path, ca_dir, ca_env):
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    (tmp_path / "locked" / "sub").mkdir(parents=True)
    shutil.copytree(tmp_path / "web", tmp_path / "locked" / "sub" / "b")
    (tmp_path / "locked").chmod(0o600)  # readable, not searchable: nothing below it can be looked at
    yield tmp_path
    (tmp_path / "locked").chmod(0o755)


@pytest.mark.parametrize("case", sorted(UNREACHABLE))
def test_a_path_under_a_folder_one_may_not_search_is_said_as_one_that_cannot_be_read(behind_a_locked_folder, ca_env,
                                                                                      case):
    from test_audit5 import obeying_modes

    args, named = UNREACHABLE[case]
    b = "locked/sub/b"
    proc = subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", *(a.format(b=b) for a in args)],
                          cwd=behind_a_locked_folder, env=ca_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    said = named.format(b=b)
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("Error: Cannot read the ") and f" {said}: Permission denied." in proc.stderr, \
        proc.stderr
    assert "does not exist" not in proc.stderr and "permission denied (" not in proc.stderr


def test_an_output_under_a_folder_one_may_not_search_is_said_as_one_that_cannot_be_written(behind_a_locked_folder,
                                                                                          ca_env):
    """Round 28: issue-server --out there writes, so it says so (was "Cannot read the file or folder ...")."""
    from test_audit5 import obeying_modes

    proc = subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", "issue-server", "x.test", "--out",
                           "locked/sub/b"], cwd=behind_a_locked_folder, env=ca_env, capture_output=True, text=True,
                          timeout=60)
    assert_clean_error(proc, "Cannot write the file or folder locked/sub/b: permission denied (")
    assert "Cannot read" not in proc.stderr


def test_a_file_that_is_not_there_is_still_said_not_to_exist(tmp_path, ca_dir, ca_env):
    for args in (("inspect", "gone.pem"), ("sign-csr", "gone.pem"), ("verify", "--purpose", "server", "gone.pem")):
        assert_clean_error(run_certkit(*args, cwd=tmp_path, env=ca_env), "gone.pem does not exist")


# --- 3. what stands where a file should be, named, never "not a regular file" ---------------------------------
# Before: export-p12 said "cert.pem is not a regular file", issue-server --force and renew over a bundle "is a
# symbolic link or not a regular file" (of a FIFO too), --remove-timer "is not a regular file (a link?)", renew of
# a bundle whose key is a FIFO "is not a regular file", check "is not a regular file, not a file" (now as the other
# commands say it of every file: "is a device or other special file, not a file").
PLANTED = {
    "fifo": (os.mkfifo, "is a device or other special file, not a file"),
    "folder": (os.mkdir, "is a folder, not a file"),
}


def _plant(path: Path, kind: str) -> None:
    path.unlink(missing_ok=True)
    PLANTED[kind][0](path)


@pytest.mark.parametrize("kind", sorted(PLANTED))
@pytest.mark.parametrize("how", ["export-p12", "issue-server-force", "renew", "renew-key", "remove-timer", "check"])
def test_what_stands_where_a_file_should_be_is_named_by_every_command(tmp_path, ca_dir, ca_env, how, kind):
    env = {**ca_env, "HOME": str(tmp_path / "home")}
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=env, check=True)
    target, args = {
        "export-p12": (tmp_path / "web" / "cert.pem", ("export-p12", "web")),
        "issue-server-force": (tmp_path / "web" / "cert.pem", ("issue-server", "web.test", "--out", "web", "--force")),
        "renew": (tmp_path / "web" / "cert.pem", ("renew", "web")),
        "renew-key": (tmp_path / "web" / "privkey.pem", ("renew", "web")),
        "remove-timer": (tmp_path / "units" / "certkit-renew.timer",
                         ("renew", "--remove-timer", "--unit-dir", "units")),
        "check": (ca_dir / "ca.pem", ("check",)),
    }[how]
    target.parent.mkdir(exist_ok=True)
    _plant(target, kind)
    proc = run_certkit(*args, cwd=tmp_path, env=env)
    said = f"{target.relative_to(tmp_path)} {PLANTED[kind][1]}"
    if how == "check":  # the CA directory's files in the words of every other file (vocabulary.file_kind_text)
        said = f"{target} {PLANTED[kind][1]}"
    if how == "check":
        assert proc.returncode == 1 and said in proc.stdout, (proc.stdout, proc.stderr)
    else:
        assert_clean_error(proc, said)
    assert "regular file" not in proc.stdout + proc.stderr and "(a link?)" not in proc.stderr


def test_a_link_to_a_file_where_a_bundle_file_is_written_is_named_as_one(tmp_path, ca_dir, ca_env):
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    (tmp_path / "web" / "cert.pem").rename(tmp_path / "elsewhere.pem")
    (tmp_path / "web" / "cert.pem").symlink_to(tmp_path / "elsewhere.pem")
    proc = run_certkit("issue-server", "web.test", "--out", "web", "--force", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"web/cert.pem is a symbolic link to {tmp_path / 'elsewhere.pem'}, not a file of its "
                             "own; certkit will not replace it")


def test_a_bulk_renewal_names_what_stands_where_a_bundles_cert_pem_should_be(tmp_path, ca_dir, ca_env):
    for name in ("fifo", "folder"):
        run_certkit("issue-server", f"{name}.example.com", "--days", "10", "--out", tmp_path / name, env=ca_env,
                    check=True)
        _plant(tmp_path / name / "cert.pem", name)
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    reasons = {Path(o["folder"]).name: o["reason"] for o in json.loads(proc.stdout)["certificates"]}
    for name in ("fifo", "folder"):
        assert f"is damaged: its cert.pem {PLANTED[name][1]}" in reasons[name], reasons
        assert "regular file" not in reasons[name]


# --- 4. serve --host with what no certificate can name: said of --host ---------------------------------------
# Before: serve --host . said "An empty name cannot go in a certificate." (and --host a..b, -x, *.x their name
# errors) without naming --host, the only name the user gave.
@pytest.mark.parametrize("host,said", [(".", "An empty name cannot go in a certificate."),
                                       ("..", "An empty name cannot go in a certificate."),
                                       ("a..b", "it has an empty label"), ("-x", "starts or ends with a hyphen"),
                                       ("*.x", "would match every host under it")])
def test_serve_says_a_host_no_certificate_can_name_of_host(tmp_path, ca_dir, ca_env, host, said):
    proc = run_certkit("serve", "--host", host, "--port", "0", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"Invalid value for '--host': '{host}' cannot name this server: ", code=2)
    assert said in proc.stderr, proc.stderr
