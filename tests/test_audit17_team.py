"""The seventeenth round's team findings (audit team, round seventeen): a PostgreSQL inventory shared by
hosts, and a CA key in a PKCS#11 token (SoftHSM2).

1. Two hosts sharing one PostgreSQL inventory, each with its own bundle folders: every night each host's
   ``certkit renew --expiring`` warned, for every bundle of the other host, "was not renewed: no bundle folder
   is known to hold it (it was never written to one, or was moved); if the bundle was moved, renew the folder
   it is in now ... else renew it by name with --out DIR" (``needs_attention`` in ``--json``): advice that,
   followed on the wrong host, makes a second bundle there. A valid row now keeps its writer (host, boot, pid),
   so a bundle written on another host is skipped quietly (``why``: ``other_host``), and ``certkit renew NAME``
   on the wrong host names the host that renews it in place. Rows of older certkit versions (no writer) and
   a bundle moved on its own host are warned of as before.
2. A power cut (or any reboot) while a certificate was being written left its row ``pending`` for ever: a
   writer was taken for this host's only if it ran since the last boot, so after the reboot its row was
   another host's (settled only where its bundle is visible and complete). A renewal cut off that way made
   the certificate it renews unrenewable: ``renew --expiring`` renewed nothing, exit 0, until it expired;
   ``certkit renew FOLDER`` said "is being renewed right now, as ..., by another certkit command"; and
   ``certkit check`` said "the next command that writes to the inventory, or certkit list, settles them",
   which none did. A writer id now carries the machine id (/etc/machine-id): a writer of an earlier boot of
   this machine is dead, and its rows are settled at once. ``check`` says of another host's rows that
   host's commands settle them, not "the next command".
3. ``certkit check`` said "OK database" of a PostgreSQL inventory this host cannot write: a role that may only
   read (GRANT SELECT), transactions read-only by default (``default_transaction_read_only``), or a standby
   (a failover left the URL naming the old primary, now a standby): every issue, renewal, revocation and CRL
   then failed. It now warns, saying why and that only list and check work there.
4. ``certkit acme serve`` with a database role that may use the ACME tables but not create them (the least
   privilege a DBA gives a service: SELECT, INSERT, UPDATE, DELETE on tables the database's owner created;
   PostgreSQL 15 gives no one else CREATE in the public schema) refused to start: "may not be used by this
   database user: permission denied for schema public", though every table was there (every start ran
   CREATE TABLE IF NOT EXISTS). The DDL now runs only when something is missing.
5. Leftovers of round sixteen: ``inventory migrate`` from a copy of a CA directory whose identical other copy
   had moved the inventory already said "(the database held this very copy already: an earlier run was
   interrupted)"; a row missing on one side of a compared table was said to differ in every column; the
   ``--reuse-key`` warning for a key that signs several CAs named them and went on "that CA's".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_clean_error, openssl, run_certkit


# --- 1. two hosts sharing one PostgreSQL inventory ----------------------------------------------------------
def _host_wrapper(name: str, hidden: Path) -> list[str]:
    """A command that runs the rest as the host ``name`` (its own host name, in a UTS namespace), which cannot
    see ``hidden`` (a tmpfs mounted over it in a mount namespace of its own): another machine's disk."""
    script = 'mount -t tmpfs none "$0" && hostname "$1" && shift 2 && exec "$@"'
    return ["unshare", "-Urum", "sh", "-c", script, str(hidden), name, "-"]


def _as_host(name: str, hidden: Path, args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``certkit ARGS`` as the host ``name``, which cannot see ``hidden`` (:func:`_host_wrapper`)."""
    return subprocess.run([*_host_wrapper(name, hidden), sys.executable, "-m", "certkit", *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def two_hosts(tmp_path: Path, pg_ca: dict) -> tuple[dict, Path, Path]:
    """The environment of a file-key CA on PostgreSQL, and the two hosts' folders (each with a copy of the
    CA directory, ``ca``, and its bundles), which each other host cannot see."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-Urum", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("unshare cannot make user, UTS and mount namespaces here")
    a, b = tmp_path / "a", tmp_path / "b"
    for host in (a, b):
        host.mkdir()
        shutil.copytree(pg_ca["CERTKIT_CA_DIR"], host / "ca")
    env = {k: v for k, v in pg_ca.items() if k != "CERTKIT_CA_DIR"}
    return env, a, b


def _certkit(host: Path, other: Path, env: dict, command: str, *args: str) -> subprocess.CompletedProcess:
    return _as_host(f"{host.name}-host", other, [command, "--ca-dir", str(host / "ca"),
                                                  "--passphrase-file", str(host.parent / "pass"), *args], env)


