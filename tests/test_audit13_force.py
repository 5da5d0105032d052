"""Audit round thirteen, ``--force`` (report regress20, findings 1, 3 and 5), each as a class:

1. a privkey.pem that cannot be read is never removed: ``sign-csr --force`` refuses before signing, naming the
   file and the OS error, where it deleted the requester's only key and said "the requester keeps it";
3. ``--force`` over a bundle whose cert.pem cannot be read is refused before signing (issue-server, issue-client,
   issue-peer, sign-csr, issue-batch, renew --out), and over one whose cert.pem is damaged the certificate the
   inventory records in the folder is recorded as replaced (``renew --out --force`` refuses it, as it refuses the
   bundle of another valid certificate): never a certificate left plain valid, and due, with its key deleted;
5. no output (a CRL, jsonl, k8s, tar) goes over a file libpq reads for the inventory that no variable names
   (~/.pgpass, ~/.pg_service.conf, ~/.postgresql/postgresql.key|.crt|root.crt, the inventory URL's passfile=,
   sslkey=...), nor a jsonl, k8s or tar output over a file holding a private key that is no such output (an
   OpenSSH key, a PEM key), as a CRL is written over none.

Unreadable files are made so by strace's fault injection (every openat of the file fails with EACCES), as a
file of another user is for an operator: the tests run as root, who reads every file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(home),
                       **extra)


def _unreadable(args: list, env: dict, path: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``certkit ARGS`` with every open of ``path`` refused (EACCES), as for a file of another user."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-P", str(path), "-e", "trace=openat",
                           "-e", "inject=openat:error=EACCES:when=1+", sys.executable, "-m", "certkit",
                           *map(str, args)], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


def _rows(env: dict) -> list[dict]:
    return json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]


def _csr(folder: Path, name: str = "a.example.com") -> Path:
    """A requester's key in ``folder``/privkey.pem (made if missing) and its CSR beside the folder."""
    folder.mkdir(exist_ok=True)
    key = folder / "privkey.pem"
    if not key.exists():
        assert openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                       key).returncode == 0
    csr = folder.parent / f"{folder.name}.csr"
    made = openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                   "-out", csr)
    assert made.returncode == 0, made.stderr
    return csr


# The commands that write a whole bundle into a folder, as (how to write it there, the folder).
def _writer(command: str, tmp_path: Path) -> tuple[list, Path]:
    out = tmp_path / "out"
    if command == "issue-batch":
        manifest = tmp_path / "m.csv"
        manifest.write_text("kind,names,out\nserver,a.example.com,out\n")
        return ["issue-batch", manifest, "--out-dir", tmp_path], out
    if command == "sign-csr":
        return ["sign-csr", _csr(out), "--server", "--out", out], out
    name = "alice" if command == "issue-client" else "a.example.com"
    return [command, name, "--out", out], out


COMMANDS = ["issue-server", "issue-client", "issue-peer", "sign-csr", "issue-batch"]


