"""Round 26, the issuing pipeline (certkit/issuing.py, certkit/folder_target.py and the commands on it).

1. ``issue-batch --force`` over folders whose bundle held a bundle.p12 (from ``export-p12`` or ``--p12``) removed
   it without a word, while issue-server --force names it ("... was the replaced bundle's bundle.p12 and was
   removed; export it again: ..."); ``renew CERT --out FOLDER --force`` and ``sign-csr --force`` (the old
   bundle's privkey.pem of another key too) said nothing either. The pipeline's folder target now says every
   file of the old bundle it removes, in the same words, for every command; a batch lists them (ten in its
   summary, all under --json's ``removed``).
2. Refused without ``--force``, a folder holding a bundle and its bundle.p12 was said to hold the bundle's files
   alone ("already holds cert.pem, privkey.pem, fullchain.pem, ca.pem; pass --force to replace them"): the
   bundle.p12 that --force then removes was not named. The refusal names it now, as it names one alone.
3. ``issue-peer NAME --out /`` (as root) wrote cert.pem, privkey.pem, fullchain.pem and ca.pem into the root
   folder. A bundle folder (or a CA directory) that is a system folder (/, /etc, /usr, /bin, /root, /tmp, ...) is
   now refused, --force or not, before anything is signed, for every command that writes one; an output file
   straight into one of those only the system's files belong in (/etc/x.tar, /x.jsonl) too. Tested through a link
   in a temporary folder that leads there, never by writing there: the library's guard is asserted first.
   The home folder itself ($HOME, root's /root being one of the system folders) is refused as a bundle folder the
   same way: ``issue-server NAME --out ~`` put privkey.pem among the dotfiles.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import new_ca, require, run_certkit


def _p12_secret(tmp_path):
    secret = tmp_path / "p12-password"
    secret.write_text("keystore-secret\n")
    secret.chmod(0o600)
    return secret


def _bundle_with_keystore(tmp_path, ca_name: str, host: str, folder) -> dict:
    """A new CA, and ``folder`` holding the bundle of ``host`` with its bundle.p12 (--p12): the CA's environment."""
    env = new_ca(tmp_path, ca_name)
    run_certkit("issue-server", host, "--out", folder, "--p12", "--p12-password-file", _p12_secret(tmp_path),
                env=env, check=True)
    return env


def _csr(tmp_path, cn: str) -> None:
    """A CSR made by openssl (its key in k.pem), as a requester makes one: tmp_path/r.csr."""
    subprocess.run([require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "k.pem", "-subj", f"/CN={cn}", "-out", tmp_path / "r.csr"],
                   capture_output=True, check=True, timeout=60)


def _verified(ca_dir, folder) -> None:
    """openssl accepts the new bundle's certificate against the CA's (the bundle is whole)."""
    ran = subprocess.run([require("openssl"), "verify", "-CAfile", ca_dir / "ca.pem", folder / "cert.pem"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran


def _removed(folder, name: str = "bundle.p12", again: bool = True) -> str:
    said = f"{folder}/{name} was the replaced bundle's {name} and was removed"
    return said + (f"; export it again: certkit export-p12 {folder}" if again else "")


# --- 1. --force says which files of the old bundle it removed, in every command -------------------------------------
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_force_over_bundles_with_a_keystore_names_each_removed(tmp_path, jobs):
    env = new_ca(tmp_path, "certkit round 26 batch p12 CA")
    secret = _p12_secret(tmp_path)
    out = tmp_path / "out"
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,web.example.test,web\nclient,alice,alice\nserver,api.example.test,api\n")
    run_certkit("issue-batch", manifest, "--out-dir", out, env=env, check=True)
    run_certkit("export-p12", out / "web", "--p12-password-file", secret, env=env, check=True)
    run_certkit("issue-client", "alice", "--out", out / "alice", "--force", "--p12", "--p12-password-file", secret,
                env=env, check=True)
    (out / "api" / "notes.txt").write_text("the operator's own file\n")
    ran = run_certkit("issue-batch", manifest, "--out-dir", out, "--force", "--jobs", jobs, env=env)
    assert ran.returncode == 0, ran
    for name in ("web", "alice"):
        assert f"  note       {_removed(out / name)}\n" in ran.stdout, ran.stdout
        assert not (out / name / "bundle.p12").exists()
        _verified(tmp_path / "ca", out / name)
    assert "api" not in ran.stdout.split("inventory", 1)[1], ran.stdout  # nothing of api's was removed
    assert (out / "api" / "notes.txt").read_text() == "the operator's own file\n"
    # --json lists them (and nothing when there is none left to remove)
    for name in ("web", "alice"):
        run_certkit("export-p12", out / name, "--p12-password-file", secret, env=env, check=True)
    data = json.loads(run_certkit("issue-batch", manifest, "--out-dir", out, "--force", "--json", "--jobs", jobs,
                                  env=env, check=True).stdout)
    assert sorted(data["removed"]) == sorted(_removed(out / name) for name in ("web", "alice")), data
    data = json.loads(run_certkit("issue-batch", manifest, "--out-dir", out, "--force", "--json", env=env,
                                  check=True).stdout)
    assert data["removed"] == [] and data["notes"] == [], data


def test_batch_summary_names_ten_removed_and_counts_the_rest(tmp_path):
    env = new_ca(tmp_path, "certkit round 26 batch many CA")
    secret = _p12_secret(tmp_path)
    out = tmp_path / "out"
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"client,device-{i:02}\n" for i in range(12)))
    run_certkit("issue-batch", manifest, "--out-dir", out, env=env, check=True)
    for i in range(12):
        run_certkit("export-p12", out / f"device-{i:02}", "--p12-password-file", secret, env=env, check=True)
    ran = run_certkit("issue-batch", manifest, "--out-dir", out, "--force", env=env, check=True)
    assert ran.stdout.count("was the replaced bundle's bundle.p12 and was removed") == 10, ran.stdout
    assert "  note       and 2 more files of the replaced bundles were removed (--json lists them)\n" in ran.stdout
    assert not list(out.glob("*/bundle.p12"))


