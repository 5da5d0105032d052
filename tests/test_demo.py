"""certkit demo: every row of the client-vs-server matrix, run for real, for TLS 1.2 and 1.3."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from certkit import demo as demo_lib
from certkit.cli import main

from conftest import REPO, assert_clean_error, certkit_env, run_certkit
from docs_runner import run_page, steps

# What each row must show, written out here (not read from certkit.demo) so that a
# change in the demo's expectations cannot make this test agree with itself.
MATRIX = [
    ("client certificate (CN=alice)", "accepted", "ok"),
    ("server certificate presented as client", "rejected", "unsuitable certificate purpose"),
    ("no certificate", "rejected", "peer did not return a certificate"),
    ("client certificate from another CA", "rejected", "unable to get local issuer certificate"),
    ("expired client certificate (CN=bob)", "rejected", "certificate has expired"),
    ("server certificate, right name (localhost)", "accepted", "ok"),
    ("wrong hostname (www.example.com)", "rejected", "Hostname mismatch"),
    ("client certificate presented as server", "rejected", "unsuitable certificate purpose"),
]
# The section after the matrix: certkit's one exception, accepted on both sides.
PEER_ROWS = [
    ("peer certificate presented as server", "accepted", "ok"),
    ("peer certificate presented as client", "accepted", "ok"),
]
ALL_ROWS = MATRIX + PEER_ROWS


@pytest.fixture(scope="module", params=["1.2", "1.3"])
def result(request, tmp_path_factory):
    return demo_lib.run_demo(tmp_path_factory.mktemp("demo") / "certs", tls=request.param)


@pytest.mark.parametrize("scenario, outcome, reason", ALL_ROWS, ids=[m[0] for m in ALL_ROWS])
def test_every_row(result, scenario, outcome, reason):
    row = next(r for r in result.rows if r.scenario == scenario)
    assert row.observed == outcome, row
    assert reason in row.reason, row
    assert row.tls_version == f"TLSv{result.tls}" or (outcome == "rejected" and row.tls_version is None)


def test_rows_are_exactly_the_matrix(result):
    """Today's matrix first and unchanged, then the peer section."""
    assert [(r.scenario, r.expected) for r in result.rows] == [(s, o) for s, o, _ in ALL_ROWS]
    assert [r.group for r in result.rows[len(MATRIX):]] == [demo_lib.GROUP_PEER] * len(PEER_ROWS)
    assert demo_lib.GROUP_PEER not in {r.group for r in result.rows[:len(MATRIX)]}
    assert result.ok and not result.mismatches


