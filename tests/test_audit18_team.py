"""The eighteenth round's team findings (audit team, round eighteen): a PostgreSQL inventory shared by hosts, and
a CA key in a PKCS#11 token (SoftHSM2).

1. ``certkit acme serve`` on a CA whose key is in a token: while the token was away (a network HSM restarting
   or failing over, a token unplugged), every finalize got ``500 serverInternal`` and its order became
   ``invalid`` for good, though the error itself said "nothing can be signed until it is back": the client
   had to start a new order, and a finalize sent after the token was back still got "The order is invalid".
   A database away gets a ``503`` with ``Retry-After`` and leaves the order ``ready``; a token away (or any
   failure of the CA key's token, none of them the order's fault) now does the same.
2. A long-running process (``acme serve``, whose maintenance also renews its own certificate every few weeks,
   ``issue-batch`` workers) logs in to the token again when the token closed its session. If the token's PIN
   was changed meanwhile (docs/team.md advises changing it when a host is compromised), it sent the old PIN
   on every finalize and every re-login: the token's "user PIN count low" flag came back after each one, and
   a real HSM locks its user PIN after a few (the CA is then down until the security officer unlocks it),
   while the message said "certkit does not retry". A PIN a token refused is now never sent to it again by
   that process: it says when it was refused and to start again with the new PIN.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit14_team import own_postgres  # noqa: F401 (a fixture)
from test_audit17_team import two_hosts  # noqa: F401 (a fixture)
from test_hsm_faults import delete_token
from test_team_hsm import _real_processes, env_for, init_token_ca  # noqa: F401 (an autouse fixture)

from conftest import openssl, run_certkit


# --- 1 and 2. acme serve on a token CA: the token away, its PIN changed ----------------------------------------
def _finalize(client, order_url: str, name: str):
    """Finalize the order (ready) for ``name`` with a fresh key: the response."""
    from acme_client import make_csr

    order = client.get(order_url)
    assert order["status"] == "ready", order
    return client.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), [name]), check=False)


def _unavailable(client, order_url: str, name: str, said: str, server=None) -> str:
    """Finalize: a 503 with Retry-After, and the order ready again. The client is told only that the CA's key cannot
    sign now; the token's own words (its label, what it said) are the operator's, in the server's log (round
    twenty-one): with ``server``, the new log line of this finalize, which holds ``said``."""
    fragment = "nothing issued, the order is ready again: the CA's key cannot sign now: "
    before = server.stderr.count(fragment) if server is not None else 0
    response = _finalize(client, order_url, name)
    problem = response.json()
    assert response.status_code == 503 and response.headers.get("Retry-After"), (response.status_code, problem)
    assert problem["type"] == "urn:ietf:params:acme:error:serverInternal", problem
    assert problem["detail"] == ("The certificate was not issued, the CA's key cannot sign now. The order is ready "
                                 "again: finalize it again later."), problem
    assert client.get(order_url)["status"] == "ready"  # was: invalid, for good
    if server is None:
        assert said in problem["detail"], problem
        return problem["detail"]
    line = server.wait_for_log(fragment, count=before + 1)[before]
    assert said in line, line
    return line


def _issued(client, order_url: str, name: str, ca_pem: Path, tmp_path: Path) -> None:
    """Finalize the ready order: valid, and its certificate verifies against the CA (openssl)."""
    from acme_helpers import split_chain

    response = _finalize(client, order_url, name)
    assert response.status_code == 200, response.text
    order = client.wait(order_url, ("valid", "invalid"))
    assert order["status"] == "valid", order
    chain = tmp_path / f"{name}.pem"
    chain.write_text(client.certificate(order["certificate"]))
    leaf, _rest = split_chain(chain, tmp_path)
    proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_pem, leaf)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _ready_order(client, web, name: str) -> str:
    order_url, order = client.new_order(name)
    client.authorize(order, web)
    assert client.wait(order_url)["status"] == "ready"
    return order_url


def _acme_server(tmp_path: Path, env: dict, http_port: int, port: int = 0):
    from acme_helpers import AcmeServer

    names = [arg for name in ("a", "b", "c") for arg in ("--resolve", f"{name}.acme.test=127.0.0.1")]
    return AcmeServer("--allow-domain", "acme.test", "--http01-port", http_port, "--port", port, *names, env=env,
                      cwd=tmp_path)


def test_acme_serve_keeps_orders_ready_while_its_token_is_away(tmp_path: Path, token, softhsm) -> None:
    from acme_client import Client, HTTP01Responder
    from acme_helpers import ports

    init_token_ca(tmp_path, token)
    ca_pem = tmp_path / "ca" / "ca.pem"
    http_port = ports(1)[0]
    server = _acme_server(tmp_path, env_for(tmp_path, token), http_port)
    folder, saved = softhsm.token_folder(token), tmp_path / "token-copy"
    try:
        with HTTP01Responder(http_port) as web:
            client = Client(server.directory, ca_pem)
            client.register()
            client.obtain(["a.acme.test"], web)  # the token signs
            shutil.copytree(folder, saved)
            delete_token(token)  # the HSM restarting: away for a while
            order_url = _ready_order(client, web, "b.acme.test")
            detail = _unavailable(client, order_url, "b.acme.test", "the CA's key cannot sign now", server)
            assert f"The token '{token.label}' holding the CA key" in detail, detail
            assert "is no longer present" in detail, detail
            shutil.copytree(saved, folder)  # back: the same order is finalized (was: "The order is invalid")
            _issued(client, order_url, "b.acme.test", ca_pem, tmp_path)
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr


def test_a_pin_the_token_refused_is_never_sent_to_it_again(tmp_path: Path, token, softhsm) -> None:
    """The token's PIN changed while acme serve runs, then its session closed (the token away a moment): the
    server sends the old PIN once, is refused, and never sends it again (SoftHSM2 sets "user PIN count low"
    after each wrong PIN and clears it at a right one: the flag shows whether one was sent)."""
    from acme_client import Client, HTTP01Responder
    from acme_helpers import ports

    init_token_ca(tmp_path, token)
    ca_pem = tmp_path / "ca" / "ca.pem"
    http_port, acme_port = ports(2)
    server = _acme_server(tmp_path, env_for(tmp_path, token), http_port, acme_port)
    folder, saved, new_pin = softhsm.token_folder(token), tmp_path / "token-copy", "71836645"
    try:
        with HTTP01Responder(http_port) as web:
            client = Client(server.directory, ca_pem)
            client.register()
            client.obtain(["a.acme.test"], web)  # logged in, and signing
            changed = token.tool("--change-pin", "--new-pin", new_pin)  # another process, as an operator would
            assert changed.returncode == 0, changed.stdout + changed.stderr
            shutil.copytree(folder, saved)
            delete_token(token)
            order_url = _ready_order(client, web, "c.acme.test")
            _unavailable(client, order_url, "c.acme.test", "is no longer present", server)  # its session is gone
            shutil.copytree(saved, folder)
            detail = _unavailable(client, order_url, "c.acme.test", "refused the PIN this process logged in with",
                                  server)
            assert "was the token's PIN changed?" in detail and "It is not sent again" in detail, detail
            assert "user PIN count low" in token.flags()  # the one wrong PIN it sent
            token.pin = new_pin
            assert token.tool("--list-objects").returncode == 0  # a right PIN clears the flag
            assert "user PIN count low" not in token.flags()
            for _ in range(3):  # clients finalizing again (Retry-After): was a wrong PIN each time
                detail = _unavailable(client, order_url, "c.acme.test",
                                      "(or another worker of this command), so it is not sent", server)
                assert "start it again with the new PIN" in detail, detail
                assert "user PIN count low" not in token.flags()
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr
    server = _acme_server(tmp_path, dict(env_for(tmp_path, token), CERTKIT_PKCS11_PIN=new_pin), http_port,
                          acme_port)
    try:  # started again with the new PIN (the same address): the same order is issued
        _issued(client, order_url, "c.acme.test", ca_pem, tmp_path)
    finally:
        server.stop()


# --- 3. a database whose default isolation is repeatable read or serializable ---------------------------------
def _certkit_after_a_write_of_another_host(postgres_server, url: str, env: dict, held: str, args: list) -> \
        subprocess.CompletedProcess:
    """``certkit ARGS`` while another host's transaction holds the row it writes (``held``, an UPDATE run
    there), committed once certkit waits for that row's lock: what two hosts writing at once do."""
    from test_audit13_team import _wait_until_blocked

    database = url.rsplit("/", 1)[1]
    with postgres_server.connect(database) as other:
        with other.transaction():
            other.execute(held)
            proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                _wait_until_blocked(postgres_server, database)
            except BaseException:
                proc.kill()
                proc.communicate()
                raise
        out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("isolation", ["serializable", "repeatable read"])
