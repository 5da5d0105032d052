"""What certkit's outputs hold, where the audit of fleets and peers found them wrong (F2, F5, F7, F10):

- a Kubernetes Secret's name, and every other scalar of the manifest, is a string once parsed, also
  for names YAML would read as a number, a boolean, null or a date (``12345``, ``yes``, ``null``);
- every member of a tar archive is owned by root (uid 0, gid 0), never by the issuing user, on the
  ustar path and on the PAX path (long or non-ASCII names), with the bundle's modes;
- a reader that closes standard output early gets one ``Error:`` line in words, whose count of
  certificates written is what the inventory records valid, with one process or several;
- the folders certkit creates above an output are 0755 at most, even under ``umask 000``, so a second
  run into the same folder is not refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import run_certkit
from fleet_helpers import secrets

ISSUER_UID, ISSUER_GID = 4242, 4343
# certkit as a user whose uid and gid are not root's: what a non-root issuer's archive would carry.
AS_OTHER_USER = (f"import os, sys; os.getuid = lambda: {ISSUER_UID}; os.getgid = lambda: {ISSUER_GID}; "
                 "from certkit.entry import main; sys.argv[0] = 'certkit'; sys.exit(main())")


def certkit_process(*args, env: dict, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180, **kwargs)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def count(env: dict, status: str) -> int:
    proc = run_certkit("list", "--status", status, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["count"]


# --- F2: a Secret's name is a YAML string ------------------------------------------------------------
def scalars(node, where: str = ""):
    """(path, value) of every scalar of a parsed YAML document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}/key:{key!r}", key
            yield from scalars(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from scalars(value, f"{where}/{i}")
    else:
        yield where, node


def assert_all_strings(doc: dict, name: str) -> None:
    """The Secret is called ``name``, a string, and so is every other scalar of it (PyYAML reads YAML
    1.1, where ``1e3`` is a string; kubectl's reader takes it for a number: see assert_quoted)."""
    assert isinstance(doc["metadata"]["name"], str), (name, doc["metadata"]["name"])
    assert doc["metadata"]["name"] == name
    odd = [(where, value) for where, value in scalars(doc) if not isinstance(value, str)]
    assert odd == [], odd


def assert_quoted(text: str, names: list[str]) -> None:
    """Each Secret's name is written as a double-quoted YAML scalar, whatever reader parses it."""
    assert re.findall(r"^  name: (.*)$", text, re.M) == [f'"{name}"' for name in names], text


# names that a YAML reader takes for something else when written plain: an int, an octal int, a bool,
# null, a float (1e3 only for kubectl's reader), a hex int, a date
CLIENT_NAMES = {"12345": "12345", "0755": "0755", "yes": "yes", "no": "no", "on": "on", "true": "true",
                "null": "null", "NULL": "null", "1e3": "1e3", "1.5": "1.5", "0x1F": "0x1f",
                "2024-01-01": "2024-01-01"}


@pytest.mark.parametrize("typed", list(CLIENT_NAMES))
def test_k8s_client_secret_name_is_a_string(tmp_path, ca_env, ca_dir, typed):
    out = tmp_path / "secret.yaml"
    proc = run_certkit("issue-client", typed, "--format", "k8s", "--out", out, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    [doc] = secrets(out.read_text())
    assert_all_strings(doc, CLIENT_NAMES[typed])
    assert_quoted(out.read_text(), [CLIENT_NAMES[typed]])
    assert yaml.safe_load(out.read_text())["metadata"]["name"] == CLIENT_NAMES[typed]


@pytest.mark.parametrize(("names", "expected"), [(["::1"], "1"), (["2024-01-01"], "2024-01-01"),
                                                 (["10.0.0.1"], "10.0.0.1")])
def test_k8s_server_secret_name_is_a_string(tmp_path, ca_env, ca_dir, names, expected):
    proc = run_certkit("issue-server", *names, "--format", "k8s", env=ca_env)  # to standard output
    assert proc.returncode == 0, proc.stderr
    [doc] = secrets(proc.stdout)
    assert_all_strings(doc, expected)
    assert_quoted(proc.stdout, [expected])


def test_k8s_batch_secret_names_are_strings(tmp_path, ca_env, ca_dir):
    (tmp_path / "m.csv").write_text("kind,names,out\nclient,12345,\nclient,yes,\nclient,Off,\nclient,~null,\n"
                                    "server,::1,\nserver,a.example.com,0755\nclient,d,1e3\n")
    expected = ["12345", "yes", "off", "null", "1", "0755", "1e3"]
    for args in (("--out", "all.yaml"), ()):
        proc = run_certkit("issue-batch", "m.csv", "--format", "k8s", *args, "--jobs", "1", cwd=tmp_path,
                           env=ca_env)
        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / "all.yaml").read_text() if args else proc.stdout
        docs = secrets(text)
        assert [d["metadata"]["name"] for d in docs] == expected
        assert_quoted(text, expected)
        for doc, name in zip(docs, expected, strict=True):
            assert_all_strings(doc, name)


# --- F5: tar members belong to root ------------------------------------------------------------------
LONG = "deploy/" + "a-rather-long-folder-name-" * 4 + "/long.example.com"  # member names over 100 characters
BATCH = ("kind,names,out\nserver,web1.example.com,\nclient,Jürgen Müller,clients/jürgen-müller\n"
         f"server,l.example.com,{LONG}\n")


def assert_root_owned_archive(archive: Path, folders: set[str]) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert {m.name for m in members if m.isdir()} == folders
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "root", "root"), (m.name, m.uid, m.gid, m.uname, m.gname)
        expected = 0o755 if m.isdir() else 0o600 if m.name.endswith("/privkey.pem") else 0o644
        assert m.mode == expected, (m.name, oct(m.mode))
    for numeric, owner in (("--numeric-owner", "0/0"), (None, "root/root")):
        listing = subprocess.run(["tar", "-tvf", archive, *([numeric] if numeric else [])], capture_output=True,
                                 text=True, timeout=30)
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert len(lines) == len(members)
        assert {line.split()[1] for line in lines} == {owner}, listing.stdout


