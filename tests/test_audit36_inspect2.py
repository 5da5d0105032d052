"""inspect, verify, probe and check, audit round thirty-six: inputs from other tools, against real peers.

A DER chain (``cat cert.der ca.der``, what Java's CertificateFactory and Go's x509.ParseCertificates read, and
what some appliances hand out) was "neither a PEM file nor a DER certificate, CSR or CRL (it may be truncated or
not a certificate at all)" to inspect, verify (CERT, --untrusted, --ca-file), probe --cert and --ca-file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, new_ca, run_certkit


def _der(pem: Path, out: Path) -> bytes:
    subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", out], check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (root), inter/ (an intermediate under it), localhost/ (a server of the intermediate), alice/ (a
    client of the root); DER chains: localhost.der (leaf, intermediate), alice.der (leaf, root), cas.der
    (intermediate, root)."""
    top = tmp_path_factory.mktemp("audit36-inspect2")
    env = new_ca(top, "Lab Root")
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    inter = {**env, "CERTKIT_CA_DIR": str(top / "inter"), "CERTKIT_PARENT_CA_PASSPHRASE": env["CERTKIT_CA_PASSPHRASE"]}
    run_certkit("init-ca", "--name", "Lab Inter", "--parent-ca-dir", top / "ca", env=inter, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=inter, check=True)
    root = _der(top / "ca" / "ca.pem", top / "root.der")
    mid = _der(top / "inter" / "ca.pem", top / "inter.der")
    (top / "localhost.der").write_bytes(_der(top / "localhost" / "cert.pem", top / "leaf.der") + mid)
    (top / "alice.der").write_bytes(_der(top / "alice" / "cert.pem", top / "alice1.der") + root)
    (top / "cas.der").write_bytes(mid + root)
    subprocess.run(["openssl", "req", "-new", "-key", top / "alice" / "privkey.pem", "-subj", "/CN=x", "-out",
                    top / "req.csr"], check=True)
    (top / "env.json").write_text(json.dumps(env))
    return top


def _env(pki: Path) -> dict:
    return json.loads((pki / "env.json").read_text())


def test_inspect_reads_a_der_chain_as_openssl_reads_each_certificate(pki):
    data = json.loads(run_certkit("inspect", pki / "localhost.der", "--json", env=_env(pki), check=True).stdout)
    subjects = [item["subject"] for item in data["items"]]
    assert subjects == ["CN=localhost", "CN=Lab Inter"], data
    for item, one in zip(data["items"], ("leaf.der", "inter.der"), strict=True):
        fingerprint = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", pki / one, "-noout",
                                      "-fingerprint", "-sha256"], capture_output=True, text=True, check=True).stdout
        assert item["fingerprint_sha256"] == fingerprint.split("=")[1].strip().replace(":", "").lower()
    text = run_certkit("inspect", pki / "cas.der", env=_env(pki), check=True).stdout
    assert "Certificate (cas.der [1 of 2])" in text and "Certificate (cas.der [2 of 2])" in text, text


@pytest.mark.parametrize("how", ["CERT", "--untrusted", "--ca-file"])
def test_verify_reads_a_der_chain_as_openssl_verifies_its_pem(pki, how):
    """The verdict openssl verify -x509_strict gives the same chain (in PEM: it reads no DER chain) is certkit's."""
    env = _env(pki)
    if how == "CERT":
        args = [pki / "localhost.der", "--ca-file", pki / "root.der"]
    elif how == "--untrusted":
        args = [pki / "leaf.der", "--untrusted", pki / "localhost.der", "--ca-file", pki / "root.der"]
    else:
        args = [pki / "leaf.der", "--ca-file", pki / "cas.der"]
    proc = run_certkit("verify", *args, "--purpose", "server", "--name", "localhost", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CN=localhost -> CN=Lab Inter -> CN=Lab Root" in proc.stdout, proc.stdout
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname",
                           "localhost", "-CAfile", pki / "ca" / "ca.pem", "-untrusted", pki / "inter" / "ca.pem",
                           pki / "localhost" / "cert.pem"], capture_output=True, text=True)
    assert ossl.returncode == 0, ossl.stdout + ossl.stderr
    wrong = run_certkit("verify", *args, "--purpose", "client", env=env)  # the purpose still judged
    assert wrong.returncode == 1 and "NOT VALID" in wrong.stdout, wrong.stdout


