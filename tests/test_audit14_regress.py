"""The fourteenth round's regress audit: siblings of round thirteen's fixes ("a read that failed once is taken
for nothing there", "a revoked certificate treated as valid", "--force writes over a file certkit reads").

1. An SQLite inventory in another CA's directory, named by $CERTKIT_INVENTORY_URL, was refused only when that
   CA's ca.pem could be read: unreadable, damaged or gone, the inventory took this CA's certificates (that CA
   could then sign no CRL, and this one could revoke nothing it issued). Its binding is asked instead.
2. export-p12 with no --ca-dir or $CERTKIT_CA_DIR packed a certificate that an intermediate of the per-user CA
   had revoked when that CA could not be opened (its inventory unreadable, its certkit-ca.json damaged, its
   folder unreadable): taken for "no CA to ask". A per-user CA above the certificate in its chain refuses now.

Unreadable files are tested with file modes in force: root without the capabilities that bypass them, as
tests/test_audit5.py does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit5 import obeying_modes

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _run_obeying_modes(*args, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --- 1. another CA's SQLite inventory, its ca.pem unreadable, damaged or gone ---------------------------------
@pytest.mark.parametrize("damage", ["unreadable", "damaged", "removed"])
def test_another_cas_inventory_is_refused_when_its_ca_pem_cannot_be_read(tmp_path: Path, damage: str):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("A", "B"):
        run_certkit("init-ca", "--name", f"CA {name}", "--ca-dir", tmp_path / name, env=env, check=True)
    theirs = tmp_path / "B" / "ca.pem"
    if damage == "unreadable":
        theirs.chmod(0)
    elif damage == "damaged":
        theirs.write_text("not a certificate\n")
    else:
        theirs.unlink()
    wrong = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "B" / "inventory.sqlite3"))
    try:
        proc = _run_obeying_modes("issue-server", "a.example.com", "--ca-dir", tmp_path / "A", "--out",
                                  tmp_path / "srv", env=wrong)
    finally:
        if theirs.exists():
            theirs.chmod(0o644)
    assert_clean_error(proc, "belongs to another CA")
    assert not (tmp_path / "srv").exists()
    import sqlite3

    with sqlite3.connect(tmp_path / "B" / "inventory.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == 0
    # the CA's own inventory, named the same way, is still taken
    own = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "A" / "inventory.sqlite3"))
    run_certkit("issue-server", "a.example.com", "--ca-dir", tmp_path / "A", "--out", tmp_path / "srv", env=own,
                check=True)


# --- 2. export-p12 under a per-user root that cannot be opened ------------------------------------------------
@pytest.fixture
def per_user(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A per-user root (no --ca-dir, no $CERTKIT_CA_DIR), an intermediate it recorded, a server bundle the
    intermediate revoked for keyCompromise; the environment and the per-user CA's folder."""
    env = certkit_env(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "xdg"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_P12_PASSWORD="a p12 password")
    run_certkit("init-ca", "--name", "Per-user Root", env=env, check=True)
    root = tmp_path / "xdg" / "certkit"
    assert (root / "ca.pem").is_file()
    run_certkit("init-ca", "--name", "Int", "--parent-ca-dir", root, "--ca-dir", tmp_path / "int", env=env,
                check=True)
    run_certkit("issue-server", "i.example.com", "--ca-dir", tmp_path / "int", "--out", tmp_path / "isrv", env=env,
                check=True)
    run_certkit("revoke", tmp_path / "isrv", "--ca-dir", tmp_path / "int", "--reason", "keyCompromise", env=env,
                check=True)
    assert_clean_error(run_certkit("export-p12", tmp_path / "isrv", env=env), "was revoked")
    return env, root, tmp_path / "isrv"


