"""What docs/renew.md says about servers picking up a renewed certificate, shown with the real
servers: HAProxy serves a PEM of chain and key that an --exec hook rebuilds, and takes it on the
reload --exec-once sends; PostgreSQL re-reads ssl_cert_file and ssl_key_file on reload (SIGHUP).
(nginx: tests/test_fleet_renew.py.) Each server runs on 127.0.0.1 and a free port, from a temporary
folder, and is stopped by the test."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, REPO, certkit_env, free_port, openssl, require, run_certkit, wait_listening
from docs_runner import blocks
from fleet_helpers import backdated_ca, bundle, served_serial, until_changed


def renew_md_command(server: str, paths: dict[str, str]) -> str:
    """docs/renew.md's renewal command for ``server`` (HAProxy, PostgreSQL), its paths and reload replaced by
    ``paths``, and run with this checkout's certkit."""
    [command] = [" ".join(b.body) for b in blocks(REPO / "docs" / "renew.md")
                 if b.indent and b.body[0].startswith("certkit renew") and f"reload {server}" in " ".join(b.body)]
    command = command.replace("\\ ", "")
    for old, new in paths.items():
        assert old in command, (old, command)
        command = command.replace(old, new)
    return command.replace("certkit renew", f"{sys.executable} -m certkit renew", 1)


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_haproxy_takes_the_rebuilt_pem_on_reload(tmp_path):
    haproxy = require("haproxy")
    ca = backdated_ca(tmp_path / "ca")
    old = bundle(ca, tmp_path / "certs" / "web", "web.example.com", days=40, age=35)
    pems = tmp_path / "haproxy"
    pems.mkdir()
    # HAProxy's crt: one PEM with the chain and the key, built by docs/renew.md's own --exec hook
    port, pid_file = free_port(), tmp_path / "haproxy.pid"
    reload = f'kill -USR2 "$(cat {pid_file})"'  # the master reloads: what systemctl reload haproxy does
    command = renew_md_command("haproxy", {"/etc/haproxy/certs": str(pems), "systemctl reload haproxy": reload})
    combine = shlex.split(command)[shlex.split(command).index("--exec") + 1]
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      RENEWED_LINEAGE=str(tmp_path / "certs" / "web"))
    subprocess.run(["/bin/sh", "-c", combine], env=env, check=True, timeout=30)
    (tmp_path / "haproxy.cfg").write_text(f"""
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend web
    bind 127.0.0.1:{port} ssl crt {pems / 'web.pem'}
    http-request return status 200 content-type text/plain string ok
""")
    proc = subprocess.Popen([haproxy, "-W", "-db", "-f", tmp_path / "haproxy.cfg", "-p", pid_file],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, "haproxy")
        root = tmp_path / "ca" / "ca.pem"
        assert served_serial(port, root, "web.example.com") == old.cert.serial_number
        proc_renew = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
        assert proc_renew.returncode == 0, proc_renew.stdout + proc_renew.stderr
        new = x509.load_pem_x509_certificate((tmp_path / "certs" / "web" / "cert.pem").read_bytes())
        assert new.serial_number != old.cert.serial_number
        assert until_changed(lambda: served_serial(port, root, "web.example.com"),
                             old.cert.serial_number) == new.serial_number
        assert oct((pems / "web.pem").stat().st_mode & 0o777) == "0o600"
    finally:
        stop(proc)
        proc.stdout.close()


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    return Path(require("postgres")).resolve().parent


def test_postgresql_rereads_its_certificate_on_reload(tmp_path):
    bindir = _postgres_bin()
    # initdb refuses root: the server runs as the postgres user then, as Debian runs it
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    base = Path(tempfile.mkdtemp(prefix="certkit-fleet-pg-"))  # not under pytest's root-only folder
    proc = None
    try:
        # base stays root's (certkit refuses to write below a folder another user owns, who could swap its names
        # for links while root writes there); the server's own data folder is the postgres user's
        os.chmod(base, 0o755)
        (base / "data").mkdir(mode=0o700)
        if user:
            os.chown(base / "data", user.pw_uid, user.pw_gid)
        ca = backdated_ca(tmp_path / "ca")
        folder = base / "tls" / "db"
        old = bundle(ca, folder, "db.example.com", days=40, age=35)
        if user:  # a key owned by root is accepted with mode 0640 and the server's group
            os.chown(folder / "privkey.pem", 0, user.pw_gid)
            os.chmod(folder / "privkey.pem", 0o640)
        pg_env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"}
        subprocess.run([bindir / "initdb", "-D", base / "data", "-A", "trust", "-U", "postgres", "--no-sync"],
                       env=pg_env, capture_output=True, check=True, timeout=120, **as_user)
        port = free_port()
        log = base / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [bindir / "postgres", "-D", base / "data", "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                 "-c", f"unix_socket_directories={base / 'data'}", "-c", "fsync=off", "-c", "ssl=on",
                 "-c", f"ssl_cert_file={folder / 'fullchain.pem'}", "-c", f"ssl_key_file={folder / 'privkey.pem'}"],
                env=pg_env, stdout=out, stderr=subprocess.STDOUT, **as_user)
        wait_listening(port, proc, "postgres", log=lambda: log.read_text())

        def served() -> int:
            shown = openssl("s_client", "-starttls", "postgres", "-connect", f"127.0.0.1:{port}",
                            "-servername", "db.example.com", input=b"")
            pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", shown.stdout, re.S)
            assert pem, shown.stdout + shown.stderr
            return x509.load_pem_x509_certificate(pem.group(0)).serial_number

        assert served() == old.cert.serial_number
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
        reload = f'kill -HUP "$(head -1 {base / "data" / "postmaster.pid"})"'  # what pg_ctl reload does
        renewed = run_certkit("renew", "--expiring", "30d", "--exec-once", reload, "--json", env=env)
        assert renewed.returncode == 0, renewed.stderr
        new = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        assert serial_hex(new.serial_number) in renewed.stdout
        assert until_changed(served, old.cert.serial_number) == new.serial_number
        # the key was kept: the very file with its owner and mode, so the server could read it again
        assert oct((folder / "privkey.pem").stat().st_mode & 0o777) == ("0o640" if user else "0o600")
        if user:  # docs/renew.md's --rekey renewal, whose hook gives the new key to the server's group
            command = renew_md_command("postgresql", {"--expiring 30d": "--all", "systemctl reload postgresql": reload})
            rekeyed = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
            assert rekeyed.returncode == 0, rekeyed.stdout + rekeyed.stderr
            newer = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
            assert newer.public_key() != new.public_key()
            assert until_changed(served, new.serial_number) == newer.serial_number
            key = (folder / "privkey.pem").stat()
            assert (key.st_mode & 0o777, key.st_gid) == (0o640, user.pw_gid)
    finally:
        if proc is not None:
            stop(proc, signal.SIGINT)  # a fast shutdown
        shutil.rmtree(base, ignore_errors=True)
