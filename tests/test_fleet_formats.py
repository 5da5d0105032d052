"""--format jsonl|k8s|tar: each output read back by a real reader (openssl on the PEMs of a JSON line,
cfssljson, a YAML parser, the Secret schema and kubectl, tar), served by nginx, and holding certificates
made by the same rules as a bundle folder's; files 0600, keys never on a terminal, refusals before
anything is signed."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit.vocabulary import serial_hex

from conftest import REPO, assert_clean_error, openssl, pkilint_errors, require, run_certkit
from fleet_helpers import (
    jsonl_records,
    load_pem,
    run_in_pty,
    secret_files,
    secrets,
    served_serial,
    tar_listing,
    write_pems,
)
from nginx_helper import https_get, nginx, require_nginx
from x509_asserts import assert_is_leaf

SCHEMA = json.loads((REPO / "tests" / "k8s_secret_schema.json").read_text())
KUBECTL = shutil.which("kubectl")  # not a Debian package: checked where installed, the schema always


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rows(ca_dir: Path) -> dict[str, tuple]:
    """serial -> (status, sink, folder, keyed), from the CA's inventory (SQLite or PostgreSQL)."""
    from certkit.store import CADirectory

    return {r["serial"]: (r["status"], r["sink"], r["folder"], int(r["keyed"]))
            for r in CADirectory(ca_dir).inventory.rows()}


def shape(cert: x509.Certificate, *, names: bool = True) -> list:
    """The extensions, criticality and values that depend neither on the key nor on the serial
    (nor, without ``names``, on the names)."""
    skip = (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier) + (() if names else (x509.SubjectAlternativeName,))
    return sorted((e.oid.dotted_string, e.critical, repr(e.value)) for e in cert.extensions
                  if not isinstance(e.value, skip))


def verify(cert: Path, ca: Path, purpose: str, chain: Path | None = None) -> None:
    good, bad = ("sslserver", "sslclient") if purpose == "server" else ("sslclient", "sslserver")
    extra = ["-untrusted", chain] if chain else []
    ok = openssl("verify", "-x509_strict", "-purpose", good, "-CAfile", ca, *extra, cert)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert openssl("verify", "-x509_strict", "-purpose", bad, "-CAfile", ca, *extra, cert).returncode != 0


def key_matches(cert: Path, key: Path) -> None:
    pub = openssl("x509", "-in", cert, "-noout", "-pubkey")
    assert pub.returncode == 0 and pub.stdout == openssl("pkey", "-in", key, "-pubout").stdout, pub.stderr


def validate_secret(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, SCHEMA)


@pytest.fixture
def folder_cert(tmp_path, ca_env, ca_dir) -> x509.Certificate:
    """What issue-server writes to a folder: the reference every format's certificate must match."""
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", tmp_path / "reference", env=ca_env, check=True)
    return load_pem((tmp_path / "reference" / "cert.pem").read_bytes())


