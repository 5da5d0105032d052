"""Audit serve9, against real peers on 127.0.0.1 (certkit serve as a process, curl, headless Chromium with an NSS
db), the intermediates of the serving CA:

1. default-mode serve lets in a client certificate one of the root's intermediate CAs issued, sent without that
   intermediate (Chromium with carol's bundle.p12 does that, since Python's ssl names no CA in its request): the
   handshake trusts the intermediates the root's inventory records as valid, and the inventories still refuse a
   revoked one at each connection; OpenSSL's error 20 ("unable to get local issuer certificate") is logged with
   its likely cause, a certificate from an intermediate CA sent without it;
2. --client-ca of an intermediate the CA directory's inventory records gets the same revocation lookup as the
   default mode; --client-ca of another CA makes the page, the text and the JSON say that revocation was not
   checked;
3. docs/list.md says what serve's (and probe's, inspect's) ``status`` is: the dates alone, the revocation beside
   it in ``withdrawn``;
4. the client card's rule names the CA that signed the certificate, and its chain to the CA serve trusts;
5. the banner and --json say the intermediates' inventories are read too;
6. --optional tells a client whose intermediate CA the root revoked that it was revoked (when, why), not "not
   issued by this CA".
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env, chromium, require_chromium, run_certkit
from serve_process import serving


def _env(lab: Path, ca: str = "ca", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(lab / ca), HOME=str(lab / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, **extra)


def _intermediate(lab: Path, folder: str, name: str, *clients: str) -> None:
    run_certkit("init-ca", "--ca-dir", lab / folder, "--parent-ca-dir", lab / "ca", "--name", name,
                env=_env(lab), cwd=lab, check=True)
    for client in clients:
        run_certkit("issue-client", client, env=_env(lab, folder), cwd=lab, check=True)


def _revoke_ca(lab: Path, name: str) -> None:
    """The root revokes its intermediate ``name`` (cACompromise), by its serial in the root's inventory."""
    listed = json.loads(run_certkit("list", "--kind", "ca", "--json", "--name", name, env=_env(lab), check=True).stdout)
    run_certkit("revoke", listed["certificates"][0]["serial"], "--reason", "cACompromise", env=_env(lab), check=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """ca/ (Lab CA) with alice/, bob/ (revoked) and localhost/ (a server certificate); int/ (Lab Issuing, recorded)
    with carol/ (and her bundle.p12) and dave/ (revoked there); other/ (Other CA) with mallory/."""
    from certkit import CA
    from certkit.store import CADirectory

    lab = tmp_path_factory.mktemp("serve9")
    (lab / "home").mkdir()
    now = dt.datetime.now(dt.UTC)
    CADirectory(lab / "ca").save_new(CA.create("Lab CA", not_before=now - dt.timedelta(days=30)), PASSPHRASE.encode())
    env = _env(lab)
    for args in (("issue-server", "localhost", "127.0.0.1"), ("issue-client", "alice"), ("issue-client", "bob")):
        run_certkit(*args, env=env, cwd=lab, check=True)
    run_certkit("revoke", lab / "bob", env=env, check=True)
    _intermediate(lab, "int", "Lab Issuing", "carol", "dave")
    run_certkit("revoke", lab / "dave", env=_env(lab, "int"), check=True)
    (lab / "p12-password").write_text("p12pass-long-enough\n")
    (lab / "p12-password").chmod(0o600)
    run_certkit("export-p12", "carol", "--password-file", lab / "p12-password", env=_env(lab, "int"), cwd=lab,
                check=True)
    run_certkit("init-ca", "--name", "Other CA", env=_env(lab, "other"), check=True)
    run_certkit("issue-client", "mallory", env=_env(lab, "other"), cwd=lab, check=True)
    return lab


FILES = ("--cert", "localhost/fullchain.pem", "--key", "localhost/privkey.pem")


def _curl(lab: Path, port: int, who: str, fmt: str = "text", pem: str = "cert.pem") -> tuple[str, str]:
    """The answer to ``who`` (its ``pem``, without its intermediate by default), and its HTTP status."""
    proc = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(lab / "ca" / "ca.pem"),
                           "--cert", str(lab / who / pem), "--key", str(lab / who / "privkey.pem"),
                           "-w", "\n%{http_code}", f"https://localhost:{port}/?format={fmt}"],
                          capture_output=True, text=True, timeout=30)
    body, _, code = proc.stdout.rpartition("\n")
    return body + proc.stderr, code