# --- 1. a privkey.pem that cannot be read is never removed -------------------------------------------------------
def test_sign_csr_force_keeps_a_privkey_it_cannot_read(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    srv = tmp_path / "srv"
    run_certkit("issue-server", "a.example.com", "--out", srv, env=env, check=True)
    csr = _csr(srv)  # the requester's own key, which the service keeps in the folder (unreadable to the operator)
    key, before = srv / "privkey.pem", (srv / "privkey.pem").read_bytes()
    count = len(_rows(env))
    for force in (["--force"], []):
        proc = _unreadable(["sign-csr", csr, "--server", "--out", srv, *force], env, key, tmp_path)
        assert_clean_error(proc, f"Cannot read {key} (Permission denied)")
        assert "will not remove it, even with --force" in proc.stderr
        assert key.read_bytes() == before
    assert len(_rows(env)) == count  # refused before signing: nothing recorded
    # Readable, the requester's key is kept (it certifies the new certificate): as before.
    run_certkit("sign-csr", csr, "--server", "--out", srv, "--force", env=env, check=True)
    assert key.read_bytes() == before


# --- 3. --force over a bundle whose cert.pem cannot be read, or is damaged ---------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_force_over_a_cert_pem_that_cannot_be_read_is_refused(tmp_path: Path, command: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    args, out = _writer(command, tmp_path)
    run_certkit(*args, env=env, check=True)
    files = {f.name: f.read_bytes() for f in out.iterdir()}
    rows = _rows(env)
    proc = _unreadable([*args, "--force"], env, out / "cert.pem", tmp_path)
    assert_clean_error(proc, f"Cannot read {out / 'cert.pem'} (Permission denied)")
    assert "certkit will not replace it." in proc.stderr and "--force" not in proc.stderr  # a renewal says it alike
    assert {f.name: f.read_bytes() for f in out.iterdir()} == files
    assert _rows(env) == rows


def test_renew_out_force_over_a_cert_pem_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    run_certkit("issue-server", "a.example.com", "--out", tmp_path / "srv", env=env, check=True)
    run_certkit("issue-server", "b.example.com", "--out", tmp_path / "bsrv", env=env, check=True)
    key = (tmp_path / "bsrv" / "privkey.pem").read_bytes()
    proc = _unreadable(["renew", tmp_path / "srv", "--out", tmp_path / "bsrv", "--force"], env,
                       tmp_path / "bsrv" / "cert.pem", tmp_path)
    assert_clean_error(proc, "Permission denied")
    assert (tmp_path / "bsrv" / "privkey.pem").read_bytes() == key


@pytest.mark.parametrize("damage", ["truncated", "emptied", "removed"])
@pytest.mark.parametrize("command", COMMANDS)
def test_force_over_a_damaged_cert_pem_records_the_certificate_replaced(tmp_path: Path, command: str,
                                                                         damage: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    args, out = _writer(command, tmp_path)
    run_certkit(*args, env=env, check=True)
    [old] = [r["serial"] for r in _rows(env)]
    cert = out / "cert.pem"
    if damage == "removed":  # the rest of the bundle is there: its key, which --force deletes
        cert.unlink()
    else:
        cert.write_bytes(cert.read_bytes()[:100] if damage == "truncated" else b"")
    run_certkit(*args, "--force", env=env, check=True)
    rows = {r["serial"]: r for r in _rows(env)}
    [new] = [s for s in rows if s != old]
    assert rows[new]["renewed_from"] == old and rows[old]["renewed_by"] == new, rows
    listed = run_certkit("list", "--expiring", "400d", env=env, check=True).stdout
    assert old[:16] not in listed  # no longer due: its successor is


def test_force_over_a_folder_the_inventory_does_not_record_records_nothing(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    run_certkit("issue-server", "a.example.com", "--out", tmp_path / "srv", env=env, check=True)
    moved = tmp_path / "moved"
    (tmp_path / "srv").rename(moved)  # recorded in srv: the bundle in moved is another folder's copy
    (moved / "cert.pem").write_bytes(b"damaged")
    run_certkit("issue-server", "a.example.com", "--out", moved, "--force", env=env, check=True)
    assert all(r["renewed_from"] is None for r in _rows(env))


def test_renew_out_force_refuses_a_damaged_bundle_of_another_valid_certificate(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    run_certkit("issue-server", "a.example.com", "--out", tmp_path / "srv", env=env, check=True)
    run_certkit("issue-server", "b.example.com", "--out", tmp_path / "bsrv", env=env, check=True)
    b = next(r["serial"] for r in _rows(env) if r["names"] == ["DNS:b.example.com"])
    (tmp_path / "bsrv" / "cert.pem").write_bytes((tmp_path / "bsrv" / "cert.pem").read_bytes()[:100])
    key = (tmp_path / "bsrv" / "privkey.pem").read_bytes()
    proc = run_certkit("renew", tmp_path / "srv", "--out", tmp_path / "bsrv", "--force", env=env)
    assert_clean_error(proc, f"holds the bundle of certificate {b}, which is still valid")
    assert (tmp_path / "bsrv" / "privkey.pem").read_bytes() == key


# --- 5. files libpq reads, and files holding a private key --------------------------------------------------------
def _outputs(target: Path, tmp_path: Path) -> list[tuple]:
    return [("crl", "--out", target, "--force"),
            ("issue-server", "q.example.com", "--format", "jsonl", "--out", target, "--force"),
            ("issue-client", "alice", "--format", "k8s", "--out", target, "--force"),
            ("issue-server", "r.example.com", "--format", "tar", "--out", target, "--force")]


@pytest.mark.parametrize("name", [".pgpass", ".pg_service.conf", ".postgresql/postgresql.key",
                                  ".postgresql/postgresql.crt", ".postgresql/root.crt"])
def test_no_output_goes_over_a_file_libpq_reads_from_home(tmp_path: Path, name: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    target = tmp_path / "home" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("127.0.0.1:5432:*:certkit:secretpw\n")
    target.chmod(0o600)
    for args in _outputs(target, tmp_path):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, f"is libpq's ~/{name}, which it reads for an inventory on PostgreSQL")
        assert target.read_text() == "127.0.0.1:5432:*:certkit:secretpw\n", args


def _ssh_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())


@pytest.mark.parametrize("held", ["openssh", "pem"])
def test_no_output_goes_over_a_file_holding_a_private_key(tmp_path: Path, held: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    run_certkit("issue-server", "p.example.com", "--out", tmp_path / "psrv", env=env, check=True)
    target = tmp_path / "id_key"
    target.write_bytes(_ssh_key() if held == "openssh" else (tmp_path / "psrv" / "privkey.pem").read_bytes())
    before = target.read_bytes()
    for args in _outputs(target, tmp_path):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, "holds a private key")
        assert "even with --force" in proc.stderr
        assert target.read_bytes() == before, args


def test_an_earlier_output_holding_keys_is_still_replaced(tmp_path: Path) -> None:
    """What --force is for: an earlier output of the same format (this CA's or another's) is replaced, in each of
    them (round 35: not an output of another format, which its reader would no longer read)."""
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    for fmt in ("k8s", "tar", "jsonl"):
        out = tmp_path / f"fleet-{fmt}.out"
        run_certkit("issue-server", "q.example.com", "--format", fmt, "--out", out, env=env, check=True)
        run_certkit("issue-server", "q.example.com", "--format", fmt, "--out", out, "--force", env=env, check=True)
    rows = _rows(env)
    assert [r["renewed_from"] is not None for r in rows].count(True) == 3


@pytest.mark.parametrize("where", ["environment", "ca"])
@pytest.mark.parametrize("parameter", ["passfile", "sslkey"])
def test_no_output_goes_over_a_file_the_inventory_url_names(tmp_path: Path, postgres_url: str, where: str,
                                                            parameter: str) -> None:
    import os

    named = tmp_path / "named"
    named.write_bytes(Path(os.environ["PGPASSFILE"]).read_bytes())  # a working password file either way
    named.chmod(0o600)
    url = f"{postgres_url}?{parameter}={named}"
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "PG CA", "--inventory", url if where == "ca" else postgres_url, env=env,
                check=True)
    if where == "environment":
        env["CERTKIT_INVENTORY_URL"] = url
    before = named.read_bytes()
    for args in _outputs(named, tmp_path):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, f"is the file the inventory URL's {parameter}= names")
        assert named.read_bytes() == before, args


def test_the_library_writing_over_a_damaged_bundle_records_it_replaced(tmp_path: Path) -> None:
    from certkit.store import CADirectory

    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    srv = tmp_path / "srv"
    run_certkit("issue-server", "a.example.com", "--out", srv, env=env, check=True)
    [old] = [r["serial"] for r in _rows(env)]
    (srv / "cert.pem").write_bytes((srv / "cert.pem").read_bytes()[:100])
    new = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode()).issue_server("a.example.com")
    new.write(srv, force=True)
    rows = {r["serial"]: r for r in _rows(env)}
    assert rows[old]["renewed_by"] == new.serial_hex and rows[new.serial_hex]["folder"] == str(srv), rows
