"""RFC 7512's ``?module-name=``, against a real SoftHSM2: the module a name stands for, found as p11-kit finds it
(softhsm2 registers /usr/share/p11-kit/modules/softhsm2.module), used when no module path is given.

Before: certkit accepted module-name and ignored it: ``--key-uri 'pkcs11:token=ca;object=root?module-name=softhsm2'``
was told that no module was named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_error, certkit_env, openssl, run_certkit

REGISTERED = Path("/usr/share/p11-kit/modules/softhsm2.module")


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")  # a PKCS#11 login belongs to a process


def _init(tmp_path: Path, token, uri: str, *args: str, home: Path | None = None):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home or tmp_path / "home"))
    return run_certkit("init-ca", "--name", "Named Module CA", "--key-uri", uri, "--pin-file", token.pin_file,
                       *args, env=env)


def test_a_module_named_as_p11_kit_registers_it_makes_a_ca_that_signs(tmp_path, token):
    if not REGISTERED.is_file():
        pytest.skip("SoftHSM2 is not registered with p11-kit here")
    made = _init(tmp_path, token, token.uri("root") + "?module-name=softhsm2")
    assert made.returncode == 0, made.stderr
    kept = json.loads((tmp_path / "ca" / "certkit-ca.json").read_text())
    assert Path(kept["pkcs11_module"]).resolve() == Path(token.module).resolve()  # the library, kept for later
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("issue-server", "web.internal", cwd=tmp_path, env=env, check=True)
    checked = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "ca" / "ca.pem",
                      tmp_path / "web.internal" / "cert.pem")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_module_the_user_registers_is_found_in_their_own_p11_kit_folder(tmp_path, token):
    home = tmp_path / "home"
    registry = home / ".config" / "pkcs11" / "modules"
    registry.mkdir(parents=True)
    (registry / "team-hsm.module").write_text(f"# the team's HSM\nmodule: {token.module}\npriority: 1\n")
    made = _init(tmp_path, token, token.uri("root") + "?module-name=team-hsm", "--json", home=home)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["key_generated"] is True


@pytest.mark.parametrize("name, said", [
    ("no-such-hsm", "No PKCS#11 module named no-such-hsm"),
    ("..%2Fetc%2Fpasswd", "is not a module's name"),
    ("%2Fusr%2Flib%2Fsofthsm%2Flibsofthsm2.so", "is not a module's name"),
])
def test_a_name_that_stands_for_no_module_is_one_error_before_anything(tmp_path, token, name, said):
    made = _init(tmp_path, token, token.uri("root") + f"?module-name={name}")
    assert_clean_error(made, said)
    if "No PKCS#11 module named" in said:
        assert "?module-path=PATH or --pkcs11-module PATH" in made.stderr
    assert not (tmp_path / "ca").exists()
    listed = token.tool("--list-objects")
    assert "root" not in listed.stdout, listed.stdout  # no key generated


def test_a_name_and_another_module_given_are_refused_and_the_same_one_is_not(tmp_path, token):
    if not REGISTERED.is_file():
        pytest.skip("SoftHSM2 is not registered with p11-kit here")
    copy = tmp_path / "other" / "libsofthsm2.so"  # the same code, another module file
    copy.parent.mkdir()
    shutil.copy(token.module, copy)
    uri = token.uri("root") + "?module-name=softhsm2"
    refused = _init(tmp_path, token, uri, "--pkcs11-module", str(copy))
    assert_clean_error(refused, "must be the same module")
    assert not (tmp_path / "ca").exists()
    made = _init(tmp_path, token, uri, "--pkcs11-module", token.module)
    assert made.returncode == 0, made.stderr