def test_a_cut_or_mixed_der_file_is_still_refused_in_one_line(pki, tmp_path):
    data = (pki / "localhost.der").read_bytes()
    for name, content in (("cut.der", data[:-20]), ("junk.der", data + b"junk\n"),
                          ("one-and-junk.der", (pki / "leaf.der").read_bytes() + b"\x30\x03\x02\x01\x01")):
        (tmp_path / name).write_bytes(content)
        proc = run_certkit("inspect", tmp_path / name, env=_env(pki))
        assert_clean_error(proc, "is neither a PEM file nor a DER certificate, CSR or CRL")


def test_probe_reads_a_der_chain_as_cert_and_as_ca_file_against_openssl_s_server(pki):
    """openssl s_server asking for a client certificate of the root: probe --cert alice.der (alice's certificate
    and the root, in DER) is accepted, and --ca-file cas.der verifies the server's chain."""
    server = pki / "localhost"
    with openssl_server("-cert", server / "cert.pem", "-key", server / "privkey.pem", "-cert_chain",
                        pki / "inter" / "ca.pem", "-Verify", "2", "-CAfile", pki / "ca" / "ca.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", pki / "cas.der", "--cert",
                           pki / "alice.der", "--key", pki / "alice" / "privkey.pem", env=_env(pki))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted: the server answered HTTP 200" in proc.stdout, proc.stdout
    assert "given       CN=alice" in proc.stdout, proc.stdout


# --- check on a damaged CA directory: each finding says what the file holds and what to do ------------------------
@pytest.fixture()
def damaged_ca(pki, tmp_path) -> tuple[Path, dict]:
    """A copy of pki's root CA directory (two certificates recorded: alice, the intermediate), and its env."""
    import shutil

    folder = tmp_path / "ca"
    shutil.copytree(pki / "ca", folder)
    return folder, {**_env(pki), "CERTKIT_CA_DIR": str(folder)}


def _check(env: dict) -> tuple[int, list[tuple[str, str]]]:
    proc = run_certkit("check", "--json", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [(f["check"], f["message"]) for f in json.loads(proc.stdout)["findings"]
                             if f["level"] == "error"]


PLACED = {  # what is put in ca.pem or parents.pem: (source in pki, how it is said)
    "key": ("alice/privkey.pem", "cannot be read: it holds a private key, not a certificate"),
    "csr": ("req.csr", "cannot be read: it holds a certificate signing request, not a certificate"),
    "der": ("root.der", "cannot be read: it is a DER (binary) certificate; certkit keeps it in PEM"),
}


@pytest.mark.parametrize("name", ["ca.pem", "parents.pem"])
@pytest.mark.parametrize("kind", sorted(PLACED))
def test_check_says_what_ca_pem_or_parents_pem_holds_instead_as_list_does(pki, damaged_ca, name, kind):
    """check said "is damaged: its certificate data does not parse" (a key, a CSR) or "holds no PEM data" (DER),
    where list and issue name what the file holds and how to put it right."""
    folder, env = damaged_ca
    (folder / name).write_bytes((pki / PLACED[kind][0]).read_bytes())
    code, errors = _check(env)
    check = "certificate" if name == "ca.pem" else "parents"
    assert code == 1 and any(c == check and m.startswith(f"{folder / name} {PLACED[kind][1]}") for c, m in errors), \
        errors
    assert not any("does not parse" in m or "no PEM data" in m for _, m in errors), errors
    if name == "ca.pem":  # the words list gives
        listed = run_certkit("list", env=env)
        assert_clean_error(listed, PLACED[kind][1].split(": ", 1)[1])


def test_check_says_a_leaf_copied_over_ca_pem_is_to_be_put_back_and_blames_no_row(pki, damaged_ca):
    """A certificate the CA issued put in ca.pem: check named no certificate and said no remedy, added a chain
    error asking for a parents.pem a root never has, and an issuer error for every row ('not by this CA
    (CN=alice)'). It now names the certificate and says to put the CA's back; the rows are not judged by it."""
    folder, env = damaged_ca
    (folder / "ca.pem").write_bytes((pki / "alice" / "cert.pem").read_bytes())
    code, errors = _check(env)
    assert code == 1
    checks = [c for c, _ in errors]
    assert "chain" not in checks and "issuer" not in checks, errors
    (message,) = [m for c, m in errors if c == "certificate"]
    assert message.startswith("ca.pem holds CN=alice, which is not a CA certificate"), message
    assert "Put the CA's certificate back from a backup" in message, message
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", folder / "ca.pem", pki / "inter" / "ca.pem"],
                          capture_output=True, text=True)
    assert ossl.returncode != 0  # nothing the CA issued verifies against that ca.pem