def test_a_shared_inventorys_bulk_renewal_leaves_the_other_hosts_bundles_to_it(two_hosts) -> None:
    env, a, b = two_hosts
    for host, other, name in ((a, b, "web.example.com"), (b, a, "api.example.com")):
        issued = _certkit(host, other, env, "issue-server", name, "--days", "20", "--out", str(host / "bundle"))
        assert issued.returncode == 0, issued.stderr
    for host, other, mine, theirs in ((a, b, "web.example.com", "api.example.com"),
                                      (b, a, "api.example.com", "web.example.com")):
        ran = _certkit(host, other, env, "renew", "--expiring", "30d", "--json")
        assert ran.returncode == 0, ran.stderr
        report = json.loads(ran.stdout)
        outcomes = {c["domains"][0]: c for c in report["certificates"]}
        assert outcomes[mine]["outcome"] == "renewed", report
        skipped = outcomes[theirs]
        assert (skipped["outcome"], skipped["why"], skipped["needs_attention"]) == ("skipped", "other_host", False)
        assert f"written on the host {other.name}-host, not on this one ({host.name}-host)" in skipped["reason"]
        assert report["needs_attention"] == 0 and report["ok"], report
        assert "Warning" not in ran.stderr and "moved" not in ran.stderr, ran.stderr  # was: "...or was moved"
        # the renewed bundle is a good one, where its host's server reads it
        assert openssl("verify", "-purpose", "sslserver", "-CAfile", str(host / "ca" / "ca.pem"),
                       str(host / "bundle" / "cert.pem")).returncode == 0
    # Without --json, the summary says where the other host's bundle went, and no warning follows.
    ran = _certkit(a, b, env, "renew", "--expiring", "30d")
    assert ran.returncode == 0 and "Warning" not in ran.stderr, ran.stderr
    assert "skipped  1 in bundle folders of other hosts, renewed there" in ran.stdout, ran.stdout
    # The renewal of one by name on the wrong host names the host that renews it in place.
    wrong = _certkit(b, a, env, "renew", "web.example.com")
    assert_clean_error(wrong, f"its bundle folder {a / 'bundle'} was written on the host a-host, not on this one "
                              "(b-host); to renew it, run this on a-host, where it is renewed in place; or choose "
                              "where the renewed bundle goes with --out FOLDER")


