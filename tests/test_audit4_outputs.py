"""Round-four audit findings on outputs, fleets and list (each test fails on the code before its fix).

- ``--force`` over a jsonl/k8s/tar file: certificates of the old file that no new one replaces no
  longer claim to be in it, and the command says so; names in another order still count as the same.
- A standard stream closed at start (``>&-``): one ``Error:`` line where data would go nowhere, and
  no later file (a key) takes the closed descriptor's number.
- Long host names in a batch into one file, as the single commands take them.
- ``--out ./-`` is never reported as ``-`` (standard output).
- Timer arguments are normalized paths: installing again from another folder changes nothing.
- Control characters (a newline) in a path certkit creates are refused.
- ``list`` on a narrow terminal wraps its note and keeps the names; ``--json --limit`` gives the total.
- ``inspect`` calls a certificate self-signed by its signature, not by equal names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_clean_error, certkit_env, run_certkit

LONG_HOST = ".".join(["a" * 63] * 3 + ["b" * 30, "example"])  # 230 bytes: a valid host name


def _listed(env: dict, pattern: str) -> dict[str, dict]:
    rows = json.loads(run_certkit("list", "--name", pattern, "--json", env=env, check=True).stdout)["certificates"]
    return {row["names"][0]: row for row in rows}


def _serials_in_jsonl(path: Path) -> set[str]:
    return {json.loads(line)["serial"] for line in path.read_text().splitlines()}


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_force_over_a_file_releases_what_it_no_longer_holds(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                            fmt: str) -> None:
    (tmp_path / "one.csv").write_text("kind,names\nserver,f1.ff.example.com\nserver,f2.ff.example.com\n")
    (tmp_path / "two.csv").write_text("kind,names\nserver,f2.ff.example.com\nserver,f3.ff.example.com\n")
    out = tmp_path / f"fleet.{fmt}"
    run_certkit("issue-batch", "one.csv", "--format", fmt, "--out", out, cwd=tmp_path, env=ca_env, check=True)
    before = _listed(ca_env, "*.ff.example.com")
    proc = run_certkit("issue-batch", "two.csv", "--format", fmt, "--out", out, "--force", "--json",
                       cwd=tmp_path, env=ca_env, check=True)
    assert json.loads(proc.stdout)["released"] == [before["DNS:f1.ff.example.com"]["serial"]]
    rows = json.loads(run_certkit("list", "--name", "*.ff.example.com", "--json", env=ca_env,
                                  check=True).stdout)["certificates"]
    in_file = {r["serial"] for r in rows if r["folder"] == str(out) and r["status"] == "valid" and not r["renewed_by"]}
    f1 = next(r for r in rows if r["serial"] == before["DNS:f1.ff.example.com"]["serial"])
    f2_old = next(r for r in rows if r["serial"] == before["DNS:f2.ff.example.com"]["serial"])
    assert f1["status"] == "valid" and f1["folder"] is None  # still valid, no longer said to be in the file
    assert f2_old["renewed_by"]  # replaced by the new f2: recorded as succeeded
    assert len(in_file) == 2
    if fmt == "jsonl":
        assert in_file == _serials_in_jsonl(out)
    refused = run_certkit("renew", before["DNS:f1.ff.example.com"]["serial"], env=ca_env)
    assert_clean_error(refused, "overwritten")


def test_force_over_a_file_with_names_in_another_order_replaces(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    out = tmp_path / "o.jsonl"
    run_certkit("issue-server", "o1.example.com", "o2.example.com", "--format", "jsonl", "--out", out,
                env=ca_env, check=True)
    proc = run_certkit("issue-server", "o2.example.com", "o1.example.com", "--format", "jsonl", "--out", out,
                       "--force", "--json", env=ca_env, check=True)
    assert json.loads(proc.stdout)["released"] == []
    rows = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    current = [r for r in rows if r["status"] == "valid" and not r["renewed_by"]]
    assert [r["serial"] for r in current] == [json.loads(proc.stdout)["serial"]]
    run_certkit("renew", "o1.example.com", "--out", tmp_path / "renewed", env=ca_env, check=True)  # not ambiguous


def test_a_single_force_over_a_file_names_the_certificate_it_released(tmp_path: Path, ca_dir: Path,
                                                                      ca_env: dict) -> None:
    out = tmp_path / "x.tar"
    first = json.loads(run_certkit("issue-server", "a.example.com", "--format", "tar", "--out", out, "--json",
                                   env=ca_env, check=True).stdout)["serial"]
    proc = run_certkit("issue-server", "b.example.com", "--format", "tar", "--out", out, "--force", env=ca_env,
                       check=True)
    assert first[:16] in proc.stdout and "Revoke any that nobody else holds" in proc.stdout
    with tarfile.open(out) as archive:
        assert {m.name.split("/")[0] for m in archive.getmembers()} == {"b.example.com"}


def _closed(args: list[str], cwd: Path, env: dict, stream: int = 1) -> subprocess.CompletedProcess:
    """``certkit ARGS`` with one standard descriptor closed, as ``>&-`` (1) or ``<&-`` (0) leaves it."""
    other = 2 if stream == 1 else 1
    script = (f"import os, subprocess, sys; os.close({stream}); "
              f"sys.exit(subprocess.run([sys.executable, '-m', 'certkit', *sys.argv[1:]], "
              f"stdin=None if {stream} == 0 else subprocess.DEVNULL, pass_fds=()).returncode)")
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, timeout=60,
                          stdout=subprocess.PIPE if other == 1 else None, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("args", [
    ["issue-server", "cl1.example.com", "--format", "jsonl"],
    ["issue-client", "csc", "--format", "k8s"],
    ["issue-batch", "m.csv", "--format", "tar"],
    ["crl"],
], ids=["issue-server", "issue-client", "issue-batch", "crl"])
def test_closed_standard_output_is_one_error_and_nothing_issued(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                args: list[str]) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,cs1.example.com\n")
    proc = _closed(args, tmp_path, ca_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: Standard output is closed") and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    listed = json.loads(run_certkit("list", "--status", "abandoned", "--json", env=ca_env, check=True).stdout)
    assert listed["certificates"] == [] and "valid" not in run_certkit("list", env=ca_env).stdout


def test_list_and_bundles_with_standard_output_closed(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    assert _closed(["list"], tmp_path, ca_env).returncode == 0
    proc = _closed(["issue-server", "k.example.com", "--out", "k"], tmp_path, ca_env)
    assert proc.returncode == 0, proc.stderr
    # the key file did not take descriptor 1: it holds the key, and nothing else was written into it
    key = (tmp_path / "k" / "privkey.pem").read_text()
    assert key.startswith("-----BEGIN PRIVATE KEY-----") and key.count("-----BEGIN") == 1
    assert "Issued" not in key


def test_closed_standard_input_reads_as_empty(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    proc = _closed(["issue-batch", "-", "--out-dir", "x"], tmp_path, ca_env, stream=0)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: The manifest on standard input lists no certificates")


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_a_batch_into_one_file_takes_the_long_names_single_issuance_takes(tmp_path: Path, ca_dir: Path,
                                                                           ca_env: dict, fmt: str) -> None:
    (tmp_path / "m.csv").write_text(f"kind,names\nserver,{LONG_HOST}\n")
    run_certkit("issue-server", LONG_HOST, "--format", fmt, "--out", tmp_path / f"s.{fmt}", env=ca_env, check=True)
    run_certkit("issue-batch", "m.csv", "--format", fmt, "--out", f"b.{fmt}", cwd=tmp_path, env=ca_env, check=True)
    if fmt == "tar":
        with tarfile.open(tmp_path / "b.tar") as archive:
            assert f"{LONG_HOST}/cert.pem" in archive.getnames()


def test_a_batch_into_folders_still_refuses_a_name_too_long_for_a_folder(tmp_path: Path, ca_dir: Path,
                                                                         ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text(f"kind,names\nserver,{LONG_HOST}\n")
    proc = run_certkit("issue-batch", "m.csv", "--out-dir", "d", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "at most 213 bytes")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", [["issue-server", "d4.example.com"], ["issue-batch", "m5.csv"]])
def test_a_file_named_dash_is_never_reported_as_standard_output(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                               command: list[str]) -> None:
    (tmp_path / "m5.csv").write_text("kind,names\nserver,d5.example.com\n")
    proc = run_certkit(*command, "--format", "jsonl", "--out", "./-", "--json", cwd=tmp_path, env=ca_env,
                       check=True)
    assert json.loads(proc.stdout)["file"] == "./-"
    assert (tmp_path / "-").stat().st_mode & 0o777 == 0o600
    again = run_certkit(*command, "--format", "jsonl", "--out", "./-", cwd=tmp_path, env=ca_env)
    assert_clean_error(again, "./- already exists")
    text = run_certkit(*command, "--format", "jsonl", "--out", "./-", "--force", cwd=tmp_path, env=ca_env,
                       check=True).stdout
    assert " to ./- (mode 0600" in text


def test_timer_paths_are_normalized(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    secret = tmp_path / "pp"
    secret.write_text(ca_env["CERTKIT_CA_PASSPHRASE"] + "\n")
    secret.chmod(0o600)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    run_certkit("renew", "--install-timer", "--unit-dir", "u5", "--passphrase-file", "pp", cwd=tmp_path, env=env,
                check=True)
    service = (tmp_path / "u5" / "certkit-renew.service").read_text()
    assert f'"--passphrase-file" "{secret}"' in service and "/../" not in service
    (tmp_path / "sub").mkdir()
    for cwd, unit_dir, secret_arg in ((tmp_path / "u5", ".", "../pp"), (tmp_path / "sub", "../u5", "../sub/../pp")):
        run_certkit("renew", "--install-timer", "--unit-dir", unit_dir, "--passphrase-file", secret_arg, cwd=cwd,
                    env=env, check=True)
    assert (tmp_path / "u5" / "certkit-renew.service").read_text() == service


@pytest.mark.parametrize("out", ["fold\nx", "tab\tname", "esc\x1b[31m"])
@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_control_characters_in_output_paths_are_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, out: str,
                                                        fmt: str) -> None:
    proc = run_certkit("issue-server", "nl1.example.com", "--format", fmt, "--out", out, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "control character")
    assert os.listdir(tmp_path) == ["ca"]


def test_hooks_get_one_folder_per_line(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    for name, folder in (("nl1", "plain one"), ("nl2", "plain")):
        run_certkit("issue-server", f"{name}.example.com", "--days", "5", "--out", folder, cwd=tmp_path,
                    env=ca_env, check=True)
    hook = 'printf "%s\\n" "$CERTKIT_FOLDERS" > folders.txt'
    run_certkit("renew", "--expiring", "7d", "--days", "60", "--exec-once", hook, cwd=tmp_path, env=ca_env,
                check=True)
    folders = (tmp_path / "folders.txt").read_text().splitlines()
    assert sorted(folders) == sorted([str(tmp_path / "plain one"), str(tmp_path / "plain")])
    assert all(Path(f).is_dir() for f in folders)


def _list_on_terminal(env: dict, columns: int, *args: str) -> str:
    """``certkit list ARGS`` on a pseudo-terminal COLUMNS wide (the pager: cat)."""
    import pty

    command = [sys.executable, "-c", "import sys; from certkit.entry import main; sys.exit(main())",
               "list", *args]
    script = f"stty cols {columns} rows 50; exec \"$@\""
    leader, follower = pty.openpty()
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}  # the terminal's size, not these
    proc = subprocess.Popen(["sh", "-c", script, "sh", *command], stdin=follower, stdout=follower,
                            stderr=follower, env=dict(env, PAGER="cat", PYTHONPATH=str(REPO)), close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(30)
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_list_fits_a_narrow_terminal_without_cutting_words(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    for i in range(6):
        run_certkit("issue-server", f"host{i}.example.com", "--out", tmp_path / f"h{i}", env=ca_env, check=True)
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    text = _list_on_terminal(ca_env, 70, "--limit", "5")
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(len(line) <= 70 for line in lines), text
    assert "…" not in "".join(line for line in lines if not line[:1].isalnum() or "…" not in line[:17]).replace(
        "…  ", ""), text  # only the serials are shortened
    assert sum("example.com" in line for line in lines) == 5, text
    assert "revoke" in text and "5 of 7 certificates" in text, text
    wide = _list_on_terminal(ca_env, 120)
    assert "CN=alice" in wide and "alice" in _list_on_terminal(ca_env, 70), wide


def test_list_json_says_how_many_match_beyond_the_limit(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    for i in range(4):
        run_certkit("issue-client", f"user{i}", "--out", tmp_path / f"u{i}", env=ca_env, check=True)
    limited = json.loads(run_certkit("list", "--limit", "3", "--json", env=ca_env, check=True).stdout)
    assert (limited["count"], limited["total"], limited["limit"]) == (3, 4, 3)
    whole = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)
    assert (whole["count"], whole["total"], whole["limit"]) == (4, 4, None)


def test_inspect_calls_self_signed_only_what_signed_itself(tmp_path: Path) -> None:
    """A self-issued certificate (its issuer's name, another key: a CA's key rollover, or an intermediate
    named as its root) is not self-signed; openssl agrees."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.conftest import openssl

    env = certkit_env(HOME=str(tmp_path))
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--no-passphrase", "--name", "Same Name", env=env,
                check=True)
    root_cert = x509.load_pem_x509_certificate((tmp_path / "root" / "ca.pem").read_bytes())
    root_key = serialization.load_pem_private_key((tmp_path / "root" / "ca-key.pem").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = (x509.CertificateBuilder().subject_name(root_cert.subject).issuer_name(root_cert.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                             critical=False)
              .sign(root_key, hashes.SHA256()))
    (tmp_path / "issued.pem").write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    assert openssl("verify", "-CAfile", str(tmp_path / "root" / "ca.pem"), str(tmp_path / "issued.pem")
                   ).returncode == 0  # signed by the root's key, not its own
    for path, expected in ((tmp_path / "root" / "ca.pem", True), (tmp_path / "issued.pem", False)):
        data = json.loads(run_certkit("inspect", "--json", path, env=env, check=True).stdout)
        assert data["items"][0]["self_signed"] is expected, data
        text = run_certkit("inspect", path, env=env, check=True).stdout
        assert ("(self-signed)" in text) is expected, text


def test_an_intermediate_never_carries_the_name_of_a_ca_above_it(tmp_path: Path) -> None:
    """Without --name an intermediate gets a default of its own; with its parent's name it is refused
    before the parent's passphrase is asked for (none is given here), by the CLI and the library alike."""
    from cryptography import x509

    from certkit import CA
    from certkit.errors import InvalidName
    from certkit.store import CADirectory
    from tests.conftest import PASSPHRASE, openssl

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", env=env, check=True)
    parent_env = dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "sub", "--parent-ca-dir", tmp_path / "root", env=parent_env,
                check=True)
    root = x509.load_pem_x509_certificate((tmp_path / "root" / "ca.pem").read_bytes())
    sub = x509.load_pem_x509_certificate((tmp_path / "sub" / "ca.pem").read_bytes())
    assert sub.subject != root.subject and sub.issuer == root.subject
    assert sub.subject.rfc4514_string().startswith("CN=certkit intermediate CA ")
    assert openssl("verify", "-x509_strict", "-CAfile", str(tmp_path / "root" / "ca.pem"),
                   str(tmp_path / "sub" / "ca.pem")).returncode == 0
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "again", "--parent-ca-dir", tmp_path / "root",
                       "--name", root.subject.rfc4514_string()[3:], "--no-passphrase",
                       env=env)  # no parent passphrase: it is not asked for
    assert_clean_error(proc, "would carry the name of the CA above it")
    assert not (tmp_path / "again").exists()
    root_ca = CADirectory(tmp_path / "root").load(PASSPHRASE)
    with pytest.raises(InvalidName, match="name of the CA above it"):
        CA.create(root.subject.rfc4514_string()[3:], parent=root_ca)