@pytest.mark.parametrize("sql", [
    "UPDATE certificates SET status = 'revokd' WHERE kind = 'client'",
    "UPDATE certificates SET not_after = 'garbage' WHERE kind = 'client'",
    "UPDATE certificates SET kind = 'server' WHERE kind = 'client'",
    "UPDATE certificates SET serial = 'AB' WHERE kind = 'client'",
])
def test_check_says_what_to_do_of_each_edited_row(damaged_ca, sql):
    """An edited row's finding named what is wrong but not what to do (docs/check.md: restore it)."""
    import sqlite3

    folder, env = damaged_ca
    with sqlite3.connect(folder / "inventory.sqlite3") as conn:
        conn.execute(sql)
    conn.close()
    code, errors = _check(env)
    assert code == 1 and len(errors) == 1, errors
    check, message = errors[0]
    assert check == "inventory-row" and message.startswith("serial "), errors
    assert message.endswith(". Restore the inventory from a backup made before the change, then run certkit check "
                            "again."), message


# --- OpenSSL's TRUSTED CERTIFICATE (openssl x509 -trustout; Fedora's ca-bundle.trust.crt) -----------------------
def _trustout(pki: Path, name: str, *options: str) -> Path:
    out = pki / f"{name}.pem"
    if not out.exists():
        subprocess.run(["openssl", "x509", "-in", pki / "ca" / "ca.pem", *options, "-out", out], check=True)
    assert out.read_bytes().startswith(b"-----BEGIN TRUSTED CERTIFICATE-----")
    return out


@pytest.mark.parametrize("options", [["-trustout"], ["-trustout", "-setalias", "Lab Root"]], ids=["plain", "alias"])
def test_a_trusted_certificate_without_trust_settings_is_read_as_openssl_reads_it(pki, options):
    """It was 'holds a damaged trusted certificate: it is not valid DER: extra data follows its end' to inspect,
    verify (CERT and --ca-file) and probe --ca-file."""
    env = _env(pki)
    root = _trustout(pki, "-".join(options).strip("-").replace(" ", ""), *options)
    data = json.loads(run_certkit("inspect", root, "--json", env=env, check=True).stdout)
    assert [item["subject"] for item in data["items"]] == ["CN=Lab Root"], data
    own = run_certkit("verify", root, "--purpose", "client", "--ca-file", root, env=env)
    assert own.returncode == 1 and "Error" in own.stderr and "damaged" not in own.stderr  # a CA, not a client
    proc = run_certkit("verify", pki / "alice" / "cert.pem", "--purpose", "client", "--ca-file", root, env=env)
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", root,
                           pki / "alice" / "cert.pem"], capture_output=True, text=True)
    assert proc.returncode == 0 and ossl.returncode == 0, (proc.stdout, proc.stderr, ossl.stdout, ossl.stderr)
    server = pki / "localhost"
    with openssl_server("-cert", server / "cert.pem", "-key", server / "privkey.pem", "-cert_chain",
                        pki / "inter" / "ca.pem") as port:
        probed = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", root, env=env)
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert f"chain       verified against the CA in {root}" in probed.stdout, probed.stdout


@pytest.mark.parametrize("options", [["-addtrust", "serverAuth"], ["-addreject", "clientAuth"]],
                         ids=["addtrust", "addreject"])
def test_a_trusted_certificate_with_trust_settings_is_refused_in_one_line_not_called_damaged(pki, options):
    """Settings OpenSSL applies and certkit does not: judged without them, alice's certificate would be VALID
    where openssl verify -purpose sslclient rejects it (-addreject clientAuth); certkit refuses the file."""
    env = _env(pki)
    root = _trustout(pki, options[0].strip("-"), *options)
    said = "holds an OpenSSL trusted certificate with trust settings"
    assert_clean_error(run_certkit("inspect", root, env=env), said)
    proc = run_certkit("verify", pki / "alice" / "cert.pem", "--purpose", "client", "--ca-file", root, env=env)
    assert_clean_error(proc, f"openssl x509 -in {root} -out cert.pem")
    assert "damaged" not in proc.stderr
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", root,
                           pki / "alice" / "cert.pem"], capture_output=True, text=True)
    assert ossl.returncode != 0, ossl.stdout  # what certkit would have missed: OpenSSL refuses it
    assert_clean_error(run_certkit("probe", "https://127.0.0.1:1/", "--ca-file", root, env=env), said)


