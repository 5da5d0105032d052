"""The thirteenth round's documentation findings (audit docs13, peers11), each as a class:

docs13
2. with ``--json`` an error is one JSON object on stdout (stderr empty), and a report that fails keeps its
   report on stdout with an ``Error:`` line on stderr: the README, the pages and ``--json``'s help say so;
3. a CA directory, or a file in it, that others can write is refused with what they could do with *that*
   file, the words ``certkit check`` uses, not ca.pem's "what peers are told to trust" for all;
4. the default folder name: the docs say every character outside ``[A-Za-z0-9._@+-]`` becomes ``_``, and
   a name holding ``/`` is refused for that, not as one that "would escape the current folder";
5. every subject the docs show, and list.md's ``--name`` glob, is in the order certkit writes it;
6. check.md's table names every check the code can report.

peers11
3. a server certificate logs in to a GnuTLS server that requires and verifies client certificates: the
   docs say so instead of "cannot log in anywhere" (proven with gnutls-serv);
4. a Node server given root and intermediate CRLs in one PEM buffer reads only the first, and refuses every
   client: two-tier-pki.md says to give Node the CRLs as separate entries (proven with node).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env, free_port, require, run_certkit, wait_listening, wait_or_kill


def _squash(text: str) -> str:
    return " ".join(text.split())


# --- docs13 #2: --json errors --------------------------------------------------------------------
def test_json_errors_are_one_object_on_stdout_and_the_docs_and_help_say_so(ca_dir: Path, ca_env: dict,
                                                                            tmp_path: Path) -> None:
    for args, code in ((("issue-server", "*.co.uk", "--json"), 1), (("list", "--expiring", "soon", "--json"), 2),
                       (("inspect", tmp_path / "nope.pem", "--json"), 1)):
        ran = run_certkit(*args, env=ca_env, cwd=tmp_path)
        assert ran.returncode == code, (args, ran.stdout, ran.stderr)
        said = json.loads(ran.stdout)
        assert set(said) == {"error", "exit"} and said["exit"] == code, ran.stdout
        assert ran.stderr == "", (args, ran.stderr)  # no Error: line besides it
    # a report that fails: the report on stdout, the Error: line on stderr
    run_certkit("issue-server", "a.example", env=ca_env, cwd=tmp_path, check=True)
    ran = run_certkit("verify", "a.example/cert.pem", "--purpose", "client", "--json", env=ca_env, cwd=tmp_path)
    assert ran.returncode == 1 and json.loads(ran.stdout)["valid"] is False
    assert ran.stderr.startswith("Error: ") and ran.stderr.count("\n") == 1, ran.stderr
    (ca_dir / "inventory.sqlite3").chmod(0o666)
    ran = run_certkit("check", "--json", env=ca_env, cwd=tmp_path)
    assert ran.returncode == 1 and json.loads(ran.stdout)["ok"] is False
    assert ran.stderr.startswith("Error: "), ran.stderr

    readme = _squash((REPO / "README.md").read_text())
    assert 'With `--json` an error is instead one JSON object on standard output, `{"error": "...", "exit": 1}` ' \
           '(`"exit": 2` for a usage mistake: the same status the command exits with), and standard error stays ' \
           "empty" in readme
    assert "keeps the report on standard output and adds the `Error:` line on standard error" in readme
    helped = _squash(run_certkit("issue-server", "--help").stdout)
    assert '{"error": ..., "exit": N}' in helped and "stderr stays empty" in helped, helped
    assert "an Error: line on stderr" in helped
    for page, words in (("inspect.md", 'the one JSON object `{"error": "...", "exit": 1}` on standard output'),
                        ("verify.md", "a verdict of not valid is the report on standard output and the same "
                                      "`Error:` line on stderr")):
        assert words in _squash((REPO / "docs" / page).read_text()), page


# --- docs13 #3: the risk named per file ------------------------------------------------------------
def _risk(message: str) -> str:
    """What a message says others could do: the words after "other users can", up to the fix."""
    found = re.search(r"other users can (.+?)\. Run: ", message)
    assert found, message
    return found.group(1)


@pytest.mark.parametrize("name", ["", "ca.pem", "parents.pem", "inventory.sqlite3", "certkit-ca.json"])
def test_a_ca_file_others_can_write_is_refused_with_its_own_risk(tmp_path: Path, ca_env: dict, ca_dir: Path,
                                                                  name: str) -> None:
    env = ca_env
    if name == "parents.pem":  # an intermediate has one
        env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "issuing"), CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
        run_certkit("init-ca", "--parent-ca-dir", ca_dir, "--name", "Issuing", env=env, check=True)
    if name == "certkit-ca.json":
        (ca_dir / name).write_text("{}")
    target = Path(env["CERTKIT_CA_DIR"]) / name
    target.chmod(0o777 if not name else 0o666)
    refused = run_certkit("issue-server", "a.example", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.startswith(f"Error: {target} has mode"), refused.stderr
    checked = run_certkit("check", "--json", env=env, cwd=tmp_path)
    errors = [f["message"] for f in json.loads(checked.stdout)["findings"]
              if f["level"] == "error" and f["message"].startswith(f"{target} has mode")]
    assert len(errors) == 1, checked.stdout
    assert _risk(refused.stderr) == _risk(errors[0])
    if name != "ca.pem":  # only ca.pem (and parents.pem's chain) is what peers are told to trust
        assert "what peers are told to trust" not in refused.stderr
    listed = run_certkit("list", env=env, cwd=tmp_path)  # the reading commands say the same
    assert listed.returncode == 1 and _risk(listed.stderr) == _risk(errors[0]), listed.stderr


def test_a_ca_file_of_another_owner_is_refused_with_its_own_risk(tmp_path: Path, ca_env: dict,
                                                                  ca_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    os.chown(ca_dir / "inventory.sqlite3", 65534, -1)
    refused = run_certkit("list", env=ca_env, cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "belongs to another user (uid 65534), who could rewrite it (the record of what this CA issued" \
           in refused.stderr, refused.stderr


# --- docs13 #4: the default folder ---------------------------------------------------------------
def test_the_default_folder_is_what_the_docs_say(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    page = _squash((REPO / "docs" / "ca-directory.md").read_text())
    assert "every other character outside `A-Z a-z 0-9 . _ @ + -` becomes `_`" in page
    pairs = re.findall(r"`([^`]+)` → `([^`]+)`", page)
    assert len(pairs) >= 5, pairs
    for name, folder in pairs:  # each example, issued as a server (a host name or address) or a client
        host = ("." in name or ":" in name) and " " not in name
        run_certkit("issue-server" if host else "issue-client", name, env=ca_env, cwd=tmp_path, check=True)
        assert (tmp_path / folder / "cert.pem").is_file(), (name, folder, sorted(os.listdir(tmp_path)))
    for page_name in ("issue-client.md", "issue-batch.md"):
        assert "every other character outside `A-Z a-z 0-9 . _ @ + -` becomes `_`" in \
            _squash((REPO / "docs" / page_name).read_text()), page_name


@pytest.mark.parametrize(("name", "why"), [
    ("a/b", "it holds a '/', which would make a subfolder"), ("../x", "it would escape the current folder"),
    ("/etc/x", "it would escape the current folder"),
    (".alice", "it starts with '.', which would make a hidden folder"),
    ("..", "'..' is the folder above"), ("a\\b", "it holds a '\\', which separates folders on Windows")])
def test_a_name_that_cannot_be_a_folder_is_refused_for_its_own_reason(tmp_path: Path, ca_env: dict, ca_dir: Path,
                                                                       name: str, why: str) -> None:
    refused = run_certkit("issue-client", name, env=ca_env, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.endswith(f"cannot name an output folder: {why}; choose the output folder yourself.\n"), \
        refused.stderr
    assert sorted(os.listdir(tmp_path)) == ["ca"]


# --- docs13 #5: subjects in the order certkit writes them ------------------------------------------
# certkit writes a subject as RFC 4514 text: the reverse of the DER order C, O, OU, CN it builds (since round 25)
_WRITTEN_ORDER = {"CN": 0, "OU": 1, "O": 2, "C": 3}
_DN = re.compile(r"(?:CN|OU|O|C)=[^,`'\"]*(?:,(?:CN|OU|O|C)=[^,`'\"]*)+")


def test_every_subject_in_the_docs_is_in_the_order_certkit_writes_it() -> None:
    pages = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
    seen = []
    for page in pages:
        for dn in _DN.findall(page.read_text()):
            kinds = [part.split("=", 1)[0] for part in dn.split(",")]
            seen.append((page.name, dn))
            if "matches nothing" not in page.read_text().split(dn, 1)[1][:40]:  # a counter-example says so
                assert kinds == sorted(kinds, key=_WRITTEN_ORDER.get), (page.name, dn)
    assert ("list.md", "CN=*,O=Example Corp") in seen, seen


def test_list_md_subject_globs_match_as_it_says(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    env = dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--parent-ca-dir", ca_dir, "--ca-dir", tmp_path / "i", "--name", "Issuing", "--org",
                "Example Corp", env=env, check=True)
    page = _squash((REPO / "docs" / "list.md").read_text())
    shown = re.search(r"is `([^`]+)` there, so `'([^`]+)'` lists that organization's CAs "
                      r"\(and `'([^`]+)'` matches nothing\)", page)
    assert shown, "list.md lost its subject glob example"
    subject, matching, not_matching = shown.groups()
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [c["subject"] for c in listed if c["kind"] == "ca"] == [subject]
    found = json.loads(run_certkit("list", "--name", matching, "--json", env=env, check=True).stdout)
    assert [c["subject"] for c in found["certificates"]] == [subject]
    found = json.loads(run_certkit("list", "--name", not_matching, "--json", env=env, check=True).stdout)
    assert found["certificates"] == []


# --- docs13 #6: check.md's table names every check -----------------------------------------------
def _check_names_in_code() -> set[str]:
    """Every check name certkit/check.py (and check_inventory.py, its inventory's checks) can report: the first
    argument of each Finding (and of the helpers that make Findings for a check named by their caller), and the
    names in its table of files at stake."""
    import ast

    trees = [ast.parse((REPO / "certkit" / name).read_text()) for name in ("check.py", "check_inventory.py")]
    names: set[str] = set()
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            position = {"Finding": 0, "_listed": 0, "_read_pem": 1}.get(node.func.id)
            if position is not None and len(node.args) > position:
                arg = node.args[position]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_AT_STAKE" for t in node.targets):
            names |= {v.elts[0].value for v in node.value.values}
    return names


def _check_names_in_table() -> set[str]:
    text = (REPO / "docs" / "check.md").read_text()
    rows = text.split("| check | what fails it | what to do |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {name.strip() for row in rows for name in row.strip("|").split("|")[0].split(",")}


def test_check_md_names_every_check_the_code_reports(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    in_code = _check_names_in_code()
    assert {"key-owner", "config", "token", "database", "directory", "inventory-row"} <= in_code, in_code
    assert _check_names_in_table() == in_code
    # the two nothing documented before, as check reports them
    (ca_dir / "certkit-ca.json").write_text("{bad")
    said = json.loads(run_certkit("check", "--json", env=ca_env).stdout)
    assert ("config", "error") in {(f["check"], f["level"]) for f in said["findings"]}, said
    (ca_dir / "certkit-ca.json").unlink()
    if os.geteuid() == 0:
        os.chown(ca_dir / "ca-key.pem", 65534, -1)
        said = json.loads(run_certkit("check", "--json", env=ca_env).stdout)
        assert ("key-owner", "warning") in {(f["check"], f["level"]) for f in said["findings"]}, said


# --- peers11 #3: a GnuTLS server does not check a client certificate's purpose --------------------------
def _https_get(port: int, ca: Path, bundle: Path | None) -> str:
    """The status line a GET / over TLS gets from 127.0.0.1:``port`` (as localhost), or the error that ended it."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    if bundle is not None:
        context.load_cert_chain(bundle / "cert.pem", bundle / "privkey.pem")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            return answer.split(b"\r\n", 1)[0].decode() or "nothing"
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"


@contextmanager
def _gnutls_serv(server: Path, ca: Path):
    """gnutls-serv requiring and verifying client certificates against ``ca``: its port while it runs."""
    gnutls_serv = require("gnutls-serv")
    port = free_port()
    process = subprocess.Popen([gnutls_serv, "--http", "-p", str(port), "--x509certfile", str(server / "fullchain.pem"),
                                "--x509keyfile", str(server / "privkey.pem"), "--x509cafile", str(ca),
                                "--require-client-cert", "--verify-client-cert"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process, process.args[0])
        yield port
    finally:
        process.terminate()
        wait_or_kill(process)


def test_a_gnutls_server_lets_a_server_certificate_log_in_as_the_docs_say(tmp_path: Path, ca_env: dict,
                                                                        ca_dir: Path) -> None:
    for args in (("issue-server", "localhost", "127.0.0.1", "--out", "srv"),
                 ("issue-client", "alice", "--out", "alice"),
                 ("issue-client", "bob", "--dns", "localhost", "--out", "bob")):
        run_certkit(*args, env=ca_env, cwd=tmp_path, check=True)
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", "--name", "Other CA", env=other, check=True)
    run_certkit("issue-client", "mallory", "--out", "mallory", env=other, cwd=tmp_path, check=True)
    ca = ca_dir / "ca.pem"
    with _gnutls_serv(tmp_path / "srv", ca) as port:
        assert _https_get(port, ca, tmp_path / "alice").startswith("HTTP/1.0 200"), "the client certificate"
        assert not _https_get(port, ca, None).startswith("HTTP"), "no client certificate: required"
        assert not _https_get(port, ca, tmp_path / "mallory").startswith("HTTP"), "another CA's: verified"
        # ... and the server certificate logs in: GnuTLS's server checks the chain, not the purpose
        assert _https_get(port, ca, tmp_path / "srv").startswith("HTTP/1.0 200")
        probed = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", ca, "--bundle", tmp_path / "srv",
                             env=ca_env, cwd=tmp_path)
        assert "so this server does not check a client certificate's purpose" in probed.stdout, probed.stdout
    # a GnuTLS client does check a server's purpose: a client certificate (for localhost) is refused as one
    gnutls_cli = require("gnutls-cli")
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                               str(tmp_path / "bob" / "cert.pem"), "-key", str(tmp_path / "bob" / "privkey.pem"),
                               "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, server.args[0])
        asked = subprocess.run([gnutls_cli, "--x509cafile", str(ca), "-p", str(port), "localhost"], input="",
                               capture_output=True, text=True, timeout=30)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert asked.returncode != 0 and "does not match the intended purpose" in asked.stdout + asked.stderr, asked.stdout
    # what the pages say
    mtls = _squash((REPO / "docs" / "mtls.md").read_text())
    assert "GnuTLS clients check a server's. GnuTLS's own server does not check a client certificate's purpose: " \
           "`gnutls-serv --require-client-cert --verify-client-cert` verifies the chain and lets a server " \
           "certificate of the CA it trusts log in as a client." in mtls
    assert "TLS software checks it" not in mtls
    for page in ("demo.md", "issue-peer.md", "issue-server.md"):
        text = _squash((REPO / "docs" / page).read_text())
        assert "`gnutls-serv" in text and "cannot log in anywhere" not in text, page


# --- peers11 #4: Node takes the CRLs of a chain as separate entries -------------------------------------
_NODE_CLIENTS = r"""
function probe(server) {
  const port = server.address().port, out = {};
  const next = (names) => {
    if (!names.length) { console.log(JSON.stringify(out)); server.close(); return; }
    const name = names[0];
    let got = '';
    const c = tls.connect({port, host: '127.0.0.1', servername: 'api.example.internal',
      ca: fs.readFileSync('root/ca.pem'), cert: fs.readFileSync(name + '/fullchain.pem'),
      key: fs.readFileSync(name + '/privkey.pem')});
    c.on('data', (d) => { got += d; });
    c.on('error', () => {});
    c.on('close', () => { out[name] = got === 'hello ' + name + '\n' ? 'accepted' : 'refused'; next(names.slice(1)); });
  };
  next(['bob', 'alice']);
}
"""


def _node_block() -> str:
    text = (REPO / "docs" / "two-tier-pki.md").read_text()
    blocks = re.findall(r"```js\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "two-tier-pki.md should show one Node server"
    assert ".listen(8443);" in blocks[0]
    return blocks[0].replace(".listen(8443);", ".listen(0, '127.0.0.1', function () { probe(this); });") + _NODE_CLIENTS


def test_node_needs_the_crls_of_a_chain_as_separate_entries_as_two_tier_pki_says(tmp_path: Path) -> None:
    node = require("node")
    env = dict(certkit_env(HOME=str(tmp_path)), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
               CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", "root", "--name", "Example Root CA", env=env, cwd=tmp_path, check=True)
    run_certkit("init-ca", "--ca-dir", "issuing", "--parent-ca-dir", "root", "--name", "Example Issuing CA 1",
                env=env, cwd=tmp_path, check=True)
    env["CERTKIT_CA_DIR"] = str(tmp_path / "issuing")
    for args in (("issue-server", "api.example.internal", "127.0.0.1"), ("issue-client", "bob"),
                 ("issue-client", "alice"), ("revoke", "./alice", "--reason", "keyCompromise"),
                 ("crl", "--out", "issuing.crl", "--days", "7"),
                 ("crl", "--ca-dir", "root", "--days", "365", "--out", "root.crl")):
        run_certkit(*args, env=env, cwd=tmp_path, check=True)
    (tmp_path / "crls.pem").write_bytes((tmp_path / "root.crl").read_bytes() + (tmp_path / "issuing.crl").read_bytes())

    def run(script: str) -> dict:
        (tmp_path / "server.js").write_text(script)
        ran = subprocess.run([node, "server.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)

    documented = _node_block()
    assert "crl: [fs.readFileSync('root.crl'), fs.readFileSync('issuing.crl')]" in documented
    assert run(documented) == {"bob": "accepted", "alice": "refused"}
    one_buffer = documented.replace("[fs.readFileSync('root.crl'), fs.readFileSync('issuing.crl')]",
                                    "fs.readFileSync('crls.pem')")
    assert run(one_buffer) == {"bob": "refused", "alice": "refused"}  # what the page warns of
    page = _squash((REPO / "docs" / "two-tier-pki.md").read_text())
    assert "reads only the **first** CRL of a PEM buffer" in page and "refuses every client, bob included" in page
    assert "Node reads only the first CRL of a PEM buffer" in _squash((REPO / "docs" / "crl.md").read_text())