def test_peer_passes_the_checks_that_refused_the_swapped_certificates(result):
    """The peer rows face the same server (requiring a client certificate, trusting the demo CA)
    that refused the server certificate, and the same client check (localhost) that refused the
    client certificate: only the peer certificate's two usages make the difference."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder = result.folder
    ca = x509.load_pem_x509_certificate((folder / "ca" / "ca.pem").read_bytes())
    peer = x509.load_pem_x509_certificate((folder / "peer" / "cert.pem").read_bytes())
    server = x509.load_pem_x509_certificate((folder / "server" / "cert.pem").read_bytes())
    peer.verify_directly_issued_by(ca)
    eku = peer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    names = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names == server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    by_scenario = {r.scenario: r for r in result.rows}
    assert by_scenario["server certificate presented as client"].observed == "rejected"
    assert by_scenario["peer certificate presented as client"].observed == "accepted"
    assert by_scenario["client certificate presented as server"].observed == "rejected"
    assert by_scenario["peer certificate presented as server"].observed == "accepted"


def test_swapped_certificates_fail_for_purpose_only(result):
    """The swapped certificates are otherwise acceptable: same CA, in date, and (for the
    client one posing as a server) valid for the name, so purpose is the only cause."""
    folder = result.folder
    swapped = x509.load_pem_x509_certificate((folder / "client-localhost" / "cert.pem").read_bytes())
    san = swapped.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate((folder / "ca" / "ca.pem").read_bytes())
    for name in ("server", "client-localhost", "client"):
        cert = x509.load_pem_x509_certificate((folder / name / "cert.pem").read_bytes())
        cert.verify_directly_issued_by(ca)


def test_mismatch_is_reported(tmp_path):
    """A matrix that does not turn out as expected is caught: swap the expired client
    certificate for a valid one, and that row must come out accepted, not rejected."""
    folder = tmp_path / "certs"
    demo_lib.make_certificates(folder)
    for name in ("cert.pem", "fullchain.pem", "privkey.pem"):
        (folder / "expired-client" / name).write_bytes((folder / "client" / name).read_bytes())
    rows = demo_lib.run_handshakes(folder)
    bad = [r for r in rows if not r.as_expected]
    assert [r.scenario for r in bad] == ["expired client certificate (CN=bob)"]
    assert bad[0].observed == "accepted"


def test_cli_exits_1_when_a_row_differs(tmp_path, monkeypatch):
    real = demo_lib.make_certificates

    def sabotaged(folder: Path) -> None:
        real(folder)
        for name in ("cert.pem", "fullchain.pem", "privkey.pem"):
            (folder / "expired-client" / name).write_bytes((folder / "client" / name).read_bytes())

    monkeypatch.setattr(demo_lib, "make_certificates", sabotaged)
    proc = CliRunner().invoke(main, ["demo"])
    assert proc.exit_code == 1, proc.output
    assert "NOT AS EXPECTED" in proc.stdout
    assert "Error: 1 outcome(s) differ from the expected: expired client certificate (CN=bob): " \
           "expected rejected, observed accepted" in proc.stderr


def test_cli_table_and_exit_0(tmp_path):
    proc = run_certkit("demo", cwd=tmp_path, env=certkit_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "10 of 10 outcomes as expected." in proc.stdout
    lines = proc.stdout.splitlines()
    for scenario, outcome, reason in ALL_ROWS:
        line = next(ln for ln in lines if ln.strip().startswith(scenario))
        expected_reason = "handshake completed" if reason == "ok" else reason
        assert f"{outcome}  {outcome}" in line and expected_reason in line, line
    assert "clientAuth" in proc.stdout and "serverAuth" in proc.stdout  # the explanation
    # The peer section comes after the matrix, with its one sentence on why two certificates are better.
    matrix_end = proc.stdout.index("client certificate presented as server")
    peer_start = proc.stdout.index("The one exception: a peer certificate (serverAuth and clientAuth) on either side:")
    assert matrix_end < peer_start < proc.stdout.index("10 of 10 outcomes as expected.")
    assert "Why certkit still prefers two certificates:" in proc.stdout[peer_start:]
    assert list(tmp_path.iterdir()) == []  # nothing left behind without --keep


def test_cli_json(tmp_path):
    proc = run_certkit("demo", "--json", "--tls", "1.2", cwd=tmp_path, env=certkit_env())
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["tls_version"] == "1.2"
    assert data["folder"] is None and data["files"] is None
    assert isinstance(data["explanation"], str)
    assert data["peer_explanation"].startswith("Why certkit still prefers two certificates:")
    assert len(data["rows"]) == len(ALL_ROWS)
    assert [row["group"] for row in data["rows"][len(MATRIX):]] == [demo_lib.GROUP_PEER] * len(PEER_ROWS)
    for row, (scenario, outcome, reason) in zip(data["rows"], ALL_ROWS, strict=True):
        assert set(row) >= {"group", "scenario", "expected", "observed", "as_expected", "reason",
                            "expected_reason", "explanation", "tls_version", "server_error", "client_error"}
        assert (row["scenario"], row["expected"], row["observed"], row["as_expected"]) == \
               (scenario, outcome, outcome, True)
        assert reason in row["reason"]


def test_cli_keep_writes_bundles(tmp_path):
    proc = run_certkit("demo", "--keep", "kept", cwd=tmp_path, env=certkit_env())
    assert proc.returncode == 0, proc.stderr
    kept = tmp_path / "kept"
    assert sorted(p.name for p in kept.iterdir()) == sorted(demo_lib.FOLDERS)
    for name in demo_lib.FOLDERS:
        if name != "ca":
            key = kept / name / "privkey.pem"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "Certificates kept in kept/" in proc.stdout


def test_cli_keep_refuses_non_empty_folder(tmp_path):
    target = tmp_path / "kept"
    target.mkdir()
    (target / "mine.txt").write_text("do not touch")
    proc = run_certkit("demo", "--keep", target, env=certkit_env())
    assert_clean_error(proc, "already exists and is not an empty folder")
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_cli_keep_where_no_folder_can_be_made_names_that_folder(tmp_path):
    """/proc takes no new folders: the error names the folder given, not the temporary one the
    demo would have assembled it under."""
    proc = run_certkit("demo", "--keep", "/proc/certkit-demo", env=certkit_env())
    assert_clean_error(proc, "Cannot write the demo's certificates in /proc/certkit-demo: no such file or directory")
    assert "tmp" not in proc.stderr


def test_docs_page_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run_page(REPO / "docs" / "demo.md", cwd=work, env=certkit_env())
    assert any(s.text.startswith("certkit demo") for s in steps(REPO / "docs" / "demo.md"))


def test_docs_runner_catches_drift(tmp_path):
    """The doc runner must fail on a documented line the program does not print, and on a
    command whose exit status contradicts the page."""
    page = tmp_path / "page.md"
    work = tmp_path / "work"
    work.mkdir()
    page.write_text("```console\n$ echo one two\none ... two\n```\n")
    assert len(steps(page)) == 1
    run_page(page, cwd=work, env=certkit_env())
    for body in ("$ echo one\ntwo\n", "$ false\n", "$ true\nError: expected failure\n"):
        page.write_text(f"```console\n{body}```\n")
        with pytest.raises(AssertionError):
            run_page(page, cwd=work, env=certkit_env())


@pytest.mark.parametrize("keep", [True, False], ids=["keep", "temporary"])
def test_interrupted_demo_says_what_it_leaves(tmp_path, keep):
    """Ctrl-C after the certificates are written: exit 130 at once, and the kept folder (complete,
    keys included) is named; without --keep the temporary folder is gone."""
    import signal
    import time

    from integrity_helpers import interrupt, start_paused

    args = ["demo", *(["--keep", "kept"] if keep else [])]
    env = certkit_env(TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    proc = start_paused(args, env, tmp_path, "handshakes", tmp_path / "paused")
    started = time.monotonic()
    outcome = interrupt(proc, signal.SIGINT, tmp_path / "paused")
    assert time.monotonic() - started < 20  # at once: not held until the paused step gives up (60 s)
    assert outcome.returncode == 130 and "Traceback" not in outcome.stderr, outcome.stderr
    if keep:
        assert outcome.stderr.strip().splitlines()[-1] == (
            "Interrupted: the demo's certificates and keys are in kept; not every handshake ran.")
        assert (tmp_path / "kept" / "client" / "privkey.pem").exists()
    else:
        assert outcome.stderr.strip() == "Interrupted."
    assert list((tmp_path / "tmp").iterdir()) == []
