"""Round twenty-one, area show: verify's and inspect's verdicts on certificates OpenSSL refuses for what they are
(a proxy certificate), compared with what OpenSSL and GnuTLS do with them."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit20_show import HOST, _cert, _certtool_accepts, _pem, _raw

from conftest import free_port, openssl, run_certkit, wait_listening, wait_or_kill

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


# --- 2. RFC 3779 resources (ipAddrBlocks, autonomousSysIds), checked by OpenSSL whatever their criticality --------
def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    return bytes([tag]) + (bytes([size]) if size < 0x80 else bytes([0x81, size])) + content


def _prefix(text: str) -> bytes:
    """``10.1.0.0/16`` as RFC 3779's BIT STRING."""
    import ipaddress

    net = ipaddress.ip_network(text)
    data = net.network_address.packed[:(net.prefixlen + 7) // 8]
    return _der(0x03, bytes([-net.prefixlen % 8]) + data)


def _range_end(number: int, bits: int, fill: int) -> bytes:
    """A range's minimum (``fill`` 0) or maximum (1) without its trailing 0 (or 1) bits, as a BIT STRING."""
    while bits and number & 1 == fill:
        number, bits = number >> 1, bits - 1
    octets = (bits + 7) // 8
    return _der(0x03, bytes([octets * 8 - bits]) + (number << (octets * 8 - bits)).to_bytes(octets, "big"))


def _ip_blocks(*families: tuple[str, object]) -> bytes:
    """ipAddrBlocks: ("v4" or "v6", "inherit" or [prefixes or (low, high) address ranges])."""
    import ipaddress

    def entry(item) -> bytes:
        if isinstance(item, str):
            return _prefix(item)
        low, high = (ipaddress.ip_address(a) for a in item)  # a range: its ends as the shortest BIT STRINGs (DER)
        return _der(0x30, _range_end(int(low), low.max_prefixlen, 0) + _range_end(int(high), high.max_prefixlen, 1))
    out = b""
    for family, choice in families:
        afi = b"\0\1" if family == "v4" else b"\0\2"
        body = _der(0x05, b"") if choice == "inherit" else _der(0x30, b"".join(entry(i) for i in choice))
        out += _der(0x30, _der(0x04, afi) + body)
    return _der(0x30, out)


def _as_ids(asnum) -> bytes:
    """autonomousSysIds with asnum only: "inherit" or [numbers or (low, high)]."""
    def number(n: int) -> bytes:
        return _der(0x02, n.to_bytes((n.bit_length() + 8) // 8, "big"))
    if asnum == "inherit":
        body = _der(0x05, b"")
    else:
        body = _der(0x30, b"".join(number(i) if isinstance(i, int) else _der(0x30, number(i[0]) + number(i[1]))
                                   for i in asnum))
    return _der(0x30, _der(0xA0, body))


_IPB, _ASN = "1.3.6.1.5.5.7.1.7", "1.3.6.1.5.5.7.1.8"
_V4_INHERITED, _V6_INHERITED = ((_IPB, _ip_blocks((family, "inherit")), False) for family in ("v4", "v6"))
# name: ((root's, intermediate's, leaf's) extensions as (OID, DER, critical) or None, the CA OpenSSL blames or None)
_RESOURCE_CASES = {
    "leaf-blocks-none-above": ((None, None, (_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False)), "Resource CA"),
    "leaf-blocks-critical-none-above": ((None, None, (_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), True)), "Resource CA"),
    "nested-prefixes": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False), (_IPB, _ip_blocks(("v4", ["10.1.0.0/16"])),
                        False), (_IPB, _ip_blocks(("v4", ["10.1.2.0/24"])), False)), None),
    "nested-critical": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), True), (_IPB, _ip_blocks(("v4", "inherit")), True),
                        (_IPB, _ip_blocks(("v4", ["10.9.0.0/16"])), True)), None),
    "leaf-outside-intermediate": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False),
                                   (_IPB, _ip_blocks(("v4", ["10.1.0.0/16"])), False),
                                   (_IPB, _ip_blocks(("v4", ["10.2.0.0/24"])), False)), "Resource CA"),
    "intermediate-outside-root": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False),
                                   (_IPB, _ip_blocks(("v4", ["11.0.0.0/8"])), False),
                                   (_IPB, _ip_blocks(("v4", "inherit")), False)), "Root"),
    "range-within": (((_IPB, _ip_blocks(("v4", [("10.0.0.5", "10.0.0.9")])), False),
                      (_IPB, _ip_blocks(("v4", ["10.0.0.8/31"])), False), _V4_INHERITED),
                     None),
    "range-outside": (((_IPB, _ip_blocks(("v4", [("10.0.0.5", "10.0.0.9")])), False),
                       (_IPB, _ip_blocks(("v4", ["10.0.0.8/30"])), False), _V4_INHERITED),
                      "Root"),
    "leaf-range-within-prefix": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/28"])), False),
                                  _V4_INHERITED,
                                  (_IPB, _ip_blocks(("v4", [("10.0.0.3", "10.0.0.12")])), False)), None),
    "leaf-range-outside-prefix": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/29"])), False),
                                   _V4_INHERITED,
                                   (_IPB, _ip_blocks(("v4", [("10.0.0.3", "10.0.0.12")])), False)), "Root"),
    "v6-nested": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"]), ("v6", ["2001:db8::/32"])), False),
                   _V6_INHERITED, (_IPB, _ip_blocks(("v6", ["2001:db8:1::/48"])), False)),
                  None),
    "v6-family-missing-above": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False), None,
                                 (_IPB, _ip_blocks(("v6", ["2001:db8::/32"])), False)), "Resource CA"),
    "root-inherits": (((_IPB, _ip_blocks(("v4", "inherit")), False), None,
                       (_IPB, _ip_blocks(("v4", "inherit")), False)), "Root"),
    "leaf-without-under-unnested-ca": (((_IPB, _ip_blocks(("v4", ["10.0.0.0/8"])), False),
                                        (_IPB, _ip_blocks(("v4", ["11.0.0.0/8"])), False), None), None),
    "as-leaf-none-above": ((None, None, (_ASN, _as_ids([1000]), False)), "Resource CA"),
    "as-critical-none-above": ((None, None, (_ASN, _as_ids([1000]), True)), "Resource CA"),
    "as-within-range": (((_ASN, _as_ids([(1000, 2000)]), False), (_ASN, _as_ids("inherit"), False),
                         (_ASN, _as_ids([1500, (1600, 1700)]), False)), None),
    "as-outside-range": (((_ASN, _as_ids([(1000, 2000)]), False), None, (_ASN, _as_ids([3000]), False)), "Resource CA"),
    "as-root-inherits": (((_ASN, _as_ids("inherit"), False), None, (_ASN, _as_ids("inherit"), False)), "Root"),
}


