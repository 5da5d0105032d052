"""Audit round sixteen, the library as trustme's users use it (docs/library.md).

1. ``from certkit import CA`` (the import docs/library.md and the package docstring teach) gave mypy
   and pyright ``Any``: the lazy module ``__getattr__`` had no annotation, so ``py.typed`` checked nothing
   through it. ``CA.create("x").issue_server(5)`` passed ``mypy --strict``. The package now names its
   classes for type checkers (without importing them at run time), so mypy sees the real signatures.
2. A CA made in memory records nothing until ``CADirectory(path).save_new(ca, ...)``, and what it had
   signed before that stayed unknown to the directory's inventory for good: ``certkit revoke SERIAL`` of a
   certificate (or of an intermediate!) it issued said "No certificate of this CA matches", so no CRL could
   ever list it; ``certkit list`` and ``check`` showed none of them, ``certkit renew FOLDER`` blamed "an
   inventory restored from an older backup". ``save_new`` now records them (valid; an intermediate saved
   already, in its directory), and the objects still held are told, so a later ``write()`` records its folder.
3. A secret given as the wrong type was quoted in the TypeError, and so in every traceback and CI log:
   ``save_new(ca, [passphrase])`` said ``got list ['hunter2...']``, ``issued_pkcs12(cert, bytearray(pw))``
   printed the password, a raw Ed25519 key passed as ``key=`` showed its first 14 bytes, an extra file's
   content of the wrong type the start of a traditional EC key. They are named by their type alone now.
4. ``describe_certificate`` (docs/inspect.md's "From Python") and ``verify_certificate`` given what the library
   hands out, an ``IssuedCert`` (or a CA, or a PEM), failed deep inside with ``AttributeError: 'IssuedCert'
   object has no attribute 'not_valid_before_utc'`` (``roots=[ca]``: ``'CA' object has no attribute
   'subject'``), a naive ``now`` with "can't compare offset-naive and offset-aware datetimes". They take an
   IssuedCert or a CA for its certificate now, and say any other type as the WrongType the docs promise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit

REPO = Path(__file__).resolve().parent.parent


# --- finding 1: the documented import is typed ----------------------------------------------------------
def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    (tmp_path / "user.py").write_text(textwrap.dedent(source))
    # certkit is read from this checkout (an editable install is a path hook mypy cannot follow); its own
    # code is not what is checked here, the user's script is.
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n[mypy-certkit.*]\nignore_errors = True\n")
    env = dict(os.environ, MYPYPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
                           "--cache-dir", os.devnull, "--show-error-codes", "user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_documented_import_is_checked_by_mypy(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, """
        import ssl

        from certkit import CA, CADirectory, CertkitError, IssuedCert

        reveal_type(CA)
        ca = CA.create("Test CA")
        server: IssuedCert = ca.issue_server(["localhost", "127.0.0.1"])
        context: ssl.SSLContext = ca.server_context(server)
        reveal_type(server.private_key_pem)
        reveal_type(CADirectory("ca").open())
        reveal_type(CertkitError("x"))
        ca.issue_server(5)
        wrong: str = ca.client_context()
    """)
    out = checked.stdout
    assert 'Revealed type is "def (cert:' in out and "-> certkit.ca.CA" in out, out
    assert 'Revealed type is "bytes | None"' in out, out
    assert 'Revealed type is "certkit.ca.CA"' in out, out
    assert 'Revealed type is "certkit.errors.CertkitError"' in out, out
    assert 'Argument 1 to "issue_server" of "CA" has incompatible type "int"' in out, out
    assert 'expression has type "SSLContext", variable has type "str"' in out, out
    assert "Found 2 errors in 1 file" in out, out


def test_importing_certkit_stays_lazy() -> None:
    import certkit

    assert set(certkit.__all__) == {"__version__", *certkit._LAZY}
    started = subprocess.run([sys.executable, "-c", "import sys, certkit; print(sorted(m for m in sys.modules "
                              "if m.startswith(('certkit.', 'cryptography'))))"],
                             capture_output=True, text=True, timeout=120, check=True)
    assert started.stdout.strip() == "[]", started.stdout


# --- finding 2: what a CA signed in memory is recorded when it is saved ----------------------------------
def test_what_a_ca_signed_before_it_was_saved_can_be_listed_and_revoked(tmp_path: Path) -> None:
    import json

    from certkit import CA, CADirectory
    from certkit.errors import AlreadyRevoked
    from certkit.issuing import FolderTarget, deliver, server_request

    root = CA.create("Saved Later")
    early = root.issue_server("early.example")  # held by the caller
    root.issue_client("dropped")  # not held: still signed, still to be recorded
    delivered = deliver(root, server_request(["www.example"]), FolderTarget(str(tmp_path / "www"))).issued
    inter = CA.create("Saved Later Issuing", parent=root)
    leaf = inter.issue_server("leaf.example")
    CADirectory(str(tmp_path / "inter")).save_new(inter, PASSPHRASE)  # saved first, no parent given
    CADirectory(str(tmp_path / "root")).save_new(root, PASSPHRASE)
    later = root.issue_client("after")

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    listed = run_certkit("list", "--json", env=env, cwd=tmp_path, check=True, subprocess=True)
    rows = {row["subject"]: row for row in json.loads(listed.stdout)["certificates"]}
    assert set(rows) == {"CN=early.example", "CN=dropped", "CN=www.example", "CN=Saved Later Issuing",
                         "CN=after"}, rows
    assert {rows[s]["status"] for s in rows} == {"valid"}
    assert rows["CN=www.example"]["folder"] == str(tmp_path / "www")
    assert rows["CN=www.example"]["serial"] == delivered.serial_hex
    assert rows["CN=Saved Later Issuing"]["folder"] == str(tmp_path / "inter")
    assert rows["CN=early.example"]["serial"] == early.serial_hex
    assert rows["CN=after"]["serial"] == later.serial_hex
    inter_rows = run_certkit("list", "--json", "--ca-dir", tmp_path / "inter", env=env, cwd=tmp_path, check=True,
                             subprocess=True)
    assert [r["serial"] for r in json.loads(inter_rows.stdout)["certificates"]] == [leaf.serial_hex]
    checked = run_certkit("check", env=env, cwd=tmp_path, subprocess=True)
    assert checked.returncode == 0 and "5 certificates recorded" in checked.stdout, checked.stdout

    # Revoked by the command line, listed by the CRL, refused by openssl.
    for serial in (early.serial_hex, inter.cert.serial_number):
        run_certkit("revoke", format(serial, "X") if isinstance(serial, int) else serial, "--reason",
                    "keyCompromise", env=env, cwd=tmp_path, check=True, subprocess=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, cwd=tmp_path, check=True, subprocess=True)
    (tmp_path / "early.pem").write_bytes(early.cert_pem)
    refused = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "root" / "ca.pem"),
                              "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "early.pem")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr, refused
    (tmp_path / "inter.pem").write_bytes(inter.cert_pem)
    refused = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "root" / "ca.pem"),
                              "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "inter.pem")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr, refused
    # The object held is told: its CA's inventory now says revoked, so it is not written.
    with pytest.raises(AlreadyRevoked):
        early.write(str(tmp_path / "early"))
    assert not (tmp_path / "early").exists()


def test_a_certificate_issued_before_saving_and_written_after_is_renewed_in_its_folder(tmp_path: Path) -> None:
    import json

    from certkit import CA, CADirectory

    ca = CA.create("Saved Later")
    server = ca.issue_server("soon.example", days=10)
    CADirectory(str(tmp_path / "ca")).save_new(ca, PASSPHRASE)
    server.write(str(tmp_path / "soon"))
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("renew", "--expiring", "30d", env=env, cwd=tmp_path, check=True, subprocess=True)
    listed = json.loads(run_certkit("list", "--json", env=env, cwd=tmp_path, check=True, subprocess=True).stdout)
    renewed = [r for r in listed["certificates"] if r["renewed_from"] == server.serial_hex]
    assert len(renewed) == 1 and renewed[0]["folder"] == str(tmp_path / "soon"), listed
    on_disk = (tmp_path / "soon" / "cert.pem").read_bytes()
    assert on_disk != server.cert_pem


# --- finding 3: a secret of the wrong type is not quoted in the error ------------------------------------
SECRET = "hunter2-correct-horse"


def _secret_calls(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from certkit import CA, CADirectory
    from certkit.pkcs12 import issued_pkcs12

    ca = CA.create("Secrets")
    server = ca.issue_server("localhost")
    raw = ed25519.Ed25519PrivateKey.generate().private_bytes_raw()
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    CADirectory(str(tmp_path / "ca")).save_new(CA.create("Locked"), PASSPHRASE)
    locked = CADirectory(str(tmp_path / "ca")).open()
    return {
        "save_new [passphrase]": ([SECRET], lambda: CADirectory(str(tmp_path / "n")).save_new(ca, [SECRET])),
        "save_new {passphrase}": ({"pw": SECRET}, lambda: CADirectory(str(tmp_path / "n")).save_new(ca, {"p": SECRET})),
        "unlock (passphrase,)": ((SECRET,), lambda: locked.unlock((SECRET,))),
        "unlock callable -> list": ([SECRET], lambda: locked.unlock(lambda: [SECRET])),
        "issued_pkcs12 (password,)": ((SECRET,), lambda: issued_pkcs12(server, (SECRET,))),
        "issued_pkcs12 [password]": ([SECRET], lambda: issued_pkcs12(server, [SECRET])),
        "issue_client raw key": (raw, lambda: ca.issue_client("alice", key=raw)),
        "CA.create PEM key": (sec1, lambda: CA.create("Other", key=sec1)),
        "CA(cert, PEM key)": (sec1, lambda: CA(ca.cert, sec1)),
        "write extra content str": (sec1, lambda: server.write(str(tmp_path / "w"), extra={"tls.key": sec1.decode()})),
        "write extra pairs": (sec1, lambda: server.write(str(tmp_path / "w"), extra=[("tls.key", sec1)])),
    }


def _fragments(secret) -> list[str]:
    """Pieces of ``secret`` as a message could show them: its text, its repr, 8-byte runs of its bytes."""
    if isinstance(secret, (list, tuple)):
        secret = secret[0]
    if isinstance(secret, dict):
        secret = next(iter(secret.values()))
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    body = b"".join(data.splitlines()[1:-1]) if data.startswith(b"-----") else data  # a PEM's base64 body
    runs = [body[i:i + 8] for i in range(0, max(1, len(body) - 8), 4)]
    return [repr(run)[2:-1] for run in runs] + [run.decode("latin-1") for run in runs]


@pytest.mark.parametrize("call", ["save_new [passphrase]", "save_new {passphrase}", "unlock (passphrase,)",
                                  "unlock callable -> list", "issued_pkcs12 (password,)", "issued_pkcs12 [password]",
                                  "issue_client raw key", "CA.create PEM key", "CA(cert, PEM key)",
                                  "write extra content str", "write extra pairs"])
def test_a_secret_of_the_wrong_type_is_named_by_its_type_alone(tmp_path: Path, call: str) -> None:
    from certkit.errors import WrongType

    secret, attempt = _secret_calls(tmp_path)[call]
    with pytest.raises(WrongType) as refused:
        attempt()
    said = f"{refused.value!s} {refused.value!r}"
    assert "(not shown: it may be a secret)" in said, said
    leaked = [piece for piece in _fragments(secret) if piece in said]
    assert not leaked, (said, leaked)
    assert not (tmp_path / "n").exists() and not (tmp_path / "w").exists()


def test_a_traceback_of_a_wrong_passphrase_type_shows_no_secret(tmp_path: Path) -> None:
    script = ("import os\nfrom certkit import CA, CADirectory\n"
              "CADirectory('ca').save_new(CA.create('T'), [os.environ['THE_SECRET']])\n")
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(certkit_env(HOME=str(tmp_path)), THE_SECRET=SECRET))
    assert ran.returncode == 1 and "WrongType: The passphrase must be bytes" in ran.stderr, ran.stderr
    assert SECRET not in ran.stderr + ran.stdout


# --- finding 4: the describing and verifying functions take what the library hands out ---------------------
def test_verify_and_describe_take_issued_certificates_and_agree_with_openssl(tmp_path: Path) -> None:
    from certkit import CA
    from certkit.inspect import describe_certificate
    from certkit.verify import verify_certificate

    root = CA.create("Root")
    issuing = CA.create("Issuing", parent=root)
    server, client = issuing.issue_server("www.example"), issuing.issue_client("alice")
    (tmp_path / "root.pem").write_bytes(root.cert_pem)
    (tmp_path / "chain.pem").write_bytes(server.chain_pem)
    for issued, purpose, right, wrong in ((server, "server", "sslserver", "sslclient"),
                                          (client, "client", "sslclient", "sslserver")):
        (tmp_path / "leaf.pem").write_bytes(issued.cert_pem)
        for openssl_purpose, expected in ((right, True), (wrong, False)):
            said = subprocess.run(["openssl", "verify", "-purpose", openssl_purpose, "-CAfile",
                                   str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "chain.pem"),
                                   str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=60)
            asked = purpose if expected else {"server": "client", "client": "server"}[purpose]
            verdict = verify_certificate(issued, purpose=asked, roots=root, intermediates=[issuing])
            assert verdict.valid is expected is (said.returncode == 0), (verdict, said.stdout, said.stderr)
        described = describe_certificate(issued)  # in the words the object itself uses
        assert described["serial"] == issued.serial_hex and described["kind"] == issued.kind == purpose
        assert described["fingerprint_sha256"] == issued.fingerprint_sha256
        assert [f"{n['type']}:{n['value']}" for n in described["subject_alt_names"]] == issued.san_text
    assert verify_certificate(client, purpose="client", roots=[issuing]).chain == ["CN=alice", "CN=Issuing"]
    assert describe_certificate(root)["kind"] == "ca"


@pytest.mark.parametrize("call,named", [
    (lambda s, ca: __import__("certkit.inspect").inspect.describe_certificate(s.cert_pem), "cert"),
    (lambda s, ca: __import__("certkit.inspect").inspect.describe_certificate(None), "cert"),
    (lambda s, ca: __import__("certkit.verify").verify.verify_certificate(s.cert_pem, purpose="server", roots=[ca]),
     "leaf"),
    (lambda s, ca: __import__("certkit.verify").verify.verify_certificate(s, purpose="server", roots="ca.pem"),
     "roots"),
    (lambda s, ca: __import__("certkit.verify").verify.verify_certificate(s, purpose="server", roots=None), "roots"),
    (lambda s, ca: __import__("certkit.verify").verify.verify_certificate(s, purpose="server", roots=[ca],
                                                                          intermediates=[b"x"]), "intermediates"),
    (lambda s, ca: __import__("certkit.verify").verify.verify_certificate(s, purpose="server", roots=[ca],
                                                                          name=b"x.example"), "name"),
])
def test_a_wrong_certificate_argument_is_a_type_error_naming_it(call, named: str) -> None:
    from certkit import CA
    from certkit.errors import WrongType

    ca = CA.create("Root")
    with pytest.raises(WrongType, match=f"^{named} must be "):
        call(ca.issue_server("x.example"), ca)


def test_a_naive_now_is_refused_in_words() -> None:
    import datetime as dt

    from certkit import CA
    from certkit.errors import InvalidLifetime
    from certkit.inspect import describe_certificate
    from certkit.verify import verify_certificate

    ca = CA.create("Root")
    server = ca.issue_server("x.example")
    for call in (lambda: describe_certificate(server, now=dt.datetime(2027, 1, 1)),
                 lambda: verify_certificate(server, purpose="server", roots=[ca], now=dt.datetime(2027, 1, 1))):
        with pytest.raises(InvalidLifetime, match="^now must be timezone-aware"):
            call()