def test_renew_out_force_over_a_bundle_with_a_keystore_says_it_removed_it(tmp_path):
    env = new_ca(tmp_path, "certkit round 26 renew p12 CA")
    secret = _p12_secret(tmp_path)
    run_certkit("issue-server", "web.example.test", "--out", tmp_path / "web", env=env, check=True)
    run_certkit("issue-server", "old.example.test", "--out", tmp_path / "slot", "--p12", "--p12-password-file",
                secret, env=env, check=True)
    run_certkit("revoke", tmp_path / "slot", "--reason", "superseded", env=env, check=True)
    ran = run_certkit("renew", tmp_path / "web", "--out", tmp_path / "slot", "--force", env=env)
    assert ran.returncode == 0, ran
    assert f"  note        {_removed(tmp_path / 'slot')}\n" in ran.stdout, ran.stdout
    assert not (tmp_path / "slot" / "bundle.p12").exists()
    _verified(tmp_path / "ca", tmp_path / "slot")


def test_sign_csr_force_over_a_bundle_of_another_key_says_what_it_removed(tmp_path):
    folder = tmp_path / "b"
    env = _bundle_with_keystore(tmp_path, "certkit round 26 csr CA", "svc.example.test", folder)
    _csr(tmp_path, "svc.example.test")
    ran = run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--out", folder, "--force", "--json", env=env)
    assert ran.returncode == 0, ran
    notes = json.loads(ran.stdout)["notes"]
    assert _removed(folder, "privkey.pem", again=False) in notes, notes
    assert _removed(folder, again=False) in notes, notes  # no key in the new bundle: nothing to export it from
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem"]
    _verified(tmp_path / "ca", folder)


def test_single_force_says_the_removal_once(tmp_path):
    folder = tmp_path / "web"
    env = _bundle_with_keystore(tmp_path, "certkit round 26 once CA", "web.example.test", folder)
    ran = run_certkit("issue-server", "web.example.test", "--out", folder, "--force", env=env, check=True)
    assert ran.stdout.count("was the replaced bundle's bundle.p12") == 1, ran.stdout


# --- 2. a refusal without --force names every file --force would remove, not only those it would replace ------------
def test_refusal_without_force_names_the_keystore_force_would_remove(tmp_path):
    """A folder holding a whole bundle and its bundle.p12: refused, naming cert.pem... and bundle.p12 (which
    --force removes without a word of the refusal having said so, before), nothing written, for every command."""
    from conftest import assert_clean_error

    folder = tmp_path / "web"
    env = _bundle_with_keystore(tmp_path, "certkit round 26 refusal CA", "web.example.test", folder)
    run_certkit("issue-server", "api.example.test", "--out", tmp_path / "api", env=env, check=True)
    _csr(tmp_path, "web.example.test")
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,web.example.test,web\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    said = f"{folder} already holds cert.pem, privkey.pem, fullchain.pem, ca.pem (and bundle.p12, which writing " \
           "this bundle there would remove)"
    assert_clean_error(run_certkit("issue-server", "web.example.test", "--out", folder, env=env),
                       said + "; pass --force to replace them.")
    # api.example.test's renewal over web.example.test's bundle also says whose names it holds (round 35)
    assert_clean_error(run_certkit("renew", tmp_path / "api", "--out", folder, env=env),
                       said + ": the bundle of a server certificate for DNS:web.example.test, which this one would "
                       "replace")
    # A client certificate over this server's bundle also says whose kind it would replace (round 31).
    assert_clean_error(run_certkit("issue-client", "web", "--out", folder, env=env),
                       said + ": a server certificate's bundle (serverAuth), which this client certificate would "
                       "replace")
    assert_clean_error(run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--out", folder, env=env),
                       f"{folder} already holds cert.pem, fullchain.pem, ca.pem (and privkey.pem, bundle.p12, which "
                       "writing this bundle there would remove); pass --force to replace them.")
    assert_clean_error(run_certkit("issue-batch", manifest, "--out-dir", tmp_path, env=env), said + ". Nothing was")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["total"] == 2  # nothing issued