def test_a_bundle_moved_on_its_own_host_or_written_by_an_older_certkit_is_still_warned_of(two_hosts) -> None:
    import psycopg

    env, a, b = two_hosts
    for host, other, name in ((a, b, "web.example.com"), (b, a, "api.example.com")):
        assert _certkit(host, other, env, "issue-server", name, "--days", "20",
                        "--out", str(host / "bundle")).returncode == 0
    (a / "bundle").rename(a / "moved")  # moved by hand on its own host: a bulk renewal there must say so
    url = json.loads((a / "ca" / "certkit-ca.json").read_text())["inventory"]
    with psycopg.connect(url, autocommit=True) as db:  # api's row as certkit before this round left it
        db.execute("UPDATE certificates SET writer = NULL WHERE subject = 'CN=api.example.com'")
    ran = _certkit(a, b, env, "renew", "--expiring", "30d", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert {c["domains"][0]: (c["why"], c["needs_attention"]) for c in report["certificates"]} == {
        "web.example.com": ("moved", True), "api.example.com": ("moved", True)}, report
    assert ran.stderr.count("Warning") == 2 and "renew the folder it is in now" in ran.stderr, ran.stderr


# --- 2. a writer of an earlier boot of this machine -----------------------------------------------------------
def _killed_once_recorded(tmp_path: Path, env: dict, args: list, wrapper: list[str]) -> None:
    """``certkit ARGS`` run under ``wrapper`` (a command that execs the rest) and killed once its row is recorded,
    its bundle not yet written: as a power cut, or a host going down, leaves it."""
    marker = tmp_path / "paused"
    paused = dict(env, CERTKIT_TEST_PAUSE_AT="recorded", CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([*wrapper, sys.executable, "-m", "certkit", *map(str, args)], env=paused, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "never reached 'recorded'"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    marker.unlink()


def _killed_in_an_earlier_boot(tmp_path: Path, env: dict, args: list) -> None:
    """As :func:`_killed_once_recorded`, in "an earlier boot" (its own /proc/sys/kernel/random/boot_id, bound
    over the real one in a mount namespace): what a power cut leaves, seen after the reboot."""
    boot = tmp_path / "earlier-boot"
    boot.write_text("0badb007-0000-4000-8000-000000000000\n")
    script = 'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"'
    _killed_once_recorded(tmp_path, env, args, ["unshare", "-Urm", "sh", "-c", script, str(boot)])


def test_a_renewal_cut_off_by_a_power_cut_is_settled_after_the_reboot(tmp_path: Path, ca_dir: Path,
                                                                      ca_env: dict) -> None:
    if not Path("/etc/machine-id").is_file() or subprocess.run(["unshare", "-Urm", "true"]).returncode != 0:
        pytest.skip("no /etc/machine-id, or unshare cannot make user and mount namespaces here")
    run_certkit("issue-server", "web.example.com", "--days", "10", "--out", tmp_path / "web", env=ca_env, check=True)
    old = (tmp_path / "web" / "cert.pem").read_bytes()
    _killed_in_an_earlier_boot(tmp_path, ca_env, ["renew", str(tmp_path / "web")])
    assert (tmp_path / "web" / "cert.pem").read_bytes() == old  # cut off before its bundle was in place
    # After the reboot: check (which changes nothing) says the next command settles the cut-off renewal's row,
    # and it does (abandoned: its bundle never made it), so the nightly renewal renews the certificate.
    check = run_certkit("check", env=ca_env)
    assert "1 certificate is pending, left by a command that died" in check.stdout, check.stdout
    renewed = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    assert renewed.returncode == 0, renewed.stderr
    report = json.loads(renewed.stdout)
    assert report["renewed"] == 1, report  # was 0: the certificate "being renewed" by a process long gone
    assert (tmp_path / "web" / "cert.pem").read_bytes() != old
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", str(Path(ca_env["CERTKIT_CA_DIR"]) / "ca.pem"),
                   str(tmp_path / "web" / "cert.pem")).returncode == 0
    for status, count in (("abandoned", 1), ("pending", 0)):
        listed = json.loads(run_certkit("list", "--json", "--status", status, env=ca_env).stdout)
        assert listed["count"] == count, listed


def test_check_on_one_host_says_another_hosts_pending_rows_are_that_hosts_to_settle(tmp_path: Path, two_hosts
                                                                                     ) -> None:
    import psycopg

    env, a, b = two_hosts
    _killed_once_recorded(tmp_path, env, ["issue-server", "--ca-dir", a / "ca", "--passphrase-file", tmp_path / "pass",
                                          "web.example.com", "--out", a / "web"], _host_wrapper("a-host", b))
    url = json.loads((a / "ca" / "certkit-ca.json").read_text())["inventory"]
    with psycopg.connect(url, autocommit=True) as db:  # an hour later: its writer's lease is long over
        db.execute("UPDATE certificates SET issued_at = to_char(now() - interval '1 hour', "
                   "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') WHERE status = 'pending'")
    said = _as_host("b-host", a, ["check", "--ca-dir", str(b / "ca")], env)
    assert ("1 certificate is pending, written on the host a-host by a command that has not marked them within "
            "its lease of 15 minutes") in said.stdout, said.stdout
    assert "the next command that writes to the inventory" not in said.stdout, said.stdout  # which none here does
    for host, other, left in ((b, a, 1), (a, b, 0)):  # host b leaves it pending; host a settles it (abandoned)
        _as_host(f"{host.name}-host", other, ["list", "--ca-dir", str(host / "ca")], env)
        listed = _as_host(f"{host.name}-host", other, ["list", "--ca-dir", str(host / "ca"), "--status", "pending",
                                                       "--json"], env)
        assert json.loads(listed.stdout)["count"] == left, listed.stdout


# --- 3. leftovers of round sixteen -------------------------------------------------------------------------
def test_a_move_from_an_identical_copy_does_not_claim_an_interrupted_run(tmp_path: Path, postgres_url: str) -> None:
    from conftest import PASSPHRASE, certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      PGPASSFILE=os.environ["PGPASSFILE"])
    run_certkit("init-ca", "--name", "Copied CA", env=env, check=True)
    run_certkit("issue-server", "web.internal", "--out", tmp_path / "web", env=env, check=True)
    shutil.copytree(tmp_path / "ca", tmp_path / "copy")
    first = run_certkit("inventory", "migrate", "--to", postgres_url, env=env, check=True)
    assert "held this very copy" not in first.stdout, first.stdout
    second = run_certkit("inventory", "migrate", "--to", postgres_url, env=dict(env, CERTKIT_CA_DIR=str(
        tmp_path / "copy")), check=True)  # no run was interrupted: the other copy moved it there
    assert ("(the database held this very copy already: an earlier run of this command was interrupted, or another "
            "copy of this CA directory moved it there)") in second.stdout, second.stdout


def test_a_row_on_one_side_only_is_said_so_not_to_differ_in_every_column() -> None:
    from certkit.db_copy import _difference

    columns = ["nonce", "expires"]
    ours = [("n1", "2030"), ("n2", "2030")]
    said = _difference({"n1": ("n1", "2030"), "n3": ("n3", "2031")}, ours, columns, "acme_nonces", "postgresql://db/x")
    assert said == ("postgresql://db/x holds other rows in acme_nonces (the row n2 is not there; the row n3 is not in "
                    "this file)"), said  # was: "the row n2 of acme_nonces differs in ... (nonce, expires)"
    said = _difference({"n1": ("n1", "2030")}, ours, columns, "acme_nonces", "postgresql://db/x")
    assert said == "postgresql://db/x holds 1 rows in acme_nonces, not 2 (the row n2 is not there)", said
    said = _difference({"n1": ("n1", "2030"), "n2": ("n2", "2031")}, ours, columns, "acme_nonces", "postgresql://db/x")
    assert said == "the row n2 of acme_nonces differs in postgresql://db/x (expires)", said


def test_the_reuse_key_warning_for_a_key_of_several_cas_speaks_of_them_all(tmp_path: Path, token) -> None:
    from conftest import certkit_env

    def init(name: str, *extra: str):
        return run_certkit("init-ca", "--ca-dir", tmp_path / name, "--name", f"Key CA {name}", "--key-uri",
                           token.uri("root"), "--pkcs11-module", token.module, "--pin-file", token.pin_file, *extra,
                           env=certkit_env())

    assert init("one").returncode == 0
    second = init("two", "--reuse-key")
    assert "already signs the CA 'CN=Key CA one': the new CA shares that key" in second.stderr, second.stderr
    assert "None of that CA's revocations carry over" in second.stderr  # one CA: as it was
    third = init("three", "--reuse-key")
    assert third.returncode == 0, third.stderr
    warning = " ".join(third.stderr.split())
    assert "already signs 2 CAs: " in warning and "'CN=Key CA one'" in warning and "'CN=Key CA two'" in warning
    assert ("peers cannot tell its certificates and CRLs from those CAs', yet its inventory starts empty. None of "
            "those CAs' revocations carry over") in warning, warning  # was: "that CA's" of two CAs
    assert "accepts the certificates those CAs revoked" in warning, warning
    refused = init("four")
    assert_clean_error(refused, "already signs 3 CAs: ")
    assert "their certificates are in the token" in refused.stderr and "from those CAs'" in refused.stderr


# --- 3. check on a database this host cannot write ---------------------------------------------------------
def _copy_naming(tmp_path: Path, pg_ca: dict, name: str, url: str) -> Path:
    """A copy of the CA directory of ``pg_ca`` whose certkit-ca.json names ``url``."""
    copy = tmp_path / name
    shutil.copytree(pg_ca["CERTKIT_CA_DIR"], copy)
    (copy / "certkit-ca.json").write_text(json.dumps({"inventory": url}))
    return copy


def _role(tmp_path: Path, server, url: str, role: str, grant: str) -> Path:
    """A login role of the database ``url`` granted ``grant`` only, and a password file (0600) that holds its
    password beside the test server's."""
    with server.connect(url.rsplit("/", 1)[1]) as db:
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'its-own'")
        db.execute(f"GRANT {grant} TO {role}")
    passfile = tmp_path / "pgpass"
    passfile.write_text(Path(os.environ["PGPASSFILE"]).read_text() + f"*:*:*:{role}:its-own\n")
    passfile.chmod(0o600)
    return passfile


def _check_database(ca: Path, env: dict) -> list[str]:
    ran = run_certkit("check", "--ca-dir", ca, env=env, subprocess=True)
    assert "Traceback" not in ran.stderr, ran.stderr
    return [line for line in ran.stdout.splitlines() if " database " in line]


def _standby(server, tmp_path: Path) -> tuple[Path, int]:
    """A streaming standby of ``server`` (pg_basebackup -R), started on a port of its own: (its folder, port)."""
    from conftest import free_port
    from team_postgres import _run_as

    user = _run_as()
    folder = Path(server.base) / f"standby-{tmp_path.name}"
    folder.mkdir(mode=0o700)
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": server.password, "LC_ALL": "C"}
    port = free_port()
    for command in (["pg_basebackup", "-h", "127.0.0.1", "-p", str(server.port), "-U", "certkit", "-D", str(folder),
                     "-R", "-X", "stream", "--checkpoint=fast"],
                    ["pg_ctl", "-D", str(folder), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {port} -k {server.base} -c max_connections=200 -c fsync=off",
                     "start"]):
        done = subprocess.run([str(server.bin / command[0]), *command[1:]], env=env, cwd=server.base,
                              capture_output=True, text=True, timeout=180, **extra)
        assert done.returncode == 0, (done.stdout, done.stderr)
    return folder, port


def test_check_warns_of_a_database_this_host_cannot_write(tmp_path: Path, postgres_server, postgres_url: str,
                                                          pg_ca: dict) -> None:
    env = {k: v for k, v in pg_ca.items() if k != "CERTKIT_CA_DIR"}
    database = postgres_url.rsplit("/", 1)[1]
    assert _check_database(Path(pg_ca["CERTKIT_CA_DIR"]), env)[-1].startswith("OK")  # a role that may write
    # A role that may only read: list works, check warns (was "OK database" alone).
    passfile = _role(tmp_path, postgres_server, postgres_url, f"reader_{os.getpid()}", "SELECT ON certificates, meta")
    reader = _copy_naming(tmp_path, pg_ca, "reader", postgres_url.replace("certkit@", f"reader_{os.getpid()}@"))
    said = _check_database(reader, dict(env, PGPASSFILE=str(passfile)))
    assert said[1].startswith("WARNING") and (f"does not let the role reader_{os.getpid()} write the inventory (it "
                                              "lacks INSERT on certificates, UPDATE on certificates, INSERT on meta, "
                                              "UPDATE on meta): certkit list and check work, but issuing, renewing, "
                                              "revoking and signing CRLs fail here") in said[1], said
    assert run_certkit("list", "--ca-dir", reader, env=dict(env, PGPASSFILE=str(passfile))).returncode == 0
    # Every transaction read-only by default, for the database.
    with postgres_server.connect() as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    try:
        said = _check_database(Path(pg_ca["CERTKIT_CA_DIR"]), env)
        assert "makes every transaction of the role certkit read-only (default_transaction_read_only)" in said[1]
        crl = run_certkit("crl", "--out", tmp_path / "crl.pem", "--passphrase-file", tmp_path / "pass", env=pg_ca,
                          subprocess=True)  # a new session: it takes the database's new default
        assert_clean_error(crl, "is read-only")  # what check now says beforehand
    finally:
        with postgres_server.connect() as admin:
            admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    # A standby (the URL names the old primary after a failover).
    folder, port = _standby(postgres_server, tmp_path)
    try:
        passfile.write_text(passfile.read_text() + f"127.0.0.1:{port}:*:certkit:{postgres_server.password}\n")
        standby = _copy_naming(tmp_path, pg_ca, "standby", postgres_url.replace(f":{postgres_server.port}/",
                                                                                  f":{port}/"))
        said = _check_database(standby, dict(env, PGPASSFILE=str(passfile)))
        assert said[0].startswith("OK") and "is a standby server" in said[1], said
    finally:
        postgres_server._pg("pg_ctl", "-D", str(folder), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(folder, ignore_errors=True)


# --- 4. acme serve with a role that may use its tables, not create them -------------------------------------
def test_acme_serve_starts_with_a_role_that_may_use_its_tables_but_not_create_them(tmp_path: Path, postgres_server,
                                                                                    postgres_url: str,
                                                                                    pg_ca: dict) -> None:
    from acme_client import Client
    from acme_helpers import AcmeServer
    from conftest import PASSPHRASE

    env = dict(pg_ca, CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    role = f"acme_dml_{os.getpid()}"
    passfile = _role(tmp_path, postgres_server, postgres_url, role,
                     "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public")
    service = _copy_naming(tmp_path, pg_ca, "service", postgres_url.replace("certkit@", f"{role}@"))
    first = run_certkit("acme", "serve", "--port", "0", "--allow-domain", "dml.test", "--ca-dir", service,
                        env=dict(env, PGPASSFILE=str(passfile)), subprocess=True)  # no ACME tables yet: said so
    assert_clean_error(first, "The ACME server's tables are not all in the inventory's database yet")
    assert "start certkit acme serve once as the database's owner" in first.stderr, first.stderr
    AcmeServer("--allow-domain", "owner.test", env=env).stop()  # the owner's first start creates the tables
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as db:
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    server = AcmeServer("--allow-domain", "dml.test", env=dict(env, CERTKIT_CA_DIR=str(service),
                                                               PGPASSFILE=str(passfile)))
    try:  # was: "Error: ... may not be used by this database user: permission denied for schema public."
        client = Client(server.directory, service / "ca.pem")
        client.register()
        assert client.post(client.kid).json()["status"] == "valid"
    finally:
        server.stop()