def owners(into: Path, folders: set[str]) -> set[tuple[int, int]]:
    paths = [p for folder in folders for p in (into / folder, *(into / folder).iterdir())]
    return {(p.stat().st_uid, p.stat().st_gid) for p in paths}


def assert_extracted_owner(archive: Path, into: Path, folders: set[str]) -> None:
    """``tar -xpf``: as root, the files are root's (not the issuer's uid); as any other user, that user's."""
    into.mkdir()
    assert subprocess.run(["tar", "-xpf", archive, "-C", into], timeout=30).returncode == 0
    assert owners(into, folders) == {(os.geteuid(), os.getegid())}  # (0, 0) as root
    for folder in folders:
        assert mode(into / folder) == 0o755
        assert mode(into / folder / "privkey.pem") == 0o600 and mode(into / folder / "cert.pem") == 0o644
    if os.geteuid() != 0:
        return
    # root can also show a user's extraction: the nobody user's files (outside pytest's private tmp folder)
    nobody = Path(tempfile.mkdtemp(prefix="certkit-untar-"))
    try:
        os.chown(nobody, 65534, 65534)
        with archive.open("rb") as data:
            ran = subprocess.run(["tar", "-xpf", "-", "-C", nobody], stdin=data, capture_output=True, timeout=30,
                                 user=65534, group=65534, extra_groups=[])
        assert ran.returncode == 0, ran.stderr
        assert owners(nobody, folders) == {(65534, 65534)}
        assert mode(nobody / sorted(folders)[0] / "privkey.pem") == 0o600
    finally:
        shutil.rmtree(nobody, ignore_errors=True)