@pytest.mark.parametrize("cn", ["10.0.0.1", "::1", "spiffe://example.org/ns/prod/sa/billing", "https://a.example.com"])
def test_sign_csr_client_refuses_the_common_names_issue_client_refuses(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                       cn: str) -> None:
    """A client CSR whose CN is an address or a URL gets issue-client's refusal, in a CSR's words."""
    from tests.conftest import openssl

    subject = "/CN=" + cn.replace("/", "\\/")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(tmp_path / "k.key"), "-subj", subject, "-out", str(tmp_path / "r.csr"))
    assert_clean_error(run_certkit("issue-client", cn, env=ca_env, cwd=tmp_path), "client certificate's NAME")
    proc = run_certkit("sign-csr", tmp_path / "r.csr", "--client", "--out", tmp_path / "out", env=ca_env)
    assert_clean_error(proc, f"The CSR's common name '{cn}' is")
    assert "--server" in proc.stderr or "subjectAltName" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert run_certkit("list", "--json", env=ca_env, check=True).stdout.count('"serial"') == 0


@pytest.mark.parametrize("flag", ["--server", "--peer"])
def test_sign_csr_server_with_an_email_common_name_points_to_client(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                    flag: str) -> None:
    from tests.conftest import openssl

    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(tmp_path / "k.key"), "-subj", "/CN=bob@example.com", "-out", str(tmp_path / "r.csr"))
    proc = run_certkit("sign-csr", tmp_path / "r.csr", flag, "--out", tmp_path / "out", env=ca_env)
    assert_clean_error(proc, "sign it with --client")
    assert "issue-client" not in proc.stderr
    run_certkit("sign-csr", tmp_path / "r.csr", "--client", "--out", tmp_path / "out", env=ca_env, check=True)


