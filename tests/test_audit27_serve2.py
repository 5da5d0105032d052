"""Round twenty-seven, area serve2: verify's, check's and serve's words about dates, and staples, checked against
real peers (openssl s_server and s_client) on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from test_audit24_serve import _signed_by_ca

from conftest import PASSPHRASE, run_certkit

MOMENT = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)"


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found, (pattern, text)
    return found.group(1)


# --- 1. verify's reason gave the day alone where its own rows, inspect, probe and serve give the moment ------------
@pytest.mark.parametrize(("start", "days", "row", "reason"), [
    (-20, 10, rf"^  expired   {MOMENT} \(10 days ago\)$", rf"expired on {MOMENT} \(10 days ago\)"),
    (-10.2, 10, rf"^  expired   {MOMENT} \(less than a day ago\)$", rf"expired on {MOMENT} \(less than a day ago\)"),
    (5.5, 30, rf"^  valid from {MOMENT} \(in 6 days\)$", rf"not valid before {MOMENT} \(in 6 days\)")])
def test_verify_s_reason_says_the_moment_its_rows_say(ca_dir: Path, ca_env: dict, tmp_path: Path, start, days, row,
                                                      reason):
    """Before: 'reason    expired on 2026-11-24 (10 days ago)', under 'expired   2026-11-24 10:00:00 UTC (...)'."""
    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", days=days, start=start)
    proc = run_certkit("verify", leaf / "cert.pem", "--purpose", "server", env=ca_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    said = _first(row, proc.stdout)
    assert _first(rf"^  reason    {reason}$", proc.stdout) == said
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert _first(rf": {reason}\.$", proc.stderr) == said


def _saved_ca(path: Path, *, start: float, days: float) -> dict:
    from certkit import CA
    from certkit.store import CADirectory

    from conftest import certkit_env

    now = dt.datetime.now(dt.UTC)
    ca = CA.create("certkit short-lived CA", not_before=now + dt.timedelta(days=start), days=days)
    CADirectory(path).save_new(ca, PASSPHRASE.encode())
    return certkit_env(CERTKIT_CA_DIR=str(path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


@pytest.mark.parametrize(("start", "days", "said"), [
    (-10, 5, rf"expired on {MOMENT} \(5 days ago\); it can issue nothing valid"),
    (-1, 3, rf"expires on {MOMENT}, in 47 hours\."),
    (3, 30, rf"is not valid before {MOMENT} \(in 3 days\); check the system clock")])
def test_check_says_a_ca_s_dates_to_the_second(tmp_path: Path, start, days, said):
    """Before: 'expired on 2026-11-29', 'expires on 2026-12-06, in 1 days', 'is not valid before 2026-12-07'."""
    env = _saved_ca(tmp_path / "ca", start=start, days=days)
    proc = run_certkit("check", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    inspected = run_certkit("inspect", tmp_path / "ca" / "ca.pem", env=env).stdout
    moment = _first(said, proc.stdout + proc.stderr)
    assert moment in inspected, inspected


# --- 2. serve --cert of an expired certificate advised "Give a server certificate", not renewing it -----------------
def _serve(cert: Path, key: Path, env: dict, *more):
    return run_certkit("serve", "--host", "127.0.0.1", "--port", "0", "--cert", cert, "--key", key, *more, env=env)


def test_serve_advises_renewing_an_expired_certificate_of_its_ca(tmp_path: Path):
    """Before: '...: it expired on ... Give a server certificate (certkit issue-server), or leave out ...'."""
    from certkit.store import CADirectory

    from conftest import assert_clean_error

    now, ca_dir = dt.datetime.now(dt.UTC), tmp_path / "ca"
    ca_env = _saved_ca(ca_dir, start=-30, days=365)
    ca = CADirectory(ca_dir).load(PASSPHRASE)
    ca.issue_server("localhost", not_before=now - dt.timedelta(days=20), days=10).write(tmp_path / "localhost")
    folder = tmp_path / "localhost"
    proc = _serve(folder / "fullchain.pem", folder / "privkey.pem", ca_env)
    assert_clean_error(proc, "it expired on ")
    command = _first(r"Renew it \((certkit renew [0-9A-F]+)\), or leave out --cert/--key to have serve issue one\.",
                     proc.stderr)
    assert "issue-server" not in proc.stderr, proc.stderr
    renewed = run_certkit(*command.split()[1:], env=ca_env)  # the command given renews it
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    served = subprocess.Popen(["certkit", "serve", "--host", "127.0.0.1", "--port", "0", "--json", "--cert",
                               folder / "fullchain.pem", "--key", folder / "privkey.pem"], env=ca_env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert served.stdout.readline() == "{\n"  # serve takes the renewed certificate: listening, its JSON
    finally:
        served.terminate()
        served.wait(timeout=30)
    # given with --ca-dir, not the CA directory certkit finds alone: the command names it
    ca.issue_server("localhost", not_before=now - dt.timedelta(days=20), days=10).write(tmp_path / "second")
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "elsewhere"))
    proc = _serve(tmp_path / "second" / "fullchain.pem", tmp_path / "second" / "privkey.pem", other,
                  "--ca-dir", ca_dir)
    command = _first(r"Renew it \((certkit renew [0-9A-F]+ --ca-dir \S+)\), or leave out", proc.stderr)
    renewed = run_certkit(*shlex.split(command)[1:], env=other)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr


@pytest.mark.parametrize(("start", "days", "said", "advice"), [
    (-20, 10, "it expired on ", "Renew it with the CA that issued it (CN=Other Root), give a current server "
     "certificate, or leave out --cert/--key"),
    (5.5, 30, "it is valid from ", "Wait until then (or set this machine's clock right if it is behind), give a "
     "server certificate valid now (certkit issue-server), or leave out --cert/--key")])
def test_serve_advises_by_the_dates_of_a_certificate_of_another_ca(ca_env: dict, ca_dir: Path, tmp_path: Path, start,
                                                                   days, said, advice):
    from certkit import CA
    from certkit.store import CADirectory

    from conftest import assert_clean_error

    other, other_dir = CA.create("Other Root"), tmp_path / "other"
    CADirectory(other_dir).save_new(other, PASSPHRASE.encode())
    leaf = _signed_by_ca(other_dir, tmp_path / "leaf", days=days, start=start)
    proc = _serve(leaf / "cert.pem", leaf / "privkey.pem", ca_env)
    assert_clean_error(proc, said)
    assert advice in proc.stderr, proc.stderr


# --- 4. without the leaf's issuer (not sent, not given), probe said an unchecked staple as if it were good ---------
UNCHECKED = ("(its signature not checked: the server does not send the certificate's issuer, and none was given: "
             "--ca-file or --ca-dir)")


@pytest.mark.parametrize("forged", [False, True])
def test_probe_says_a_staple_it_could_not_check_was_not_checked(ca_dir: Path, tmp_path: Path, forged: bool):
    """Before: '  OCSP staple an OCSP response: good, produced ...' of a response anyone could have signed."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_audit26_serve import _ocsp_response
    from test_probe import openssl_server

    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf")
    signer = ec.generate_private_key(ec.SECP256R1()) if forged else None
    (tmp_path / "staple.der").write_bytes(_ocsp_response(ca_dir, leaf / "cert.pem", signer=signer))
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem",
                        "-status_file", tmp_path / "staple.der") as port:
        url = f"https://localhost:{port}/"
        peer = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                               "-status"], input="", capture_output=True, text=True, timeout=30).stdout
        alone = run_certkit("probe", url)
        given = run_certkit("probe", url, "--ca-file", ca_dir / "ca.pem")
    assert "Cert Status: good" in peer, peer
    line = _first(r"^  OCSP staple (.*)$", alone.stdout)
    assert line.startswith("an OCSP response: good, produced ") and line.endswith(UNCHECKED), line
    checked = _first(r"^  OCSP staple (.*)$", given.stdout)
    assert "not checked" not in checked, checked
    assert ("nor a responder it delegated to signed it" in checked) == forged, checked


