"""The twelfth round's bad-input findings (audit badinput12), each as a class:

1. ``export-p12`` never packs a revoked certificate because the place its revocation is known was not
   found: a CA directory given (--ca-dir, $CERTKIT_CA_DIR) that holds no CA is refused as every command
   refuses it, and an inventory of its CA that cannot be read refuses the export;
2. ``probe`` of a name the resolver's codec refuses (an IPv6 zone with an empty part, or one over 63
   bytes) is one ``Error:`` line (or the JSON error), not a traceback;
3. a long value with blanks in it, echoed, is cut like one without: no line of a message is over 1,000
   characters, on the command line and in the library's exceptions, and a message of several lines
   (a manifest's refused lines) keeps its lines;
4. a line break in a value echoed in an error or warning is escaped (``acme serve --host``, init-ca's
   warning about an unencrypted key);
5. ``probe --timeout`` takes the digits 0 to 9 with blanks and tabs only around them, as ``--days`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), **extra)


@pytest.fixture
def revoked(tmp_path: Path) -> tuple[dict, Path, Path]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "P12 CA", "--no-passphrase", env=env, check=True)
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=env, check=True)
    run_certkit("revoke", tmp_path / "bob", env=env, check=True)
    password = tmp_path / "pw"
    password.write_text("a good password\n")
    password.chmod(0o600)
    return env, tmp_path / "bob", password


@pytest.mark.parametrize("where", ["--ca-dir typo", "$CERTKIT_CA_DIR typo", "--ca-dir of a file", "right"])
def test_export_p12_of_a_revoked_certificate_is_refused_wherever_asked(tmp_path: Path, revoked, where) -> None:
    env, bob, password = revoked
    args = ["export-p12", bob, "--password-file", password]
    if where == "--ca-dir typo":
        args += ["--ca-dir", tmp_path / "cs"]
    elif where == "$CERTKIT_CA_DIR typo":
        env = env | {"CERTKIT_CA_DIR": str(tmp_path / "typo")}
    elif where == "--ca-dir of a file":
        args += ["--ca-dir", password]
    proc = run_certkit(*args, env=env)
    said = {"right": "revoked", "--ca-dir of a file": "is a file; give a folder"}.get(where, "No CA in")
    assert_clean_error(proc, said, code=proc.returncode or 1)
    assert proc.returncode in (1, 2) and not (bob / "bundle.p12").exists()


def test_export_p12_refuses_when_its_cas_inventory_cannot_be_read(tmp_path: Path, revoked) -> None:
    env, bob, password = revoked
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    inventory.write_bytes(b"not an inventory at all" * 100)  # damaged, as a failed disk leaves it
    proc = run_certkit("export-p12", bob, "--password-file", password, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("Error: "), proc.stderr
    assert not (bob / "bundle.p12").exists()


def test_export_p12_of_a_bundle_whose_ca_is_elsewhere_still_works(tmp_path: Path, revoked) -> None:
    """A bundle copied to a machine with no CA directory (no --ca-dir, no $CERTKIT_CA_DIR): nothing to ask."""
    _env_, bob, password = revoked
    env = certkit_env(HOME=str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    proc = run_certkit("export-p12", bob, "--password-file", password, env=env)
    assert proc.returncode == 0, proc.stderr
    read = openssl("pkcs12", "-in", bob / "bundle.p12", "-passin", f"file:{password}", "-nokeys", "-clcerts")
    assert read.returncode == 0 and b"BEGIN CERTIFICATE" in read.stdout, read.stderr


@pytest.mark.parametrize("url", ["https://[::1%25a..b]:8443/", "https://[fe80::1%25" + "e" * 64 + "]/"])
@pytest.mark.parametrize("as_json", [False, True])
def test_probe_of_a_name_the_resolver_refuses_is_one_line(tmp_path: Path, url: str, as_json: bool) -> None:
    """A zone the resolver refuses (an empty label, over 63 bytes): since round eighteen a zone is read as
    curl reads it and must name an interface of this machine, so it is refused before any connection, naming
    the zone (it was "Cannot connect to ...: empty or over 63 bytes")."""
    proc = run_certkit("probe", url, *(["--json"] if as_json else []), env=_env(tmp_path), subprocess=True)
    zone = url.split("%25")[1].split("]")[0]
    assert_clean_error(proc, f"names the zone '{zone}'")
    assert "no interface of this machine" in (json.loads(proc.stdout)["error"] if as_json else proc.stderr)


LONG = " ".join(["a"] * 6000)


@pytest.mark.parametrize("args", [["issue-server", LONG], ["issue-client", LONG], ["revoke", LONG], ["probe", LONG],
                                  ["list", "--expiring", LONG], ["crl", "--days", LONG],
                                  ["inspect", LONG], ["issue-batch", LONG]],
                         ids=["issue-server", "issue-client", "revoke", "probe", "list", "crl", "inspect", "batch"])
def test_a_long_value_with_blanks_is_cut_in_the_error_line(tmp_path: Path, args: list[str]) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Long CA", "--no-passphrase", env=env, check=True)
    proc = run_certkit(*args, env=env)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    error = next(line for line in proc.stderr.splitlines() if line.startswith("Error: "))
    assert len(error) <= 1000 + len("Error: "), len(error)
    assert "characters cut" in error or "..." in error, error[:200]


def test_library_messages_are_cut_too() -> None:
    from certkit.ca import CA
    from certkit.errors import CertkitError, InvalidName

    ca = CA.create("Long Lib")
    with pytest.raises(InvalidName) as bad:
        ca.issue_server([LONG])
    assert len(str(bad.value)) <= 1000 and "characters cut" in str(bad.value)
    with pytest.raises(CertkitError) as bad:
        ca.revoke("A" * 100000)
    assert len(str(bad.value)) <= 1000
    # a message of several lines keeps them, each cut on its own
    lines = "\n".join(["first " * 300, "second line", "third " * 300])
    cut = str(CertkitError(lines)).split("\n")
    assert len(cut) == 3 and cut[1] == "second line" and all(len(line) <= 1000 for line in cut)


def test_a_line_break_in_an_echoed_value_is_escaped(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Break CA", "--no-passphrase", env=env, check=True)
    proc = run_certkit("acme", "serve", "--port", "0", "--host", "x\ny", env=env)
    assert_clean_error(proc, "Cannot listen on x\\x0ay")
    folder = tmp_path / "n\nl"
    folder.mkdir()
    made = run_certkit("init-ca", "--name", "Break Two", "--ca-dir", folder, "--no-passphrase", env=env)
    assert made.returncode == 0, made.stderr
    warning = [line for line in made.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "n\\x0al/ca-key.pem" in warning[0] and "can issue certificates" in warning[0], \
        made.stderr


@pytest.mark.parametrize("timeout", ["5\u00a0", "5\u2028", "\x1c5", "\u20035"])
def test_probe_timeout_takes_digits_with_plain_blanks_only(tmp_path: Path, timeout: str) -> None:
    proc = run_certkit("probe", "--timeout", timeout, "https://127.0.0.1:1/", env=_env(tmp_path))
    assert_clean_error(proc, "is not a number of seconds in the digits 0 to 9", code=2)


def test_probe_timeout_with_blanks_and_tabs_is_taken(tmp_path: Path) -> None:
    proc = run_certkit("probe", "--timeout", " 2\t", "https://127.0.0.1:1/", env=_env(tmp_path))
    assert_clean_error(proc, "Cannot connect to 127.0.0.1:1")


def test_export_p12_asks_the_intermediate_a_root_recorded(tmp_path: Path) -> None:
    """badinput13: --ca-dir of the root above the issuing intermediate, or of an unrelated CA, packed a
    keyCompromise-revoked certificate; the root's recorded intermediate is asked."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Export Root", "--no-passphrase", env=env, check=True)
    run_certkit("init-ca", "--name", "Export Int", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root",
                "--no-passphrase", env=env, check=True)
    run_certkit("issue-client", "bob", "--ca-dir", tmp_path / "int", "--out", tmp_path / "bob", env=env, check=True)
    run_certkit("revoke", tmp_path / "bob", "--reason", "keyCompromise", "--ca-dir", tmp_path / "int", env=env,
                check=True)
    password = tmp_path / "pw"
    password.write_text("a good password\n")
    password.chmod(0o600)
    proc = run_certkit("export-p12", tmp_path / "bob", "--password-file", password, "--ca-dir", tmp_path / "root",
                       env=env)
    assert_clean_error(proc, "revoked")
    assert not (tmp_path / "bob" / "bundle.p12").exists()
