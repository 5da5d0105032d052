"""Audit 24, trust: what `certkit trust` says of the environment that decides which store a program reads.

- SSL_CERT_FILE / SSL_CERT_DIR (OpenSSL's default paths: Python, openssl; curl) and CURL_CA_BUNDLE (curl) point a
  program at another file or folder of CAs than the system store: install and status say so, naming the variable,
  its value and what the program still reads; checked against Python's ssl and curl themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit19_trust import _private_system_store, system_store_json
from test_trust import pki, server  # noqa: F401

from conftest import certkit_env
from trust_helpers import CA_VARIABLES, PYTHON_CLIENT, client_env


def _accepts(prefix: list[str], port: int, env: dict[str, str]) -> dict[str, bool]:
    """Whether Python's ssl (its default context) and curl accept the test server, run with ``env``."""
    ran = {name: subprocess.run([*prefix, *argv], env=client_env(**env), stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=60) for name, argv in (
        ("python", [sys.executable, "-c", PYTHON_CLIENT, str(port)]),
        ("curl", ["curl", "-sS", "-o", "/dev/null", f"https://localhost:{port}/"]))}
    return {name: proc.returncode == 0 for name, proc in ran.items()}


@pytest.mark.parametrize("names", [("SSL_CERT_FILE",), ("SSL_CERT_DIR",), ("SSL_CERT_FILE", "SSL_CERT_DIR"),
                                   ("CURL_CA_BUNDLE",)])
def test_a_variable_that_points_clients_past_the_system_store_is_named(pki, server: int, tmp_path: Path,  # noqa: F811
                                                                      names: tuple[str, ...]) -> None:
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "my ca's" / "certs").mkdir(parents=True)  # a folder of no CA
    (tmp_path / "my ca's" / "bundle.pem").write_bytes(b"")  # a file of no CA
    given = {n: str(tmp_path / "my ca's" / ("certs" if n == "SSL_CERT_DIR" else "bundle.pem")) for n in names}
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k not in CA_VARIABLES} | given
    try:
        for action in ("install", "status"):
            notes = [n for n in system_store_json(prefix, env, pki.issuing, action)["notes"]
                     if "in this environment" in n]
            openssl = [n for n in notes if "OpenSSL's default CA paths" in n]
            curl = [n for n in notes if ": curl commands " in n]
            assert all(f"{n}={given[n]}" in " ".join(notes) for n in names), notes
            assert len(openssl) == ("CURL_CA_BUNDLE" not in names) and len(curl) == 1, notes
            clients = _accepts(prefix, server, given)
            # What the notes say is so.
            nowhere = [n for n in openssl if "do not read this store at all" in n]
            assert clients["python"] == (not nowhere), (clients, notes)
            assert clients["curl"] == ("still read" in curl[0]), (clients, notes)
        assert not [n for n in system_store_json(prefix, {k: v for k, v in env.items() if k not in names},
                                                 pki.issuing, "status")["notes"] if "in this environment" in n]
    finally:
        system_store_json(prefix, env, pki.issuing, "uninstall")


def test_a_variable_naming_the_stores_own_file_or_folder_by_another_path_is_not_noted(pki, tmp_path: Path  # noqa: F811
                                                                                     ) -> None:
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    own = {"SSL_CERT_FILE": "/usr/lib/ssl/cert.pem", "SSL_CERT_DIR": f"/nowhere{os.pathsep}/usr/lib/ssl/certs",
           "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}  # Debian's links to the bundle and its folder
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k not in CA_VARIABLES} | own
    assert not [n for n in system_store_json(prefix, env, pki.issuing, "status")["notes"] if "in this environment" in n]
