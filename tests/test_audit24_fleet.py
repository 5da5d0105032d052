"""Audit round 24, fleet: defects found in issue-batch, list and their siblings, each with its test.

1. ``issue-batch --resume`` kept the bundles of an interrupted batch whatever the rerun asked for: a
   different --key-type or --days (or a manifest edited meanwhile) silently mixed old and new bundles,
   and a kept certificate that had expired since was kept too; the rerun now refuses such a folder,
   saying what differs.
2. A name with a character that shows nothing: a ZERO WIDTH SPACE, SOFT HYPHEN, WORD JOINER or COMBINING
   GRAPHEME JOINER in a DNS name was dropped by UTS 46 without a word (``a<U+200B>b.example.com`` certified
   ``ab.example.com``); a joiner was refused in the idna package's words (``Joiner U+200D not allowed at position
   2 in 'a\u200db'``), the same joiner in a common name as "control characters", in an email address or a URI
   without naming it. Every refusal now names the character by code point and name, and its position, alike in
   the CLI, a manifest and the library.
3. A manifest on standard input was copied (and checked) by LF-ended lines while a file is read with universal
   newlines: an old Mac's CR-only manifest over 64 KiB on stdin was refused as "Line 1 ... is longer than 64 KiB
   ... not the file you meant" (the same file given by name was issued), and a bad byte in it was reported as being
   on line 1, quoting the whole manifest. Standard input now ends lines at CR, LF or CRLF, as a file's reading does.
4. ``list`` on a terminal paged a long table with click's echo_via_pager, which ignores how the pager ended:
   PAGER=false or a failing pager command swallowed the whole list, exit 0, not a word. A pager that is not found
   or fails now leaves a warning naming it, and the list printed without it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography import x509

from certkit.ca import CA
from certkit.errors import InvalidName

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca, bundle, run_in_pty


# --- 1. --resume keeps only bundles the rerun would issue ---------------------------------------------------------
def _manifest(folder: Path, *names: str) -> Path:
    manifest = folder / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,{name}\n" for name in names))
    return manifest


@pytest.mark.parametrize(("first", "rerun", "fragment"), [
    ((), ("--key-type", "rsa-2048"), "its key is ecdsa-p256; the line asks for rsa-2048"),
    (("--key-type", "ed25519"), (), "its key is ed25519; the line asks for ecdsa-p256"),
    (("--days", "90"), ("--days", "30"), "its certificate lives 90 days; the line asks for 30"),
    ((), ("--days", "30"), "its certificate lives 200 days; the line asks for 30"),
])
def test_resume_refuses_a_bundle_of_another_key_type_or_lifetime(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                   first: tuple, rerun: tuple, fragment: str) -> None:
    run_certkit("issue-batch", _manifest(tmp_path, "a.example.com"), "--out-dir", "certs", *first, cwd=tmp_path,
                env=ca_env, check=True)
    manifest = _manifest(tmp_path, "a.example.com", "b.example.com")
    proc = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", *rerun, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, fragment)
    assert "line 2: certs/a.example.com holds a bundle that --resume does not keep" in proc.stderr
    assert not (tmp_path / "certs" / "b.example.com").exists()  # nothing of the rest was issued either
    # the same options as the first run: the bundle is kept and the rest issued
    again = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", *first, cwd=tmp_path, env=ca_env,
                        check=True)
    assert "kept       1 bundle already complete" in again.stdout
    assert (tmp_path / "certs" / "b.example.com" / "cert.pem").is_file()


def test_resume_keeps_a_manifest_key_type_and_lifetime_that_match(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names,key_type,days\nserver,a.example.com,rsa-2048,45\nclient,Alice,ed25519,\n")
    run_certkit("issue-batch", manifest, "--out-dir", "certs", cwd=tmp_path, env=ca_env, check=True)
    with manifest.open("a") as grown:
        grown.write("server,b.example.com,,\n")
    again = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", cwd=tmp_path, env=ca_env,
                        check=True)
    assert "Issued 1 certificate" in again.stdout and "kept       2 bundles" in again.stdout
    manifest.write_text("kind,names,key_type,days\nserver,a.example.com,rsa-2048,46\n")  # edited: another lifetime
    proc = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "its certificate lives 45 days; the line asks for 46")


def test_resume_refuses_a_bundle_whose_certificate_has_expired(tmp_path: Path) -> None:
    ca = backdated_ca(tmp_path / "ca")
    issued = bundle(ca, tmp_path / "certs" / "old.example.com", "old.example.com", days=2, age=3)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("issue-batch", _manifest(tmp_path, "old.example.com", "new.example.com"), "--out-dir", "certs",
                       "--resume", cwd=tmp_path, env=env)
    assert_clean_error(proc, f"its certificate expired on {issued.cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    kept = x509.load_pem_x509_certificate((tmp_path / "certs" / "old.example.com" / "cert.pem").read_bytes())
    assert kept == issued.cert and not (tmp_path / "certs" / "new.example.com").exists()


# --- 2. invisible characters in names are named, never dropped ----------------------------------------------------
INVISIBLE = {"\u200b": "U+200B ZERO WIDTH SPACE", "\u00ad": "U+00AD SOFT HYPHEN", "\u2060": "U+2060 WORD JOINER",
             "\u034f": "U+034F COMBINING GRAPHEME JOINER", "\ufeff": "U+FEFF ZERO WIDTH NO-BREAK SPACE",
             "\u200d": "U+200D ZERO WIDTH JOINER", "\u200c": "U+200C ZERO WIDTH NON-JOINER",
             "\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE"}


@pytest.mark.parametrize("ch", list(INVISIBLE))
def test_an_invisible_character_in_a_name_is_named_alike_everywhere(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                    ch: str) -> None:
    def said(value: str) -> str:
        return f"contains an invisible character ({INVISIBLE[ch]} at position {value.index(ch) + 1})"

    host, email, uri = f"a{ch}b.example.com", f"a{ch}b@example.com", f"spiffe://a{ch}b.example.com/x"
    for args, value in ((("issue-server", host), host), (("issue-client", "bob", "--email", email), email),
                        (("issue-client", "bob", "--uri", uri), uri), (("issue-client", "bob", "--dns", host), host)):
        proc = run_certkit(*args, "--out", "one", cwd=tmp_path, env=ca_env)
        assert_clean_error(proc, said(value))
    manifest = tmp_path / "fleet.jsonl"
    manifest.write_text(f'{{"kind": "server", "names": "{host}"}}\n{{"kind": "client", "names": "A{ch}lice"}}\n'
                        f'{{"kind": "client", "names": "carol", "email": "{email}"}}\n', encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--out-dir", "certs", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"has {3 if not ch.isprintable() else 2} bad lines")
    lines = proc.stderr.splitlines()
    assert lines[1].startswith("  line 1: ") and f"is not a valid DNS name: it {said(host)}" in lines[1]
    if not ch.isprintable():  # a common name keeps what prints (a combining mark): the others it refuses
        assert lines[2].startswith("  line 2: ") and lines[2].endswith(f"' {said('A' + ch)}; a common name cannot.")
    assert lines[-1].startswith("  line 3: ") and lines[-1].endswith(f"not a valid email address: it {said(email)}.")
    assert not (tmp_path / "one").exists() and not (tmp_path / "certs").exists()
    ca = CA.create("library")
    for call, value in ((lambda: ca.issue_server(host), host), (lambda: ca.issue_client("bob", emails=[email]), email),
                        (lambda: ca.issue_client("bob", uris=[uri]), uri)):
        with pytest.raises(InvalidName, match=re.escape(said(value))):
            call()


def test_a_joiner_where_a_script_needs_one_is_still_certified(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """IDNA2008 allows a ZWJ or ZWNJ after a virama (Devanagari): certified as before, the others refused."""
    for joiner, a_label in (("\u200d", "xn--11b2ezcw70k.example"), ("\u200c", "xn--11b2ezcs70k.example")):
        run_certkit("issue-server", f"\u0915\u094d{joiner}\u0937.example", "--out", a_label, cwd=tmp_path,
                    env=ca_env, check=True)
        cert = x509.load_pem_x509_certificate((tmp_path / a_label / "cert.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [a_label]
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--org", "Ac\u200dme", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "--org 'Ac\\u200dme' contains an invisible character (U+200D ZERO WIDTH JOINER at "
                             "position 3); an organization cannot.")
    proc = run_certkit("issue-client", "Acme\x1b[2J", "--out", "esc", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "'Acme\\x1b[2J' contains control characters (U+001B ESCAPE at position 5)")


# --- 3. standard input's lines end as a file's do: CR, LF or CRLF ----------------------------------------------------
def _long_lines(count: int, newline: bytes) -> bytes:
    names = lambda i: " ".join(f"host-{i}-{n:02d}.fleet.example.com" for n in range(30))  # noqa: E731
    return newline.join([b"kind,names", *(f"server,{names(i)}".encode() for i in range(count))]) + newline


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"])
def test_a_cr_only_manifest_on_standard_input_is_read_as_its_file_is(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                     newline: bytes) -> None:
    data = _long_lines(110, newline)
    assert len(data) > 80 * 1024
    proc = run_certkit("issue-batch", "-", "--out-dir", "in", "--json", cwd=tmp_path, env=ca_env, input=data,
                       check=True)
    assert json.loads(proc.stdout)["issued"] == 110
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == sorted(f"host-{i}-00.fleet.example.com"
                                                                          for i in range(110))


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"])
@pytest.mark.parametrize(("bad", "said"), [
    (b"client,Jos\xe9", "is not UTF-8 text: line 4 is 'client,Jos\\xe9'"),
    (b"client,a\0b", "is not text: line 4 holds a NUL byte"),
    (b"server,bad..x", "line 4: 'bad..x' is not a valid DNS name"),
])
def test_a_bad_line_of_standard_input_is_numbered_as_in_its_file(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                 newline: bytes, bad: bytes, said: str) -> None:
    data = newline.join([b"kind,names", b"client,alice", b"server,b.example.com", bad, b"client,carol"]) + newline
    manifest = tmp_path / "fleet.csv"
    manifest.write_bytes(data)
    for source, given in ((manifest, None), ("-", data)):
        proc = run_certkit("issue-batch", source, "--out-dir", "out", cwd=tmp_path, env=ca_env, input=given)
        assert_clean_error(proc, said)
        assert "alice" not in proc.stderr and not (tmp_path / "out").exists()


# --- 4. a pager that fails never swallows the list -------------------------------------------------------------------
@pytest.mark.parametrize(("pager", "said"), [
    ("false", "Warning: the pager 'false' ($PAGER) failed (exit status 1); the list is printed without it."),
    ("sh -c 'exit 3'", "Warning: the pager 'sh -c 'exit 3'' ($PAGER) failed (exit status 3)"),
    ("/nonexistent/pager", "Warning: the pager '/nonexistent/pager' ($PAGER) was not found; the list is printed"),
    ("'unbalanced", "Warning: the pager ''unbalanced' ($PAGER) was not found"),
    ("cat", None),
])
def test_list_prints_the_table_when_the_pager_fails(tmp_path: Path, ca_dir: Path, ca_env: dict, pager: str,
                                                    said: str | None) -> None:
    (tmp_path / "fleet.csv").write_text("kind,names\n" + "".join(f"client,c{i}\n" for i in range(30)))
    run_certkit("issue-batch", "fleet.csv", "--out-dir", "certs", cwd=tmp_path, env=ca_env, check=True)
    code, shown, _ = run_in_pty(["list"], env=ca_env | {"PAGER": pager}, cwd=tmp_path, rows=10, cols=200)
    assert code == 0 and "Traceback" not in shown, shown
    assert "CN=c29" in shown and "30 certificates" in shown, shown
    if said is None:
        assert "Warning" not in shown and shown.count("30 certificates") == 1, shown
    else:
        assert said in shown and shown.index("Warning") < shown.index("SERIAL"), shown


def test_verify_name_names_the_invisible_character(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "ab.example.com", "--out", "web", cwd=tmp_path, env=ca_env, check=True)
    for purpose, name, said in (("client", "Al\u200dice", "U+200D ZERO WIDTH JOINER at position 3"),
                                ("server", "a\u200bb.example.com", "U+200B ZERO WIDTH SPACE at position 2"),
                                ("client", "ex\x1bample", "U+001B ESCAPE at position 3")):
        proc = run_certkit("verify", "web/cert.pem", "--purpose", purpose, "--name", name, cwd=tmp_path, env=ca_env)
        assert_clean_error(proc, f"({said})")