@pytest.mark.parametrize("damage", ["inventory", "config", "folder"])
def test_export_p12_refuses_when_the_per_user_root_above_it_cannot_be_opened(per_user, tmp_path: Path,
                                                                             damage: str):
    env, root, bundle = per_user
    target = {"inventory": root / "inventory.sqlite3", "config": root / "certkit-ca.json", "folder": root}[damage]
    if damage == "config":
        target.write_text("{\n")
    else:
        target.chmod(0)
    try:
        proc = _run_obeying_modes("export-p12", bundle, env=env)
        library = subprocess.run([*obeying_modes(), sys.executable, "-c", (
            "import certkit.pkcs12 as p, certkit.errors as e\n"
            f"try: p.export_folder({str(bundle)!r}, b'pw', force=True)\n"
            "except e.CertkitError as exc: print('refused:', exc)\nelse: print('written')\n")],
            env=env, capture_output=True, text=True, timeout=120)
    finally:
        target.chmod(0o700 if damage == "folder" else 0o600)
    assert_clean_error(proc, "cannot be told")
    assert library.stdout.startswith("refused:") and "cannot be told" in library.stdout, library
    assert not (bundle / "bundle.p12").exists()


def test_export_p12_of_another_cas_bundle_goes_on_past_a_per_user_ca_that_cannot_be_opened(per_user,
                                                                                          tmp_path: Path):
    """What stays: a bundle whose chain does not pass through the broken per-user CA is exported as before."""
    env, root, _bundle = per_user
    run_certkit("init-ca", "--name", "Other", "--ca-dir", tmp_path / "other", env=env, check=True)
    run_certkit("issue-server", "o.example.com", "--ca-dir", tmp_path / "other", "--out", tmp_path / "osrv",
                env=env, check=True)
    (root / "inventory.sqlite3").chmod(0)
    try:
        proc = _run_obeying_modes("export-p12", tmp_path / "osrv", "--json", env=env)
    finally:
        (root / "inventory.sqlite3").chmod(0o600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["file"].endswith("bundle.p12")


# --- 3. a bundle folder's file that the command reads (its password or passphrase file kept there) -----------
def test_a_password_file_kept_in_the_bundle_folder_is_not_written_over(ca_dir: Path, ca_env: dict,
                                                                       tmp_path: Path):
    """export-p12 --force, renew and issue --force wrote bundle.p12 (or another bundle file) over the
    --password-file / --p12-password-file / --passphrase-file given, which the command read: its only copy gone."""
    srv = tmp_path / "srv"
    run_certkit("issue-server", "a.example.com", "--out", srv, env=ca_env, check=True)
    secret = srv / "bundle.p12"
    runs = [("export-p12", srv, "--password-file", secret, "--force"),
            ("renew", srv, "--p12-password-file", secret),
            ("issue-server", "a.example.com", "--out", srv, "--force", "--p12", "--p12-password-file", secret)]
    for args in runs:
        secret.write_text("a p12 password\n")
        secret.chmod(0o600)
        assert_clean_error(run_certkit(*args, env=ca_env), "which this command reads")
        assert secret.read_text() == "a p12 password\n", args
    secret.unlink()
    kept = srv / "chain.pem"  # a leftover --force removes
    kept.write_text(PASSPHRASE + "\n")
    kept.chmod(0o600)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("issue-server", "a.example.com", "--out", srv, "--force", "--passphrase-file", kept, env=env)
    assert_clean_error(proc, "is the file given as --passphrase-file")
    assert kept.read_text() == PASSPHRASE + "\n"
    # the same files outside the folder are taken as before
    outside = tmp_path / "pw"
    outside.write_text("a p12 password\n")
    outside.chmod(0o600)
    run_certkit("renew", srv, "--p12-password-file", outside, env=ca_env, check=True)
    run_certkit("export-p12", srv, "--password-file", outside, env=ca_env, check=True)
    assert (srv / "bundle.p12").read_bytes()[:1] == b"\x30"


# --- 4. library contexts under a root that revoked the intermediate of the chain -----------------------------
def test_contexts_under_a_root_refuse_a_chain_through_an_intermediate_it_revoked(tmp_path: Path):
    """root.server_context(leaf) / root.client_context(leaf) presented a certificate of an intermediate the root
    had revoked for keyCompromise, where certkit serve --ca-dir ROOT --cert refuses it."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Ctx Root", "--ca-dir", tmp_path / "root", env=env, check=True)
    for name in ("int", "other"):
        run_certkit("init-ca", "--name", f"Ctx {name}", "--parent-ca-dir", tmp_path / "root", "--ca-dir",
                    tmp_path / name, env=env, check=True)
    code = f"""
import socket, ssl, threading
from certkit.errors import AlreadyRevoked
from certkit.store import CADirectory
root = CADirectory({str(tmp_path / 'root')!r}).open(); root.unlock({PASSPHRASE!r})
cas = {{n: CADirectory({str(tmp_path)!r} + '/' + n).open() for n in ('int', 'other')}}
for c in cas.values(): c.unlock({PASSPHRASE!r})
made = {{n: (c.issue_server('localhost'), c.issue_client('bob')) for n, c in cas.items()}}
root.revoke(cas['int'].cert.serial_number, 'keyCompromise')
for label, call in (('server', lambda: root.server_context(made['int'][0])),
                    ('client', lambda: root.client_context(made['int'][1]))):
    try: call(); print(label, 'GIVEN')
    except AlreadyRevoked as exc: print(label, 'refused', exc)
srv = root.server_context(made['other'][0]); cli = root.client_context(made['other'][1])
listener = socket.create_server(('127.0.0.1', 0)); port = listener.getsockname()[1]; got = {{}}
def serve():
    conn, _ = listener.accept()
    with srv.wrap_socket(conn, server_side=True) as tls: got['peer'] = tls.getpeercert()['subject']; tls.sendall(b'ok')
t = threading.Thread(target=serve); t.start()
with socket.create_connection(('127.0.0.1', port)) as raw, cli.wrap_socket(raw, server_hostname='localhost') as tls:
    print('handshake', tls.recv(2), got.get('peer') is not None)
t.join(); listener.close()
"""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for line in lines[:2]:
        assert " refused " in line and "the issuing CA CN=Ctx int was revoked" in line, proc.stdout
    assert lines[2] == "handshake b'ok' True", proc.stdout  # a chain through an intermediate not revoked: as before


# --- 5. a stale CA object (its directory made again for another CA) handing out a revoked certificate ----------
def test_a_stale_ca_hands_out_none_of_its_revoked_certificates(tmp_path: Path):
    """files(), server_context(), client_context(), configure_cert() and issued_pkcs12() asked the *new* CA's
    inventory, which does not know the serial, took that for "not revoked", and handed out a certificate the old
    CA had revoked for keyCompromise (write() already refused: CABroken)."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Lib CA", env=env, check=True)
    code = f"""
import shutil, ssl, subprocess, sys
import certkit.pkcs12 as p
from certkit.errors import CABroken
from certkit.store import CADirectory
ca = CADirectory().open(); ca.unlock({PASSPHRASE!r})
s = ca.issue_server('localhost'); c = ca.issue_client('bob')
ca.revoke(s.serial_hex, 'keyCompromise'); ca.revoke(c.serial_hex, 'keyCompromise')
shutil.rmtree({str(tmp_path / 'ca')!r})
subprocess.run([sys.executable, '-m', 'certkit', 'init-ca', '--name', 'Other CA'], check=True, capture_output=True)
for name, call in (('files', lambda: s.files().__enter__()), ('server_context', lambda: ca.server_context(s)),
                   ('client_context', lambda: ca.client_context(c)),
                   ('configure_cert', lambda: s.configure_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))),
                   ('issued_pkcs12', lambda: p.issued_pkcs12(s, b'pw'))):
    try: call(); print(name, 'GIVEN OUT')
    except CABroken as exc: print(name, 'refused', exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5, proc.stdout
    for line in lines:
        assert " refused " in line and "now holds another CA (CN=Other CA)" in line, line
        assert "Load the CA again" in line, line


# --- 6. trust uninstall with the NSS database's "created by install" mark unreadable ---------------------------
def test_uninstall_says_the_ca_was_removed_when_the_created_mark_cannot_be_read(tmp_path: Path):
    """The CA was taken out of ~/.pki/nssdb, then reading the mark that says install had created the database
    failed: uninstall said "failed" (exit 1) for a store it had just cleaned. It now says it removed the CA and
    kept the database (whether install made it all cannot be told), exit 0."""
    from test_trust import trust

    from conftest import require
    from trust_helpers import nss_listing

    require("certutil")
    ca = tmp_path / "ca"
    env = certkit_env(CERTKIT_CA_DIR=str(ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Mark CA", "--permit-dns", "localhost", env=env, check=True)
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", home=home, ca_dir=ca, check=True)
    db = home / ".pki" / "nssdb"
    mark = db / ".certkit-created"
    assert mark.is_file() and "certkit-" in nss_listing(db)
    mark.chmod(0)
    try:
        proc = trust("uninstall", "--nss", home=home, ca_dir=ca, prefix=obeying_modes())
    finally:
        mark.chmod(0o644)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())
    assert "removed certkit-" in said and "kept the NSS database" in said and "Permission denied" in said, said
    assert (db / "cert9.db").is_file() and "certkit-" not in nss_listing(db)


# --- 7. check said OK of another CA's (empty) SQLite inventory named by $CERTKIT_INVENTORY_URL ----------------
def test_check_reports_another_cas_sqlite_inventory(tmp_path: Path):
    """Every command refuses an SQLite inventory in another CA's directory; check said "OK inventory 0
    certificates recorded ... each issued by this CA" of an empty one (it asked the binding of PostgreSQL only)."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("A", "E"):
        run_certkit("init-ca", "--name", f"CA {name}", "--ca-dir", tmp_path / name, env=env, check=True)
    wrong = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "E" / "inventory.sqlite3"))
    proc = run_certkit("check", "--ca-dir", tmp_path / "A", env=wrong)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(line.startswith("ERROR   inventory") and "belongs to another CA" in line
               for line in proc.stdout.splitlines()), proc.stdout
    issue = run_certkit("issue-server", "a.example.com", "--ca-dir", tmp_path / "A", "--out", tmp_path / "a",
                        env=wrong)
    assert_clean_error(issue, "belongs to another CA")  # as the other commands say it
    own = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "A" / "inventory.sqlite3"))
    assert run_certkit("check", "--ca-dir", tmp_path / "A", env=own).returncode == 0