def test_rfc3779_resources_are_judged_as_openssl_judges_them(tmp_path: Path) -> None:
    """OpenSSL checks a chain's RFC 3779 resources whether the extensions are critical or not: the leaf's IP
    address blocks and AS numbers must lie within every issuer's ("RFC 3779 resource not subset of parent's
    resources"). cryptography reads neither, so verify said VALID of a leaf naming 10.0.0.0/8 under a root naming
    none, which Python's ssl, curl and nginx refuse, and (critical ipAddrBlocks) NOT VALID of chains that nest.
    Now every verdict is openssl verify's, and the reason names the issuer OpenSSL blames."""
    from cryptography import x509

    def extra(spec) -> list:
        return [] if spec is None else [(x509.UnrecognizedExtension(x509.ObjectIdentifier(spec[0]), spec[1]),
                                         spec[2])]
    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    for case, ((at_root, at_ca, at_leaf), blamed) in _RESOURCE_CASES.items():
        root = _cert("Root", root_key, ca=True, extra=extra(at_root))
        ca = _cert("Resource CA", ca_key, root, root_key, ca=True, extra=extra(at_ca))
        leaf = _cert(HOST, leaf_key, ca, ca_key, extra=extra(at_leaf))
        folder = tmp_path / case
        folder.mkdir()
        for file, certs in (("root.pem", (root,)), ("leaf.pem", (leaf,)), ("chain.pem", (ca,)),
                            ("full.pem", (leaf, ca))):
            (folder / file).write_bytes(_pem(*certs))
        peer = openssl("verify", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile", folder / "root.pem",
                       "-untrusted", folder / "chain.pem", folder / "leaf.pem")
        assert (peer.returncode == 0) == (blamed is None), (case, peer.stdout, peer.stderr)
        said = run_certkit("verify", folder / "full.pem", "--ca-file", folder / "root.pem", "--purpose", "server",
                           "--name", HOST)
        assert (said.returncode == 0) == (blamed is None), (case, said.stdout, said.stderr)
        if blamed:  # the certificate OpenSSL names above its error is the one certkit names
            words = (peer.stdout + peer.stderr).decode()
            assert f"CN = {blamed}\nerror 46 at" in words and "RFC 3779 resource not subset of parent's resources" \
                in words, (case, words)
            what = "IP address blocks (RFC 3779 ipAddrBlocks)" if "as-" not in case else \
                "AS numbers (RFC 3779 autonomousSysIds)"
            assert f"  reason    its {what} are not within those of CN={blamed}, which OpenSSL (so Python's ssl, " \
                   "curl, nginx and Node) refuses whether the extension is critical or not (\"RFC 3779 resource not " \
                   "subset of parent's resources\")" in said.stdout, (case, said.stdout.splitlines()[6:])


