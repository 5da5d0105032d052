"""Audit round ten, certkit's words against real peers (report peers8):

1. a CA file without its root: Python 3.13's default context takes it (VERIFY_X509_PARTIAL_CHAIN), as curl
   does; certkit no longer says "Python" refuses it, only Python before 3.13 (checked with the interpreter
   that runs the tests);
2. a client refusing serve's expired certificate with ``bad certificate`` (GnuTLS, Go) or ``certificate
   unknown`` (Java) gets serve's known expiry in the log line, as ``certificate expired`` did.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from test_edges4 import serve_expiring

from conftest import certkit_env, require, run_certkit

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_the_partial_anchor_sentence_matches_this_python(tmp_path):
    from certkit.probe_report import PARTIAL_ANCHOR_NOTE

    env = certkit_env()
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "P Root", "--no-passphrase", env=env,
                check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name", "P Int",
                "--no-passphrase", env=env, check=True)
    context = ssl.create_default_context(cafile=str(tmp_path / "int" / "ca.pem"))
    partial = bool(context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN)
    assert partial == (sys.version_info >= (3, 13))  # what the sentence says of Python, true of this one
    assert "Python 3.13 clients given it accept" in PARTIAL_ANCHOR_NOTE
    assert "Python before 3.13 and Node clients refuse" in PARTIAL_ANCHOR_NOTE


@pytest.mark.parametrize("alert", ["bad certificate", "certificate unknown"])
def test_a_refusal_worded_otherwise_gets_the_known_expiry(alert):
    from certkit.serve_handshake import client_refusal

    expired = SimpleNamespace(certificate=SimpleNamespace(not_after="2020-01-01T00:00:00Z",
                                                         not_before="2019-01-01T00:00:00Z"))
    assert client_refusal(alert, expired).endswith(
        "this server's certificate expired on 2020-01-01 00:00:00 UTC, which is likely why")
    current = SimpleNamespace(certificate=SimpleNamespace(not_after="2099-01-01T00:00:00Z",
                                                         not_before="2019-01-01T00:00:00Z"))
    assert "expired" not in client_refusal(alert, current)


@pytest.mark.parametrize("mode", [(), ("--optional",)])
def test_gnutls_refusing_an_expired_serve_certificate_is_told_why(ca_dir, tmp_path, mode):
    require("gnutls-cli")
    srv, expires, _ = serve_expiring(ca_dir, tmp_path, 8, *mode)  # serve refuses one expired at start
    with srv:  # (--optional: OpenSSL 4 words it "tls alert ...")
        time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
        proc = subprocess.run(["gnutls-cli", "--x509cafile", str(ca_dir / "ca.pem"), "-p", str(srv.port),
                               "localhost"], input="", capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        (line,) = srv.wait_for_log("refused by the client 127.0.0.1:")
    assert "alert bad certificate" in line or "alert certificate expired" in line, line
    assert f"this server's certificate expired on {expires:%Y-%m-%d %H:%M:%S} UTC" in line, line
    json.dumps(line)  # one line of text