def test_renewing_a_peer_certificate_says_what_it_is(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """issue-peer warns every time it runs; so does every renewal that makes a new peer certificate."""
    run_certkit("issue-peer", "p1.internal", "--out", tmp_path / "p1", "--days", "5", env=ca_env, check=True)
    run_certkit("issue-server", "s1.internal", "--out", tmp_path / "s1", "--days", "5", env=ca_env, check=True)
    for args in (["renew", tmp_path / "p1"], ["renew", tmp_path / "p1", "--rekey"]):
        proc = run_certkit(*args, env=ca_env, check=True)
        assert proc.stderr.count("Warning: a peer certificate carries both serverAuth and clientAuth") == 1, proc
    quiet = run_certkit("renew", tmp_path / "s1", env=ca_env, check=True)
    assert "Warning" not in quiet.stderr
    bulk = run_certkit("renew", "--expiring", "30d", env=ca_env, check=True)
    assert "Renewed 2 of 2" in bulk.stdout
    assert bulk.stderr.count("1 of the certificates to renew is a peer certificate") == 1, bulk.stderr
    assert run_certkit("renew", "--expiring", "1d", env=ca_env, check=True).stderr == ""  # nothing due: quiet


# --- the regression audit of the fixes above -------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_force_over_a_file_replaces_a_client_known_by_its_name_alone(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                     fmt: str) -> None:
    out = tmp_path / f"c.{fmt}"
    first = json.loads(run_certkit("issue-client", "u2", "--format", fmt, "--out", out, "--json", env=ca_env,
                                   check=True).stdout)["serial"]
    again = json.loads(run_certkit("issue-client", "u2", "--format", fmt, "--out", out, "--force", "--json",
                                   env=ca_env, check=True).stdout)
    assert again["released"] == [] and not any("Revoke" in n for n in again["notes"])
    rows = {r["serial"]: r for r in json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)
            ["certificates"]}
    assert rows[first]["renewed_by"] == again["serial"]
    (tmp_path / "m.csv").write_text("kind,names\nclient,u2\nclient,u3\n")
    batch = run_certkit("issue-batch", "m.csv", "--format", fmt, "--out", out, "--force", "--json", cwd=tmp_path,
                        env=ca_env, check=True)
    assert json.loads(batch.stdout)["released"] == []