def _rules(page: str) -> list[str]:
    """The client card's rule lines, as text."""
    card = page[page.index('id="client-card"'):]
    card = card[card.index('<ul class="rule">'):card.index("</ul>", card.index('<ul class="rule">'))]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip() for item in re.findall(r"<li.*?</li>", card,
                                                                                             re.S)]


# --- 1. an intermediate's client certificate sent without it (as a browser sends it) ------------------------------
def test_default_mode_lets_in_an_intermediates_client_sent_alone_and_still_reads_its_revocations(lab: Path) -> None:
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        carol, code = _curl(lab, srv.port, "carol")  # cert.pem alone: no Lab Issuing sent
        assert code == "200" and "common name  carol" in carol, carol + srv.stderr
        dave, code = _curl(lab, srv.port, "dave")
        assert code == "403" and "refused      revoked on " in dave and "Lab Issuing" in dave, dave
        alice, code = _curl(lab, srv.port, "alice")
        assert code == "200", alice
        mallory, _code = _curl(lab, srv.port, "mallory")
        assert "common name  mallory" not in mallory  # another CA's: still refused in the handshake
        line = srv.wait_for_log("unable to get local issuer certificate")[0]
    assert "most likely it comes from an intermediate CA, sent without that CA's certificate" in line, line
    assert re.search(r"nor an intermediate CA of it this server trusts too \([^)]*CN=Lab Issuing", line), line


def test_chromium_with_bundle_p12_of_an_intermediates_client_is_greeted(lab: Path, tmp_path: Path) -> None:
    """The audit's case: the imported bundle.p12 holds carol, Lab Issuing and Lab CA; the default mode names no CA,
    Chromium sends carol alone; the page greets her, and its rule names Lab Issuing and its chain to Lab CA."""
    require_chromium()
    home, user_data = tmp_path / "home", tmp_path / "profile"
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], **run)
    subprocess.run(["certutil", "-A", "-d", db, "-n", "Lab CA", "-t", "C,,", "-i", str(lab / "ca" / "ca.pem")], **run)
    subprocess.run(["pk12util", "-d", db, "-i", str(lab / "carol" / "bundle.p12"), "-w", str(lab / "p12-password")],
                   **run)
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        prefs = {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
            f"https://localhost:{srv.port},*": {"setting": {"filters": [{"ISSUER": {"CN": "Lab Issuing"}}]}}}}}}}
        (user_data / "Default").mkdir(parents=True)
        (user_data / "Default" / "Preferences").write_text(json.dumps(prefs))
        dom = chromium(f"https://localhost:{srv.port}/", home, user_data, "--dump-dom").stdout
        log = srv.stderr
    assert 'Hello, <span id="cn">carol</span>' in dom, log
    # Chromium sent carol alone: serve supplied Lab Issuing, and says so (round ten, serve10 #3)
    assert ("signed by CN=Lab Issuing, an intermediate CA, whose chain leads to CN=Lab CA, the CA this server trusts "
            "for clients; your client did not send CN=Lab Issuing") in " ".join(_rules(dom)), _rules(dom)


def test_an_intermediate_revoked_after_start_refuses_its_clients_at_once(lab: Path) -> None:
    """The intermediates the handshake trusts are read at start; their revocation still counts at each connection."""
    _intermediate(lab, "int-late", "Lab Late Issuing", "lena")
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        before, code = _curl(lab, srv.port, "lena")
        assert code == "200", before
        _revoke_ca(lab, "Lab Late Issuing")
        after, code = _curl(lab, srv.port, "lena")
    assert code == "403" and "the issuing CA CN=Lab Late Issuing was revoked on " in after, after
    assert "(reason: cACompromise)" in after, after


# --- 2. --client-ca: an intermediate the inventory records, or another CA -----------------------------------------
def test_client_ca_of_a_recorded_intermediate_reads_its_revocations(lab: Path) -> None:
    with serving(*FILES, "--client-ca", "int/ca.pem", env=_env(lab), cwd=lab) as srv:
        assert srv.info["revocation"] == str(lab / "ca" / "inventory.sqlite3"), srv.info
        dave, code = _curl(lab, srv.port, "dave")
        carol, carol_code = _curl(lab, srv.port, "carol", "json")
    assert code == "403" and "refused      revoked on " in dave, dave
    assert carol_code == "200" and json.loads(carol)["not_checked"] == [], carol


