"""certkit acme serve with real ACME clients nobody here wrote: Debian's certbot, lego and Caddy.

Each obtains a certificate for a test name over http-01 (lego also over tls-alpn-01), which
must verify with `openssl verify -x509_strict -purpose sslserver` against the root's ca.pem,
carry serverAuth only, appear in `certkit list`, and serve a real HTTPS request (nginx or
Caddy, then curl --cacert). certbot renews and revokes (the next `certkit crl` lists it); lego
renews, registers with External Account Binding, and runs concurrently without a duplicate
serial or a lost order. The CA is two-tier (root + issuing intermediate), as docs/acme.md sets
it up: certbot refuses a chain without an intermediate.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from acme_helpers import (
    AcmeServer,
    caddy_env,
    certbot,
    lego,
    listed_serials,
    make_two_tier,
    ports,
    serial_of,
    split_chain,
    stop_process,
    verify_server_certificate,
    wait_for,
)
from conftest import openssl, require, run_certkit
from nginx_helper import nginx, require_nginx


def curl_https(name: str, port: int, root: Path, *, check: bool = True) -> str:
    """The page, over HTTPS verified against ``root``; without ``check``, "" when curl failed."""
    require("curl")
    proc = subprocess.run(["curl", "-sS", "--fail", "--max-time", "20", "--cacert", str(root), "--resolve",
                           f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc.stdout if proc.returncode == 0 else ""


def served_by_nginx(tmp: Path, name: str, fullchain: Path, key: Path, root: Path) -> None:
    require_nginx()
    with nginx(tmp, f"        ssl_certificate {fullchain};\n        ssl_certificate_key {key};") as (port, _):
        assert curl_https(name, port, root).startswith("verify=NONE")


def start_server(tmp: Path, *names: str, extra: tuple[str, ...] = ()) -> tuple[AcmeServer, Path, dict, int, int]:
    root, _, env = make_two_tier(tmp)
    http_port, tls_port = ports(2)
    args = ["--allow-domain", "acme.test", "--http01-port", str(http_port), "--tls-alpn01-port", str(tls_port),
            *extra]
    for name in names:
        args += ["--resolve", f"{name}=127.0.0.1"]
    return AcmeServer(*args, env=env), root / "ca.pem", env, http_port, tls_port


def test_certbot_certonly_renew_revoke(tmp_path: Path) -> None:
    require("certbot")
    server, root, env, http_port, _ = start_server(tmp_path, "app.acme.test")
    work = tmp_path / "certbot"
    with server:
        got = certbot(work, "certonly", "--standalone", "--agree-tos", "--register-unsafely-without-email",
                      "--server", server.directory, "-d", "app.acme.test", "--http-01-port", str(http_port),
                      "--http-01-address", "127.0.0.1", root=root)
        assert got.returncode == 0, got.stdout + got.stderr
        live = work / "conf" / "live" / "app.acme.test"
        verify_server_certificate(live / "cert.pem", live / "chain.pem", root)
        first = serial_of(live / "cert.pem")
        assert listed_serials(env)[first] == "valid"
        assert "http-01 for app.acme.test: valid" in server.stderr
        served_by_nginx(tmp_path / "n1", "app.acme.test", live / "fullchain.pem", live / "privkey.pem", root)

        renewed = certbot(work, "renew", "--force-renewal", "--no-random-sleep-on-renew", root=root)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = serial_of(live / "cert.pem")
        assert second != first
        verify_server_certificate(live / "cert.pem", live / "chain.pem", root)
        assert listed_serials(env)[second] == "valid"

        revoked = certbot(work, "revoke", "--cert-path", str(live / "cert.pem"), "--reason", "keycompromise",
                          "--no-delete-after-revoke", "--server", server.directory, root=root)
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        # The first certificate, revoked by its own key (--key-path: a jwk-signed request, no account).
        archive = work / "conf" / "archive" / "app.acme.test"
        by_key = certbot(work, "revoke", "--cert-path", str(archive / "cert1.pem"), "--key-path",
                         str(archive / "privkey1.pem"), "--no-delete-after-revoke", "--server", server.directory,
                         root=root)
        assert by_key.returncode == 0, by_key.stdout + by_key.stderr
        assert "signed by the certificate's own key" in server.stderr
    assert listed_serials(env)[second] == listed_serials(env)[first] == "revoked"
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=env, check=True)
    assert second in openssl("crl", "-in", crl, "-noout", "-text").stdout.decode()
    (tmp_path / "bundle.pem").write_bytes((live / "chain.pem").read_bytes() + root.read_bytes())
    proc = openssl("verify", "-crl_check", "-CAfile", tmp_path / "bundle.pem", "-CRLfile", crl, live / "cert.pem")
    assert proc.returncode != 0 and b"certificate revoked" in proc.stdout + proc.stderr


def test_lego_http01_tls_alpn01_and_renew(tmp_path: Path) -> None:
    require("lego")
    server, root, env, http_port, tls_port = start_server(tmp_path, "app.acme.test", "tls.acme.test")
    path = tmp_path / "lego"
    certs = path / "certificates"
    with server:
        common = ("--email", "ops@acme.test")
        got = lego(path, server.directory, *common, "-d", "app.acme.test", "--http", "--http.port",
                   f"127.0.0.1:{http_port}", "run", root=root)
        assert got.returncode == 0, got.stderr
        leaf, chain = split_chain(certs / "app.acme.test.crt", tmp_path)
        verify_server_certificate(leaf, certs / "app.acme.test.issuer.crt", root)
        first = serial_of(leaf)
        served_by_nginx(tmp_path / "n1", "app.acme.test", certs / "app.acme.test.crt", certs / "app.acme.test.key",
                        root)

        renewed = lego(path, server.directory, *common, "-d", "app.acme.test", "--http", "--http.port",
                       f"127.0.0.1:{http_port}", "renew", "--days", "9999", "--no-random-sleep", root=root)
        assert renewed.returncode == 0, renewed.stderr
        leaf, _ = split_chain(certs / "app.acme.test.crt", tmp_path)
        second = serial_of(leaf)
        assert second != first
        verify_server_certificate(leaf, certs / "app.acme.test.issuer.crt", root)

        alpn = lego(path, server.directory, *common, "-d", "tls.acme.test", "--tls", "--tls.port",
                    f"127.0.0.1:{tls_port}", "run", root=root)
        assert alpn.returncode == 0, alpn.stderr
        assert "tls-alpn-01 for tls.acme.test: valid" in server.stderr
        leaf, _ = split_chain(certs / "tls.acme.test.crt", tmp_path)
        third = serial_of(leaf)
        verify_server_certificate(leaf, certs / "tls.acme.test.issuer.crt", root)
        served_by_nginx(tmp_path / "n2", "tls.acme.test", certs / "tls.acme.test.crt", certs / "tls.acme.test.key",
                        root)
    listed = listed_serials(env)
    assert listed[first] == listed[second] == listed[third] == "valid"


CADDYFILE = """{{
	admin off
	skip_install_trust
	acme_ca {directory}
	acme_ca_root {root}
	http_port {http_port}
	https_port {https_port}
}}