def test_force_through_a_link_above_the_file_releases_what_it_held(tmp_path: Path, ca_dir: Path,
                                                                   ca_env: dict) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    first = json.loads(run_certkit("issue-server", "b.test", "--format", "jsonl", "--out", tmp_path / "f.jsonl",
                                   "--json", env=ca_env, check=True).stdout)["serial"]
    proc = run_certkit("issue-server", "c.test", "--format", "jsonl", "--out", tmp_path / "link" / "f.jsonl",
                       "--force", "--json", env=ca_env, check=True)
    assert json.loads(proc.stdout)["released"] == [first]
    rows = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert {r["folder"] for r in rows if r["status"] == "valid"} == {None, str(tmp_path / "f.jsonl")}


def test_a_crl_of_another_ca_with_the_same_name_is_not_replaced_without_force(tmp_path: Path) -> None:
    env = certkit_env(HOME=str(tmp_path))
    for name in ("a", "b"):
        run_certkit("init-ca", "--ca-dir", tmp_path / name, "--name", "Same Name", "--no-passphrase", env=env,
                    check=True)
    run_certkit("crl", "--ca-dir", tmp_path / "a", "--out", tmp_path / "crl.pem", env=env, check=True)
    before = (tmp_path / "crl.pem").read_bytes()
    proc = run_certkit("crl", "--ca-dir", tmp_path / "b", "--out", tmp_path / "crl.pem", env=env)
    assert_clean_error(proc, "is not a CRL of this CA")
    assert (tmp_path / "crl.pem").read_bytes() == before
    run_certkit("crl", "--ca-dir", tmp_path / "a", "--out", tmp_path / "crl.pem", env=env, check=True)  # A's own
    run_certkit("crl", "--ca-dir", tmp_path / "b", "--out", tmp_path / "crl.pem", "--force", env=env, check=True)


