"""The twenty-fourth round's secrets findings (audit secrets, round twenty-four).

1. ``renew --install-timer``: $SSL_CERT_FILE and $SSL_CERT_DIR (the CAs OpenSSL trusts for libpq's
   sslrootcert=system, and for a hook's curl) set in the shell were not carried into the unit or the crontab line:
   the installing trial run, or every night's run, failed to verify the inventory's server. They are carried now,
   made absolute, as the PG* paths are; no secret ($PGPASSWORD, a passphrase) is carried.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_audit7_team import run_as_cron
from test_audit22_team import _tls_on
from test_team_hsm import _real_processes  # noqa: F401 (an autouse fixture: certkit runs as real processes)

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


# --- 1. the timer trusts the CAs this shell trusts ------------------------------------------------------------------
def test_the_timer_carries_openssls_trusted_cas(tmp_path: Path) -> None:
    """The inventory's server is verified with sslrootcert=system and $SSL_CERT_FILE (a relative path) names the CA
    that issued its certificate: the crontab line now carries $SSL_CERT_FILE made absolute (and $SSL_CERT_DIR, each
    of its folders absolute), runs as cron runs it, and carries neither $PGPASSWORD nor the CA passphrase."""
    from certkit.db_postgres_pool import close_idle
    from certkit.fleet.timer_env import CARRIED_ENVIRONMENT

    from team_fixtures import started_postgres

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    (tmp_path / "certs").mkdir()
    with started_postgres() as server:
        _tls_on(server, tmp_path, True)
        url = server.create_database("trust")
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home), PGSSLMODE="verify-full",
                          PGSSLROOTCERT="system", SSL_CERT_FILE="tls-ca/ca.pem", SSL_CERT_DIR="certs:/nowhere",
                          **server.env())
        run_certkit("init-ca", "--name", "Trusting", "--inventory", url, "--passphrase-file", tmp_path / "pass",
                    env=env, cwd=tmp_path, check=True)
        proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", tmp_path / "pass", env=env,
                           cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.strip().splitlines()[-1]
        assert f" SSL_CERT_FILE={tmp_path / 'tls-ca' / 'ca.pem'} " in line, line
        assert f" SSL_CERT_DIR={tmp_path / 'certs'}:/nowhere " in line, line
        assert "PGPASSWORD" not in line and PASSPHRASE not in line, line
        ran = run_as_cron(line, home)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        close_idle()
    assert {"SSL_CERT_FILE", "SSL_CERT_DIR"} <= set(CARRIED_ENVIRONMENT)
    assert not {"PGPASSWORD", "CERTKIT_CA_PASSPHRASE", "CERTKIT_P12_PASSWORD"} & set(CARRIED_ENVIRONMENT)


# --- 2. probe never echoes a password of a URL it refuses -----------------------------------------------------------
@pytest.mark.parametrize("given,shown", [
    # several URLs in one argument (a list pasted, blanks, commas): the second one's password was echoed
    ("https://bob:S3cretPW@127.0.0.1:1/x https://al:S3cretPW@127.0.0.1:2/",
     "'https://***@127.0.0.1:1/x https://***@127.0.0.1:2/' holds a user name or password"),
    ("https://127.0.0.1:1/x,rediss://al:S3cretPW@127.0.0.1:2",
     "'https://127.0.0.1:1/x,rediss://***@127.0.0.1:2' holds a user name or password"),
    # a list from a file, whole (its line breaks are control characters): every password was echoed
    ("https://bob:S3cretPW@127.0.0.1:1/\npostgresql://al:S3cretPW@127.0.0.1:2/db\n",
     "'https://***@127.0.0.1:1/\\x0apostgresql://***@127.0.0.1:2/db\\x0a' holds a control character"),
    # a password holding '/', '?' or '#' ends the host for a URL parser: echoed as a bad port, and the URL whole
    ("https://bob:S3c/retPW@127.0.0.1:1/x", "'https://***@127.0.0.1:1/x' holds a user name or password"),
    ("https://bob:S3c?retPW@127.0.0.1:1/x", "'https://***@127.0.0.1:1/x' holds a user name or password"),
    ("bob:S3c#retPW@127.0.0.1:1", "'https://***@127.0.0.1:1' holds a user name or password"),
])
def test_probe_hides_every_password_of_what_it_is_given(given: str, shown: str, tmp_path: Path) -> None:
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    for json_flag in ([], ["--json"]):
        proc = run_certkit("probe", *json_flag, given, env=env)
        assert proc.returncode == 1, proc
        said = proc.stdout + proc.stderr
        assert "S3c" not in said and "retPW" not in said, said
        assert shown in said.replace("\\\\", "\\"), said
        assert "Traceback" not in said


def test_probe_still_takes_an_at_sign_in_a_path_and_says_a_bad_port(tmp_path: Path) -> None:
    """What is no user part is not hidden: an '@' in a path (https://host/@user) is probed; a port typed wrong
    without an '@' after it is still said as such (with one, "host:8o/@bob" cannot be told from a password
    holding a '/', and is hidden)."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = run_certkit("probe", "https://127.0.0.1:1/@bob", env=env)
    assert_clean_error(proc, "Cannot connect to 127.0.0.1:1")
    proc = run_certkit("probe", "https://localhost:8o/bob", env=env)
    assert_clean_error(proc, "'https://localhost:8o/bob' is not a URL certkit can probe: its port '8o'")


# --- 3. no TLS key log, whatever $SSLKEYLOGFILE says ----------------------------------------------------------------
def test_the_library_contexts_write_no_key_log(tmp_path: Path, monkeypatch) -> None:
    """ca.client_context() is made by ssl.create_default_context, which writes every session's secrets to the file
    $SSLKEYLOGFILE names: a real handshake with it wrote them there. It is now ignored, with a warning; as are
    ca.server_context() and the demo's contexts (tlscheck)."""
    from certkit import CA
    from certkit.tlscheck import Endpoint, client_context, handshake, server_context

    log = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(log))
    ca = CA.create("Key log CA")
    server = ca.issue_server(["localhost"])
    with pytest.warns(UserWarning, match=r"\$SSLKEYLOGFILE is set, and ignored"):
        client_ctx = ca.client_context()
    with pytest.warns(UserWarning, match=r"\$SSLKEYLOGFILE is set, and ignored"):
        server_ctx = ca.server_context(server, client_certificates="none")
    result = handshake(server_ctx, client_ctx)
    assert result.accepted, result
    assert not log.exists() or log.read_bytes() == b""
    with server.files() as paths, pytest.warns(UserWarning, match=r"\$SSLKEYLOGFILE is set, and ignored"):
        ends = (server_context(Endpoint(paths.fullchain, paths.key), None, require_client_cert=False),
                client_context(paths.ca))
        assert handshake(*ends).accepted
    assert not log.exists() or log.read_bytes() == b""


