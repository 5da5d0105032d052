"""Audit round seven, inputs, and what round six left alone:

- inspect reads a CRL wherever it reads a certificate: a file (PEM or DER), standard input, a folder
  (crl.pem, *.crl), beside certificates and keys; a damaged one is named a damaged CRL; verify given a CRL
  says it holds a CRL but no certificate.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import assert_clean_error, openssl, run_certkit


def _crl_serials(crl_der: bytes) -> set[str]:
    from cryptography import x509

    return {format(e.serial_number, "X") for e in x509.load_der_x509_crl(crl_der)}


@pytest.fixture
def crl_files(ca_dir, ca_env, tmp_path):
    run_certkit("issue-client", "gone", "--out", tmp_path / "gone", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "gone", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.der", "--der", env=ca_env, check=True)
    return tmp_path


@pytest.mark.parametrize("form", ["PEM", "DER"])
def test_inspect_reads_a_crl_on_standard_input(crl_files, ca_env, form):
    data = (crl_files / f"crl.{form.lower()}").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "certkit", "inspect", "-", "--json"], input=data,
                          capture_output=True, env=ca_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [item] = json.loads(proc.stdout)["items"]
    expected = _crl_serials((crl_files / "crl.der").read_bytes())
    assert item["type"] == "crl" and {e["serial"].lstrip("0") for e in item["revoked"]} == expected
    text = openssl("crl", "-in", crl_files / f"crl.{form.lower()}", "-inform", form, "-noout", "-crlnumber").stdout
    text = text.decode() if isinstance(text, bytes) else text
    assert int(text.strip().split("=0x")[1], 16) == item["crl_number"]


@pytest.mark.parametrize("name", ["crl.pem", "revoked.crl"])
def test_inspect_reads_a_crl_in_a_folder_beside_the_bundle(crl_files, ca_env, name):
    folder = crl_files / "gone"
    (folder / name).write_bytes((crl_files / "crl.pem").read_bytes())
    data = json.loads(run_certkit("inspect", folder, "--json", env=ca_env, check=True).stdout)
    kinds = [(i["type"], i["file"]) for i in data["items"]]
    assert ("certificate", "cert.pem") in kinds and ("crl", name) in kinds
    human = run_certkit("inspect", folder, env=ca_env, check=True).stdout
    assert f"Certificate revocation list ({name}" in human


def test_a_folder_holding_only_a_crl_is_described(crl_files, ca_env):
    only = crl_files / "only"
    only.mkdir()
    (only / "crl.pem").write_bytes((crl_files / "crl.pem").read_bytes())
    data = json.loads(run_certkit("inspect", only, "--json", env=ca_env, check=True).stdout)
    assert [i["type"] for i in data["items"]] == ["crl"]


def test_a_damaged_crl_is_named_so(crl_files, ca_env):
    pem = (crl_files / "crl.pem").read_text().splitlines()
    del pem[2]  # a line of the body gone: the DER inside is cut short
    proc = run_certkit("inspect", "-", env=ca_env, input="\n".join(pem) + "\n")
    assert_clean_error(proc, "standard input holds a damaged CRL")


def test_verify_given_a_crl_says_it_holds_no_certificate(crl_files, ca_env):
    proc = run_certkit("verify", crl_files / "crl.der", "--purpose", "client", env=ca_env)
    assert_clean_error(proc, "crl.der holds a CRL but no certificate")