@pytest.mark.parametrize("name", ["Root R4", "root r4", "ROOT  R4", "rOoT r4"])
def test_an_intermediate_named_as_its_root_in_another_case_or_spacing_is_refused(tmp_path: Path,
                                                                                 name: str) -> None:
    env = certkit_env(HOME=str(tmp_path))
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "Root R4", "--no-passphrase", env=env,
                check=True)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "sub", "--parent-ca-dir", tmp_path / "root", "--name", name,
                       "--no-passphrase", env=env)
    assert_clean_error(proc, "would carry the name of the CA above it")


@pytest.mark.parametrize("args", [["issue-client", "erin", "--json"], ["list", "--json"], ["inspect", "--json", "X"]],
                         ids=["issue-client", "list", "inspect"])
def test_json_to_a_full_disk_is_one_error_line(tmp_path: Path, ca_dir: Path, ca_env: dict, args: list[str]) -> None:
    args = [str(ca_dir / "ca.pem") if a == "X" else a for a in args]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "certkit", *args], cwd=tmp_path, env=ca_env, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    # round fourteen (tests/test_audit14_integrity.py): the words say it is standard output that failed
    assert proc.returncode == 1 and proc.stderr == (
        "Error: Cannot write to standard output: the disk is full. What the command did before this is done; "
        "it stopped there, its report cut short.\n"), proc.stderr