# --- 8. verify and probe read another CA's inventory named by $CERTKIT_INVENTORY_URL: a revoked certificate VALID --
def test_verify_and_probe_refuse_to_read_another_cas_inventory(tmp_path: Path):
    """Every command that opens the CA refuses an inventory of another CA; verify and probe read the one
    $CERTKIT_INVENTORY_URL names as this CA's record, found no revocation there, and said VALID / "yes" for a
    certificate this CA revoked for keyCompromise."""

    from conftest import free_port, wait_listening, wait_or_kill

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("A", "B"):
        run_certkit("init-ca", "--name", f"CA {name}", "--ca-dir", tmp_path / name, env=env, check=True)
    a = tmp_path / "a"
    run_certkit("issue-server", "localhost", "--ca-dir", tmp_path / "A", "--out", a, env=env, check=True)
    run_certkit("revoke", a, "--ca-dir", tmp_path / "A", "--reason", "keyCompromise", env=env, check=True)
    wrong = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "B" / "inventory.sqlite3"))
    proc = run_certkit("verify", a / "fullchain.pem", "--purpose", "server", "--ca-dir", tmp_path / "A", env=wrong)
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout
    assert "belongs to another CA" in proc.stdout and "could not be checked" in proc.stdout, proc.stdout
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(a / "cert.pem"),
                               "-key", str(a / "privkey.pem"), "-www", "-quiet"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        probe = run_certkit("probe", f"localhost:{port}", "--ca-dir", tmp_path / "A", env=wrong)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert probe.returncode == 1, probe.stdout + probe.stderr
    assert "valid TLS server certificate for localhost? NO" in probe.stdout, probe.stdout
    assert "belongs to another CA" in probe.stdout, probe.stdout
    # the CA's own inventory: revoked, as before
    own = run_certkit("verify", a / "fullchain.pem", "--purpose", "server", "--ca-dir", tmp_path / "A", env=env)
    assert own.returncode == 1 and "keyCompromise" in own.stdout, own.stdout