def test_a_database_whose_default_isolation_is_stricter_still_takes_two_hosts_writes(tmp_path: Path, postgres_server,
                                                                                     postgres_url: str, pg_ca: dict,
                                                                                     isolation: str) -> None:
    """A DBA's default_transaction_isolation for the database (or the role): certkit's transactions, written
    for read committed, failed whenever another host changed a row they waited for ("stopped a transaction
    that conflicted with another certkit process ... try again"); four hosts issuing at once all stopped."""
    passphrase = ["--passphrase-file", tmp_path / "pass"]
    run_certkit("issue-server", "web.example.com", "--out", tmp_path / "web", *passphrase, env=pg_ca, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", *passphrase, env=pg_ca, check=True)
    serial = json.loads(run_certkit("list", "--json", env=pg_ca, check=True).stdout)["certificates"][0]["serial"]
    with postgres_server.connect() as admin:
        admin.execute(f"ALTER DATABASE \"{postgres_url.rsplit('/', 1)[1]}\" SET default_transaction_isolation = "
                      f"'{isolation}'")
    revoked = _certkit_after_a_write_of_another_host(
        postgres_server, postgres_url, pg_ca, f"UPDATE certificates SET folder = folder WHERE serial = '{serial}'",
        ["revoke", serial, "--reason", "superseded"])
    assert revoked.returncode == 0, revoked.stderr  # was: "... could not serialize access due to concurrent update"
    signed = _certkit_after_a_write_of_another_host(
        postgres_server, postgres_url, pg_ca, "UPDATE meta SET value = value WHERE key = 'crl_number'",
        ["crl", "--out", tmp_path / "crl.pem", *passphrase])
    assert signed.returncode == 0, signed.stderr
    ca_pem = Path(pg_ca["CERTKIT_CA_DIR"]) / "ca.pem"
    listed = openssl("crl", "-in", tmp_path / "crl.pem", "-CAfile", ca_pem, "-noout", "-text")
    text = (listed.stdout + listed.stderr).decode()
    assert listed.returncode == 0 and "verify OK" in text, text
    assert serial in text.replace(":", "").upper() and "CRL Number: \n                2" in text, text
    proc = openssl("verify", "-crl_check", "-CAfile", ca_pem, "-CRLfile", tmp_path / "crl.pem", tmp_path / "web" /
                   "cert.pem")
    assert proc.returncode != 0 and b"certificate revoked" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --- 4. the CA's module not where certkit-ca.json says -------------------------------------------------------
def test_a_module_moved_since_the_ca_was_made_names_the_file_that_says_where_it_is(tmp_path: Path, token) -> None:
    """A package upgrade moved the PKCS#11 module (Debian moved SoftHSM's into a multiarch folder): every command
    said only "The PKCS#11 module ... does not exist.", not where that path comes from nor what to change."""
    from conftest import assert_clean_error

    old = tmp_path / "old-lib" / "libsofthsm2.so"
    old.parent.mkdir()
    shutil.copy(token.module, old)
    made = run_certkit("init-ca", "--name", "Moved", "--key-uri", token.uri("root"), "--pkcs11-module", old,
                       "--pin-file", token.pin_file, env=env_for(tmp_path, token))
    assert made.returncode == 0, made.stderr
    shutil.rmtree(old.parent)  # the upgrade
    env, config = env_for(tmp_path, token), tmp_path / "ca" / "certkit-ca.json"
    said = (f"The PKCS#11 module {old} does not exist (the CA's module, as \"pkcs11_module\" in {config} says: moved "
            "by a package upgrade? Write its new path there).")
    for args in (["issue-server", "web.internal", "--out", tmp_path / "web"], ["crl", "--out", tmp_path / "crl.pem"]):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, said)  # was: "... does not exist." and nothing else
    check = run_certkit("check", env=env)
    assert check.returncode == 1 and f"ERROR   token      {said}" in check.stdout, check.stdout
    settings = json.loads(config.read_text())  # as the message says
    config.write_text(json.dumps(dict(settings, pkcs11_module=token.module)))
    run_certkit("issue-server", "web.internal", "--out", tmp_path / "web", env=env, check=True)
    proc = openssl("verify", "-CAfile", tmp_path / "ca" / "ca.pem", tmp_path / "web" / "cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- 5. check and the token's PIN flags -----------------------------------------------------------------------
def test_check_says_when_the_token_refused_a_wrong_pin_since_the_last_right_one(tmp_path: Path, token) -> None:
    """A host still using an old PIN after a change (or anyone guessing PINs): the token counts its wrong PINs
    and says so in its flags (CKF_USER_PIN_COUNT_LOW; then FINAL_TRY, then LOCKED), which check did not read:
    it said "OK token ... present" until the PIN locked."""
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    right = token.pin
    token.pin = "00000000"  # an old PIN, on another host
    assert token.tool("--list-objects").returncode != 0
    token.pin = right
    without_pin = {k: v for k, v in env.items() if k != "CERTKIT_PKCS11_PIN"}
    warned = (f"WARNING token      '{token.label}' says it refused a wrong user PIN since the last right one "
              "(CKF_USER_PIN_COUNT_LOW): is a host or program still using an old PIN? Tokens lock after a few wrong "
              "PINs.")
    for environment in (without_pin, env):  # read before check's own login, which then clears it (a right PIN)
        proc = run_certkit("check", env=environment)
        assert warned in proc.stdout and f"OK      token      '{token.label}' present" in proc.stdout, proc.stdout
    proc = run_certkit("check", env=without_pin)
    assert "CKF_USER_PIN" not in proc.stdout and "Tokens lock" not in proc.stdout, proc.stdout


# --- 6. one name, one bundle path, on two hosts sharing the inventory ------------------------------------------
def _on_host(host: Path, shared: Path, env: dict, *args) -> subprocess.CompletedProcess:
    """``certkit ARGS`` as the host ``HOST-host``, whose own disk ``HOST/srv`` is mounted at ``shared``: two load-
    balanced servers, each with its bundle in the same place (/srv/web) on its own disk."""
    script = 'mount --bind "$0" "$1" && hostname "$2" && shift 3 && exec "$@"'
    return subprocess.run(["unshare", "-Urum", "sh", "-c", script, str(host / "srv"), str(shared), f"{host.name}-host",
                           "-", sys.executable, "-m", "certkit", *map(str, args), "--ca-dir", str(host / "ca")],
                          env=env, capture_output=True, text=True, timeout=180)


def test_a_name_whose_bundles_two_hosts_hold_at_one_path_says_which_host_holds_which(request, tmp_path: Path
                                                                                    ) -> None:
    """``certkit renew web.example.com`` on one of two hosts that each hold a bundle for it at /srv/web listed
    "A (server) in /srv/web; B (server) in /srv/web" and said to give a bundle folder: the same folder, twice."""
    from cryptography import x509

    from certkit.vocabulary import serial_hex

    from conftest import assert_clean_error

    env, a, b = request.getfixturevalue("two_hosts")
    shared, passphrase = tmp_path / "srv", ["--passphrase-file", tmp_path / "pass"]
    shared.mkdir()
    for host in (a, b):
        (host / "srv").mkdir()
        issued = _on_host(host, shared, env, "issue-server", "web.example.com", "--out", shared / "web", *passphrase)
        assert issued.returncode == 0, issued.stderr

    def serial(of: Path) -> str:  # of the bundle at /srv/web on the host ``of``
        cert = x509.load_pem_x509_certificate((of / "srv" / "web" / "cert.pem").read_bytes())
        return serial_hex(cert.serial_number)

    for host, other in ((a, b), (b, a)):
        mine, theirs = serial(host), serial(other)
        refused = _on_host(host, shared, env, "renew", "web.example.com", *passphrase)
        assert_clean_error(refused, "names 2 current certificates")
        assert f"{mine} (server) in {shared / 'web'}, on this host" in refused.stderr, refused.stderr
        assert f"{theirs} (server) in {shared / 'web'} on the host {other.name}-host" in refused.stderr
        renewed = _on_host(host, shared, env, "renew", shared / "web", *passphrase)  # the folder, as it says
        assert renewed.returncode == 0, renewed.stderr
        assert serial(host) != mine and serial(other) == theirs
        proc = openssl("verify", "-CAfile", host / "ca" / "ca.pem", host / "srv" / "web" / "cert.pem")
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --- 7. a renewal written whole as the database went away ------------------------------------------------------
def test_a_renewal_written_whole_as_the_database_went_away_still_runs_its_hooks(tmp_path: Path, request) -> None:
    """The database crashed after a bulk renewal put a new bundle in place, before its row was marked valid: the
    run said "failed ... was written whole", ran neither its --exec hook nor --exec-once for it, and the next run
    did not renew it again (not due): the server went on serving the old certificate, which nobody was warned of,
    until it expired. A bundle in place is a renewal, whose hooks run; then the run stops."""
    from test_audit14_team import _crash, _start_again

    from conftest import PASSPHRASE, certkit_env
    from integrity_helpers import start_paused

    server = request.getfixturevalue("own_postgres")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      **server.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", server.create_database(), env=env, check=True)
    old = {}
    for name in ("w1", "w2"):
        run_certkit("issue-server", f"{name}.example.test", "--days", "10", "--out", tmp_path / name, env=env,
                    check=True)
        old[name] = (tmp_path / name / "cert.pem").read_bytes()
    hooks = ["--exec", 'echo "$CERTKIT_FOLDER" >> each.log', "--exec-once", 'echo "$CERTKIT_FOLDERS" >> once.log']
    marker = tmp_path / "paused"
    proc = start_paused(["renew", "--expiring", "30d", "--days", "90", *hooks, "--json"], env, tmp_path, "swapped",
                        marker)
    try:
        _crash(server)
    finally:
        marker.unlink(missing_ok=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err, out + err
    written = [name for name in old if (tmp_path / name / "cert.pem").read_bytes() != old[name]]
    assert len(written) == 1, out + err
    folder = str(tmp_path / written[0])
    report = json.loads(out)
    renewed = [c for c in report["certificates"] if c["outcome"] == "renewed"]
    assert report["renewed"] == 1 and [c["folder"] for c in renewed] == [folder], report  # was: 0, "failed"
    assert any("still pending" in note for note in renewed[0]["notes"]), renewed[0]
    assert report["halted"] and "cannot be reached" in report["halted"], report
    assert (tmp_path / "each.log").read_text().split() == [folder]  # was: no hook ran
    assert (tmp_path / "once.log").read_text().split() == [folder]
    _start_again(server)
    listed = {c["serial"]: c["status"] for c in json.loads(run_certkit("list", "--json", env=env).stdout)[
        "certificates"]}
    assert listed[renewed[0]["new_serial"]] == "valid", listed
    again = json.loads(run_certkit("renew", "--expiring", "30d", "--days", "90", "--json", env=env).stdout)
    assert [c["folder"] for c in again["certificates"] if c["outcome"] == "renewed"] == [
        str(tmp_path / name) for name in old if name not in written]
    proc = openssl("verify", "-purpose", "sslserver", "-CAfile", tmp_path / "ca" / "ca.pem", f"{folder}/cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One certificate (certkit renew FOLDER --exec): was only the Error line, its hook not run.
    proc = start_paused(["renew", tmp_path / "w2", "--exec", 'echo "$CERTKIT_SERIAL" > one.log', "--json"], env,
                        tmp_path, "swapped", marker)
    try:
        _crash(server)
    finally:
        marker.unlink(missing_ok=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.count("Error:") == 1 and "was written whole" in err, out + err
    report = json.loads(out)  # the one JSON object: the renewal, with its pending row said
    assert (tmp_path / "one.log").read_text().split() == [report["new_serial"]], report
    assert any("still pending" in note for note in report["notes"]), report
    _start_again(server)
    listed = {c["serial"]: c["status"] for c in json.loads(run_certkit("list", "--json", env=env).stdout)[
        "certificates"]}
    assert listed[report["new_serial"]] == "valid", listed