# --- 3. a system folder is never a bundle folder, nor an output file's folder ---------------------------------------
def _refused_by_the_guard(path, what: str) -> None:
    """The library refuses ``path`` before a command is ever pointed at it (so that nothing can be written into a
    real system folder even where the fix is missing: the test fails here first)."""
    from certkit.errors import UnsafeOutputPath
    from certkit.paths import check_output

    with pytest.raises(UnsafeOutputPath, match="system folder"):
        check_output(path, what=what)


def test_a_system_folder_is_refused_as_an_output_before_anything_is_signed(tmp_path):
    import os

    from conftest import assert_clean_error

    env = new_ca(tmp_path, "certkit round 26 system CA")
    run_certkit("issue-server", "web.example.test", "--out", tmp_path / "web", env=env, check=True)
    _csr(tmp_path, "svc.example.test")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("/")
    root, etc = tmp_path / "sub" / "up" / "usr" / "..", tmp_path / "sub" / "up" / "etc"  # they lead to / and /etc
    for path in (root, etc, tmp_path / "sub" / "up" / "root", tmp_path / "sub" / "up" / "tmp"):
        _refused_by_the_guard(path, "output folder")
    _refused_by_the_guard(root, "CA directory")
    _refused_by_the_guard(etc / "fleet.tar", "output file")
    _refused_by_the_guard(root / "bundle.p12", "PKCS#12 file")
    before = {folder: sorted(os.listdir(folder)) for folder in ("/", "/etc", "/root", "/tmp")}
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,a.example.test,etc\nclient,bob,root\n")
    for command, said in [
            (["issue-peer", "etcd-1.cluster.internal", "--out", root], f"The output folder {root} (it leads to /) is "
             "the system folder /: certkit writes into a folder of its own, never among the system's files, even "
             "with --force. Give a folder of its own, such as /certkit/NAME."),
            (["issue-server", "a.example.test", "--out", etc, "--force"], "is the system folder /etc"),
            (["issue-client", "bob", "--out", tmp_path / "sub" / "up" / "root"], "is the system folder /root"),
            (["sign-csr", tmp_path / "r.csr", "--server", "--out", root, "--force"], "is the system folder /:"),
            (["renew", tmp_path / "web", "--out", tmp_path / "sub" / "up" / "tmp", "--force"],
             "is the system folder /tmp"),
            (["issue-batch", manifest, "--out-dir", root, "--force"], f"line 3: The output folder {root}/root"),
            (["issue-server", "a.example.test", "--format", "tar", "--out", etc / "a.tar", "--force"],
             f"The output file {etc}/a.tar (it leads to /etc/a.tar) is in the system folder /etc, where only the "
             "system's own files belong"),
            (["issue-batch", manifest, "--format", "jsonl", "--out", root / "fleet.jsonl", "--force"],
             "is in the system folder /,"),
            (["export-p12", root, "--force"], "(it leads to /bundle.p12) is in the system folder /,")]:
        assert_clean_error(run_certkit(*command, env=env), said)
    assert {folder: sorted(os.listdir(folder)) for folder in ("/", "/etc", "/root", "/tmp")} == before
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert listed["total"] == 1, listed  # web's alone: nothing was signed
    # a folder of its own below a system folder is no system folder: the refusal's advice is followed
    from certkit.paths import check_output

    assert check_output(tmp_path / "sub" / "up" / "tmp" / "certkit" / "NAME", what="output folder")


def test_the_home_folder_itself_is_refused_as_a_bundle_folder(tmp_path):
    from conftest import assert_clean_error

    env = new_ca(tmp_path, "certkit round 26 home CA")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("# the user's own\n")
    (tmp_path / "link").symlink_to(home)
    env["HOME"] = str(home)
    _csr(tmp_path, "svc.example.test")
    run_certkit("issue-server", "web.example.test", "--out", home / "web", env=env, check=True)  # a folder of its own
    said = "is your home folder: certkit writes into a folder of its own, never among your own files, even with " \
           f"--force. Give a folder of its own, such as {home}/certkit/NAME."
    for command in (["issue-server", "a.example.test", "--out", home],
                    ["issue-client", "bob", "--out", home, "--force"],
                    ["issue-peer", "p.example.test", "--out", tmp_path / "link" / "."],
                    ["sign-csr", tmp_path / "r.csr", "--server", "--out", home, "--force"],
                    ["renew", home / "web", "--out", tmp_path / "link", "--force"]):
        assert_clean_error(run_certkit(*command, env=env), said)
    assert sorted(p.name for p in home.iterdir()) == [".profile", "web"]
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["total"] == 1