def test_client_ca_of_another_ca_says_revocation_was_not_checked_in_every_answer(lab: Path) -> None:
    with serving(*FILES, "--client-ca", "other/ca.pem", env=_env(lab), cwd=lab) as srv:
        text, code = _curl(lab, srv.port, "mallory")
        page, _ = _curl(lab, srv.port, "mallory", "html")
        data, _ = _curl(lab, srv.port, "mallory", "json")
    assert code == "200", text
    assert "  revocation   not checked for revocation: CN=Other CA is neither the CA directory's CA" in text, text
    assert any(r.startswith("not checked for revocation: CN=Other CA is neither") for r in _rules(page)), _rules(page)
    assert json.loads(data)["not_checked"][0].startswith("revocation: CN=Other CA is neither"), data


# --- 3. one status rule, said truly ----------------------------------------------------------------------------
def test_list_md_says_what_serves_status_is_and_serve_does_that(lab: Path) -> None:
    listed = json.loads(run_certkit("list", "--json", "--name", "bob", env=_env(lab), check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["revoked"]
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        data, _ = _curl(lab, srv.port, "bob", "json")
    presented = json.loads(data)["presented"]
    assert presented["status"] == "valid" and presented["withdrawn"][0].startswith("revoked on "), presented
    docs = " ".join((REPO / "docs" / "list.md").read_text().split())
    assert "`revoked`, pending or abandoned certificate is that" not in docs
    assert "their `status` is never `revoked`" in docs and "`given_withdrawn`" in docs


# --- 4 and 5. the rule names the real issuer; the banner names the intermediates' inventories ----------------------
def test_client_rule_names_the_issuer_and_its_chain(lab: Path) -> None:
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        carol, _ = _curl(lab, srv.port, "carol", "html", pem="fullchain.pem")
        alice, _ = _curl(lab, srv.port, "alice", "html")
    assert _rules(carol)[0] == ("signed by CN=Lab Issuing, an intermediate CA, whose chain leads to CN=Lab CA, the CA "
                                "this server trusts for clients"), _rules(carol)
    assert _rules(alice)[0] == "signed by CN=Lab CA, the CA this server trusts for clients", _rules(alice)


def test_banner_and_json_name_the_intermediates_inventories(lab: Path) -> None:
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        inventories = srv.info["revocation_inventories"]
    assert inventories[0] == str(lab / "ca" / "inventory.sqlite3")
    assert str(lab / "int" / "inventory.sqlite3") in inventories, inventories
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *FILES], env=_env(lab), cwd=lab,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    said = "".join(lines)
    assert "and what its intermediate CAs issued in theirs" in said, said
    assert f"\"Lab Issuing\" in {lab / 'int' / 'inventory.sqlite3'}" in said, said


# --- 6. a revoked intermediate, its certificate not sent --------------------------------------------------------
def test_optional_says_the_unsent_intermediate_was_revoked(lab: Path) -> None:
    _intermediate(lab, "int-old", "Lab Old Issuing", "olga")
    _revoke_ca(lab, "Lab Old Issuing")
    with serving(*FILES, "--optional", env=_env(lab), cwd=lab) as srv:
        data, code = _curl(lab, srv.port, "olga", "json")
        page, _ = _curl(lab, srv.port, "olga", "html")
    reason = json.loads(data)["reason"]
    assert code == "403" and "not issued by this CA" not in reason, reason
    assert reason.startswith("issued by CN=Lab Old Issuing, an intermediate CA of this CA (CN=Lab CA, whose "
                             "inventory records it): the issuing CA CN=Lab Old Issuing was revoked on "), reason
    assert "(reason: cACompromise)" in reason and "must send" not in reason, reason
    assert any("was revoked on" in r for r in _rules(page) if r.startswith("signed by")), _rules(page)


# --- 7. how long until a certificate is valid, never less than it is ----------------------------------------------
def test_a_certificate_not_yet_valid_says_how_long_without_rounding_down(tmp_path):
    import datetime as dt

    from certkit import CA

    from conftest import run_certkit

    ca = CA.create("Later CA", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    for ahead, said in ((dt.timedelta(days=1, hours=23), "(in 47 hours)"),
                        (dt.timedelta(hours=5, minutes=10), "(in 6 hours)"),
                        (dt.timedelta(days=9, hours=1), "(in 10 days)")):
        issued = ca.issue_server(["later.example"], not_before=dt.datetime.now(dt.UTC) + ahead, days=30)
        path = tmp_path / "later.pem"
        path.write_bytes(issued.cert_pem)
        proc = run_certkit("inspect", path)
        assert said in proc.stdout and "\n  valid from    " in proc.stdout, (said, proc.stdout)