# --- jsonl ------------------------------------------------------------------------------
def test_jsonl_file_read_by_openssl_and_cfssljson(tmp_path, ca_env, ca_dir, folder_cert):
    out = tmp_path / "out" / "web.jsonl"
    out.parent.mkdir()  # certkit makes no folder for an output file (test_audit37_formats3)
    proc = run_certkit("issue-server", "web.example.com", "127.0.0.1", "--format", "jsonl", "--out", out, "--json",
                       env=ca_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["format"] == "jsonl" and summary["file"] == str(out) and summary["key_included"]
    assert mode(out) == 0o600 and out.parent.is_dir()
    assert not [p for p in out.parent.iterdir() if p.name != "web.jsonl"]  # no temporary file left
    [record] = jsonl_records(out)
    assert record["serial"] == summary["serial"] and record["kind"] == "server" and record["name"] == "web.example.com"
    assert record["names"] == ["DNS:web.example.com", "IP:127.0.0.1"] and record["subject"] == "CN=web.example.com"
    assert record["fullchain"] == record["cert"] and record["chain"] == ""  # under a root
    assert record["ca"] == (ca_dir / "ca.pem").read_text()
    pems = write_pems(tmp_path / "pems", cert=record["cert"], key=record["key"], ca=record["ca"])
    verify(pems["cert"], pems["ca"], "server")
    key_matches(pems["cert"], pems["key"])
    cert = load_pem(record["cert"])
    assert_is_leaf(cert, load_pem(record["ca"]), "server")
    assert shape(cert, names=False) == shape(folder_cert, names=False)  # the profile of a bundle folder's
    assert record["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert pkilint_errors(pems["cert"]) == ""
    assert rows(ca_dir)[record["serial"]] == ("valid", "file", str(out), 1)
    # cfssljson reads the line as it reads cfssl's own output: cert and key fields
    cfssljson = require("cfssljson")
    split = subprocess.run([cfssljson, "-bare", "web"], input=out.read_bytes(), cwd=tmp_path, capture_output=True,
                           timeout=30)
    assert split.returncode == 0, split.stderr
    verify(tmp_path / "web.pem", pems["ca"], "server")
    key_matches(tmp_path / "web.pem", tmp_path / "web-key.pem")


def test_jsonl_to_a_pipe_and_from_a_csr(tmp_path, ca_env, ca_dir):
    proc = run_certkit("issue-client", "alice", "--email", "alice@example.com", "--format", "jsonl", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    [record] = jsonl_records(proc.stdout)  # standard output holds the data alone
    assert "Issued a client certificate" in proc.stderr and record["serial"] in proc.stderr
    pems = write_pems(tmp_path / "alice", cert=record["cert"], key=record["key"], ca=record["ca"])
    verify(pems["cert"], pems["ca"], "client")
    assert rows(ca_dir)[record["serial"]] == ("valid", "stream", None, 1)
    # a CSR's certificate: no key in the record, none to keep away from a terminal either
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "web.key", "-subj", "/CN=web.internal", "-out", tmp_path / "web.csr").returncode == 0
    code, shown, _ = run_in_pty(["sign-csr", tmp_path / "web.csr", "--server", "--format", "jsonl"], env=ca_env)
    assert code == 0, shown
    [record] = [json.loads(line) for line in shown.splitlines() if line.startswith("{")]
    assert "key" not in record and record["names"] == ["DNS:web.internal"]
    write_pems(tmp_path / "csr", cert=record["cert"])
    key_matches(tmp_path / "csr" / "cert.pem", tmp_path / "web.key")
    assert rows(ca_dir)[record["serial"]][3] == 0  # keyed: no


# --- k8s --------------------------------------------------------------------------------
def test_k8s_secret_schema_kubectl_and_openssl(tmp_path, ca_env, ca_dir, folder_cert):
    proc = run_certkit("issue-server", "*.apps.example.com", "apps.example.com", "--format", "k8s", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "secret.yaml").write_text(proc.stdout)
    [doc] = secrets(proc.stdout)
    validate_secret(doc)
    assert doc["type"] == "kubernetes.io/tls" and doc["metadata"]["name"] == "wildcard.apps.example.com"
    # the summary names the Secret as the cluster will (kubectl get secret wildcard.apps.example.com)
    assert "a kubernetes.io/tls Secret (wildcard.apps.example.com) to standard output" in proc.stderr
    proc = run_certkit("issue-client", "Bob Smith", "--format", "k8s", "--out", tmp_path / "bob.yaml", "--json",
                       env=ca_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["name"], summary["secret"]) == ("Bob_Smith", "bob-smith")  # the bundle, the Secret
    assert secrets((tmp_path / "bob.yaml").read_text())[0]["metadata"]["name"] == "bob-smith"
    files = secret_files(doc)
    assert set(files) == {"tls.crt", "tls.key", "ca.crt"}
    assert files["ca.crt"] == (ca_dir / "ca.pem").read_bytes()
    cert = load_pem(files["tls.crt"])
    assert doc["metadata"]["annotations"]["certkit/serial"] == serial_hex(cert.serial_number)
    assert doc["metadata"]["annotations"]["certkit/names"] == "DNS:*.apps.example.com, DNS:apps.example.com"
    assert shape(cert, names=False) == shape(folder_cert, names=False)
    pems = write_pems(tmp_path / "pems", crt=files["tls.crt"], key=files["tls.key"], ca=files["ca.crt"])
    verify(pems["crt"], pems["ca"], "server")
    key_matches(pems["crt"], pems["key"])
    assert rows(ca_dir)[doc["metadata"]["annotations"]["certkit/serial"]][:2] == ("valid", "stream")
    if KUBECTL is None:
        return
    # kubectl's own Secret from the same PEMs holds the same data; and kubectl reads our manifest
    made = subprocess.run([KUBECTL, "create", "secret", "tls", "x", "--cert", pems["crt"], "--key", pems["key"],
                           "--dry-run=client", "-o", "json"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    theirs = json.loads(made.stdout)
    assert theirs["type"] == doc["type"]
    assert {k: base64.b64decode(v) for k, v in theirs["data"].items()} == {
        k: v for k, v in files.items() if k != "ca.crt"}
    read = subprocess.run([KUBECTL, "label", "--local", "-f", tmp_path / "secret.yaml", "checked=yes", "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    parsed = json.loads(read.stdout)
    assert parsed["kind"] == "Secret" and parsed["data"] == doc["data"]


def test_k8s_refuses_a_csr_and_bad_names(tmp_path, ca_env, ca_dir):
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "k", "-subj", "/CN=web.internal", "-out", tmp_path / "web.csr").returncode == 0
    before = rows(ca_dir)
    proc = run_certkit("sign-csr", tmp_path / "web.csr", "--server", "--format", "k8s", env=ca_env)
    assert_clean_error(proc, "'k8s' is not one of 'folder', 'jsonl', 'tar'", code=2)  # not offered: no key
    assert_clean_error(run_certkit("issue-client", "@@@", "--format", "k8s", env=ca_env),
                       "gives no usable Kubernetes name")
    for typed, made in (("日本語", "___"), ("é-", "_-"), ("...", "_")):  # the value typed, then what it became
        assert_clean_error(run_certkit("issue-client", typed, "--format", "k8s", env=ca_env),
                           f"'{typed}' gives no usable Kubernetes name: its bundle name, '{made}', has no ASCII")
    # in a batch: each line's Secret name is checked, and two lines may not share one
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,a.example.com,web/a\nserver,b.example.com,web-a\n"
                                    "client,@@@,\n")
    proc = run_certkit("issue-batch", "m.csv", "--format", "k8s", "--out", "s.yaml", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "has 2 bad lines")
    assert "line 3: its name in the output, web-a, is also line 2's" in proc.stderr
    assert "line 4: '@@@' gives no usable Kubernetes name" in proc.stderr
    assert rows(ca_dir) == before and not (tmp_path / "s.yaml").exists()  # refused before anything was signed


# --- tar --------------------------------------------------------------------------------
def test_tar_members_modes_and_extraction(tmp_path, ca_env, ca_dir, folder_cert):
    env = dict(ca_env, CERTKIT_P12_PASSWORD="p12 secret")
    out = tmp_path / "web.tar"
    proc = run_certkit("issue-server", "localhost", "127.0.0.1", "--format", "tar", "--out", out, "--p12", env=env)
    assert proc.returncode == 0, proc.stderr
    assert mode(out) == 0o600
    listing = subprocess.run(["tar", "-tvf", out], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    modes = {line.split()[-1]: line.split()[0] for line in listing.stdout.splitlines()}
    assert modes == {"localhost/": "drwxr-xr-x", "localhost/cert.pem": "-rw-r--r--",
                     "localhost/privkey.pem": "-rw-------", "localhost/fullchain.pem": "-rw-r--r--",
                     "localhost/ca.pem": "-rw-r--r--", "localhost/bundle.p12": "-rw-------"}
    (tmp_path / "x").mkdir()
    assert subprocess.run(["tar", "-xpf", out, "-C", tmp_path / "x"], timeout=30).returncode == 0
    folder = tmp_path / "x" / "localhost"
    assert {p.name for p in folder.iterdir()} == {p.name for p in (tmp_path / "reference").iterdir()} | {"bundle.p12"}
    assert mode(folder / "privkey.pem") == 0o600 and mode(folder / "bundle.p12") == 0o600
    assert mode(folder / "cert.pem") == 0o644
    verify(folder / "cert.pem", folder / "ca.pem", "server")
    key_matches(folder / "cert.pem", folder / "privkey.pem")
    assert shape(load_pem((folder / "cert.pem").read_bytes())) == shape(folder_cert)
    p12 = openssl("pkcs12", "-in", folder / "bundle.p12", "-passin", "pass:p12 secret", "-nokeys", "-clcerts")
    assert p12.returncode == 0 and b"BEGIN CERTIFICATE" in p12.stdout, p12.stderr


# --- nginx serves a certificate taken out of each format ----------------------------------
def test_nginx_serves_a_certificate_from_each_format(tmp_path, ca_env, ca_dir):
    require_nginx()
    served = {}
    for fmt in ("folder", "jsonl", "k8s", "tar"):
        work = tmp_path / fmt
        work.mkdir()
        out = work / ("bundle" if fmt == "folder" else f"out.{fmt}")
        run_certkit("issue-server", "localhost", "--format", fmt, "--out", out, env=ca_env, check=True)
        if fmt == "folder":
            fullchain, key = out / "fullchain.pem", out / "privkey.pem"
        elif fmt == "jsonl":
            [record] = jsonl_records(out)
            paths = write_pems(work / "pems", fullchain=record["fullchain"], key=record["key"])
            fullchain, key = paths["fullchain"], paths["key"]
        elif fmt == "k8s":
            files = secret_files(secrets(out.read_text())[0])
            paths = write_pems(work / "pems", fullchain=files["tls.crt"], key=files["tls.key"])
            fullchain, key = paths["fullchain"], paths["key"]
        else:
            subprocess.run(["tar", "-xf", out, "-C", work], check=True, timeout=30)
            fullchain, key = work / "localhost" / "fullchain.pem", work / "localhost" / "privkey.pem"
        with nginx(work, f"        ssl_certificate {fullchain};\n        ssl_certificate_key {key};") as (port, _):
            status, body = https_get(port, ca_dir / "ca.pem")
            got = served_serial(port, ca_dir / "ca.pem")
        assert status == 200 and body.startswith("verify=NONE"), body
        assert got == load_pem(fullchain.read_bytes()).serial_number
        served[fmt] = got
    assert len(set(served.values())) == 4


# --- issue-batch into one output ------------------------------------------------------------
MANIFEST = ("kind,names,out\nserver,a.example.com,\nserver,b.example.com 10.0.0.2,web/b\n"
            "client,Alice Smith,people/alice\npeer,etcd-1.internal,\n")


@pytest.mark.both_inventories  # one file's rows synced before it is in place, then marked valid: on PostgreSQL too
def test_batch_into_each_format(tmp_path, ca_env, ca_dir):
    (tmp_path / "fleet.csv").write_text(MANIFEST)
    before = set(rows(ca_dir))
    tar = run_certkit("issue-batch", "fleet.csv", "--format", "tar", "--out", "fleet.tar", "--json", cwd=tmp_path,
                      env=ca_env)
    assert tar.returncode == 0, tar.stderr
    assert json.loads(tar.stdout)["issued"] == 4 and mode(tmp_path / "fleet.tar") == 0o600
    members = tar_listing(tmp_path / "fleet.tar")
    folders = {name.rstrip("/") for name, (_mode, data) in members.items() if data is None}
    assert folders == {"a.example.com", "web/b", "people/alice", "etcd-1.internal"}
    assert all(members[f"{f}/privkey.pem"][0] == 0o600 and members[f"{f}/cert.pem"][0] == 0o644 for f in folders)
    purposes = {"a.example.com": "server", "web/b": "server", "people/alice": "client"}
    for folder, purpose in purposes.items():
        pems = write_pems(tmp_path / "t" / folder, cert=members[f"{folder}/cert.pem"][1],
                          key=members[f"{folder}/privkey.pem"][1], ca=members[f"{folder}/ca.pem"][1])
        verify(pems["cert"], pems["ca"], purpose)
        key_matches(pems["cert"], pems["key"])
    ok = openssl("verify", "-purpose", "sslclient", "-CAfile", ca_dir / "ca.pem", _cert_file(
        tmp_path / "peer.pem", members["etcd-1.internal/cert.pem"][1]))
    assert ok.returncode == 0  # a peer certificate: both purposes
    jsonl = run_certkit("issue-batch", "fleet.csv", "--format", "jsonl", cwd=tmp_path, env=ca_env)
    assert jsonl.returncode == 0, jsonl.stderr
    records = jsonl_records(jsonl.stdout)
    assert [r["name"] for r in records] == ["a.example.com", "web/b", "people/alice", "etcd-1.internal"]
    assert [r["kind"] for r in records] == ["server", "server", "client", "peer"]
    k8s = run_certkit("issue-batch", "fleet.csv", "--format", "k8s", "--out", "fleet.yaml", cwd=tmp_path, env=ca_env)
    assert k8s.returncode == 0, k8s.stderr
    docs = secrets((tmp_path / "fleet.yaml").read_text())
    for doc in docs:
        validate_secret(doc)
    assert [d["metadata"]["name"] for d in docs] == ["a.example.com", "web-b", "people-alice", "etcd-1.internal"]
    if KUBECTL is not None:  # kubectl reads the whole stream
        read = subprocess.run([KUBECTL, "label", "--local", "-f", tmp_path / "fleet.yaml", "checked=yes", "-o",
                               "name"], capture_output=True, text=True, timeout=60)
        assert read.returncode == 0 and len(read.stdout.split()) == 4, read.stderr
    new = {s: r for s, r in rows(ca_dir).items() if s not in before}
    assert len(new) == 12 and all(r[0] == "valid" for r in new.values())
    assert sorted(r[1] for r in new.values()) == ["file"] * 8 + ["stream"] * 4
    assert {r[2] for r in new.values()} == {str(tmp_path / "fleet.tar"), str(tmp_path / "fleet.yaml"), None}


def _cert_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.both_inventories
def test_batch_workers_share_one_output(tmp_path, ca_env, ca_dir):
    """Several worker processes append to one archive and one JSON-lines file: every record whole,
    each certificate once, and the rows valid only once the file is in place."""
    from certkit.batch import issue_batch
    from certkit.formats import Output
    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(14)))
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    for fmt in ("tar", "jsonl"):
        output = Output(fmt, tmp_path / f"all.{fmt}", shared=True)
        result = issue_batch(ca, tmp_path / "m.csv", jobs=3, chunk_size=2, output=output)
        assert result.issued == 14
    names = sorted(n for n, (_m, data) in tar_listing(tmp_path / "all.tar").items() if n.endswith("/cert.pem"))
    assert names == sorted(f"h{i}.example.com/cert.pem" for i in range(14))
    records = jsonl_records(tmp_path / "all.jsonl")
    assert sorted(r["name"] for r in records) == sorted(f"h{i}.example.com" for i in range(14))
    statuses = {r[0] for r in rows(ca_dir).values()}
    assert statuses == {"valid"}


# --- refusals ---------------------------------------------------------------------------------
def test_refusals_before_anything_is_signed(tmp_path, ca_env, ca_dir):
    (tmp_path / "taken.jsonl").write_text("")  # empty: --force replaces it (a file of other content: never)
    (tmp_path / "fleet.csv").write_text(MANIFEST)
    (tmp_path / "link.tar").symlink_to(tmp_path / "elsewhere.tar")
    before = rows(ca_dir)
    cases = [
        (["issue-server", "a.example.com", "--format", "jsonl", "--out", "taken.jsonl"],
         "taken.jsonl already exists; pass --force", 1),
        (["issue-server", "a.example.com", "--format", "tar", "--out", ca_dir / "x.tar"], "CA directory", 1),
        (["issue-server", "a.example.com", "--format", "tar", "--out", "link.tar"], "symbolic link", 1),
        (["issue-server", "a.example.com", "--format", "jsonl", "--json"], "add --out FILE", 2),
        (["issue-server", "a.example.com", "--format", "k8s", "--p12"], "--p12 adds bundle.p12", 2),
        (["issue-batch", "fleet.csv", "--format", "tar", "--out-dir", "x", "--out", "f.tar"], "--out-dir applies", 2),
        (["issue-batch", "fleet.csv", "--format", "tar", "--out", "f.tar", "--resume"], "--resume keeps", 2),
        (["issue-batch", "fleet.csv", "--out", "f.tar"], "--out names the one output file", 2),
        (["issue-batch", "fleet.csv", "--format", "jsonl", "--out", "taken.jsonl"], "already exists", 1),
        # a trailing slash names a folder: never a key-bearing file called 'newdir'
        (["issue-server", "a.example.com", "--format", "jsonl", "--out", "newdir/"], "ends with a slash", 2),
        (["issue-client", "bob", "--format", "k8s", "--out", "newdir/"], "ends with a slash", 2),
        (["sign-csr", "web.csr", "--server", "--format", "tar", "--out", "newdir/"], "ends with a slash", 2),
        (["issue-batch", "fleet.csv", "--format", "tar", "--out", "newdir/"], "ends with a slash", 2),
        (["issue-server", "a.example.com", "--format", "jsonl", "--out", "-", "--json"], "add --out FILE", 2),
        (["issue-server", "a.example.com", "--out", "-"], "--out - means standard output", 2),
        (["issue-peer", "a.example.com", "--out", "-"], "--out - means standard output", 2),
    ]
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "web.key", "-subj", "/CN=web.internal", "-out", tmp_path / "web.csr").returncode == 0
    for args, fragment, code in cases:
        assert_clean_error(run_certkit(*args, cwd=tmp_path, env=ca_env), fragment, code)
    assert rows(ca_dir) == before
    assert (tmp_path / "taken.jsonl").read_text() == "" and not (tmp_path / "elsewhere.tar").exists()
    assert not (tmp_path / "f.tar").exists()
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "-").exists()
    # --force replaces the file, whole
    run_certkit("issue-server", "a.example.com", "--format", "jsonl", "--out", "taken.jsonl", "--force",
                cwd=tmp_path, env=ca_env, check=True)
    assert jsonl_records(tmp_path / "taken.jsonl")[0]["name"] == "a.example.com"
    assert mode(tmp_path / "taken.jsonl") == 0o600


def test_out_dash_is_standard_output(tmp_path, ca_env, ca_dir):
    """--out - means standard output, as '-' does for a manifest: never a file called '-'."""
    (tmp_path / "m.csv").write_text(MANIFEST)
    for args in (["issue-server", "a.example.com", "--format", "jsonl"], ["issue-batch", "m.csv", "--format", "jsonl"]):
        proc = run_certkit(*args, "--out", "-", cwd=tmp_path, env=ca_env)
        assert proc.returncode == 0, proc.stderr
        assert jsonl_records(proc.stdout)[0]["cert"].startswith("-----BEGIN CERTIFICATE-----")
        assert "standard output" in proc.stderr
    assert not (tmp_path / "-").exists()
    code, shown, _ = run_in_pty(["issue-server", "b.example.com", "--format", "tar", "--out", "-"], env=ca_env,
                                cwd=tmp_path)
    assert code == 1 and "terminal" in shown, shown  # still no key on a terminal


def test_no_key_on_a_terminal(tmp_path, ca_env, ca_dir):
    before = rows(ca_dir)
    for args in (["issue-server", "a.example.com", "--format", "jsonl"], ["issue-client", "bob", "--format", "k8s"],
                 ["issue-server", "a.example.com", "--format", "tar"]):
        code, shown, _ = run_in_pty(args, env=ca_env, cwd=tmp_path)
        assert code == 1, shown
        assert "Error:" in shown and "terminal" in shown and "PRIVATE KEY" not in shown and "LS0t" not in shown
    (tmp_path / "m.csv").write_text(MANIFEST)
    code, shown, _ = run_in_pty(["issue-batch", "m.csv", "--format", "jsonl"], env=ca_env, cwd=tmp_path)
    assert code == 1 and "terminal" in shown and "PRIVATE KEY" not in shown, shown
    assert rows(ca_dir) == before
    # the same on a pipe is fine, with the progress and summary on the terminal (stderr)
    code, shown, stdout = run_in_pty(["issue-batch", "m.csv", "--format", "jsonl"], env=ca_env, cwd=tmp_path,
                                     stdout_tty=False)
    assert code == 0, shown
    assert len(jsonl_records(stdout)) == 4 and "PRIVATE KEY" not in shown
    assert "Checking every line" in shown and "4/4" in shown and "Issued 4 certificates" in shown


def test_private_key_pem_is_pkcs8_in_every_format(tmp_path, ca_env, ca_dir):
    """The key in jsonl and k8s is the same PKCS#8 PEM as privkey.pem, loadable without a password."""
    proc = run_certkit("issue-server", "a.example.com", "--format", "jsonl", "--key-type", "rsa-2048", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    [record] = jsonl_records(proc.stdout)
    assert record["key"].startswith("-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(record["key"].encode(), None)
    assert key.key_size == 2048


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_force_over_a_file_records_the_certificates_it_replaces_as_succeeded(tmp_path, ca_dir, ca_env, fmt):
    """--force over a file of certificates replaces them as --force over a folder replaces its bundle:
    each old certificate for the same names is recorded as succeeded by its new one, so it no longer
    counts as current (renew NAME found two and refused); one for other names is left as it was."""
    def listed() -> dict[str, dict]:
        proc = run_certkit("list", "--json", env=ca_env, check=True)
        return {row["serial"]: row for row in json.loads(proc.stdout)["certificates"]}

    out = tmp_path / f"fleet.{fmt}"
    run_certkit("issue-server", "z.example.com", "--format", fmt, "--out", out, env=ca_env, check=True)
    [first] = listed()
    run_certkit("issue-server", "z.example.com", "--format", fmt, "--out", out, "--force", env=ca_env, check=True)
    rows = listed()
    [second] = set(rows) - {first}
    assert rows[first]["renewed_by"] == second and rows[second]["renewed_from"] == first
    # a batch into the same file, --force: the line for the same names succeeds it, the other is new
    (tmp_path / "m.csv").write_text("kind,names\nserver,z.example.com\nserver,y.example.com\n")
    run_certkit("issue-batch", "m.csv", "--format", fmt, "--out", out, "--force", cwd=tmp_path, env=ca_env,
                check=True)
    rows = listed()
    [third] = [s for s, r in rows.items() if r["renewed_from"] == second]
    assert rows[second]["renewed_by"] == third
    assert [r["renewed_from"] for r in rows.values() if r["names"] == ["DNS:y.example.com"]] == [None]
    proc = run_certkit("renew", "z.example.com", "--out", tmp_path / "renewed", env=ca_env)
    assert proc.returncode == 0, proc.stderr