def test_demo_says_it_writes_no_key_log(tmp_path: Path) -> None:
    log = tmp_path / "keys.log"
    proc = run_certkit("demo", cwd=tmp_path, env=certkit_env(HOME=str(tmp_path), SSLKEYLOGFILE=str(log)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Warning: $SSLKEYLOGFILE is set, and ignored") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not log.exists()


# --- 4. a timer never carries a hook's password ---------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--exec", "--exec-once"])
def test_a_timer_refuses_a_hook_with_a_password_in_a_url(option: str, tmp_path: Path) -> None:
    """renew --install-timer --exec 'curl https://admin:PW@host/reload' wrote the password into the unit (mode 0644,
    and `systemctl show` prints it to every user) or the crontab line, and printed it ("runs: ..."). Refused now,
    the URL's user part written '***'; a hook whose URL has an '@' in its path is still taken."""
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Hooked", env=env, check=True)
    hook = "curl -fsS https://admin:S3cretPW@127.0.0.1:1/reload"
    for where in (["--cron"], ["--unit-dir", str(tmp_path / "units")], ["--cron", "--json"]):
        proc = run_certkit("renew", "--install-timer", "--passphrase-file", secret, *where, option, hook, env=env)
        assert_clean_error(proc, f"{option} 'curl -fsS https://***@127.0.0.1:1/reload' holds a password in a URL")
        assert "S3cretPW" not in proc.stdout + proc.stderr
    assert not (tmp_path / "units").exists()
    proc = run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--cron", option,
                       "curl -fsS https://127.0.0.1:1/@reload", env=env)
    assert proc.returncode == 0 and "https://127.0.0.1:1/@reload" in proc.stdout, proc.stderr


def test_serve_says_it_writes_no_key_log(tmp_path: Path) -> None:
    """certkit serve with $SSLKEYLOGFILE set: a real client's handshake (openssl s_client, without the variable)
    leaves no key log, and serve says once that the variable is ignored."""
    import subprocess

    from serve_process import serving

    log = tmp_path / "keys.log"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Served", env=env, check=True)
    with serving(env=dict(env, SSLKEYLOGFILE=str(log)), cwd=tmp_path) as srv:
        client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-CAfile",
                                 str(tmp_path / "ca" / "ca.pem"), "-verify_return_error"],
                                input="", capture_output=True, text=True, timeout=60,
                                env={k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"})
        assert "Verify return code: 0 (ok)" in client.stdout, client.stdout + client.stderr
        srv.wait_for_log("$SSLKEYLOGFILE is set, and ignored")
    assert srv.stderr.count("$SSLKEYLOGFILE is set, and ignored") == 1, srv.stderr
    assert not log.exists()


def test_probe_and_serve_optional_say_they_write_no_key_log(tmp_path: Path) -> None:
    """The pyOpenSSL contexts (probe's, serve --optional's) ignore $SSLKEYLOGFILE too, and say so: the server is
    certkit serve --optional, probed by certkit probe, each with the variable set; neither writes a key log."""
    from serve_process import serving

    log = tmp_path / "keys.log"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Probed", env=env, check=True)
    keyed = dict(env, SSLKEYLOGFILE=str(log))
    with serving("--optional", env=keyed, cwd=tmp_path) as srv:
        proc = run_certkit("probe", f"https://127.0.0.1:{srv.port}/", "--ca-dir", tmp_path / "ca", env=keyed)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stderr.count("Warning: $SSLKEYLOGFILE is set, and ignored") == 1, proc.stderr
        srv.wait_for_log("$SSLKEYLOGFILE is set, and ignored")
    assert not log.exists()
