"""The seventeenth round's fleet findings (audit helper "fleet"), each as a class:

1. ``certkit list --limit N`` with a damaged inventory row among the first N showed fewer than N certificates
   (the damaged one left out, its place not given to the next), and its "N of M" (``total`` in --json) counted
   damaged rows that no list shows; the library's ``Inventory.query(limit=...)`` returned fewer rows the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_certkit


def _env(ca_env: dict, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return ca_env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                     "XDG_DATA_HOME": str(home / ".local" / "share")}


def _damage(ca_dir: Path, serial: str, column: str = "names", value: str = "garbage") -> None:
    from certkit.store import CADirectory

    with CADirectory(ca_dir).inventory.transaction(write=True) as tx:
        tx.execute(f"UPDATE certificates SET {column} = ? WHERE serial = ?", (value, serial))


# --- 1: list --limit and its count with damaged rows -----------------------------------------------------------
@pytest.mark.both_inventories
def test_list_limit_shows_as_many_as_asked_and_counts_no_damaged_row(tmp_path, ca_env, ca_dir):
    from certkit.store import CADirectory

    env = _env(ca_env, tmp_path)
    for i in range(1, 7):  # h1 expires first, h6 last
        run_certkit("issue-server", f"h{i}.example.com", "--days", str(10 * i), "--out", tmp_path / f"h{i}",
                    env=env, check=True)
    order = [row["serial"] for row in json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
             ["certificates"]]
    assert len(order) == 6
    for serial in (order[0], order[5]):  # the first in the list's order, and one far past any limit below
        _damage(ca_dir, serial)
    good = [order[i] for i in (1, 2, 3, 4)]

    proc = run_certkit("list", "--limit", "2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [c["serial"] for c in data["certificates"]] == good[:2]  # two, as asked: h2 and h3
    assert (data["count"], data["total"], data["damaged"]) == (2, 4, [order[0]])
    proc = run_certkit("list", "--limit", "2", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "2 of 4 certificates" in proc.stdout and "is damaged" in proc.stderr
    assert [line.split()[0][:16] for line in proc.stdout.splitlines()[1:3]] == [s[:16] for s in good[:2]]
    # a limit that takes every row that reads: no "of"
    proc = run_certkit("list", "--kind", "server", "--limit", "4", env=env)
    assert "\n4 certificates" in proc.stdout and " of " not in proc.stdout.splitlines()[-1], proc.stdout
    # a name filter counts the same way
    data = json.loads(run_certkit("list", "--name", "h*.example.com", "--limit", "3", "--json", env=env).stdout)
    assert ([c["serial"] for c in data["certificates"]], data["total"]) == (good[:3], 4)
    # the library's query gives as many rows as asked, the damaged one collected
    damaged: list = []
    rows = CADirectory(ca_dir).inventory.query(limit=3, damaged=damaged)
    assert [r["serial"] for r in rows] == good[:3] and [d.serial for d in damaged] == [order[0]]


# --- 2: a system timer waits for the network ----------------------------------------------------------------------
def test_a_system_timer_waits_for_the_network_and_an_older_unit_is_the_same_timer(tmp_path, ca_env, ca_dir):
    import os
    import shutil
    import subprocess

    from conftest import PASSPHRASE

    env = _env(ca_env, tmp_path)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    units = tmp_path / "units"
    install = ("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret)
    proc = run_certkit(*install, env=env)
    assert proc.returncode == 0, proc.stderr
    service_file = units / "certkit-renew.service"
    service = service_file.read_text()
    unit_section = service.split("[Service]")[0].splitlines()
    if os.geteuid() == 0:  # a system unit: it starts once the network is up
        assert "Wants=network-online.target" in unit_section and "After=network-online.target" in unit_section
    else:  # a user's systemd has no network-online.target
        assert "network-online" not in service
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "verify", "--man=no", units / "certkit-renew.timer",
                                  service_file], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and "certkit-renew" not in checked.stderr, checked.stderr
    # a unit an earlier certkit wrote, without those lines, is the same timer: installed again without --force
    service_file.write_text("".join(line for line in service.splitlines(keepends=True)
                                    if "network-online" not in line))
    proc = run_certkit(*install, env=env)
    assert proc.returncode == 0, proc.stderr
    assert service_file.read_text() == service
    # another renewal is still another timer
    proc = run_certkit(*install, "--expiring", "20d", env=env)
    assert proc.returncode == 1 and "pass --force to replace it" in proc.stderr, proc.stderr


# --- 3: issue-batch --json has one shape for every --format -------------------------------------------------------
def _documented_batch_fields() -> set[str]:
    import re

    from conftest import REPO

    text = (REPO / "docs" / "issue-batch.md").read_text()
    paragraph = text.split("`--json` prints one object of the same shape for every `--format`:", 1)[1]
    paragraph = paragraph.split("\n\n", 1)[0]
    return {name for name in re.findall(r"`([a-z_]+)`", paragraph)} - {"folder", "jsonl", "k8s", "tar", "null"}


def test_issue_batch_json_has_one_shape_for_every_format(tmp_path, ca_env, ca_dir):
    import subprocess
    import tarfile

    from conftest import openssl

    env = _env(ca_env, tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,web1.example.com,\nclient,backup-job,\nserver,web2.example.com,\n")
    reports = {}
    for fmt in ("folder", "jsonl", "k8s", "tar"):
        where = ["--out-dir", tmp_path / "bundles"] if fmt == "folder" else ["--out", tmp_path / f"out.{fmt}"]
        proc = run_certkit("issue-batch", manifest, "--format", fmt, *where, "--json", env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        reports[fmt] = json.loads(proc.stdout)
    documented = _documented_batch_fields()
    for fmt, report in reports.items():
        assert set(report) == documented, (fmt, sorted(set(report) ^ documented))
        assert report["format"] == fmt
        assert (report["issued"], report["kept"], report["server"], report["client"], report["peer"]) == (3, 0, 2, 1, 0)
        assert report["by_kind"] == {"server": 2, "client": 1}
        assert report["released"] == [] and report["sync"] == "chunk"
    assert (reports["folder"]["out_dir"], reports["folder"]["file"]) == (str(tmp_path / "bundles"), None)
    for fmt in ("jsonl", "k8s", "tar"):
        assert (reports[fmt]["out_dir"], reports[fmt]["file"]) == (None, str(tmp_path / f"out.{fmt}"))
    # what each report names is what real readers find there
    proc = openssl("verify", "-purpose", "sslserver", "-CAfile", tmp_path / "bundles" / "web1.example.com" / "ca.pem",
                   tmp_path / "bundles" / "web1.example.com" / "cert.pem")
    assert proc.returncode == 0, proc.stderr
    listed = subprocess.run(["tar", "-tf", reports["tar"]["file"]], capture_output=True, text=True, timeout=60)
    assert "backup-job/privkey.pem" in listed.stdout.splitlines(), listed.stdout
    with tarfile.open(reports["tar"]["file"]) as archive:
        assert archive.getmember("backup-job/privkey.pem").mode == 0o600
    line = json.loads(Path(reports["jsonl"]["file"]).read_text().splitlines()[0])
    text = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=line["cert"], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0 and "web1.example.com" in text.stdout


def test_single_issue_json_has_one_shape_for_every_format(tmp_path, ca_env, ca_dir):
    import re
    import subprocess
    import tarfile

    from conftest import REPO, openssl

    text = (REPO / "docs" / "formats.md").read_text()
    paragraph = text.split("`--json` gives one object of the same shape for every format.", 1)[1].split("\n\n")[0]
    optional = {"secret", "requested", "granted", "dropped", "p12_encryption"}
    documented = set(re.findall(r"`([a-z_0-9]+)`", paragraph)) - {"folder", "jsonl", "k8s", "tar", "null", "{}"}
    documented = (documented | {"folder"}) - optional  # "folder" the field, also the format's name
    env = _env(ca_env, tmp_path) | {"CERTKIT_P12_PASSWORD": "correct-horse-p12-password"}
    key = tmp_path / "csr.key"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=csr.example.com", "-addext", "subjectAltName=DNS:csr.example.com",
            "-out", tmp_path / "req.csr")
    runs = {}
    for fmt in ("folder", "jsonl", "k8s", "tar"):
        out = tmp_path / (f"web-{fmt}" if fmt == "folder" else f"web.{fmt}")
        runs["issue-server", fmt] = ("issue-server", f"web-{fmt}.example.com", "--format", fmt, "--out", out)
    for fmt in ("folder", "jsonl", "tar"):
        out = tmp_path / (f"csr-{fmt}" if fmt == "folder" else f"csr.{fmt}")
        runs["sign-csr", fmt] = ("sign-csr", tmp_path / "req.csr", "--server", "--format", fmt, "--out", out)
    runs["p12", "tar"] = ("issue-client", "alice", "--format", "tar", "--out", tmp_path / "alice.tar", "--p12")
    runs["p12", "folder"] = ("issue-client", "bob", "--out", tmp_path / "bob", "--p12")
    for (command, fmt), args in runs.items():
        proc = run_certkit(*args, "--json", env=env, cwd=tmp_path)
        assert proc.returncode == 0, (command, fmt, proc.stderr)
        data = json.loads(proc.stdout)
        assert set(data) - optional == documented, (command, fmt, sorted((set(data) - optional) ^ documented))
        assert data["format"] == fmt and data["key_included"] == (command != "sign-csr")
        if fmt == "folder":
            assert data["file"] is None and data["released"] == [] and Path(data["folder"]).is_dir()
            assert Path(data["files"]["cert.pem"]).is_file()
        else:
            assert (data["folder"], data["files"]) == (None, {}) and Path(data["file"]).is_file()
        assert ("secret" in data) == (fmt == "k8s")
        assert ("p12_encryption" in data) == (command == "p12"), (command, fmt)
    # the tar's bundle.p12 the report speaks of is one openssl reads with the password
    with tarfile.open(tmp_path / "alice.tar") as archive:
        p12 = archive.extractfile("alice/bundle.p12").read()
    read = subprocess.run(["openssl", "pkcs12", "-nokeys", "-passin", "env:CERTKIT_P12_PASSWORD"], input=p12,
                          capture_output=True, env=env, timeout=60)
    assert read.returncode == 0 and b"CN=alice" in read.stdout.replace(b" = ", b"="), read.stderr


def test_single_issue_summary_says_the_same_for_every_format(tmp_path, ca_env, ca_dir):
    import re

    from conftest import openssl

    env = _env(ca_env, tmp_path)

    def summary(*args) -> list[str]:
        proc = run_certkit(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        text = re.sub(r"(serial    )\S+", r"\1S", re.sub(r"(expires   )[^(]+", r"\1T ", proc.stdout))
        return [line for line in text.splitlines() if not line.startswith(("  files", "  output", "            "))]

    key = tmp_path / "csr.key"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=csr.example.com", "-addext", "subjectAltName=DNS:csr.example.com",
            "-addext", "extendedKeyUsage=serverAuth,clientAuth", "-out", tmp_path / "req.csr")
    folder = summary("issue-server", "bücher.example", "--out", "idn")
    assert "  names     DNS:xn--bcher-kva.example (bücher.example)" in folder and "(200 days)" in folder[4]
    csr = summary("sign-csr", "req.csr", "--server", "--out", "csr")
    assert any(line.startswith("  dropped   extendedKeyUsage") for line in csr)
    for fmt in ("jsonl", "k8s", "tar"):
        assert summary("issue-server", "bücher.example", "--format", fmt, "--out", f"idn.{fmt}") == folder, fmt
        if fmt != "k8s":
            assert summary("sign-csr", "req.csr", "--server", "--format", fmt, "--out", f"csr.{fmt}") == csr, fmt


# --- 4: renew FILE takes the key from the file it is given ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_renew_of_an_output_file_keeps_the_key_that_file_holds(tmp_path, ca_env, ca_dir, fmt):
    import ssl
    import subprocess
    import sys

    from conftest import openssl

    env = _env(ca_env, tmp_path)
    # written through standard output (> FILE): the inventory knows no file
    streamed = tmp_path / f"streamed.{fmt}"
    with open(streamed, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "certkit", "issue-server", "s.example.com", "--format", fmt],
                              stdout=out, stderr=subprocess.PIPE, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # written with --out, then moved: the inventory's file is gone
    run_certkit("issue-server", "m.example.com", "--format", fmt, "--out", tmp_path / f"first.{fmt}", env=env,
                cwd=tmp_path, check=True)
    moved = tmp_path / f"moved.{fmt}"
    (tmp_path / f"first.{fmt}").rename(moved)
    for given, folder in ((streamed, tmp_path / "s-renewed"), (moved, tmp_path / "m-renewed")):
        proc = run_certkit("renew", given, "--out", folder, "--json", env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert "privkey.pem" in report["files"], report  # was: no key written, "the key stays with whoever holds it"
        assert any(f"the key is taken from {given}" in note for note in report["notes"]), report["notes"]
        key = folder / "privkey.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        proc = openssl("verify", "-purpose", "sslserver", "-CAfile", folder / "ca.pem", folder / "cert.pem")
        assert proc.returncode == 0, proc.stderr
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "fullchain.pem", key)  # OpenSSL checks that the key is the certificate's
    # renewed by name, the streamed one's file is unknown: the note says which to name to keep the key
    run_certkit("issue-server", "n.example.com", "--format", fmt, "--out", "-", env=env, cwd=tmp_path, check=True,
                subprocess=True)
    proc = run_certkit("renew", "n.example.com", "--out", tmp_path / "n-renewed", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "alone, gives the new bundle its key: certkit renew FILE --out DIR)" in proc.stdout, proc.stdout


# --- 5: renew and revoke read a Secret kubectl wrote, as inspect and verify do ---------------------------------------
def test_renew_and_revoke_read_a_secret_kubectl_wrote(tmp_path, ca_env, ca_dir):
    import shutil
    import ssl
    import subprocess

    from conftest import openssl

    env = _env(ca_env, tmp_path)
    for name in ("ku.example.com", "gone.example.com"):
        run_certkit("issue-server", name, "--out", tmp_path / name, env=env, cwd=tmp_path, check=True)
    manifests = {}
    for name in ("ku.example.com", "gone.example.com"):
        folder = tmp_path / name
        manifests[name] = tmp_path / f"{name}.yaml"
        if shutil.which("kubectl"):  # kubectl writes no ca.crt, and puts data before kind, metadata and type
            made = subprocess.run(["kubectl", "create", "secret", "tls", name.split(".")[0], "--cert",
                                   folder / "fullchain.pem", "--key", folder / "privkey.pem", "--dry-run=client",
                                   "-o", "yaml"], capture_output=True, text=True, timeout=120)
            assert made.returncode == 0, made.stderr
            manifests[name].write_text(made.stdout)
        else:  # the same document, as kubectl 1.x writes it
            import base64

            encoded = {k: base64.b64encode((folder / f).read_bytes()).decode()
                       for k, f in (("tls.crt", "fullchain.pem"), ("tls.key", "privkey.pem"))}
            manifests[name].write_text(f"apiVersion: v1\ndata:\n  tls.crt: {encoded['tls.crt']}\n  tls.key: "
                                       f"{encoded['tls.key']}\nkind: Secret\nmetadata:\n  creationTimestamp: null\n"
                                       f"  name: {name.split('.')[0]}\ntype: kubernetes.io/tls\n")
        assert "ca.crt" not in manifests[name].read_text()
        shutil.rmtree(folder)  # the Secret is all there is now
    assert run_certkit("verify", manifests["ku.example.com"], "--purpose", "server", env=env).returncode == 0
    renewed = tmp_path / "ku-renewed"
    proc = run_certkit("renew", manifests["ku.example.com"], "--out", renewed, "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: "ku.example.com.yaml does not hold a readable certificate."
    assert "privkey.pem" in json.loads(proc.stdout)["files"]  # the key the Secret holds
    proc = openssl("verify", "-purpose", "sslserver", "-CAfile", renewed / "ca.pem", renewed / "cert.pem")
    assert proc.returncode == 0, proc.stderr
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(renewed / "fullchain.pem", renewed / "privkey.pem")
    proc = run_certkit("revoke", manifests["gone.example.com"], "--reason", "superseded", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(run_certkit("list", "--name", "gone.example.com", "--json", env=env, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["revoked"]
    # certkit's own manifest cut before its ca.crt (a dead writer's) still holds nothing whole
    from certkit.formats.reading import certificates_in

    run_certkit("issue-server", "cut.example.com", "--format", "k8s", "--out", tmp_path / "cut.yaml", env=env,
                cwd=tmp_path, check=True)
    whole = (tmp_path / "cut.yaml").read_text()
    assert len(certificates_in(tmp_path / "cut.yaml")) == 1
    (tmp_path / "cut.yaml").write_text(whole[:whole.index("  ca.crt:")])
    assert certificates_in(tmp_path / "cut.yaml") == []


# --- 6: (cosmetic) "Renewed 1 of 1 certificates" ----------------------------------------------------------------------
def test_one_renewal_of_one_says_certificate(tmp_path, ca_env, ca_dir):
    from conftest import openssl

    env = _env(ca_env, tmp_path)
    run_certkit("issue-server", "one.example.com", "--days", "10", "--out", tmp_path / "one", env=env, check=True)
    proc = run_certkit("renew", "--expiring", "30d", "--days", "90", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "Renewed 1 of 1 certificate expiring within 30 days", proc.stdout
    assert openssl("verify", "-CAfile", tmp_path / "one" / "ca.pem", tmp_path / "one" / "cert.pem").returncode == 0
    run_certkit("issue-server", "two.example.com", "--days", "10", "--out", tmp_path / "two", env=env, check=True)
    run_certkit("issue-server", "three.example.com", "--days", "10", "--out", tmp_path / "three", env=env, check=True)
    proc = run_certkit("renew", "--all", "--kind", "server", "--name", "t*", "--days", "90", env=env)
    assert proc.stdout.splitlines()[0] == "Renewed 2 of 2 valid server certificates matching 't*'", proc.stdout