app.acme.test {{
	bind 127.0.0.1
	tls {{
		issuer acme {{
			disable_tlsalpn_challenge
		}}
	}}
	respond "hello from caddy"
}}
"""


def test_caddy_http01(tmp_path: Path) -> None:
    require("caddy")
    server, root, env, http_port, tls_port = start_server(tmp_path, "app.acme.test")
    caddyfile = tmp_path / "Caddyfile"
    with server:
        caddyfile.write_text(CADDYFILE.format(directory=server.directory, root=root, http_port=http_port,
                                              https_port=tls_port))
        log = tmp_path / "caddy.log"
        with open(log, "w") as out:
            caddy = subprocess.Popen(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                                     env=caddy_env(tmp_path / "caddy-home"), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: "certificate obtained successfully" in log.read_text() or caddy.poll() is not None,
                     timeout=90, what="Caddy to obtain its certificate")
            assert caddy.poll() is None, log.read_text()
            # "obtained" is logged as the certificate is stored: its TLS server may take it up a moment later
            served = wait_for(lambda: curl_https("app.acme.test", tls_port, root, check=False), timeout=60,
                              what="Caddy to serve its certificate")
            assert served == "hello from caddy"
        finally:
            stop_process(caddy)
    assert "http-01 for app.acme.test: valid" in server.stderr
    stored = list((tmp_path / "caddy-home" / "data").rglob("app.acme.test.crt"))
    assert len(stored) == 1, stored
    leaf, chain = split_chain(stored[0], tmp_path)
    verify_server_certificate(leaf, chain, root)
    assert listed_serials(env)[serial_of(leaf)] == "valid"


def test_lego_external_account_binding(tmp_path: Path) -> None:
    require("lego")
    key_file = tmp_path / "eab.key"
    hmac = "c2VjcmV0LWhtYWMta2V5LWZvci10ZWFtLW9uZS0xMjM0NQ"
    key_file.write_text(hmac + "\n")
    key_file.chmod(0o600)
    server, root, env, http_port, _ = start_server(tmp_path, "app.acme.test",
                                                   extra=("--eab-kid", "team-1", "--eab-hmac-file", str(key_file)))
    with server:
        args = ("--email", "ops@acme.test", "-d", "app.acme.test", "--http", "--http.port", f"127.0.0.1:{http_port}")
        refused = lego(tmp_path / "lego1", server.directory, *args, "run", root=root)
        # lego reads meta.externalAccountRequired from the directory and stops before registering.
        assert refused.returncode != 0 and "requires External Account Binding" in refused.stderr, refused.stderr
        wrong = lego(tmp_path / "lego2", server.directory, *args, "--eab", "--kid", "team-1", "--hmac",
                     "d3JvbmctaG1hYy1rZXktZm9yLXRlYW0tb25lLTEyMzQ1", "run", root=root)
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr, wrong.stderr
        got = lego(tmp_path / "lego3", server.directory, *args, "--eab", "--kid", "team-1", "--hmac", hmac, "run",
                   root=root)
        assert got.returncode == 0, got.stderr
    leaf, _ = split_chain(tmp_path / "lego3" / "certificates" / "app.acme.test.crt", tmp_path)
    assert listed_serials(env)[serial_of(leaf)] == "valid"


def test_concurrent_lego_processes(tmp_path: Path) -> None:
    """A small version of benchmarks/acme_bench.py: 3 lego processes at once, 2 orders each, each on its
    own loopback address (same http-01 port): every order issued once, no duplicate serial."""
    require("lego")
    processes, orders_each = 3, 2
    names = {f"load{i}.acme.test": f"127.0.0.{i + 2}" for i in range(processes)}
    root, _, env = make_two_tier(tmp_path)
    (http_port,) = ports(1)
    args = ["--allow-domain", "acme.test", "--http01-port", str(http_port)]
    for name, address in names.items():
        args += ["--resolve", f"{name}={address}"]
    before = set(listed_serials(env))

    def run(name: str) -> list[str]:
        serials = []
        for _ in range(orders_each):
            got = lego(tmp_path / name, server.directory, "--email", f"ops@{name}", "-d", name, "--http",
                       "--http.port", f"{names[name]}:{http_port}", "run", root=root / "ca.pem")
            assert got.returncode == 0, got.stderr
            serials.append(serial_of(split_chain(tmp_path / name / "certificates" / f"{name}.crt",
                                                 tmp_path / name)[0]))
        return serials

    with AcmeServer(*args, env=env) as server:
        started = time.monotonic()
        with ThreadPoolExecutor(processes) as pool:
            serials = [s for batch in pool.map(run, names) for s in batch]
        took = time.monotonic() - started
    assert len(serials) == len(set(serials)) == processes * orders_each, serials
    issued = set(listed_serials(env)) - before
    # Every issued certificate is one a client received, plus the server's own TLS certificate.
    assert set(serials) <= issued and len(issued) == len(serials) + 1, (issued, serials)
    assert server.stderr.count(": issued serial ") == len(serials)
    print(json.dumps({"orders": len(serials), "seconds": round(took, 2)}))


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stops_cleanly(tmp_path: Path, ca_dir: Path, ca_env: dict, signal_name: str) -> None:
    import signal

    server = AcmeServer(env=ca_env)
    assert server.info["directory"].endswith("/directory")
    server.wait_for_log("listening on")
    signum = getattr(signal, signal_name)
    assert server.stop(signum) == 128 + signum  # 143, 130, 129: as every command a signal stops
    assert "stopped" in server.stderr and "Traceback" not in server.stderr
