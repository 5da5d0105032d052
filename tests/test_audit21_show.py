"""Round twenty-one, area show: verify's and inspect's verdicts on certificates OpenSSL refuses for what they are
(a proxy certificate), compared with what OpenSSL and GnuTLS do with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit20_show import HOST, _cert, _certtool_accepts, _pem, _raw

from conftest import openssl, run_certkit

# RFC 3820's ProxyCertInfo { proxyPolicy { policyLanguage id-ppl-inheritAll } }
_PROXY = "1.3.6.1.5.5.7.1.14"
_PROXY_INFO = _raw(_PROXY, "300c300a06082b06010505071501")


@pytest.mark.parametrize("where, critical", [("leaf", False), ("leaf", True), ("intermediate", False)])
def test_a_proxy_certificate_is_not_valid_whether_its_extension_is_critical_or_not(
        tmp_path: Path, where: str, critical: bool) -> None:
    """OpenSSL refuses a proxy certificate (proxyCertInfo) unless an application allows them, critical or not:
    "proxy certificates not allowed", or "invalid certificate" for a CA or one with a subjectAltName. cryptography's
    verifier ignores the extension when it is not critical, so verify said VALID and inspect "Usable for: TLS server
    authentication" of a leaf (or a chain through an intermediate) that Python's ssl, curl and nginx refuse."""
    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Proxy Root", root_key, ca=True)
    ca = _cert("Proxy CA", ca_key, root, root_key, ca=True,
               extra=[(_PROXY_INFO, critical)] if where == "intermediate" else [])
    leaf = _cert(HOST, leaf_key, ca, ca_key, extra=[(_PROXY_INFO, critical)] if where == "leaf" else [])
    for file, certs in (("root.pem", (root,)), ("leaf.pem", (leaf,)), ("chain.pem", (ca,)), ("full.pem", (leaf, ca)),
                        ("ca.pem", (ca,))):
        (tmp_path / file).write_bytes(_pem(*certs))
    refused = openssl("verify", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile", tmp_path / "root.pem",
                      "-untrusted", tmp_path / "chain.pem", tmp_path / "leaf.pem")
    assert refused.returncode != 0, refused.stdout  # OpenSSL, the peer of Python's ssl, curl and nginx
    assert _certtool_accepts(tmp_path / "root.pem", tmp_path / "full.pem")  # the words say GnuTLS accepts it

    said = run_certkit("verify", tmp_path / "full.pem", "--ca-file", tmp_path / "root.pem", "--purpose", "server",
                       "--name", HOST)
    who = "it is" if where == "leaf" else "the CA CN=Proxy CA is"
    words = (f"{who} a proxy certificate (RFC 3820: it holds a proxyCertInfo extension, {_PROXY}), which OpenSSL (so "
             "Python's ssl, curl, nginx and Node) refuses whether the extension is critical or not (\"proxy "
             "certificates not allowed\", or \"invalid certificate\" for one that is a CA or holds a subjectAltName); "
             "GnuTLS accepts it")
    assert said.returncode == 1 and "NOT VALID as a TLS server certificate" in said.stdout, said.stdout
    assert f"  reason    {words}\n" in said.stdout, said.stdout
    assert said.stderr == f"Error: {tmp_path / 'full.pem'} is not valid as a TLS server certificate: {words}.\n"

    inspected = run_certkit("inspect", tmp_path / ("leaf.pem" if where == "leaf" else "ca.pem"), check=True).stdout
    issued = f"TLS server authentication ({HOST}, localhost)" if where == "leaf" else "issuing certificates (CA)"
    assert (f"  Usable for: nothing with OpenSSL-based peers: {words.replace('the CA CN=Proxy CA is', 'it is')}; "
            f"issued for {issued}\n") in inspected, inspected
