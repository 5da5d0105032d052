"""The twenty-fifth round's documentation-truth findings (audit docs25), each as a class:

1. probe's --help said it exits 1 "also when the server never asks for a client certificate, or answers an
   HTTP error ..., or gives no HTTP answer at all", with or without a client certificate; probe.md says (and
   probe does) that without one only the server's certificate decides: a server that asks for none, or
   speaks no HTTP, exits 0. The help now says those count only with a client certificate given.
2. inspect's and verify's --help named the files they read (a certificate, a CSR, a CRL, a bundle folder) but
   not the --format jsonl, k8s and tar outputs, which inspect.md and verify.md say they read (inspect every
   bundle in one, verify the first with a note naming how many): someone with a Secret manifest asked --help
   and was told it is no input. Both helps now name them. So did renew's: found "by its serial, the name
   it was issued for, or its bundle folder", where renew.md says (and renew takes) "its bundle folder (or
   its cert.pem)", as revoke's help says for revoke. And init-ca's --name gave one default, "certkit CA
   user@host", where init-ca.md says (and init-ca names) an intermediate "certkit intermediate CA user@host".
3. --force's help, in issue-server, issue-client, issue-peer, sign-csr and issue-batch, spoke of the bundle in
   an output folder only; formats.md and the pages' option tables say it replaces a --format jsonl, k8s or tar
   output file too, and the refusal without it says "a.jsonl already exists; pass --force to replace it": the
   help a reader then asks did not say --force would. Each --force help now names the output file.
4. crl.md and crl's --help said nextUpdate is "--days later (default 30)"; under a CA that expires sooner it
   is the CA's end (certkit caps it there with a warning, as no CRL the CA signs is valid after it). Both now
   say so.
5. list's --help gave the statuses as "valid, expired, revoked, pending or abandoned"; list.md (and list's
   table and --json) has a fifth, "not yet valid", a certificate before its notBefore, listed without
   --status and not with --status valid. The help now names it, and where it is listed.
6. issue-client's --help said "Without --email/--uri/--dns the SAN holds the subject DN"; issue-client.md
   says (and issue-client does) that a NAME that is an email address is the SAN then, with no DN:
   `issue-client bob@example.com` names email:bob@example.com alone. The help now says the DN is the SAN
   only when NAME is no email address either.
7. README.md and library.md said installing certkit gives pytest "three fixtures" (certkit_ca,
   certkit_server_cert, certkit_client_cert); the plugin registers four (`pytest --fixtures` lists
   certkit_session_ca too, which library.md then named as an aside). Both now say four and name each.
8. serve's and acme serve's --help said "Stop with Ctrl-C or SIGTERM"; serve.md and acme.md say Ctrl-C,
   SIGTERM or SIGHUP, and SIGHUP does stop serve as the others do (its certificate revoked, exit 129). Both
   helps now name SIGHUP.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import certkit_env, free_port, new_ca, run_certkit, wait_listening, wait_or_kill

# --- 1: probe's exit status, as its help and probe.md say it ------------------------------------------------


def _help(*command: str) -> str:
    return " ".join(run_certkit(*command, "--help", check=True).stdout.split())


def _s_server(folder: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-quiet",
                               "-cert", "localhost/fullchain.pem", "-key", "localhost/privkey.pem", *extra],
                              cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_listening(port, server, "openssl s_server")
    return server, port


def test_probe_help_says_a_server_that_asks_for_no_certificate_fails_only_one_given(tmp_path: Path) -> None:
    said = _help("probe")
    assert "also when the server never asks for a client certificate" not in said, said
    assert re.search(r"With a client certificate given, also 1 when the server never asks for one, or answers "
                     r"an HTTP error .* or gives no HTTP answer at all; without one, only the server's "
                     r"certificate decides\.", said), said
    assert "Without a client certificate, only the server's certificate decides." in " ".join(
        (Path(__file__).parent.parent / "docs" / "probe.md").read_text().split())
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    run_certkit("issue-server", "localhost", cwd=tmp_path, env=env, check=True)
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)
    for extra in (("-www",), ()):  # asks for no client certificate; then also speaks no HTTP
        server, port = _s_server(tmp_path, *extra)
        try:
            url = f"https://localhost:{port}/"
            without = run_certkit("probe", url, "--ca-file", "ca/ca.pem", "--timeout", "3", cwd=tmp_path, env=env)
            given = run_certkit("probe", url, "--ca-file", "ca/ca.pem", "--timeout", "3", "--bundle", "alice",
                                cwd=tmp_path, env=env)
        finally:
            server.terminate()
            wait_or_kill(server)
        assert without.returncode == 0, (extra, without.stdout, without.stderr)
        assert "asked for   no" in without.stdout, without.stdout
        assert given.returncode == 1, (extra, given.stdout, given.stderr)
        assert given.stderr.startswith("Error: ") and given.stderr.count("\n") == 1, given.stderr


# --- 2: inspect and verify read the --format outputs, and their helps say so ---------------------------------


def test_inspect_and_verify_help_name_the_format_outputs_they_read(tmp_path: Path) -> None:
    docs = Path(__file__).parent.parent / "docs"
    assert "a --format jsonl, k8s or tar output (every bundle in it)" in _help("inspect")
    assert "a --format jsonl, k8s or tar output (its first bundle; a note says when there are more)" in _help(
        "verify")
    for page in ("inspect.md", "verify.md"):
        said = " ".join((docs / page).read_text().split())
        assert all(f"`--format {fmt}`" in said for fmt in ("jsonl", "k8s", "tar")), page
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    (tmp_path / "fleet.csv").write_text("kind,names\nserver,one.test\nserver,two.test\n")
    for fmt, out in (("jsonl", "fleet.jsonl"), ("k8s", "fleet.yaml"), ("tar", "fleet.tar")):
        run_certkit("issue-batch", "fleet.csv", "--format", fmt, "--out", out, cwd=tmp_path, env=env, check=True)
        described = run_certkit("inspect", out, cwd=tmp_path, env=env, check=True).stdout
        assert "CN=one.test" in described and "CN=two.test" in described, (fmt, described)
        verified = run_certkit("verify", out, "--purpose", "server", "--name", "one.test", cwd=tmp_path, env=env)
        assert verified.returncode == 0, (fmt, verified.stdout, verified.stderr)
        assert "VALID as a TLS server certificate" in verified.stdout, verified.stdout
        assert re.search(r"note +\S+ holds 2 ", verified.stdout), (fmt, verified.stdout)


def test_renew_help_names_a_cert_pem_as_renew_md_and_revoke_do(tmp_path: Path) -> None:
    assert "or its bundle folder (or its cert.pem)." in _help("renew")
    assert "its bundle folder, or its cert.pem." in _help("revoke")
    assert "its bundle folder (or its `cert.pem`)" in " ".join(
        (Path(__file__).parent.parent / "docs" / "renew.md").read_text().split())
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    run_certkit("issue-server", "web.test", cwd=tmp_path, env=env, check=True)
    renewed = run_certkit("renew", "web.test/cert.pem", "--json", cwd=tmp_path, env=env, check=True)
    assert '"old_serial"' in renewed.stdout, renewed.stdout
    assert run_certkit("revoke", "web.test/cert.pem", cwd=tmp_path, env=env).returncode == 0


def test_init_ca_help_gives_the_intermediates_default_name_as_init_ca_md_does(tmp_path: Path) -> None:
    said = _help("init-ca")
    assert "[default: certkit CA user@host; an intermediate: certkit intermediate CA user@host]" in said, said
    page = (Path(__file__).parent.parent / "docs" / "init-ca.md").read_text()
    assert "`certkit CA user@host` (an intermediate: `certkit intermediate CA user@host`)" in page
    env = new_ca(tmp_path, "Docs25 Root")
    env.update(HOME=str(tmp_path), CERTKIT_PARENT_CA_PASSPHRASE=env["CERTKIT_CA_PASSPHRASE"])
    made = run_certkit("init-ca", "--ca-dir", "issuing", "--parent-ca-dir", "ca", "--json", cwd=tmp_path, env=env,
                       check=True)
    assert re.search(r'"subject": "CN=certkit intermediate CA [^" ]+@[^" ]+"', made.stdout), made.stdout


# --- 3: --force replaces a --format output file, and every --force help says so --------------------------------


def test_every_force_help_names_the_output_file_it_replaces(tmp_path: Path) -> None:
    assert "An existing file is replaced only with `--force`" in " ".join(
        (Path(__file__).parent.parent / "docs" / "formats.md").read_text().split())
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "web.key", "-subj", "/CN=csr.test", "-out", "web.csr"], cwd=tmp_path, check=True,
                   capture_output=True)
    (tmp_path / "fleet.csv").write_text("kind,names\nserver,batch.test\n")
    runs = {"issue-server": (["srv.test"], "k8s", " or the --format jsonl, k8s or tar output file."),
            "issue-client": (["alice"], "tar", " or the --format jsonl, k8s or tar output file."),
            "issue-peer": (["peer.test"], "jsonl", " or the --format jsonl, k8s or tar output file."),
            "sign-csr": (["web.csr", "--server"], "jsonl", " or the --format jsonl or tar output file."),
            "issue-batch": (["fleet.csv"], "k8s", " or the --format jsonl, k8s or tar output file.")}
    for command, (args, fmt, said) in runs.items():
        helped = _help(command)
        assert re.search(r"--force +Replace [^.]*," + re.escape(said), helped), (command, helped)
        out = f"{command}.{fmt}"
        run_certkit(command, *args, "--format", fmt, "--out", out, cwd=tmp_path, env=env, check=True)
        again = run_certkit(command, *args, "--format", fmt, "--out", out, cwd=tmp_path, env=env)
        # (since round 37 the refusal also says what the inventory records in it: the command that wrote it finished)
        assert again.returncode == 1 and f"{out} already exists, holding 1 certificate this CA recorded valid" in \
            again.stderr and again.stderr.rstrip().endswith("; pass --force to replace it."), (command, again.stderr)
        run_certkit(command, *args, "--format", fmt, "--out", out, "--force", cwd=tmp_path, env=env, check=True)


# --- 4: a CRL's nextUpdate stops at the CA's end, as crl.md and crl's help say -------------------------------


def test_crl_next_update_is_the_cas_end_when_sooner_as_crl_md_and_help_say(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509

    assert ("nextUpdate --days later, or, with a warning, when the CA (or a CA above it) expires, if sooner."
            in _help("crl"))
    assert ("`nextUpdate` is `--days` later (default 30), or when the CA (or a CA above it) expires, if that "
            "comes sooner" in " ".join((Path(__file__).parent.parent / "docs" / "crl.md").read_text().split()))
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="a long passphrase",
                      HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Short CA", "--days", "10", cwd=tmp_path, env=env, check=True)
    ca_end = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes()).not_valid_after_utc
    for days, capped in (("30", True), ("5", False)):
        made = run_certkit("crl", "--out", f"crl-{days}.pem", "--days", days, "--json", cwd=tmp_path, env=env,
                           check=True)
        next_update = dt.datetime.fromisoformat(json.loads(made.stdout)["next_update"])
        crl = x509.load_pem_x509_crl((tmp_path / f"crl-{days}.pem").read_bytes())
        assert crl.next_update_utc == next_update
        if capped:
            assert next_update == ca_end, (next_update, ca_end)
            assert "Warning: nextUpdate is" in made.stderr and "certkit init-ca" in made.stderr, made.stderr
        else:
            assert next_update - crl.last_update_utc == dt.timedelta(days=5), next_update
            assert made.stderr == "", made.stderr


# --- 5: list's statuses, as list.md gives them ----------------------------------------------------------------


def test_list_help_names_not_yet_valid_as_list_md_and_list_do(tmp_path: Path) -> None:
    import datetime as dt

    from certkit import CA
    from certkit.store import CADirectory

    assert ("Status is valid, not yet valid (before its start: listed, but not with --status valid), expired, "
            "revoked, pending" in _help("list"))
    page = " ".join((Path(__file__).parent.parent / "docs" / "list.md").read_text().split())
    assert "A `not yet valid` certificate is listed without `--status`, not with `--status valid`" in page
    now = dt.datetime.now(dt.UTC)
    CADirectory(tmp_path / "ca").save_new(CA.create("Docs25 CA", not_before=now - dt.timedelta(days=1)),
                                          b"a long passphrase")
    ca = CADirectory(tmp_path / "ca").load(b"a long passphrase")
    ca.issue_client("later", days=5, not_before=now + dt.timedelta(days=2)).write(tmp_path / "later")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    table = run_certkit("list", cwd=tmp_path, env=env, check=True).stdout
    assert re.search(r"client +not yet valid .*CN=later", table), table
    listed = json.loads(run_certkit("list", "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["not yet valid"], listed
    valid = json.loads(run_certkit("list", "--json", "--status", "valid", cwd=tmp_path, env=env, check=True).stdout)
    assert valid["certificates"] == [], valid


# --- 6: when a client certificate's SAN holds its DN, as issue-client.md says --------------------------------


def test_issue_client_help_says_when_the_san_is_the_dn_as_the_page_does(tmp_path: Path) -> None:
    said = _help("issue-client")
    assert "Without --email/--uri/--dns the SAN holds the subject DN" not in said, said
    assert ("If NAME is an email address it also goes in subjectAltName. With neither that nor "
            "--email/--uri/--dns, the SAN holds the subject DN" in said), said
    page = " ".join((Path(__file__).parent.parent / "docs" / "issue-client.md").read_text().split())
    assert "With none of these, subjectAltName holds the subject DN as a directoryName." in page
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    names = {}
    for name, *extra in (("alice",), ("bob@example.com",), ("carol", "--uri", "spiffe://example.org/carol")):
        issued = run_certkit("issue-client", name, *extra, "--json", cwd=tmp_path, env=env, check=True)
        names[name] = json.loads(issued.stdout)["names"]
    assert names == {"alice": ["DirName:CN=alice"], "bob@example.com": ["email:bob@example.com"],
                     "carol": ["URI:spiffe://example.org/carol"]}, names


# --- 7: the pytest plugin's fixtures, as README.md and library.md count them ---------------------------------

_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5}


def test_the_docs_count_and_name_every_fixture_the_pytest_plugin_registers(tmp_path: Path) -> None:
    import sys

    listed = subprocess.run([sys.executable, "-m", "pytest", "--fixtures", "-q", "-p", "no:cacheprovider"],
                            cwd=tmp_path, env=certkit_env(HOME=str(tmp_path)), capture_output=True, text=True,
                            timeout=120).stdout
    fixtures = set(re.findall(r"^(certkit_\w+)", listed, re.M))
    assert {"certkit_ca", "certkit_server_cert", "certkit_client_cert", "certkit_session_ca"} <= fixtures, listed
    root = Path(__file__).parent.parent
    for page, claim in ((root / "README.md", r"gives pytest (\w+) fixtures \(([^)]*\))"),
                        (root / "docs" / "library.md", r"with (\w+) fixtures for tests: (.*?) leaves it unchanged\.")):
        said = re.search(claim, " ".join(page.read_text().split()))
        assert said is not None, page
        assert _NUMBERS[said[1]] == len(fixtures), (page.name, said[1], sorted(fixtures))
        assert all(f"`{name}`" in said[2] for name in fixtures), (page.name, said[2])


# --- 8: what stops serve and acme serve, as their pages and helps say ------------------------------------------


def test_serve_and_acme_help_name_sighup_which_stops_serve_as_the_pages_say(tmp_path: Path) -> None:
    import signal
    import sys

    root = Path(__file__).parent.parent
    for command, page, said in ((("serve",), "serve.md", "**Stopping**: Ctrl-C, SIGTERM or SIGHUP"),
                                (("acme", "serve"), "acme.md", "Ctrl-C, SIGTERM or SIGHUP: it stops")):
        assert "Stop with Ctrl-C, SIGTERM or SIGHUP." in _help(*command), command
        assert said in " ".join((root / "docs" / page).read_text().split()), page
    env = new_ca(tmp_path, "Docs25 CA")
    env["HOME"] = str(tmp_path)
    server = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", "--json"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [server.stdout.readline()]
        while lines[-1] not in ("}\n", ""):  # one JSON object, indented, ends with its own line
            lines.append(server.stdout.readline())
        started = json.loads("".join(lines))
        server.send_signal(signal.SIGHUP)
        _, log = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    assert server.returncode == 129, (server.returncode, log)
    assert "revoked this server's certificate" in log and "stopped" in log, log
    listed = json.loads(run_certkit("list", "--json", "--status", "revoked", cwd=tmp_path, env=env,
                                    check=True).stdout)
    assert [c["serial"] for c in listed["certificates"]] == [started["server_certificate"]["serial"]], (
        listed, started)