def test_probe_checks_a_staple_by_the_issuer_the_server_sends(tmp_path: Path):
    """The issuer sent (an intermediate in the chain), no CA given: the staple's signature is checked all the same."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_audit26_serve import _ocsp_response
    from test_probe import openssl_server

    root_env = _saved_ca(tmp_path / "root", start=-1, days=365)
    inter = tmp_path / "inter"
    run_certkit("init-ca", "--ca-dir", inter, "--parent-ca-dir", tmp_path / "root", "--name", "Staple Issuing",
                env=dict(root_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    leaf = _signed_by_ca(inter, tmp_path / "leaf")
    forged = _ocsp_response(inter, leaf / "cert.pem", signer=ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "forged.der").write_bytes(forged)
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem", "-cert_chain", inter / "ca.pem",
                        "-status_file", tmp_path / "forged.der") as port:
        said = run_certkit("probe", f"https://localhost:{port}/")
    line = _first(r"^  OCSP staple (.*)$", said.stdout)
    assert "nor a responder it delegated to signed it" in line and "not checked" not in line, line


# --- 3. a TLS Feature naming status_request_v2 was not Must-Staple, though Firefox refuses it whatever is stapled --
V2 = "Firefox refuses it whatever the server staples (MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING"


@pytest.mark.parametrize("staple", [False, True])
@pytest.mark.parametrize("features", [["status_request_v2"], ["status_request", "status_request_v2"]])
def test_probe_refuses_a_tls_feature_firefox_does_not_process(ca_dir: Path, tmp_path: Path, features, staple):
    """mozilla::pkix's TLSFeaturesSatisfiedInternal takes status_request (5) alone: any other feature is
    ERROR_REQUIRED_TLS_FEATURE_MISSING, staple or not. Before: status_request_v2 alone was not looked at (yes, exit 0),
    and beside status_request a good staple made it yes."""
    from cryptography import x509
    from test_audit26_serve import _ocsp_response
    from test_probe import openssl_server

    feature = x509.TLSFeature([getattr(x509.TLSFeatureType, name) for name in features])
    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", feature)
    (tmp_path / "good.der").write_bytes(_ocsp_response(ca_dir, leaf / "cert.pem"))
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem",
                        *(["-status_file", tmp_path / "good.der"] if staple else [])) as port:
        said = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir)
    assert said.returncode == 1, said.stdout + said.stderr
    assert "for localhost? NO, not for every client" in said.stdout and V2 in said.stdout, said.stdout
    assert said.stderr.startswith("Error: ") and V2 in said.stderr and "Traceback" not in said.stderr
    assert _first(r"^  OCSP staple (.*)$", said.stdout).startswith("an OCSP response: good" if staple else "none")


def test_verify_inspect_and_serve_say_firefox_refuses_status_request_v2(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """Before: 'must staple an OCSP response ..., and Firefox refuses it without one' of status_request_v2."""
    from cryptography import x509

    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", x509.TLSFeature([x509.TLSFeatureType.status_request_v2]))
    said = "Firefox refuses every server presenting this certificate, whatever it staples"
    for command in (["inspect", leaf / "cert.pem"], ["verify", leaf / "cert.pem", "--purpose", "server"]):
        proc = run_certkit(*command, env=ca_env)
        text = " ".join((proc.stdout + proc.stderr).split())  # inspect wraps its lines
        assert said in text and "without one" not in text, proc.stdout
    proc = subprocess.Popen(["certkit", "serve", "--host", "127.0.0.1", "--port", "0", "--json", "--cert",
                             leaf / "cert.pem", "--key", leaf / "privkey.pem"], env=ca_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "{\n"
    finally:
        proc.terminate()
        warned = proc.communicate(timeout=30)[1]
    assert f"Warning: {leaf / 'cert.pem'}: its TLS Feature extension names status_request_v2: {said}" \
        in " ".join(warned.split())


@pytest.mark.parametrize(("ended", "said"), [
    (-5.5, "expired on 2026-12-04 12:00:00 UTC (5 days ago); nothing it signed is accepted any more."),
    (1.5, "expires on 2026-12-11 12:00:00 UTC, in 36 hours."),
    (20.25, "expires on 2026-12-30 06:00:00 UTC, in 20 days.")])
def test_trust_says_a_ca_s_end_to_the_second(ended: float, said: str):
    """Before: 'expired on 2026-12-04', 'expires on 2026-12-11, in 1 days' (the dates alone; whole days floored)."""
    from certkit.trust import _expiry

    now = dt.datetime(2026, 12, 10, 0, 0, tzinfo=dt.UTC)
    assert _expiry("the trusted CA X", now + dt.timedelta(days=ended), now) == [f"the trusted CA X {said}"]
