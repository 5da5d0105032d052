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
"""

from __future__ import annotations

import json
import re
import subprocess

from test_team_hsm import _real_processes, env_for, init_token_ca  # noqa: F401 (an autouse fixture)

from conftest import assert_clean_error, certkit_env, run_certkit


def _serials(token) -> dict[str, str]:
    """Every token's serial, by label, as OpenSC's pkcs11-tool lists them."""
    listed = token.tool("--list-token-slots", login=False).stdout
    return dict(re.findall(r"token label\s*:\s*(\S+)\s*\n(?:.*\n)*?\s*serial num\s*:\s*(\S+)", listed))


# --- 1. a URI naming its token by serial= or slot-id= alone, matching none: each token said with what it has -------
def test_a_uri_without_token_matching_nothing_says_each_tokens_serial(tmp_path, token, softhsm):
    init_token_ca(tmp_path, token)
    other = softhsm.new_token("other")
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
                                              "does not understand (it knows module-path)."),
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
