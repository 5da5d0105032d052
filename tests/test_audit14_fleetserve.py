"""Audit round fourteen, fleetserve14: fleets and the serve page, each finding as a class.

1. ``--name`` globs typed in Unicode inside a label (``'bü*'``, ``'*ücher.example'``, ``'[bc]ücher.example'``)
   matched nothing, because names are stored as A-labels (``xn--bcher-kva.example``) and only labels without
   glob characters were converted: ``list --name`` said "No certificates match" and a cron's
   ``renew --expiring 30d --name 'bü*'`` renewed nothing, exit 0, while the certificate expired.
2. ``certkit serve`` chose its answer by substring, not by the Accept header's q-values: ``application/json;q=0,
   text/html`` (JSON refused) got JSON, ``text/plain, application/json;q=0.5`` got JSON, and
   ``application/json-seq`` got ``application/json``.
3. renew.md said hooks written for certbot run unchanged; certbot's folder always has ``chain.pem``, certkit's
   only under an intermediate CA, so a certbot hook that copies ``chain.pem`` fails under a root.
4. jsonl and k8s outputs named as compressed files (``secrets.yaml.gz``, ``fleet.jsonl.zst``, also as ``> FILE``)
   were written uncompressed (``zcat``/``kubectl`` fail on them), where tar refused such names; and a tar named
   ``.zip`` or ``.7z`` was written. All refused now, before anything is signed.
5. ``--exec-once`` could not start once the renewed folders, one per line, passed 128 KiB (Linux's limit for one
   environment variable: a few thousand bundles): ``could not run it: Argument list too long``, exit 1, and the
   reload never ran. The list is also in ``$CERTKIT_FOLDERS_FILE`` now; ``CERTKIT_FOLDERS`` is left out (with a
   warning) when it cannot fit, and the hook runs.
6. serve.md said ``--optional`` sends no session tickets; in TLS 1.3 it sends two (pyOpenSSL cannot set their
   number to 0), which resume nothing. The page says so now; the test checks both on the wire.
7. a certificate not yet valid (issued to begin later: the library's ``not_before``, or a clock behind) was in
   ``list --expiring`` (which list.md defines as valid certificates) and a bulk renewal (``--expiring``, ``--all``)
   renewed it starting now, pulling its planned start forward. Both leave it alone now.
8. (docs) probe.md's list of when ``client_certificate.accepted`` is null lacked "not sent" (which is null:
   tests/test_audit13_probe.py); renew.md's bulk synopsis lacked ``--key-type``, which bulk ``--rekey`` takes.

Two tests pass on the old code too, as guards of the fixes' edges: a Unicode glob still matches only what it
says (``test_unicode_glob_still_matches_only_what_it_says``), and plain output names are still written
(``test_plain_names_are_still_written``).
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, run_certkit
from serve_process import serving


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    run_certkit("init-ca", "--name", "Fleet14 CA", env=env, check=True)
    return env


# --- 1: a Unicode glob matches the names issued in Unicode ----------------------------------------------------------
@pytest.mark.parametrize(("glob", "kinds"), [("bü*", ["server"]), ("BÜ*", ["server"]),
                                             ("*ücher.example", ["client", "server"]),
                                             ("[bc]ücher.example", ["server"]), ("*@bü*", ["client"]),
                                             ("CN=bü*", ["server"])])
def test_unicode_glob_finds_names_issued_in_unicode(tmp_path: Path, fleet: dict, glob: str, kinds: list):
    run_certkit("issue-server", "bücher.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    run_certkit("issue-client", "kim", "--email", "kim@bücher.example", "--days", "10", env=fleet, cwd=tmp_path,
                check=True)
    run_certkit("issue-server", "other.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    listed = json.loads(run_certkit("list", "--name", glob, "--json", env=fleet, check=True).stdout)
    assert sorted(c["kind"] for c in listed["certificates"]) == kinds, listed
    assert listed["total"] == len(kinds)
    ran = run_certkit("renew", "--expiring", "30d", "--name", glob, "--days", "60", "--json", env=fleet, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["renewed"] == len(kinds), report
    wanted = {"server": "DNS:xn--bcher-kva.example", "client": "email:kim@xn--bcher-kva.example"}
    assert {c["names"][0] for c in report["certificates"]} == {wanted[k] for k in kinds}


def test_unicode_glob_still_matches_only_what_it_says(tmp_path: Path, fleet: dict):
    run_certkit("issue-server", "bücher.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    for glob in ("zü*", "bü", "ü*"):
        assert run_certkit("list", "--name", glob, env=fleet).stdout.strip() == "No certificates match.", glob
    assert "1 certificate" in run_certkit("list", "--name", "xn--bcher*", env=fleet, check=True).stdout


# --- 2: serve reads Accept's q-values -----------------------------------------
ACCEPTS = [
    ("application/json;q=0, text/html", "text/html"),
    ("text/plain, application/json;q=0.5", "text/plain"),
    ("application/json-seq", "text/plain"),
    ("text/html;q=0.1, application/json", "application/json"),
    ("application/json, */*;q=0.5", "application/json"),  # httpie
    ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", "text/html"),
    ("*/*", "text/plain"),
    ("text/*", "text/plain"),
    ("", "text/plain"),
    ("Application/JSON", "application/json"),
    ("text/html, application/json", "application/json"),
]


def test_serve_answers_by_accept_q_values(tmp_path: Path, fleet: dict):
    run_certkit("issue-server", "localhost", "127.0.0.1", env=fleet, cwd=tmp_path, check=True)
    ca = Path(fleet["CERTKIT_CA_DIR"]) / "ca.pem"
    with serving("--optional", "--cert", tmp_path / "localhost" / "fullchain.pem", "--key",
                 tmp_path / "localhost" / "privkey.pem", env=fleet, cwd=tmp_path) as srv:
        context = ssl.create_default_context(cafile=str(ca))
        got = []
        for accept, _wanted in ACCEPTS:
            conn = http.client.HTTPSConnection("localhost", srv.port, context=context, timeout=20)
            conn.request("GET", "/", headers={"Accept": accept} if accept else {})
            answer = conn.getresponse()
            body = answer.read().decode()
            conn.close()
            assert answer.status == 403  # --optional without a certificate
            ctype = answer.getheader("Content-Type").split(";")[0]
            got.append((accept, ctype))
            if ctype == "application/json":
                assert json.loads(body)["authenticated"] is False
        assert got == [(a, w) for a, w in ACCEPTS]
        # ?format= still decides over Accept
        conn = http.client.HTTPSConnection("localhost", srv.port, context=context, timeout=20)
        conn.request("GET", "/?format=json", headers={"Accept": "application/json;q=0, text/html"})
        assert conn.getresponse().getheader("Content-Type") == "application/json"
        conn.close()


# --- 3: a certbot hook and chain.pem -----------------------------------------
def test_renew_md_says_chain_pem_is_there_only_under_an_intermediate(tmp_path: Path, fleet: dict):
    text = " ".join((REPO / "docs" / "renew.md").read_text().split())
    assert "a hook that copies `$RENEWED_LINEAGE/chain.pem` fails there" in text
    run_certkit("issue-server", "www.example.com", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    hook = ('test ! -e "$RENEWED_LINEAGE/chain.pem" && cat "$RENEWED_LINEAGE/fullchain.pem" > /dev/null '
            '&& echo no-chain-pem')
    ran = run_certkit("renew", "--expiring", "30d", "--days", "60", "--exec", hook, "--json", env=fleet,
                      cwd=tmp_path, subprocess=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["certificates"][0]["hook"]["output"] == "no-chain-pem\n"


# --- 4: an output named as a compressed file, in every format -----------------------------------------------
@pytest.mark.parametrize(("fmt", "name"), [("jsonl", "fleet.jsonl.gz"), ("jsonl", "fleet.ZST"), ("k8s", "s.yaml.gz"),
                                           ("k8s", "s.yaml.xz"), ("tar", "fleet.zip"), ("tar", "fleet.7z")])
def test_an_output_named_as_compressed_is_refused_before_signing(tmp_path: Path, fleet: dict, fmt: str, name: str):
    proc = run_certkit("issue-server", "z.example", "--format", fmt, "--out", name, env=fleet, cwd=tmp_path)
    assert_clean_error(proc, f"{name} is named as a compressed")
    assert not (tmp_path / name).exists()
    assert run_certkit("list", env=fleet).stdout.startswith("No certificates issued yet")
    with open(tmp_path / name, "w") as stdout:  # > FILE: the name the kernel knows
        ran = subprocess.run([sys.executable, "-m", "certkit", "issue-server", "z.example", "--format", fmt],
                             cwd=tmp_path, env=fleet, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)
    assert ran.returncode == 1 and "is named as a compressed" in ran.stderr, ran.stderr
    assert (tmp_path / name).stat().st_size == 0
    assert run_certkit("list", env=fleet).stdout.startswith("No certificates issued yet")


@pytest.mark.parametrize(("fmt", "name"), [("jsonl", "fleet.jsonl"), ("k8s", "s.yaml"), ("tar", "fleet.tar")])
def test_plain_names_are_still_written(tmp_path: Path, fleet: dict, fmt: str, name: str):
    run_certkit("issue-server", "z.example", "--format", fmt, "--out", name, env=fleet, cwd=tmp_path, check=True)
    assert (tmp_path / name).stat().st_size > 0


# --- 5: --exec-once with more folders than a variable holds --------------------------------------------------
ONCE = ('echo "n=$CERTKIT_RENEWED lines=$(wc -l < "$CERTKIT_FOLDERS_FILE") var=${CERTKIT_FOLDERS:+set}"; '
        'echo "$CERTKIT_FOLDERS_FILE" > "$HOME/where"; '
        'test "${CERTKIT_FOLDERS:-}" = "" || test "$CERTKIT_FOLDERS" = "$(cat "$CERTKIT_FOLDERS_FILE")"')


def test_exec_once_runs_when_the_folders_pass_what_a_variable_holds(tmp_path: Path, fleet: dict):
    deep = tmp_path.joinpath(*["d" * 240] * 14)  # 42 bundles of ~3,500-byte paths: 145 KB > 128 KiB
    deep.mkdir(parents=True)
    rows = "".join(f"server,n{i}.example.com,{deep.relative_to(tmp_path)}/n{i}\n" for i in range(42))
    (tmp_path / "m.csv").write_text("kind,names,out\n" + rows)
    run_certkit("issue-batch", "m.csv", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    ran = run_certkit("renew", "--expiring", "30d", "--days", "60", "--exec-once", ONCE, "--json", env=fleet,
                      cwd=tmp_path, subprocess=True)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["ok"] and report["renewed"] == 42
    assert report["exec_once"]["output"] == "n=42 lines=42 var=\n", report["exec_once"]
    assert "--exec-once ran without CERTKIT_FOLDERS" in ran.stderr
    assert not Path((Path(fleet["HOME"]) / "where").read_text().strip()).exists()  # removed after the hook


def test_exec_once_gets_the_folders_file_in_bulk_and_single(tmp_path: Path, fleet: dict):
    for name in ("a.example.com", "b.example.com"):
        run_certkit("issue-server", name, "--days", "10", env=fleet, cwd=tmp_path, check=True)
    ran = run_certkit("renew", "--expiring", "30d", "--days", "60", "--exec-once", ONCE, "--json", env=fleet,
                      cwd=tmp_path, subprocess=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["exec_once"]["output"] == "n=2 lines=2 var=set\n"
    assert "CERTKIT_FOLDERS" not in ran.stderr
    single = run_certkit("renew", "a.example.com", "--exec-once", ONCE, "--json", env=fleet, cwd=tmp_path,
                         subprocess=True)
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout)["exec_once"]["output"] == "n=1 lines=1 var=set\n"
    assert not Path((Path(fleet["HOME"]) / "where").read_text().strip()).exists()


# --- 6: serve --optional's TLS 1.3 tickets resume nothing -----------------------------------------------------
def _s_client(port: int, ca: Path, *args: object) -> str:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-CAfile", str(ca), "-ign_eof", *map(str, args)], input="GET / HTTP/1.0\r\n\r\n",
                          capture_output=True, text=True, timeout=30).stdout


def test_serve_optional_tickets_resume_nothing_as_serve_md_says(tmp_path: Path, fleet: dict):
    text = " ".join((REPO / "docs" / "serve.md").read_text().split())
    assert "In TLS 1.3 it still sends two session tickets after the handshake" in text
    run_certkit("issue-server", "localhost", "127.0.0.1", env=fleet, cwd=tmp_path, check=True)
    run_certkit("issue-client", "alice", env=fleet, cwd=tmp_path, check=True)
    ca = Path(fleet["CERTKIT_CA_DIR"]) / "ca.pem"
    with serving("--optional", "--cert", tmp_path / "localhost" / "fullchain.pem", "--key",
                 tmp_path / "localhost" / "privkey.pem", env=fleet, cwd=tmp_path) as srv:
        first = _s_client(srv.port, ca, "-cert", tmp_path / "alice" / "cert.pem", "-key",
                          tmp_path / "alice" / "privkey.pem", "-sess_out", tmp_path / "sess.pem")
        assert "HTTP/1.0 200" in first and first.count("TLS session ticket:") == 2, first
        again = _s_client(srv.port, ca, "-sess_in", tmp_path / "sess.pem")  # no certificate: must not resume alice
        assert "\nNew, TLSv1.3" in again and "Reused" not in again and "HTTP/1.0 403" in again, again


# --- 7: a certificate that begins later is not expiring, nor renewed in bulk -------------------------------------
def test_a_certificate_not_yet_valid_is_left_to_begin(tmp_path: Path, fleet: dict):
    import datetime as dt

    from certkit.store import CADirectory

    run_certkit("issue-server", "due.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    ca = CADirectory(fleet["CERTKIT_CA_DIR"]).load(PASSPHRASE.encode())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    ca.issue_server("later.example", not_before=later, days=10).write(tmp_path / "later.example")
    before = (tmp_path / "later.example" / "cert.pem").read_bytes()
    expiring = json.loads(run_certkit("list", "--expiring", "30d", "--json", env=fleet, check=True).stdout)
    assert [c["subject"] for c in expiring["certificates"]] == ["CN=due.example"]
    assert "later.example" in run_certkit("list", env=fleet, check=True).stdout  # listed, as not yet valid
    for how in (("--expiring", "30d"), ("--all",)):
        ran = run_certkit("renew", *how, "--days", "60", "--json", env=fleet, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert all("later" not in " ".join(c["names"]) for c in json.loads(ran.stdout)["certificates"])
    assert (tmp_path / "later.example" / "cert.pem").read_bytes() == before
    single = run_certkit("renew", "later.example", env=fleet, cwd=tmp_path)  # asked by name: renewed
    assert single.returncode == 0, single.stderr


# --- 8: docs as the commands are ------------------------------------------------------------------------------
def test_docs_say_what_probe_json_and_bulk_rekey_do(tmp_path: Path, fleet: dict):
    probe_md = " ".join((REPO / "docs" / "probe.md").read_text().split())
    assert "`null` when none was given, never asked for, not sent, or not known" in probe_md
    renew_md = (REPO / "docs" / "renew.md").read_text()
    bulk = next(line for line in renew_md.splitlines() if line.startswith("certkit renew --expiring PERIOD|--all"))
    assert "[--rekey [--key-type TYPE]]" in bulk
    run_certkit("issue-server", "k.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    ran = run_certkit("renew", "--expiring", "30d", "--rekey", "--key-type", "rsa-2048", "--json", env=fleet,
                      cwd=tmp_path)
    assert ran.returncode == 0 and json.loads(ran.stdout)["renewed"] == 1, ran.stderr
    assert "BEGIN PRIVATE KEY" in (tmp_path / "k.example" / "privkey.pem").read_text()
    key = subprocess.run(["openssl", "pkey", "-in", tmp_path / "k.example" / "privkey.pem", "-noout", "-text"],
                         capture_output=True, text=True).stdout
    assert "Private-Key: (2048 bit" in key, key


def test_exec_once_runs_when_no_temporary_folder_can_be_made(monkeypatch):
    import tempfile

    from certkit.fleet.hooks import once_environment, run_hook

    monkeypatch.setattr(tempfile, "tempdir", "/proc/no-such-folder")  # mkdtemp fails there (ENOENT), for real
    with once_environment(["/srv/a", "/srv/b"]) as env:
        ran = run_hook('echo "$CERTKIT_RENEWED ${CERTKIT_FOLDERS_FILE:-nofile}"; printf "%s\\n" "$CERTKIT_FOLDERS"',
                       env, timeout=30)
    assert ran.exit == 0 and ran.output == "2 nofile\n/srv/a\n/srv/b\n", ran