# --- a Java keystore (keytool's JKS) where certificates are read --------------------------------------------------
@pytest.fixture(scope="module")
def keystore(pki) -> Path:
    """A JKS truststore holding pki's root, written by keytool itself (a private HOME: nothing of the user's)."""
    import shutil

    if shutil.which("keytool") is None:
        pytest.skip("keytool is not installed")
    home = pki / "java-home"
    home.mkdir(exist_ok=True)
    store = pki / "trust.jks"
    if not store.exists():
        subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "root", "-file", pki / "ca" / "ca.pem",
                        "-keystore", store, "-storetype", "JKS", "-storepass", "changeit"], check=True,
                       capture_output=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert store.read_bytes()[:4] == b"\xfe\xed\xfe\xed"
    return store


@pytest.mark.parametrize("reader", ["inspect", "verify --ca-file", "verify --untrusted", "probe --ca-file",
                                    "probe --cert"])
def test_a_java_keystore_is_named_as_one_with_the_keytool_command_that_takes_its_certificates_out(pki, keystore,
                                                                                                   reader):
    """It was 'a Java keystore or an OpenPGP secret key, not a certificate, CSR or CRL.', with no way out; the
    keytool command it now gives writes a file certkit reads, and verify then agrees with openssl verify."""
    env, alice = _env(pki), pki / "alice" / "cert.pem"
    args = {"inspect": ["inspect", keystore],
            "verify --ca-file": ["verify", alice, "--purpose", "client", "--ca-file", keystore],
            "verify --untrusted": ["verify", alice, "--purpose", "client", "--untrusted", keystore],
            "probe --ca-file": ["probe", "https://127.0.0.1:1/", "--ca-file", keystore],
            "probe --cert": ["probe", "https://127.0.0.1:1/", "--cert", keystore, "--key",
                             pki / "alice" / "privkey.pem"]}
    proc = run_certkit(*args[reader], env=env)
    said = f"is a Java keystore (JKS or JCEKS, which certkit does not read), not a certificate, CSR or CRL; take the " \
           f"certificates out with 'keytool -list -rfc -keystore {keystore} > certs.pem'"
    assert_clean_error(proc, said)
    assert "OpenPGP" not in proc.stderr
    if reader == "verify --ca-file":  # the advice, followed, works
        listed = subprocess.run(["keytool", "-list", "-rfc", "-keystore", keystore], input="changeit\n",
                                capture_output=True, text=True, check=True, timeout=120,
                                env={"HOME": str(pki / "java-home"), "PATH": "/usr/bin:/bin"})
        certs = pki / "certs.pem"
        certs.write_text(listed.stdout)
        proc = run_certkit("verify", alice, "--purpose", "client", "--ca-file", certs, env=env)
        ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", certs, alice],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and ossl.returncode == 0, (proc.stdout, proc.stderr, ossl.stdout, ossl.stderr)


