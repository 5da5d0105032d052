"""The thirty-fourth round's team findings (team2: a PostgreSQL inventory, the CA key in a PKCS#11 token).

1. A key URI that names its token by serial= (or slot-id=) and no token=, matching no token, was said as "No token
   matching ... is present (...; tokens present: 'ca', 'other')" with SoftHSM's hint to check $SOFTHSM2_CONF: the
   labels of the tokens, but not the serials the URI is matched by, so the operator could not tell which token had
   been meant, nor that the configuration was right. Each token present is now said with what differs ("the token
   'ca' is present, but its serial is ..., not the URI's serial=..."), as a URI with token= already was, in init-ca,
   issuing, crl and check.
2. A key URI in certkit-ca.json that certkit refuses was said with the file in a parenthesis after the refusal's own
   ("... (it knows module-path) (the key URI in .../certkit-ca.json: fix it there)."; "add object=LABEL (or id=)
   (the key URI ...)"). The file now comes first: "Fix the key URI in FILE: the PKCS#11 URI has ...".
3. The same double parenthesis in SoftHSM's hint, after the module's own words or the tokens present: a CA whose
   token was deleted (softhsm2-util --delete-token) was told "No token matching ... is present (module ...; tokens
   present: none) (SoftHSM reads its configuration ...).", and nothing about restoring the token; a module that
   cannot be loaded "... cannot be loaded: PKCS#11 error (...) (SoftHSM reads ...)". The hint is now a sentence
   of its own, and a token absent is said with what to do: plug in or restore it (from its backup), or correct
   the URI.
4. issue-batch into folders on a PostgreSQL inventory whose server crashed mid-batch (pg_ctl stop -m immediate)
   ended "Error: The inventory ... closed the connection during this command (...); try again once the server is
   back; nothing was issued or written. The batch stopped after 350 bundles were written and recorded (50 of them
   as pending only ...)": "nothing was issued or written" (true of the chunk being recorded) contradicted the count
   that followed it. Once bundles were written, the failure is said without its "nothing was ..." and "try again"
   (as a batch into one file already was); the count, true to the folders on disk and the rows, follows.
5. inventory migrate --to a second database, for a CA whose inventory is in PostgreSQL already, said only "The
   inventory of DIR is already in PostgreSQL (URL)." (also for the very database it is in): not that migrate moves
   SQLite inventories only, nor how one database is moved to another. It now says so (pg_dump and pg_restore, then
   the new URL in certkit-ca.json on every host), and of the same database that there is nothing to move.
6. A PIN the token refused was said as "The token 'ca' refused the PIN (tokens lock after a few wrong PINs;
   certkit does not retry).", not where that PIN came from: a stale $CERTKIT_PKCS11_PIN in a service's environment
   and the wrong --passphrase-file look the same, and the operator, who must not try PINs at random, could not tell
   which to fix. Every command that unlocks the CA (issue-*, crl, renew, issue-batch --jobs N) and init-ca
   --parent-ca-dir with a token parent now add it: "The PIN it refused was $CERTKIT_PKCS11_PIN's." (the file, standard
   input, $CERTKIT_PARENT_CA_PASSPHRASE, the prompt). So does certkit check, in its key finding.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from test_audit14_team import _crash, _start_again, own_postgres  # noqa: F401 (a fixture)
from test_team_hsm import _real_processes, env_for, init_token_ca  # noqa: F401 (an autouse fixture)

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _serials(token) -> dict[str, str]:
    """Every token's serial, by label, as OpenSC's pkcs11-tool lists them."""
    listed = token.tool("--list-token-slots", login=False).stdout
    return dict(re.findall(r"token label\s*:\s*(\S+)\s*\n(?:.*\n)*?\s*serial num\s*:\s*(\S+)", listed))


# --- 1. a URI naming its token by serial= or slot-id= alone, matching none: each token said with what it has -------
@pytest.fixture
def own_softhsm(softhsm, monkeypatch):
    """A SoftHSM2 of this test alone: the session's holds a token for every test before this one, and the error
    lists every token present (cut when long: in a whole run of the suite the two tokens below were cut off)."""
    from team_hsm import SoftHSM

    hsm = SoftHSM()
    for name, value in hsm.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield hsm
    finally:
        hsm.close()


def test_a_uri_without_token_matching_nothing_says_each_tokens_serial(tmp_path, own_softhsm):
    token = own_softhsm.new_token()
    init_token_ca(tmp_path, token)
    other = own_softhsm.new_token("other")
    serials = _serials(token)
    assert token.label in serials and other.label in serials, serials
    config = tmp_path / "ca" / "certkit-ca.json"
    stored = json.loads(config.read_text())
    env = env_for(tmp_path, token)
    for uri, attribute in (("pkcs11:serial=0123456789abcdef;object=root", "serial=0123456789abcdef"),
                           ("pkcs11:slot-id=999999;object=root", "slot-id=999999")):
        name = attribute.partition("=")[0]
        config.write_text(json.dumps(stored | {"key": uri}))
        for args in (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")],
                     ["crl", "--out", str(tmp_path / "crl.pem")],
                     ["issue-client", "alice", "--out", str(tmp_path / "alice"), "--json"]):
            proc = run_certkit(*args, env=env)
            assert_clean_error(proc, f"the token '{token.label}' is present, but its {name} is ")
            out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
            assert f"the token '{other.label}' is present, but its {name} is " in out, out
            assert f"not the URI's {attribute}" in out and "SOFTHSM2_CONF" not in out, out
            if name == "serial":
                assert serials[token.label] in out and serials[other.label] in out, out
        check = run_certkit("check", "--json", env=env)
        assert check.returncode == 1 and f"the token '{other.label}' is present, but its {name}" in check.stdout
        assert not any((tmp_path / n).exists() for n in ("www", "crl.pem", "alice"))
        # init-ca with such a URI: said the same, nothing generated in any token
        proc = run_certkit("init-ca", "--name", "Second", "--key-uri", uri.replace("root", "second"),
                           "--pkcs11-module", token.module, "--pin-file", token.pin_file,
                           env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "second")))
        assert_clean_error(proc, f"the token '{other.label}' is present, but its {name} is ")
        assert f"the token '{token.label}' is present" in proc.stderr and not (tmp_path / "second").exists()
    assert "second" not in token.tool("--list-objects").stdout
    # The URI naming a token by its real serial still works.
    config.write_text(json.dumps(stored | {"key": f"pkcs11:serial={serials[token.label]};object=root"}))
    assert run_certkit("issue-server", "www.example.internal", "--out", str(tmp_path / "www"), env=env).returncode == 0


# --- 2. a refused key URI in certkit-ca.json: the file first, no parenthesis after the refusal's own ---------------
def test_a_refused_stored_key_uri_names_its_file_without_a_second_parenthesis(tmp_path, token):
    init_token_ca(tmp_path, token)
    config = tmp_path / "ca" / "certkit-ca.json"
    stored = json.loads(config.read_text())
    env = env_for(tmp_path, token)
    cases = ((stored["key"] + "?x-secret=abc", "the PKCS#11 URI has the query attribute 'x-secret', which certkit "
                                              "does not understand (it knows module-path and module-name)."),
             (stored["key"] + ";x-secret=abc", "the PKCS#11 URI has the attribute 'x-secret', which certkit does "
                                              "not understand; it knows: "),
             (stored["key"] + ";label", "attribute 3 of the PKCS#11 URI's path has no '='; write NAME=VALUE "
                                        "(certkit knows: "),
             (f"pkcs11:token={token.label}", f"the PKCS#11 URI 'pkcs11:token={token.label}' names no key; add "
                                             "object=LABEL (or id=)."),
             ("pkcs11:object=root", "the PKCS#11 URI 'pkcs11:object=root' names no token; add token=LABEL (or "
                                    "serial=)."))
    for uri, said in cases:
        config.write_text(json.dumps(stored | {"key": uri}))
        for args in (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")], ["list"],
                     ["crl", "--out", str(tmp_path / "crl.pem")], ["list", "--json"]):
            proc = run_certkit(*args, env=env)
            assert_clean_error(proc, f"Fix the key URI in {config}: {said}")
            out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
            assert ") (" not in out and "abc" not in out, out
        check = run_certkit("check", "--json", env=env)
        assert check.returncode == 1 and f"Fix the key URI in {config}: " in check.stdout, check.stdout
    assert not any((tmp_path / n).exists() for n in ("www", "crl.pem"))


# --- 3. SoftHSM's hint a sentence of its own; a token deleted between runs: said with what to do ---------------------
def test_a_deleted_token_and_an_unloadable_module_are_said_without_a_double_parenthesis(tmp_path, token):
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    junk = tmp_path / "libsofthsm2.so"  # a SoftHSM module by its name, not a library: the hint follows its error
    junk.write_text("not a shared library\n")
    proc = run_certkit("init-ca", "--name", "Junk", "--key-uri", token.uri("junk"), "--pkcs11-module", str(junk),
                       "--pin-file", token.pin_file, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "junk")))
    assert_clean_error(proc, f"The PKCS#11 module {junk} cannot be loaded: PKCS#11 error (")
    assert "). SoftHSM reads its configuration, and the tokendir where its tokens are, from $SOFTHSM2_CONF" \
        in proc.stderr and ") (" not in proc.stderr, proc.stderr
    deleted = subprocess.run(["softhsm2-util", "--delete-token", "--token", token.label], capture_output=True,
                             text=True, timeout=60)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    said = "is present (module "  # then the tokens present (others of this session's SoftHSM, or none)
    for args in (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")],
                 ["crl", "--out", str(tmp_path / "crl.pem")],
                 ["issue-client", "alice", "--out", str(tmp_path / "alice"), "--json"],
                 ["init-ca", "--name", "Sub", "--parent-ca-dir", str(tmp_path / "ca"), "--ca-dir",
                  str(tmp_path / "sub"), "--no-passphrase"]):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, said)
        out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
        assert "). SoftHSM reads its configuration" in out and ") (" not in out, out
        assert out.rstrip().endswith("(an existing CA's is in its certkit-ca.json)."), out
        assert "Plug in or restore the token the URI names (a token deleted is restored from its backup)" in out, out
    check = run_certkit("check", "--json", env=env)
    assert check.returncode == 1 and "). SoftHSM reads its configuration" in check.stdout, check.stdout
    assert ") (" not in check.stdout
    assert not any((tmp_path / n).exists() for n in ("junk", "www", "crl.pem", "alice", "sub"))
    assert run_certkit("list", env=env).returncode == 0  # no key needed: the inventory is read as before


# --- 4. a batch stopped by its server's crash: no "nothing was issued or written" after bundles were ---------------
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_batch_stopped_by_a_server_crash_says_what_it_wrote_and_nothing_else(tmp_path, request, jobs):
    server = request.getfixturevalue("own_postgres")  # a server of this test alone: it is crashed
    url = server.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      **server.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", url, env=env, check=True, subprocess=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.test\n" for i in range(4000)))
    out, marker = tmp_path / "out", tmp_path / "paused"
    from integrity_helpers import start_paused

    # Each chunk pauses once signed, before it is recorded: three chunks go on, the fourth finds the server crashed.
    proc = start_paused(["issue-batch", manifest, "--out-dir", out, "--jobs", jobs],
                        dict(env, CERTKIT_TEST_CHUNK_SIZE="50"), tmp_path, "signed", marker)
    try:
        for _ in range(3):
            marker.unlink()
            deadline = time.monotonic() + 120
            while not marker.exists() or not marker.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.01)
        _crash(server)
        marker.unlink()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    _start_again(server)
    assert proc.returncode == 1 and stdout == "" and "Traceback" not in stderr, stdout + stderr
    assert stderr.startswith("Error: The inventory ") and len(stderr.strip().splitlines()) == 1, stderr
    assert "nothing was issued" not in stderr.lower() and "nothing was changed" not in stderr.lower(), stderr
    assert "try again" not in stderr.lower(), stderr
    written = [folder for folder in out.iterdir() if (folder / "cert.pem").exists()]
    assert len(written) == len(list(out.iterdir())) >= 100
    said = re.search(r"The batch stopped after ([\d,]+) bundles were written and recorded( \(([\d,]+) of them as "
                     r"pending only, until the next command reaches the inventory\))?\. Rerun the same command with "
                     r"--resume to finish it\.$", stderr.strip())
    assert said and int(said.group(1).replace(",", "")) == len(written), (len(written), stderr)
    # Every bundle on disk has its row; those said pending are pending (so may be the last chunk's, whose marks are
    # committed without waiting for the server's disk: settled by their bundles all the same), until list settles them.
    with server.connect(url.rsplit("/", 1)[1]) as conn:
        rows = dict(conn.execute("SELECT serial, status FROM certificates").fetchall())
    from cryptography import x509

    from certkit.vocabulary import serial_hex

    on_disk = {serial_hex(x509.load_pem_x509_certificate((f / "cert.pem").read_bytes()).serial_number)
               for f in written}
    assert on_disk <= set(rows), len(on_disk - set(rows))
    pending = sum(1 for serial in on_disk if rows[serial] == "pending")
    assert pending >= int((said.group(3) or "0").replace(",", "")), (pending, stderr)
    listed = json.loads(run_certkit("list", "--json", env=env, check=True, subprocess=True).stdout)["certificates"]
    assert {c["serial"] for c in listed if c["status"] == "valid"} >= on_disk


# --- 5. migrate of an inventory in PostgreSQL already: said what migrate does, and how a database is moved --------
def test_migrate_of_an_inventory_in_postgresql_already_says_how_to_move_it(tmp_path, postgres_url, postgres_server):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Team CA", "--inventory", postgres_url, env=env, check=True)
    run_certkit("issue-server", "www.example.internal", "--out", str(tmp_path / "www"), env=env, check=True)
    config = (tmp_path / "ca" / "certkit-ca.json").read_bytes()
    other = postgres_server.create_database()
    for args in (["inventory", "migrate", "--to", other], ["inventory", "migrate", "--to", other, "--json"]):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, f"The inventory of {tmp_path / 'ca'} is already in PostgreSQL ({postgres_url}); "
                                 "certkit inventory migrate moves an SQLite inventory only. To move it to ")
        out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
        assert "pg_dump and pg_restore" in out and 'as "inventory" in certkit-ca.json on every host' in out, out
        assert out.rstrip().endswith("nothing was changed."), out
    proc = run_certkit("inventory", "migrate", "--to", postgres_url, env=env)
    assert_clean_error(proc, f"is already in PostgreSQL, in {postgres_url} (certkit-ca.json names it); there is "
                             "nothing to move.")
    assert (tmp_path / "ca" / "certkit-ca.json").read_bytes() == config
    with postgres_server.connect(other.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                            ).fetchone()[0] == 0
    assert len(json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]) == 1


# --- 6. a PIN the token refused: said with where it came from -------------------------------------------------------
def test_a_refused_pin_is_said_with_where_it_came_from(tmp_path, token):
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    run_certkit("issue-server", "old.example.internal", "--out", str(tmp_path / "old"), env=env, check=True)
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("00000000\n")
    wrong.chmod(0o600)
    stale = env | {"CERTKIT_PKCS11_PIN": "11111111"}
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,b1.example.internal\nserver,b2.example.internal\n")
    variable = "The PIN it refused was $CERTKIT_PKCS11_PIN's."
    in_file = f"The PIN it refused was read from the file {wrong}."
    parent = {k: v for k, v in env.items() if k != "CERTKIT_PKCS11_PIN"} | {"CERTKIT_PARENT_CA_PASSPHRASE": "22222222"}
    for args, environment, said in (
            (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")], stale, variable),
            (["crl", "--out", str(tmp_path / "crl.pem"), "--passphrase-file", str(wrong)], env, in_file),
            (["renew", str(tmp_path / "old")], stale, variable),
            (["issue-batch", str(manifest), "--out-dir", str(tmp_path / "batch"), "--jobs", "2"], stale, variable),
            (["issue-client", "alice", "--out", str(tmp_path / "alice"), "--passphrase-file", str(wrong), "--json"],
             stale, in_file),  # the file wins over the variable, and is the one named
            (["init-ca", "--name", "Sub", "--parent-ca-dir", str(tmp_path / "ca"), "--ca-dir", str(tmp_path / "sub"),
              "--no-passphrase"], parent, "The PIN it refused was $CERTKIT_PARENT_CA_PASSPHRASE's.")):
        proc = run_certkit(*args, env=environment)
        assert_clean_error(proc, f"The token '{token.label}' refused the PIN (tokens lock after a few wrong PINs; "
                                 "certkit does not retry).")
        out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
        assert out.rstrip().endswith(said), out
        assert "00000000" not in out and "11111111" not in out and "22222222" not in out, out
    with wrong.open("rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "certkit", "issue-client", "bob", "--out", str(tmp_path / "bob"),
                               "--passphrase-file", "-"], stdin=stdin, capture_output=True, text=True, env=env,
                              timeout=120)
    assert_clean_error(proc, "The PIN it refused was read from standard input.")
    assert not any((tmp_path / n).exists() for n in ("www", "crl.pem", "alice", "bob", "sub")), list(tmp_path.iterdir())
    assert not (tmp_path / "batch").exists() or not any((tmp_path / "batch").iterdir())


def test_check_says_where_a_refused_pin_came_from(tmp_path, token):
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("00000000\n")
    wrong.chmod(0o600)
    for args, environment, said in ((["check", "--json"], env | {"CERTKIT_PKCS11_PIN": "11111111"},
                                     "The PIN it refused was $CERTKIT_PKCS11_PIN's."),
                                    (["check", "--json", "--passphrase-file", str(wrong)], env,
                                     f"The PIN it refused was read from the file {wrong}.")):
        proc = run_certkit(*args, env=environment)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        key = [f for f in json.loads(proc.stdout)["findings"] if f["check"] == "key"]
        assert key[0]["level"] == "error" and "refused the PIN" in key[0]["message"], key
        assert key[0]["message"].endswith(said), key
    assert run_certkit("check", env=env).returncode == 0  # the right PIN: nothing said of where it came from
