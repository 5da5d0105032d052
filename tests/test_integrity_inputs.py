"""Issue 9, classes 7 and 12: every input bounded, every number ranged, every message true.

Class 7: /dev/zero (endless) wherever a file is read, as a file argument and as standard input,
is refused with one Error line under a memory limit that an unbounded read would hit; huge,
negative and non-finite numbers are usage errors (exit 2), never OverflowError; bad numbers and
NUL bytes in a manifest are refused line by line with nothing issued.

Class 12: a full disk says "the disk is full", a read-only inventory or output says "read-only"
(never "damaged"); a CSR signed with SHA-1 or MD5 is named as such by sign-csr and inspect,
while a really altered CSR is still called altered. (A batch that fails part-way saying how many
bundles were written and recorded: tests/test_integrity_faults.py, test_disk_full.)
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import db_rows, fill, tmpfs

MEMORY_LIMIT = 1 << 30  # far above what any certkit command needs, far below /dev/zero


def assert_refused_as_too_large(proc: subprocess.CompletedProcess) -> None:
    assert_clean_error(proc, "than")
    assert "larger than" in proc.stderr or "longer than" in proc.stderr, proc.stderr
    assert "MemoryError" not in proc.stderr


def run_bounded(*args, env: dict, cwd: Path, stdin=None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI under an address-space limit: an unbounded read ends in MemoryError, not in the
    kernel's OOM killer taking the machine with it."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env, stdin=stdin,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, dict]:
    """A CA, a server bundle and a client bundle, shared by the refusals below (none writes)."""
    root = tmp_path_factory.mktemp("inputs")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Inputs Root", env=env, check=True)
    run_certkit("issue-server", "web.example.internal", "--out", root / "web", env=env, check=True)
    run_certkit("issue-client", "Alice", "--out", root / "alice", env=env, check=True)
    (root / "fleet.csv").write_text("kind,names\nserver,a.example.internal\n")
    return root, env


# --- class 7: endless files --------------------------------------------------------------
ZERO = "/dev/zero"
ENDLESS_FILES = {
    "issue-batch manifest": ["issue-batch", ZERO, "--out-dir", "b"],
    "sign-csr": ["sign-csr", ZERO, "--server"],
    "inspect": ["inspect", ZERO],
    "verify certificate": ["verify", ZERO, "--purpose", "server"],
    "verify --ca-file": ["verify", "web/cert.pem", "--purpose", "server", "--ca-file", ZERO],
    "verify --untrusted": ["verify", "web/cert.pem", "--purpose", "server", "--untrusted", ZERO],
    "issue-server --passphrase-file": ["issue-server", "z.example.internal", "--passphrase-file", ZERO],
    "crl --passphrase-file": ["crl", "--passphrase-file", ZERO],
    "init-ca --passphrase-file": ["init-ca", "--ca-dir", "new-ca", "--passphrase-file", ZERO],
    "init-ca --parent-passphrase-file": ["init-ca", "--ca-dir", "new-ica", "--parent-ca-dir", "ca",
                                         "--parent-passphrase-file", ZERO],
    "issue-client --p12-password-file": ["issue-client", "Zed", "--p12", "--p12-password-file", ZERO],
    "export-p12 --password-file": ["export-p12", "alice", "--force", "--password-file", ZERO],
    "renew --p12-password-file": ["renew", "web", "--p12-password-file", ZERO],
    "serve --client-ca": ["serve", "--port", "0", "--client-ca", ZERO],
    "serve --cert/--key": ["serve", "--port", "0", "--cert", ZERO, "--key", ZERO],
    "probe --ca-file": ["probe", "https://127.0.0.1:9/", "--ca-file", ZERO, "--timeout", "1"],
}
ENDLESS_STDIN = {
    "issue-batch -": ["issue-batch", "-", "--out-dir", "b"],
    "sign-csr -": ["sign-csr", "-", "--client"],
    "--passphrase-file -": ["issue-server", "z.example.internal", "--passphrase-file", "-"],
}


@pytest.mark.parametrize("what", list(ENDLESS_FILES))
def test_endless_file_argument(pki, what: str) -> None:
    root, env = pki
    before = db_rows(root / "ca")
    proc = run_bounded(*ENDLESS_FILES[what], env=env, cwd=root, stdin=subprocess.DEVNULL)
    assert_refused_as_too_large(proc)
    assert db_rows(root / "ca") == before
    assert not (root / "b").exists() and not (root / "new-ca").exists() and not (root / "zed").exists()


@pytest.mark.parametrize("what", list(ENDLESS_STDIN))
def test_endless_standard_input(pki, what: str) -> None:
    root, env = pki
    env = {k: v for k, v in env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    with open(ZERO, "rb") as zero:
        proc = run_bounded(*ENDLESS_STDIN[what], env=env, cwd=root, stdin=zero)
    assert_refused_as_too_large(proc)
    assert not (root / "b").exists()


# --- class 7: numbers -----------------------------------------------------------------
HUGE = "9" * 30
NUMBERS = {
    "issue-server --days": ["issue-server", "n.example.internal", "--days", HUGE],
    "issue-client --days": ["issue-client", "Nina", "--days", HUGE],
    "issue-peer --days": ["issue-peer", "n.example.internal", "--days", "-5"],
    "sign-csr --days": ["sign-csr", "fleet.csv", "--server", "--days", HUGE],
    "renew --days": ["renew", "web", "--days", HUGE],
    "issue-batch --days": ["issue-batch", "fleet.csv", "--days", HUGE],
    "issue-batch --jobs": ["issue-batch", "fleet.csv", "--jobs", HUGE],
    "issue-batch --jobs 0": ["issue-batch", "fleet.csv", "--jobs", "0"],
    "init-ca --days": ["init-ca", "--ca-dir", "n-ca", "--days", HUGE],
    "crl --days": ["crl", "--days", HUGE],
    "list --expiring days": ["list", "--expiring", HUGE + "d"],
    "list --expiring weeks": ["list", "--expiring", "999999999w"],
    "list --expiring hours": ["list", "--expiring", "999999999h"],
    "list --limit": ["list", "--limit", HUGE],
    "serve --port": ["serve", "--port", HUGE],
    "serve --port negative": ["serve", "--port", "-1"],
    "acme serve --port": ["acme", "serve", "--port", HUGE],
    "probe --timeout nan": ["probe", "https://127.0.0.1:9/", "--timeout", "nan"],
    "probe --timeout inf": ["probe", "https://127.0.0.1:9/", "--timeout", "inf"],
    "probe --timeout huge": ["probe", "https://127.0.0.1:9/", "--timeout", "1e400"],
}


@pytest.mark.parametrize("what", list(NUMBERS))
def test_numbers_have_a_range(pki, what: str) -> None:
    root, env = pki
    proc = run_certkit(*NUMBERS[what], env=env, cwd=root)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "OverflowError" not in proc.stderr, proc.stderr
    assert "Error: Invalid value" in proc.stderr, proc.stderr


BAD_LINES = {
    "huge days (CSV)": ("m.csv", f"kind,names,days\nserver,ok.example.internal,\nserver,d.example.internal,{HUGE}\n",
                        3),
    "negative days (CSV)": ("m.csv", "kind,names,days\nserver,ok.example.internal,\nserver,d.example.internal,-3\n", 3),
    "non-finite days (JSONL)": ("m.jsonl", '{"kind":"server","names":"ok.example.internal"}\n'
                                '{"kind":"server","names":"d.example.internal","days":1e400}\n', 2),
    "NUL in out (JSONL)": ("m.jsonl", '{"kind":"server","names":"ok.example.internal"}\n'
                           '{"kind":"server","names":"d.example.internal","out":"a\\u0000b"}\n', 2),
    "NUL in names (JSONL)": ("m.jsonl", '{"kind":"server","names":"ok.example.internal"}\n'
                             '{"kind":"client","names":"Eve\\u0000Mallory"}\n', 2),
    "NUL in a CSV line": ("m.csv", "kind,names,out\nserver,ok.example.internal,\nserver,d.example.internal,a\0b\n", 3),
}


@pytest.mark.parametrize("what", list(BAD_LINES))
def test_bad_manifest_values_refused_before_issuing(tmp_path: Path, ca_env: dict, ca_dir: Path, what: str) -> None:
    name, text, line = BAD_LINES[what]
    (tmp_path / name).write_text(text)
    proc = run_certkit("issue-batch", name, "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error:") and f"line {line}" in proc.stderr, proc.stderr
    assert "\0" not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert db_rows(ca_dir) == []


# --- class 12: words that say what happened ---------------------------------------------
def test_full_disk_is_called_full(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    run_certkit("issue-client", "Alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    with tmpfs(tmp_path / "small", "size=128k") as small:
        shutil.copytree(tmp_path / "alice", small / "alice")
        fill(small, leave=0)
        env = dict(ca_env, CERTKIT_P12_PASSWORD="a p12 password")
        for args in (["issue-client", "Bob", "--out", small / "bob"], ["crl", "--out", small / "ca.crl"],
                     ["export-p12", small / "alice"], ["init-ca", "--ca-dir", small / "new-ca"]):
            proc = run_certkit(*args, env=env)
            assert_clean_error(proc, "the disk is full")
            assert "damaged" not in proc.stderr
        assert sorted(p.name for p in small.iterdir()) == ["alice", "filler"]
        kept = sorted(p.name for p in (small / "alice").iterdir())
        assert kept == sorted(p.name for p in (tmp_path / "alice").iterdir())


def test_full_disk_under_the_inventory(tmp_path: Path, ca_env: dict) -> None:
    """The CA itself on a full file system: the inventory says the disk is full, not damaged."""
    with tmpfs(tmp_path / "small", "size=256k") as small:
        env = dict(ca_env, CERTKIT_CA_DIR=str(small / "ca"))
        run_certkit("init-ca", "--name", "Small Root", env=env, check=True)
        fill(small, leave=0)
        proc = run_certkit("issue-client", "Bob", "--out", tmp_path / "bob", env=env)
        assert_clean_error(proc, "the disk is full")
        assert "damaged" not in proc.stderr
        assert not (tmp_path / "bob").exists()


def test_read_only_inventory_is_called_read_only(tmp_path: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "ro", "size=4m") as mount:
        env = dict(ca_env, CERTKIT_CA_DIR=str(mount / "ca"))
        run_certkit("init-ca", "--name", "Read-only Root", env=env, check=True)
        run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=env, check=True)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True)
        assert remount.returncode == 0, remount.stderr
        for args in (["issue-server", "api.example.internal", "--out", tmp_path / "api"],
                     ["revoke", tmp_path / "web"], ["renew", tmp_path / "web"], ["crl", "--out", tmp_path / "c.crl"]):
            proc = run_certkit(*args, env=env)
            assert_clean_error(proc, "read-only")
            assert "damaged" not in proc.stderr
        assert not (tmp_path / "api").exists() and not (tmp_path / "c.crl").exists()
        listed = run_certkit("list", env=env)  # what only reads works (tests/test_readonly_ca.py)
        assert listed.returncode == 0 and "web.example.internal" in listed.stdout, listed.stderr


def test_read_only_output_is_called_read_only(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=ca_env, check=True)
    with tmpfs(tmp_path / "ro", "size=1m", "ro") as mount:
        for args in (["issue-server", "api.example.internal", "--out", mount / "api"],
                     ["crl", "--out", mount / "ca.crl"], ["renew", tmp_path / "web", "--out", mount / "web2"]):
            proc = run_certkit(*args, env=ca_env)
            assert_clean_error(proc, "read-only")
            assert "damaged" not in proc.stderr


def weak_csr(tmp_path: Path, digest: str) -> Path:
    """A CSR signed with ``digest`` by the openssl binary (cryptography refuses to make one)."""
    key, csr = tmp_path / f"{digest}.key", tmp_path / f"{digest}.csr"
    made = openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=weak.example.internal",
                   f"-{digest}", "-out", csr)
    if made.returncode != 0:
        pytest.skip(f"this openssl does not sign with {digest}: {made.stderr.decode()[:200]}")
    return csr


@pytest.mark.parametrize("digest,label", [("sha1", "SHA-1"), ("md5", "MD5")])
def test_weak_csr_signature_is_named(tmp_path: Path, ca_env: dict, ca_dir: Path, digest: str, label: str) -> None:
    csr = weak_csr(tmp_path, digest)
    proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "weak", env=ca_env)
    assert_clean_error(proc, f"signed with {label}, a weak signature algorithm")
    assert "altered" not in proc.stderr
    assert not (tmp_path / "weak").exists()
    shown = run_certkit("inspect", csr, env=ca_env)
    assert shown.returncode == 0, shown.stderr
    assert "weak signature algorithm" in shown.stdout and label in shown.stdout, shown.stdout
    assert "tampered" not in shown.stdout and "INVALID" not in shown.stdout
    data = json.loads(run_certkit("inspect", csr, "--json", env=ca_env, check=True).stdout)
    assert data["items"][0]["signature_valid"] is False


def test_altered_csr_is_still_called_altered(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    key, csr = tmp_path / "k.pem", tmp_path / "a.csr"
    assert openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=alt.example.internal",
                   "-outform", "DER", "-out", csr).returncode == 0
    der = bytearray(csr.read_bytes())
    der[-5] ^= 0x01  # one bit of the signature
    csr.write_bytes(bytes(der))
    proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "alt", env=ca_env)
    assert_clean_error(proc, "altered after it was signed")
    assert "INVALID" in run_certkit("inspect", csr, env=ca_env, check=True).stdout
