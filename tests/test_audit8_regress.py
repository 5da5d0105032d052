"""Audit round eight, regressions of round seven's fixes (report regress9), each as a class:

2. --force over a bundle of another CA's certificate is said by every writer of folders: renew --out --force,
   issue-batch --force and the library's IssuedCert.write(force=True) (only issue-server/-client/sign-csr said it);
4. the --reuse-key refusal suggests a URI that names a new object in the same token (it renamed the token when
   the token and the key shared a label, and repeated a %-escaped URI as it was);
5. init-ca over an existing intermediate: the revoke command it prints survives a path with a space, it says how
   many certificates revoking would invalidate, and the date it gives is the certificate's start, said as such;
6. SoftHSM's configuration hint also comes when $SOFTHSM2_CONF names a folder or another file (no token found);
7. a Ctrl-C while certkit loads its commands is "Interrupted.", exit 130, no traceback.
"""

from __future__ import annotations

import json
import shlex
import warnings

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


@pytest.fixture
def two_tier(tmp_path):
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Root R", "--ca-dir", tmp_path / "my root", env=env, check=True)
    run_certkit("init-ca", "--name", "Inter I", "--ca-dir", tmp_path / "inter", "--parent-ca-dir",
                tmp_path / "my root", env=env, check=True)
    return tmp_path, env


def _roots_serial(env, tmp_path, name: str, folder) -> str:
    proc = run_certkit("issue-server", name, "--out", folder, "--ca-dir", tmp_path / "my root", "--json", env=env,
                       check=True)
    return json.loads(proc.stdout)["serial"]


# --- 2. --force over another CA's bundle, said by every writer ---------------------------------------------------
def test_force_over_another_cas_bundle_is_said_by_every_writer(two_tier):
    tmp_path, env = two_tier
    inter = ["--ca-dir", tmp_path / "inter"]
    run_certkit("issue-server", "s1.example", "--out", tmp_path / "leaf1", *inter, env=env, check=True)
    renewed_over = _roots_serial(env, tmp_path, "f2.example", tmp_path / "f2")
    proc = run_certkit("renew", tmp_path / "leaf1", "--out", tmp_path / "f2", "--force", *inter, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"held certificate {renewed_over} of another CA (CN=Root R)" in proc.stdout, proc.stdout
    batched_over = _roots_serial(env, tmp_path, "web.example", tmp_path / "bd" / "web")
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,web.example,web\n")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "bd", "--force", *inter, env=env)
    assert proc.returncode == 0 and f"held certificate {batched_over} of another CA" in proc.stdout, proc.stdout
    data = json.loads(run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "bd", "--force", "--json", *inter,
                                  env=env, check=True).stdout)
    assert data["foreign_replaced"] == []  # the folder holds this CA's certificate now
    written_over = _roots_serial(env, tmp_path, "f3.example", tmp_path / "f3")
    from certkit import CADirectory

    ca = CADirectory(tmp_path / "inter").load(PASSPHRASE.encode())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ca.issue_server(["api.example"]).write(tmp_path / "f3", force=True)
    assert [str(w.message) for w in caught if written_over in str(w.message)], [str(w.message) for w in caught]


# --- 5. init-ca over an existing intermediate --------------------------------------------------------------------
def test_init_ca_over_an_intermediate_gives_a_command_that_runs(two_tier):
    tmp_path, env = two_tier
    for i in range(3):
        run_certkit("issue-server", f"s{i}.example", "--out", tmp_path / f"leaf{i}", "--ca-dir", tmp_path / "inter",
                    env=env, check=True)
    proc = run_certkit("init-ca", "--name", "Inter I", "--ca-dir", tmp_path / "inter", "--parent-ca-dir",
                       tmp_path / "my root", env=env)
    assert_clean_error(proc, "(CN=Inter I, valid from ")
    assert "it has issued 3 valid certificates, which revoking it invalidates" in proc.stderr
    command = shlex.split(proc.stderr.strip().split("then remove it: ", 1)[1])
    assert command[:2] == ["certkit", "revoke"] and command[command.index("--ca-dir") + 1] == str(tmp_path / "my root")
    dry = run_certkit(*command[1:], "--help", env=env)  # parses: the path is one argument
    assert dry.returncode == 0, dry.stderr


# --- 7. a Ctrl-C while the commands load ---------------------------------------------------------------------------
def test_a_ctrl_c_while_certkit_loads_is_said_in_words(monkeypatch, capsys):
    import builtins

    from certkit import entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "certkit.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert entry.main(["serve", "--port", "0"]) == 130
    assert capsys.readouterr().err == "Interrupted.\n"


# --- 4 and 6: a token ------------------------------------------------------------------------------------------------
def _token_ca(tmp_path, token, folder: str, uri: str, *extra: str):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / folder), CERTKIT_PKCS11_PIN=token.pin)
    return run_certkit("init-ca", "--name", folder, "--key-uri", uri, "--pkcs11-module", token.module, *extra,
                       env=env)


def test_reuse_key_refusal_suggests_a_uri_that_works(tmp_path, token):
    for first_uri in (token.uri(token.label), token.uri("root%20key")):  # the token's own label; an escaped one
        folder = f"a{len(list(tmp_path.iterdir()))}"
        assert _token_ca(tmp_path, token, folder, first_uri).returncode == 0
        refused = _token_ca(tmp_path, token, folder + "b", first_uri)
        assert_clean_error(refused, "already signs the CA")
        suggested = refused.stderr.split("--key-uri '", 1)[1].split("'", 1)[0]
        assert suggested != first_uri and f"token={token.label};" in suggested, suggested
        followed = _token_ca(tmp_path, token, folder + "c", suggested, "--json")
        assert followed.returncode == 0 and json.loads(followed.stdout)["key_generated"] is True, followed.stderr


def test_softhsm_hint_when_its_configuration_shows_no_token(tmp_path, token):
    assert _token_ca(tmp_path, token, "ca", token.uri("hint")).returncode == 0
    other = tmp_path / "other.conf"
    other.write_text("directories.tokendir = " + str(tmp_path / "empty") + "\n")
    (tmp_path / "empty").mkdir()
    for conf in (str(tmp_path / "empty"), str(other)):
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin, SOFTHSM2_CONF=conf)
        proc = run_certkit("issue-server", "h.example", "--out", tmp_path / "h", env=env, subprocess=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"from $SOFTHSM2_CONF, here {conf}" in proc.stderr, proc.stderr
        assert not (tmp_path / "h").exists()