# --- a cross-signed intermediate given twice, the other CA's copy first -------------------------------------------
@pytest.fixture(scope="module")
def cross(tmp_path_factory) -> Path:
    """RootA, RootB (self-signed); Inter's one key certified by each (IA, IB); a server certificate L under Inter."""
    top = tmp_path_factory.mktemp("audit36-cross")

    def run(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=top)

    ca_ext, ec = "basicConstraints=critical,CA:TRUE", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for root in ("RootA", "RootB"):
        run("req", "-x509", *ec, "-keyout", f"{root}.key", "-subj", f"/CN={root}", "-days", "300", "-out",
            f"{root}.pem", "-addext", ca_ext, "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (top / "ca.cnf").write_text(f"{ca_ext}\nkeyUsage=critical,keyCertSign,cRLSign\n")
    (top / "leaf.cnf").write_text("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
                                  "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
    run("req", "-new", *ec, "-keyout", "I.key", "-subj", "/CN=Inter", "-out", "I.csr")
    for root, out in (("RootA", "IA.pem"), ("RootB", "IB.pem")):
        run("x509", "-req", "-in", "I.csr", "-CA", f"{root}.pem", "-CAkey", f"{root}.key", "-days", "200",
            "-extfile", "ca.cnf", "-out", out)
    run("req", "-new", *ec, "-keyout", "L.key", "-subj", "/CN=localhost", "-out", "L.csr")
    run("x509", "-req", "-in", "L.csr", "-CA", "IA.pem", "-CAkey", "I.key", "-days", "100", "-extfile", "leaf.cnf",
        "-out", "L.pem")
    (top / "BA.pem").write_bytes((top / "IB.pem").read_bytes() + (top / "IA.pem").read_bytes())
    (top / "AB.pem").write_bytes((top / "IA.pem").read_bytes() + (top / "IB.pem").read_bytes())
    (top / "fullchain.pem").write_bytes((top / "L.pem").read_bytes() + (top / "BA.pem").read_bytes())
    return top


def _python_ssl_handshake(port: int, cafile: Path) -> str:
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="localhost"):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


@pytest.mark.parametrize("how", ["--untrusted", "fullchain"])
def test_a_cross_signed_intermediate_given_second_is_said_as_such(pki, cross, how):
    """The intermediates IB then IA (one key, certified by RootB and by RootA), trusting RootA: OpenSSL takes IB
    and refuses (openssl verify, and a Python ssl client of openssl s_server sending L, IB, IA), as certkit does;
    certkit's reason was 'its issuer CN=RootB is not the trusted CA (CN=RootA) nor in the intermediates given',
    though IA is given. It now says Inter is given twice and to put the one issued by RootA first."""
    env = _env(pki)
    args = [cross / "L.pem", "--untrusted", cross / "BA.pem"] if how == "--untrusted" else [cross / "fullchain.pem"]
    proc = run_certkit("verify", *args, "--ca-file", cross / "RootA.pem", "--purpose", "server", env=env)
    _not_valid(proc, "the chain breaks at CN=Inter: the intermediates given hold it twice, and OpenSSL (so nginx, "
                     "curl, Python's ssl) takes the first, issued by CN=RootB, which is not trusted here; the one "
                     "issued by CN=RootA comes after it: put that one first")
    assert "nor in the intermediates given" not in proc.stderr
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", cross / "RootA.pem",
                           "-untrusted", cross / "BA.pem", cross / "L.pem"], capture_output=True, text=True)
    assert ossl.returncode != 0, ossl.stdout
    with openssl_server("-cert", cross / "L.pem", "-key", cross / "L.key", "-cert_chain", cross / "BA.pem") as port:
        assert _python_ssl_handshake(port, cross / "RootA.pem") != "ok"
    with openssl_server("-cert", cross / "L.pem", "-key", cross / "L.key", "-cert_chain", cross / "AB.pem") as port:
        assert _python_ssl_handshake(port, cross / "RootA.pem") == "ok"  # the fix it gives, followed
    fixed = run_certkit("verify", cross / "L.pem", "--untrusted", cross / "AB.pem", "--ca-file", cross / "RootA.pem",
                        "--purpose", "server", "--name", "localhost", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    alone = run_certkit("verify", cross / "L.pem", "--untrusted", cross / "IB.pem", "--ca-file", cross / "RootA.pem",
                        "--purpose", "server", env=env)  # IA not given at all: the reason as before
    _not_valid(alone, "its issuer CN=RootB is not the trusted CA (CN=RootA) nor in the intermediates given")


def _not_valid(proc, reason: str) -> None:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("Error: ") and reason in proc.stderr, \
        proc.stderr
    assert reason in proc.stdout.split("  reason    ", 1)[-1], proc.stdout


def test_probe_of_a_server_sending_the_other_cas_cross_certificate_first_says_so(pki, cross):
    """probe, trusting RootA, of openssl s_server sending L, IB, IA: exit 1, OpenSSL's refusal, and the reason
    in the words of what the server sends (it said 'nor in the intermediates given', then 'the intermediates
    given')."""
    with openssl_server("-cert", cross / "L.pem", "-key", cross / "L.key", "-cert_chain", cross / "BA.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", cross / "RootA.pem", env=_env(pki))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert "unable to get local issuer certificate (at depth 1)" in proc.stdout, proc.stdout
    assert ("reason      the chain breaks at CN=Inter: the intermediates the server sends hold it twice, and OpenSSL "
            "(so nginx, curl, Python's ssl) takes the first, issued by CN=RootB") in proc.stdout, proc.stdout
