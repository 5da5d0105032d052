"""A real nginx for tests: started on 127.0.0.1 and a free port with its own prefix, config,
pid and logs under a temporary folder, stopped when the test ends; plus a tiny HTTPS client."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import free_port, wait_listening

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def require_nginx() -> str:
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian package nginx-light or nginx)")
    return NGINX


@contextmanager
def nginx(workdir: Path, tls: str) -> Iterator[tuple[int, Path]]:
    """Run nginx serving ``location /`` with the TLS directives ``tls``; yield (port, error_log).

    The location answers with what nginx concluded about the client certificate.
    """
    with nginx_server(workdir, lambda port: f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
{tls}
        location / {{
            default_type text/plain;
            return 200 "verify=$ssl_client_verify dn=$ssl_client_s_dn\\n";
        }}
    }}""") as (port, error_log):
        yield port, error_log


@contextmanager
def nginx_server(workdir: Path, servers: Callable[[int], str]) -> Iterator[tuple[int, Path]]:
    """Run nginx in the foreground under workdir/nginx (its pid, logs and temporary folders there) on a free
    loopback port, with the ``server`` blocks ``servers(port)`` in its http block; yield (port, error_log)."""
    exe = require_nginx()
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True)
    port = free_port()
    error_log = prefix / "error.log"
    conf = prefix / "nginx.conf"
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"""
{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
daemon off;
pid {prefix / 'nginx.pid'};
error_log {error_log} info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix / 'access.log'};
{temp_paths}
{servers(port)}
}}
""")
    proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(conf), "-e", str(error_log)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, "nginx", log=lambda: (proc.stdout.read().decode() if proc.poll() is not None else "")
                       + (error_log.read_text() if error_log.exists() else ""))
        yield port, error_log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()


def https_get(port: int, ca: Path, client: tuple[Path, Path] | None = None,
              server_hostname: str = "localhost") -> tuple[int, str]:
    """GET / over TLS trusting only ``ca``; return (HTTP status, body)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    if client:
        ctx.load_cert_chain(*map(str, client))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]), body
