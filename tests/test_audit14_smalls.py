"""Round fourteen, small findings (helper ``smalls``).

1. verify of a leaf alone whose chain certkit completed from the CA directory says so in a note.
2. A keyCompromise row whose certificate cannot be read is never skipped: no key is certified until it
   is restored (the damaged row might hold that very key).
3. Kubernetes Secret names from non-ASCII names are distinct and stable.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from conftest import assert_clean_error, run_certkit


def _csr(key: Path, out: Path) -> Path:
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=www.example", "-out", str(out)],
                   check=True, capture_output=True)
    return out


def test_a_damaged_keycompromise_row_refuses_certifying_any_key(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "www.example", "--out", tmp_path / "www", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "www", "--reason", "keyCompromise", env=ca_env, check=True)
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        serial = db.execute("SELECT serial FROM certificates WHERE revocation_reason = 'keyCompromise'").fetchone()[0]
        db.execute("UPDATE certificates SET der = X'3000' WHERE serial = ?", (serial,))
    db.close()
    csr = _csr(tmp_path / "www" / "privkey.pem", tmp_path / "again.csr")
    proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "again", env=ca_env)
    assert_clean_error(proc, serial)
    assert "keyCompromise" in proc.stderr, proc.stderr
    assert not (tmp_path / "again").exists()


def _secret(path: Path) -> str:
    names = [line.split('"')[1] for line in path.read_text().splitlines() if line.startswith("  name: ")]
    assert len(names) == 1, names
    return names[0]


def test_k8s_secret_names_of_non_ascii_names_are_distinct_and_stable(tmp_path: Path, ca_dir: Path,
                                                                     ca_env: dict) -> None:
    import hashlib
    import json

    made = {}
    for n, typed in enumerate(["José Ñ", "Josë Ñ", "Jose N"]):
        out = tmp_path / f"{n}.yaml"
        proc = run_certkit("issue-client", typed, "--format", "k8s", "--out", out, "--json", env=ca_env, check=True)
        made[typed] = _secret(out)
        assert json.loads(proc.stdout)["secret"] == made[typed]
    assert made["Jose N"] == "jose-n"  # ASCII: unchanged
    assert made["José Ñ"] == "jos-" + hashlib.sha256("José Ñ".encode()).hexdigest()[:8]
    assert made["José Ñ"] != made["Josë Ñ"]
    # A host name keeps its A-label, without a suffix.
    run_certkit("issue-server", "bücher.example", "--format", "k8s", "--out", tmp_path / "s.yaml", env=ca_env,
                check=True)
    assert _secret(tmp_path / "s.yaml") == "xn--bcher-kva.example"
    # A batch names them alike, and tells two lines of one name apart from two names.
    (tmp_path / "m.csv").write_text("kind,names\nclient,José Ñ\nclient,Josë Ñ\n", encoding="utf-8")
    run_certkit("issue-batch", "m.csv", "--format", "k8s", "--out", "b.yaml", cwd=tmp_path, env=ca_env, check=True)
    text = (tmp_path / "b.yaml").read_text()
    assert f'name: "{made["José Ñ"]}"' in text and f'name: "{made["Josë Ñ"]}"' in text


def _handshake(tmp_path: Path, bundle: Path, *chain_args: str) -> str | None:
    """A Python ssl client trusting only the root (the bundle's ca.pem) against openssl s_server given
    cert.pem (and ``chain_args``): None if it accepts, else its error."""
    import socket
    import ssl

    from conftest import free_port, wait_listening, wait_or_kill

    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(bundle / "cert.pem"),
                               "-key", str(bundle / "privkey.pem"), *chain_args, "-www", "-quiet"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(bundle / "ca.pem"))
        wait_listening(port, server, "openssl s_server")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="localhost"):
                    return None
            except ssl.SSLError as exc:
                return str(exc)
    finally:
        server.terminate()
        wait_or_kill(server)


def test_verify_of_a_leaf_whose_chain_came_from_the_ca_directory_says_peers_need_fullchain(
        tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    import json

    from conftest import PASSPHRASE

    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "issuing"), CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", ca_dir, "--name", "Issuing",
                env=env, check=True)
    run_certkit("issue-server", "localhost", "--out", tmp_path / "app", env=env, check=True)
    app = tmp_path / "app"
    # What real peers do: a client trusting the root refuses cert.pem alone, takes it with its chain.
    assert _handshake(tmp_path, app) is not None
    assert _handshake(tmp_path, app, "-cert_chain", str(app / "chain.pem")) is None
    proc = run_certkit("verify", app / "cert.pem", "--purpose", "server", "--name", "localhost", env=env)
    assert proc.returncode == 0 and "VALID" in proc.stdout, proc.stdout + proc.stderr
    note = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("note")]
    assert len(note) == 1 and "CN=Issuing" in note[0] and "fullchain.pem" in note[0], proc.stdout
    assert "completed the chain from the CA directory" in note[0], note
    data = json.loads(run_certkit("verify", app / "cert.pem", "--purpose", "server", "--json", env=env).stdout)
    assert data["valid"] and any("fullchain.pem" in n for n in data["notes"]), data
    # What holds its chain, or was given it, gets no such note.
    for args in ([app / "fullchain.pem"], [app], [app / "cert.pem", "--untrusted", app / "chain.pem"]):
        data = json.loads(run_certkit("verify", *args, "--purpose", "server", "--json", env=env).stdout)
        assert data["valid"] and not any("completed the chain" in n for n in data["notes"]), (args, data)


def test_k8s_secret_name_chosen_in_a_manifest_is_kept(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text("kind,names,out\nclient,José Ñ,web\nclient,Josë Ñ,\n", encoding="utf-8")
    run_certkit("issue-batch", "m.csv", "--format", "k8s", "--out", "b.yaml", cwd=tmp_path, env=ca_env, check=True)
    text = (tmp_path / "b.yaml").read_text()
    assert 'name: "web"' in text and 'name: "jos-' in text, text
