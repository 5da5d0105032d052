"""The eleventh round's serve and probe findings (audit serve11), each as a class:

1. serve --cert with a certificate file that stops below an intermediate CA is refused, in both modes: the
   default mode's OpenSSL completed the chain from the client-CA store, so serve sent what nginx and openssl
   s_server, given the same file, do not (and probe said yes where curl said no);
2. OpenSSL's verification errors are said in OpenSSL's words, the name-constraint ones included ("permitted
   subtree violation"), never as a bare number, and probe does not call such a certificate untrusted;
3. a server certificate that names its host only in its CN is said to, with who takes it (curl, Python's
   ssl, OpenSSL) and who refuses it, not "it names no host at all";
4. a peer that goes away mid-connection is logged in words, not as pyOpenSSL's ``(104, 'ECONNRESET')``.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

from acme_helpers import make_two_tier
from conftest import assert_clean_error, certkit_env, free_port, openssl, run_certkit, wait_listening, wait_or_kill


def test_serve_refuses_a_certificate_file_without_its_intermediate(tmp_path: Path) -> None:
    _root, issuing, env = make_two_tier(tmp_path)
    run_certkit("issue-server", "localhost", "--out", tmp_path / "srv", env=env, check=True)
    for mode in ((), ("--optional",)):
        proc = run_certkit("serve", "--port", "0", *mode, "--cert", tmp_path / "srv" / "cert.pem", "--key",
                           tmp_path / "srv" / "privkey.pem", env=env)
        assert_clean_error(proc, "without CN=ACME Test Issuing, the intermediate CA that issued it")
        assert "give fullchain.pem" in proc.stderr
    # what the message says of a real server: openssl s_server given cert.pem sends the certificate alone
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                               str(tmp_path / "srv" / "cert.pem"), "-key", str(tmp_path / "srv" / "privkey.pem"),
                               "-quiet", "-www"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        chain = _served_chain(port, server)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert chain.count("BEGIN CERTIFICATE") == 1


def _served_chain(port: int, server: subprocess.Popen) -> str:
    wait_listening(port, server, "openssl s_server")
    proc = openssl("s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", input=b"")
    assert proc.returncode == 0 or b"BEGIN CERTIFICATE" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout.decode()


def test_openssl_verification_errors_are_said_in_openssls_words() -> None:
    from certkit.pyossl import x509_error

    for code, words in ((47, "permitted subtree violation"), (48, "excluded subtree violation"),
                        (25, "path length constraint exceeded"), (26, "unsuitable certificate purpose")):
        assert x509_error(code) == words
    assert "X.509 verification error" not in x509_error(44)  # one the table lacks: OpenSSL's own words


def test_a_cn_only_server_certificate_is_said_to_name_its_host_in_the_cn(tmp_path: Path) -> None:
    root, root_key, key, cert = (tmp_path / n for n in ("root.pem", "root.key", "k.pem", "c.pem"))
    assert openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                   root_key, "-subj", "/CN=CN Root", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign", "-out", root).returncode == 0
    (tmp_path / "ext").write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                                  "keyUsage=critical,digitalSignature\n")
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                   key, "-subj", "/CN=localhost", "-out", tmp_path / "c.csr").returncode == 0
    assert openssl("x509", "-req", "-in", tmp_path / "c.csr", "-CA", root, "-CAkey", root_key, "-days", "2",
                   "-extfile", tmp_path / "ext", "-out", cert).returncode == 0
    ctx = ssl.create_default_context(cafile=str(root))  # what Python's ssl decides: it falls back to the CN
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        import threading

        threading.Thread(target=lambda: server_ctx.wrap_socket(listener.accept()[0], server_side=True).close(),
                         daemon=True).start()
        try:
            with ctx.wrap_socket(socket.create_connection(listener.getsockname()), server_hostname="localhost"):
                python_takes_it = True
        except ssl.SSLCertVerificationError:
            python_takes_it = False
    proc = run_certkit("verify", cert, "--purpose", "server", "--name", "localhost", "--ca-file", root,
                       env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "none")))
    assert proc.returncode == 1
    assert "names localhost only in its subject CN" in proc.stdout and "no host at all" not in proc.stdout
    assert ("Python's ssl" in proc.stdout and "accept" in proc.stdout) == python_takes_it


def test_a_peer_gone_mid_connection_is_said_in_words() -> None:
    from OpenSSL.SSL import SysCallError

    from certkit.tlscheck import reason_of

    assert "connection reset" in reason_of(SysCallError(104, "ECONNRESET"))
    assert "broken pipe" in reason_of(SysCallError(32, "EPIPE"))
    assert "ECONNRESET" not in reason_of(SysCallError(104, "ECONNRESET"))