def test_tar_members_belong_to_root_not_the_issuer(tmp_path, ca_env, ca_dir):
    proc = subprocess.run([sys.executable, "-c", AS_OTHER_USER, "issue-server", "n.example.com", "--format", "tar",
                           "--out", "n.tar"], cwd=tmp_path, env=ca_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_root_owned_archive(tmp_path / "n.tar", {"n.example.com"})
    assert_extracted_owner(tmp_path / "n.tar", tmp_path / "x", {"n.example.com"})


def test_tar_batch_members_belong_to_root_also_with_pax_headers(tmp_path, ca_env, ca_dir):
    (tmp_path / "m.csv").write_text(BATCH, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", AS_OTHER_USER, "issue-batch", "m.csv", "--format", "tar", "--out",
                           "all.tar", "--jobs", "2"], cwd=tmp_path, env=ca_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    folders = {"web1.example.com", "clients/jürgen-müller", LONG}
    assert_root_owned_archive(tmp_path / "all.tar", folders)
    with tarfile.open(tmp_path / "all.tar") as tar:  # those names did take the PAX path, the others not
        members = tar.getmembers()
    pax = {m.name for m in members if "path" in m.pax_headers}
    assert pax == {m.name for m in members if not m.name.startswith("web1.example.com")} and len(pax) == 10
    assert_extracted_owner(tmp_path / "all.tar", tmp_path / "x", folders)


def test_tar_header_owner_on_both_paths():
    """The encoder's two header builders agree on the owner: the fast ustar one and tarfile's PAX one."""
    from certkit.formats.encoding import tar_bundle, tar_end

    files = {"cert.pem": b"c" * 10, "privkey.pem": b"k" * 5}
    for folder in ("short", "ü-folder", "x" * 120):
        with tarfile.open(fileobj=io.BytesIO(tar_bundle(folder, files, mtime=1_700_000_000) + tar_end())) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == [folder, f"{folder}/cert.pem", f"{folder}/privkey.pem"]
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
        assert [m.mode for m in members] == [0o755, 0o644, 0o600]


# --- F7: a reader that closes standard output ----------------------------------------------------------
STOPPED = re.compile(r"^Error: The reader of standard output closed it \(a broken pipe\)[^\n]* The batch stopped "
                     r"after ([\d,]+) certificates? (?:was|were) written to standard output and recorded\.[^\n]*$")


def into_closed_pipe(args: list[str], env: dict, cwd: Path, read: int) -> tuple[int, str]:
    """Run certkit with its standard output into a pipe whose reader reads ``read`` bytes, then closes it."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        if read:
            assert len(proc.stdout.read(read)) == read
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        return proc.wait(timeout=180), stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_one_line_in_words(stderr: str) -> None:
    assert len(stderr.splitlines()) == 1 and stderr.startswith("Error: "), stderr
    for noise in ("Traceback", "BrokenPipeError", "Errno", "Exception ignored"):
        assert noise not in stderr, stderr


@pytest.mark.parametrize("read", [100, 0])
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("fmt", ["jsonl", "tar"])
def test_batch_into_a_closed_pipe_counts_what_the_inventory_records(tmp_path, ca_env, ca_dir, jobs, read, fmt):
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(1200)))
    code, stderr = into_closed_pipe(["issue-batch", "m.csv", "--format", fmt, "--jobs", jobs], ca_env, tmp_path, read)
    assert code == 1, stderr
    assert_one_line_in_words(stderr)
    said = STOPPED.match(stderr.strip())
    assert said, stderr
    assert int(said.group(1).replace(",", "")) == count(ca_env, "valid"), stderr
    assert count(ca_env, "pending") == 0  # the rest are abandoned, none left undecided
    if read == 0:
        assert int(said.group(1).replace(",", "")) == 0


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_one_certificate_into_a_closed_pipe(tmp_path, ca_env, ca_dir, fmt):
    code, stderr = into_closed_pipe(["issue-server", "web.example.com", "--format", fmt], ca_env, tmp_path, 0)
    assert code == 1, stderr
    assert_one_line_in_words(stderr)
    assert "The reader of standard output closed it (a broken pipe)" in stderr
    assert count(ca_env, "valid") == 0 and count(ca_env, "pending") == 0 and count(ca_env, "abandoned") == 1


# --- F10: folders certkit creates are 0755 at most, whatever the umask -----------------------------------
@pytest.mark.parametrize("umask", [0o000, 0o002])
def test_created_folders_are_never_writable_by_others(tmp_path, ca_env, ca_dir, umask):
    def run(*args):
        proc = certkit_process(*args, env=ca_env, cwd=tmp_path, umask=umask)
        assert proc.returncode == 0, proc.stderr
        return proc

    # (an output file's folder is not made: it must exist, test_audit37_formats3)
    run("issue-server", "f.example.com", "--format", "jsonl", "--out", "f.jsonl")
    run("issue-server", "g.example.com", "--out", "x/y/g")
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,a.example.com,web/a\nserver,b.example.com,web/b\n")
    run("issue-batch", "m.csv", "--out-dir", "b/c", "--jobs", "1")
    run("issue-batch", "m.csv", "--format", "jsonl", "--out", "all.jsonl", "--jobs", "2")
    for folder in ("x", "x/y", "b", "b/c", "b/c/web"):
        assert mode(tmp_path / folder) == 0o755, (folder, oct(mode(tmp_path / folder)))
    assert mode(tmp_path / "x/y/g") == 0o755 and mode(tmp_path / "b/c/web/a") == 0o755  # bundle folders
    assert mode(tmp_path / "x/y/g/privkey.pem") == 0o600 and mode(tmp_path / "f.jsonl") == 0o600
    # a second run into the same folders is not refused
    run("issue-server", "h.example.com", "--format", "jsonl", "--out", "h.jsonl")
    run("issue-server", "i.example.com", "--out", "x/y/i")
    run("issue-server", "v.example.com", "--format", "tar", "--out", "v.tar")
    run("issue-batch", "m.csv", "--format", "k8s", "--out", "all.yaml")
    (tmp_path / "n.csv").write_text("kind,names,out\nserver,c.example.com,web/c\n")
    run("issue-batch", "n.csv", "--out-dir", "b/c", "--jobs", "1")
    assert (tmp_path / "b/c/web/c/cert.pem").is_file()


def test_a_new_ca_directory_under_umask_000_and_a_stricter_umask(tmp_path, ca_env):
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "deep" / "er" / "ca"))
    proc = certkit_process("init-ca", "--name", "Umask CA", env=env, cwd=tmp_path, umask=0)
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "deep") == mode(tmp_path / "deep" / "er") == 0o755
    assert mode(tmp_path / "deep" / "er" / "ca") == 0o700  # the CA directory stays private
    proc = certkit_process("issue-server", "a.example.com", "--out", "deep/out/a", env=env, cwd=tmp_path, umask=0)
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "deep" / "out") == 0o755
    # a stricter umask still takes bits away (0755 is the most, not a mode forced on every folder)
    proc = certkit_process("issue-server", "s.example.com", "--out", "s/t/u", env=env, cwd=tmp_path, umask=0o027)
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "s") == mode(tmp_path / "s" / "t") == 0o750


def test_the_demos_folders_are_never_writable_by_others(tmp_path) -> None:
    """certkit demo --keep's folders under umask 000: none writable by group or others."""
    from certkit.demo import make_certificates

    old = os.umask(0)
    try:
        make_certificates(tmp_path / "demo")
    finally:
        os.umask(old)
    folders = [tmp_path / "demo", *(p for p in (tmp_path / "demo").rglob("*") if p.is_dir())]
    assert len(folders) > 5
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folders if p.stat().st_mode & 0o022} == {}