# --- 3. probe of a port that does not speak TLS -------------------------------------------------------------------
def test_probe_of_a_plain_http_port_says_so_and_what_to_do(tmp_path: Path) -> None:
    """A user who probes a plain HTTP server (https://HOST:80/, a backend behind the TLS proxy) got OpenSSL's
    words alone: "did not complete a TLS handshake: wrong version number". probe now asks the port again in plain
    HTTP and says it speaks plain HTTP, with the status line it answered, and what to do."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "python -m http.server")
        probed = run_certkit("probe", f"https://127.0.0.1:{port}/")
        as_json = run_certkit("probe", f"https://127.0.0.1:{port}/", "--json")
    finally:
        server.terminate()
        wait_or_kill(server)
    words = (f"127.0.0.1:{port} did not complete a TLS handshake: wrong version number: the server speaks plain "
             "HTTP on this port, not TLS (asked in plain HTTP, it answers 'HTTP/1.0 200 OK'): give the port where it "
             "speaks HTTPS, or use a plain HTTP client for this one.")
    assert (probed.returncode, probed.stdout, probed.stderr) == (1, "", f"Error: {words}\n")
    assert as_json.returncode == 1 and json.loads(as_json.stdout) == {"error": words, "exit": 1}, as_json.stdout


# --- 4. a version 1 root as --ca-file -------------------------------------------------------------------------------
def test_a_version_1_root_as_ca_file_is_refused_in_words_that_say_what_it_is_and_what_to_do(tmp_path: Path) -> None:
    """A root made as some guides make it (openssl x509 -req -signkey: version 1, no extensions) was refused as
    `holds no CA certificate (what it holds, CN=V1 Root, is not a CA: basicConstraints CA:FALSE or none)`, words
    that leave the user lost: OpenSSL's default verification takes it as a CA. Now the refusal says what it is,
    who takes and who refuses it, and how to remake it."""
    def run(*args: str) -> None:
        assert openssl(*args).returncode == 0, args
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "r.key",
        "-out", tmp_path / "r.csr", "-subj", "/CN=V1 Root")
    run("x509", "-req", "-in", tmp_path / "r.csr", "-signkey", tmp_path / "r.key", "-out", tmp_path / "root.pem",
        "-days", "30")
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "l.key",
        "-out", tmp_path / "l.csr", "-subj", f"/CN={HOST}")
    (tmp_path / "leaf.ext").write_text(f"subjectAltName = DNS:{HOST}\nextendedKeyUsage = serverAuth\n")
    run("x509", "-req", "-in", tmp_path / "l.csr", "-CA", tmp_path / "root.pem", "-CAkey", tmp_path / "r.key",
        "-set_serial", "7", "-out", tmp_path / "leaf.pem", "-days", "20", "-extfile", tmp_path / "leaf.ext")
    assert openssl("verify", "-CAfile", tmp_path / "root.pem", tmp_path / "leaf.pem").returncode == 0
    assert openssl("verify", "-x509_strict", "-CAfile", tmp_path / "root.pem", tmp_path / "leaf.pem").returncode != 0

    said = run_certkit("verify", tmp_path / "leaf.pem", "--ca-file", tmp_path / "root.pem", "--purpose", "server")
    assert (said.returncode, said.stdout) == (1, ""), said.stdout
    assert said.stderr == (
        f"Error: {tmp_path / 'root.pem'} holds no CA certificate (what it holds, CN=V1 Root, is a self-signed "
        "version 1 certificate, without the basicConstraints CA:TRUE that makes a CA, as openssl x509 -req -signkey "
        "makes it: OpenSSL's default (openssl verify, curl, Python 3.11's ssl) takes it as a CA, while openssl verify "
        "-x509_strict and Python 3.13's default context refuse the chains it signs, as certkit does; remake the root "
        "with openssl req -x509, which adds basicConstraints CA:TRUE).\n"), said.stderr


# --- 5. serve's log: a quoted certificate string ends where it ends ------------------------------------------------
def test_serve_log_escapes_quotes_in_the_client_name_it_quotes(tmp_path: Path) -> None:
    """serve's log quotes the client's CN (`accepted ...: client "alice" serial ...`) and the request line, but
    wrote a `"` inside them as is: a client certificate named `eve" serial 01 (clientAuth, TLSv1.3) \\ x` made a
    line a reader (or a log parser) takes as client "eve". Now `"` and `\\` inside the quotes are escaped with a
    backslash, as Apache and nginx log them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from serve_process import serving

    root_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Log Root", root_key, ca=True)
    server = _cert("localhost", server_key, root, root_key)
    name = 'eve" serial 01 (clientAuth, TLSv1.3) \\ x'
    client = _cert(name, client_key, root, root_key,
                   extra=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    for file, data in (("root.pem", _pem(root)), ("server.pem", _pem(server, root)), ("client.pem", _pem(client))):
        (tmp_path / file).write_bytes(data)
    for file, key in (("server.key", server_key), ("client.key", client_key)):
        (tmp_path / file).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    with serving("--cert", tmp_path / "server.pem", "--key", tmp_path / "server.key", "--client-ca",
                 tmp_path / "root.pem", cwd=tmp_path) as srv:
        context = ssl.create_default_context(cafile=tmp_path / "root.pem")
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b'GET /x" HTTP/1.0\r\n\r\n')
            answer = tls.recv(64)
        accepted = srv.wait_for_log("accepted ")
        requested = srv.wait_for_log(" 200 client=")
    assert answer.startswith(b"HTTP/1.0 200"), answer
    assert ': client "eve\\" serial 01 (clientAuth, TLSv1.3) \\\\ x" serial ' in accepted[0], accepted
    assert requested[0].endswith(f' "GET /x\\" HTTP/1.0" 200 client={name}'), requested
