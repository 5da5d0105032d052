"""``certkit acme serve`` as a real subprocess, the CAs it serves from, and the real ACME clients
(certbot, lego, Caddy) run with their own folders under the test's temporary directory."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, certkit_env, free_port, openssl, run_certkit
from serve_process import ServeProcess


class AcmeServer(ServeProcess):
    """``python -m certkit acme serve --port 0 --json ARGS`` (ARGS may give the --port: an option is
    given once); ``info`` is what it printed at start."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path | None = None) -> None:
        args = tuple(map(str, args))
        port = () if "--port" in args else ("--port", "0")
        self._start(["acme", "serve", *port, "--json", "--verbose", *args], env=env, cwd=cwd)

    @property
    def directory(self) -> str:
        return self.info["directory"]


def make_two_tier(tmp: Path, *, permit: tuple[str, ...] = ()) -> tuple[Path, Path, dict[str, str]]:
    """A root CA and an issuing intermediate (as docs/two-tier-pki.md makes them):
    (root dir, issuing dir, environment with the issuing CA and its passphrase)."""
    root, issuing = tmp / "root", tmp / "issuing"
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", root, "--name", "ACME Test Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", root, "--name", "ACME Test Issuing",
                *permit, env=env, check=True)
    return root, issuing, certkit_env(CERTKIT_CA_DIR=str(issuing), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def verify_server_certificate(cert: Path, chain: Path, root: Path) -> None:
    """openssl verify -x509_strict -purpose sslserver against the root, and serverAuth only."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", root, "-untrusted", chain, cert)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", root, "-untrusted", chain, cert)
    assert wrong.returncode != 0, "a server certificate must not verify for sslclient"
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    ekus = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.SERVER_AUTH], ekus


def serial_of(cert: Path) -> str:
    from cryptography import x509

    return serial_hex(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)


def listed_serials(env: dict[str, str]) -> dict[str, str]:
    """serial -> status of every certificate in ``certkit list``."""
    import json

    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    rows = rows["certificates"] if isinstance(rows, dict) else rows
    return {row["serial"]: row["status"] for row in rows}


def split_chain(fullchain: Path, folder: Path) -> tuple[Path, Path]:
    """(leaf, rest) of a PEM chain file, written into ``folder``."""
    text = fullchain.read_text()
    marker = "-----END CERTIFICATE-----\n"
    first, _, rest = text.partition(marker)
    leaf, chain = folder / "leaf.pem", folder / "rest.pem"
    leaf.write_text(first + marker)
    chain.write_text(rest)
    return leaf, chain


# --- the clients ---------------------------------------------------------------------------------
def certbot(work: Path, *args: str, root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """certbot with its own config/work/logs folders, trusting ``root`` (it uses requests)."""
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(root))
    env.pop("CERTKIT_CA_DIR", None)
    return subprocess.run(
        ["certbot", *args, "--non-interactive", "--config-dir", str(work / "conf"), "--work-dir",
         str(work / "work"), "--logs-dir", str(work / "logs")],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def lego(path: Path, server: str, *args: str, root: Path, timeout: float = 120,
         env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """lego with its own --path, trusting ``root`` (LEGO_CA_CERTIFICATES)."""
    env = dict(os.environ, LEGO_CA_CERTIFICATES=str(root), **(env_extra or {}))
    return subprocess.run(["lego", "--server", server, "--path", str(path), "--accept-tos", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def caddy_env(home: Path) -> dict[str, str]:
    """Caddy's HOME and XDG folders inside the test's folder, so it touches nothing of this machine."""
    for sub in ("data", "config"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"))


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 seconds."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def ports(n: int) -> list[int]:
    found: set[int] = set()
    while len(found) < n:
        found.add(free_port())
    return sorted(found)


def module_server(tmp: Path, names, *extra: str):
    """A server as the protocol tests use it: a two-tier CA constrained to acme.test, localhost and
    127.0.0.0/8, http-01 and tls-alpn-01 on free ports, ``names`` resolved to 127.0.0.1. Returns an
    object with ``server``, ``root`` (the root's ca.pem), ``env``, ``issuing``, ``http_port``, ``tls_port``."""
    from types import SimpleNamespace

    root, issuing, env = make_two_tier(tmp, permit=("--permit-dns", "acme.test", "--permit-dns", "localhost",
                                                    "--permit-ip", "127.0.0.0/8"))
    http_port, tls_port = ports(2)
    args = ["--allow-domain", "acme.test", "--allow-ip", "127.0.0.0/8", "--http01-port", http_port,
            "--tls-alpn01-port", tls_port, *extra]
    for name in names:
        args += ["--resolve", f"{name}=127.0.0.1"]
    server = AcmeServer(*args, env=env)
    return SimpleNamespace(server=server, root=root / "ca.pem", env=env, issuing=issuing, http_port=http_port,
                           tls_port=tls_port, tmp=tmp)


def serving(tmp: Path, names, *, clean: bool = True):
    """A module fixture's body: :func:`module_server` for the module's tests, stopped after them; with
    ``clean``, its standard error must hold no traceback."""
    setup = module_server(tmp, names)
    try:
        yield setup
    finally:
        setup.server.stop()
    if clean:
        assert "Traceback" not in setup.server.stderr, setup.server.stderr