@pytest.mark.parametrize("args", [["crl", "--json"], ["issue-server", "z.test", "--format", "jsonl", "--out", "-",
                                                       "--json"]], ids=["crl", "jsonl"])
def test_json_errors_with_standard_output_closed_go_to_standard_error(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                      args: list[str]) -> None:
    proc = _closed(args, tmp_path, ca_env)
    assert proc.returncode in (1, 2) and "Error: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("out", ["x5\u0085", "x6\u2028y", "x7\u2029", "x8\x9b"])
def test_unicode_line_breaks_in_output_paths_are_refused(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                         out: str) -> None:
    proc = run_certkit("issue-server", "x.test", "--out", out, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "control character")


@pytest.mark.parametrize("columns", [50, 60])
def test_list_keeps_the_expiry_date_on_a_very_narrow_terminal(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                              columns: int) -> None:
    run_certkit("issue-server", "localhost.example.com", "--out", tmp_path / "l", env=ca_env, check=True)
    text = _list_on_terminal(ca_env, columns)
    row = next(line for line in text.splitlines() if "server" in line)
    assert len(row) <= columns and row.split()[3].count("-") == 2 and len(row.split()[3]) == 10, text
    assert "NOT AFTER" in text, text


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_probe_says_an_out_of_date_server_certificate_is_not_valid_now(tmp_path: Path, ca_dir: Path,
                                                                       ca_env: dict, when: str) -> None:
    """A certificate of the right CA, out of date: not 'not trusted by the CA' but not valid now."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from tests.conftest import PASSPHRASE, free_port, wait_listening, wait_or_kill

    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = ((now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if when == "expired"
                  else (now + dt.timedelta(days=1), now + dt.timedelta(days=10)))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "s.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "s.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(tmp_path / "s.pem"),
                               "-key", str(tmp_path / "s.key"), "-www", "-quiet"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, env=ca_env)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    reason = "certificate has expired" if when == "expired" else "certificate is not yet valid"
    assert f"the server's certificate is not valid now ({reason}" in proc.stderr, proc.stderr
    assert "not trusted" not in proc.stderr


def test_acme_serve_that_cannot_start_leaves_no_valid_certificate_of_its_own(tmp_path: Path) -> None:
    """acme serve issues its own HTTPS certificate before it prints where it listens; a start that fails
    there (its summary to a full disk) revokes that certificate: its key lived in that process alone."""
    pytest.importorskip("josepy")
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--name", "ACME start CA", "--permit-dns", "localhost", "--permit-ip", "127.0.0.0/8",
                "--no-passphrase", env=env, check=True)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "certkit", "acme", "serve", "--port", "0"], cwd=tmp_path,
                              env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1].startswith(
        "Error: Cannot write to standard output: the disk is full."), proc.stderr  # round fourteen's words
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [(r["status"], r["revocation_reason"]) for r in rows] == [("revoked", "cessationOfOperation")]


def test_an_sqlite_inventory_of_another_ca_is_refused(tmp_path: Path) -> None:
    """$CERTKIT_INVENTORY_URL naming the SQLite file in another CA's directory: refused, as a PostgreSQL
    inventory of another CA is, and nothing is written into it."""
    env = certkit_env(HOME=str(tmp_path))
    for name in ("x", "y"):
        run_certkit("init-ca", "--ca-dir", tmp_path / name, "--name", f"CA {name}", "--no-passphrase", env=env,
                    check=True)
    run_certkit("issue-client", "xuser", "--ca-dir", tmp_path / "x", "--out", tmp_path / "xuser", env=env, check=True)
    wrong = dict(env, CERTKIT_CA_DIR=str(tmp_path / "y"), CERTKIT_INVENTORY_URL=str(tmp_path / "x" /
                                                                                    "inventory.sqlite3"))
    for args in (["list"], ["issue-client", "intruder", "--out", str(tmp_path / "intruder")], ["crl"]):
        assert_clean_error(run_certkit(*args, env=wrong), "belongs to another CA")
    assert not (tmp_path / "intruder").exists()
    rows = json.loads(run_certkit("list", "--ca-dir", tmp_path / "x", "--json", env=env, check=True).stdout)
    assert [r["subject"] for r in rows["certificates"]] == ["CN=xuser"]
    assert run_certkit("check", "--ca-dir", tmp_path / "x", env=env).returncode == 0


# --- the core commands' audit -------------------------------------------------------------------------------
def _two_bundles(tmp_path: Path, env: dict) -> None:
    for name in ("app.example", "db.example"):
        run_certkit("issue-server", name, "--out", tmp_path / name, env=env, check=True)


def test_revoke_and_renew_refuse_a_folder_whose_files_disagree(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """cert.pem replaced by hand with another server's: revoking 'the folder' would revoke that server's
    certificate (and, for keyCompromise, every one of its key), while the folder's own stays valid."""
    import shutil

    _two_bundles(tmp_path, ca_env)
    shutil.copytree(tmp_path / "app.example", tmp_path / "r")
    shutil.copy(tmp_path / "db.example" / "cert.pem", tmp_path / "r" / "cert.pem")
    assert_clean_error(run_certkit("revoke", tmp_path / "r", "--reason", "keyCompromise", env=ca_env),
                       "names no one certificate")
    assert_clean_error(run_certkit("renew", tmp_path / "r", env=ca_env), "holds a copy of the certificate")
    statuses = {r["subject"]: r["status"] for r in json.loads(run_certkit("list", "--json", env=ca_env,
                                                                          check=True).stdout)["certificates"]}
    assert statuses == {"CN=app.example": "valid", "CN=db.example": "valid"}
    run_certkit("revoke", tmp_path / "app.example", env=ca_env, check=True)  # a consistent folder: revoked


