"""The eleventh round's bad-input findings (audit badinput11), each as a class:

1. a host name the resolver cannot even encode (an empty or 64-byte label: ``db..example.com``) is one line, in a
   PostgreSQL inventory URL and in ``acme serve --host``, not a traceback;
2. a new secret with a NUL byte (which OpenSSL, Java and cryptography take as its end) is refused as the other
   secrets no prompt could give again are, on the command line and in the library (``save_new``,
   ``issued_pkcs12``, which now take a str as UTF-8); a PIN with one is not sent to a token;
3. ``CA.create(not_before=...)`` outside what X.509 can hold is an InvalidLifetime, not a Rust panic;
4. an echoed value of thousands of characters is cut in the Error line;
5. the smaller ones: ``cn=café.example`` finds the A-label subject; a parent folder's line break is escaped;
   a number's invisible blanks (NBSP, U+2028) are refused; a port in other digits in certkit's words;
   ``serve --passphrase-file`` with ``--cert`` is refused (it would do nothing).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--no-passphrase", "--name", "Inputs CA", env=env, check=True)
    return env


@pytest.mark.parametrize("host", ["db..example.com", "a" * 64 + ".example.com"])
def test_a_host_the_resolver_cannot_encode_is_one_line(env, host: str) -> None:
    proc = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"postgresql://certkit@{host}/ca"))
    assert_clean_error(proc, "host name is not valid")
    proc = run_certkit("list", "--json", env=dict(env, CERTKIT_INVENTORY_URL=f"postgresql://certkit@{host}/ca"))
    assert_clean_error(proc, "host name is not valid")
    assert_clean_error(run_certkit("acme", "serve", "--host", host, "--port", "0", env=env), "Cannot listen on")


def _secret_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def test_a_new_secret_with_a_nul_byte_is_refused(env, tmp_path: Path) -> None:
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=env, check=True)
    nul = _secret_file(tmp_path, b"secret\0tail\n")
    assert_clean_error(run_certkit("export-p12", tmp_path / "a", "--password-file", nul, env=env), "NUL byte")
    assert not (tmp_path / "a" / "bundle.p12").exists()
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "nul", "--passphrase-file", nul, env=env)
    assert_clean_error(proc, "NUL byte")
    assert not (tmp_path / "nul").exists()


def test_the_library_refuses_the_secrets_the_command_line_refuses(tmp_path: Path) -> None:
    from certkit import CA, CADirectory
    from certkit.errors import InvalidArgument
    from certkit.pkcs12 import issued_pkcs12

    for number, secret in enumerate(["pw\n", "   ", "\ufeffpw", "x" * 5000, "a\0b"]):
        with pytest.raises(InvalidArgument, match="The passphrase"):
            CADirectory(tmp_path / f"d{number}").save_new(CA.create("X"), secret)
        assert not (tmp_path / f"d{number}").exists()
    issued = CA.create("Y").issue_server(["a.example"])
    for secret in (b"pw\n", b"a\0b", b"\xef\xbb\xbfpw"):
        with pytest.raises(InvalidArgument, match="PKCS#12 password"):
            issued_pkcs12(issued, secret)
    from cryptography.hazmat.primitives.serialization import pkcs12

    assert pkcs12.load_key_and_certificates(issued_pkcs12(issued, "pässword"), "pässword".encode())[1] is not None


@pytest.mark.parametrize("when", [dt.datetime(1949, 12, 31, tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC)])
def test_a_ca_start_x509_cannot_hold_is_an_invalid_lifetime(when: dt.datetime) -> None:
    from certkit import CA
    from certkit.errors import InvalidLifetime

    with pytest.raises(InvalidLifetime, match="RFC 5280"):
        CA.create("Dates", not_before=when)


def test_a_long_echoed_value_is_cut(env, tmp_path: Path) -> None:
    long = "a" * 10000
    for args in (["issue-server", long], ["issue-client", "c", "--dns", long], ["renew", long], ["probe", long]):
        proc = run_certkit(*args, env=env)
        assert proc.returncode != 0 and len(proc.stderr) < 1000, (args[0], len(proc.stderr))
        assert proc.stderr.startswith("Error: ") and "characters)" in proc.stderr
    proc = run_certkit("list", env=dict(env, CERTKIT_CA_DIR="A" * 100000))
    assert proc.returncode != 0 and len(proc.stderr) < 1000


def test_the_smaller_ones(env, tmp_path: Path) -> None:
    run_certkit("issue-server", "café.example", "--out", tmp_path / "c", env=env, check=True)
    assert "1 certificate" in run_certkit("list", "--name", "cn=café.example", env=env).stdout
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "n", "--no-passphrase", "--parent-ca-dir", "a\nb", env=env)
    assert_clean_error(proc, "cannot be used")
    assert len(proc.stderr.splitlines()) == 1
    for days in ("7\u00a0", "\u20037", "7\u2028"):
        assert_clean_error(run_certkit("issue-server", "v.example", "--days", days, env=env), "digits 0 to 9", code=2)
    assert_clean_error(run_certkit("list", "--expiring", "30\u2028d", env=env), "--expiring", code=2)
    assert_clean_error(run_certkit("probe", "127.0.0.1:\uff14\uff14\uff13", env=env), "digits 0 to 9")
    run_certkit("issue-server", "localhost", "--out", tmp_path / "s", env=env, check=True)
    secret = _secret_file(tmp_path, PASSPHRASE.encode())
    proc = run_certkit("serve", "--port", "0", "--cert", tmp_path / "s" / "fullchain.pem", "--key",
                       tmp_path / "s" / "privkey.pem", "--passphrase-file", secret, env=env)
    assert_clean_error(proc, "opens none", code=2)