def test_verify_folder_judges_the_bundle_a_server_would_load(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A bundle whose privkey.pem is another certificate's (openssl s_server: key values mismatch) is not
    valid; one whose ca.pem is another root gets a note; the intact one stays VALID."""
    import shutil

    from tests.conftest import PASSPHRASE

    _two_bundles(tmp_path, ca_env)
    shutil.copytree(tmp_path / "app.example", tmp_path / "k")
    shutil.copy(tmp_path / "db.example" / "privkey.pem", tmp_path / "k" / "privkey.pem")
    proc = run_certkit("verify", tmp_path / "k", "--purpose", "server", env=ca_env)
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout and "privkey.pem is not the key" in proc.stdout
    server = subprocess.run(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                             str(tmp_path / "k" / "fullchain.pem"), "-key", str(tmp_path / "k" / "privkey.pem"),
                             "-naccept", "1"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert server.returncode != 0 and "mismatch" in server.stdout + server.stderr  # the peer's word for it
    other = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Other CA", env=other, check=True)
    shutil.copytree(tmp_path / "app.example", tmp_path / "c")
    shutil.copy(tmp_path / "other" / "ca.pem", tmp_path / "c" / "ca.pem")
    proc = run_certkit("verify", tmp_path / "c", "--purpose", "server", env=ca_env)
    assert proc.returncode == 0 and "not the root this certificate chains to" in proc.stdout
    assert run_certkit("verify", tmp_path / "app.example", "--purpose", "server", env=ca_env).returncode == 0


def test_verify_ca_file_takes_only_a_root_as_openssl_does(tmp_path: Path) -> None:
    from tests.conftest import PASSPHRASE, openssl

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name", "Issuing",
                env=env, check=True)
    run_certkit("issue-server", "web.example", "--ca-dir", tmp_path / "inter", "--out", tmp_path / "web", env=env,
                check=True)
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=env, check=True)
    leaf = str(tmp_path / "web" / "cert.pem")
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tmp_path / "inter" / "ca.pem"),
                   leaf).returncode != 0
    assert_clean_error(run_certkit("verify", leaf, "--purpose", "server", "--ca-file", tmp_path / "inter" / "ca.pem",
                                   env=env), "holds no root CA certificate")
    assert_clean_error(run_certkit("verify", tmp_path / "alice" / "cert.pem", "--purpose", "client", "--ca-file",
                                   tmp_path / "alice" / "cert.pem", env=env), "is not a CA")
    both = tmp_path / "both.pem"
    both.write_bytes((tmp_path / "root" / "ca.pem").read_bytes() + (tmp_path / "inter" / "ca.pem").read_bytes())
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(both), leaf).returncode == 0
    assert run_certkit("verify", leaf, "--purpose", "server", "--ca-file", both, env=env).returncode == 0
