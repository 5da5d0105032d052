"""The fourteenth round's documentation-truth findings (audit docs14), each as a class:

1. an output file that even ``--force`` never replaces (a bundle's cert.pem/privkey.pem/ca.pem, a file libpq
   reads, a private key) was refused without ``--force`` as "exists ...; pass --force to replace it", and the
   advice taken got a second refusal: ``crl --out`` and every one-file format (jsonl, tar, k8s) now say at once
   that no --force writes over it, as formats.md and crl.md state.
2. options a page's synopsis shows and the page never explains: probe's ``--timeout`` (its default, range
   and the error when a server stays silent), acme serve's ``--verbose`` and sign-csr's ``--days`` (the
   default lifetime per kind); each is now explained, and each claim is run here.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_clean_error, certkit_env, new_ca, run_certkit, wait_or_kill

# --- 1: "pass --force" for files --force never replaces ------------------------------------------------------


@pytest.fixture
def with_bundle(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = new_ca(tmp_path, "Docs14 CA")
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)
    (tmp_path / "home" / ".pgpass").write_text("localhost:5432:*:certkit:secret\n")
    return env, tmp_path


NEVER_REPLACED = ["alice/cert.pem", "alice/privkey.pem", "alice/ca.pem", "home/.pgpass"]


@pytest.mark.parametrize("target", NEVER_REPLACED)
def test_crl_over_a_file_force_never_replaces_says_so_at_once(with_bundle, target: str) -> None:
    env, work = with_bundle
    before = (work / target).read_bytes()
    proc = run_certkit("crl", "--out", target, cwd=work, env=env)
    assert_clean_error(proc, "even with --force")
    assert "pass --force" not in proc.stderr, proc.stderr
    forced = run_certkit("crl", "--out", target, "--force", cwd=work, env=env)
    assert_clean_error(forced, "even with --force")  # what the advice would have led to
    assert (work / target).read_bytes() == before


@pytest.mark.parametrize("fmt", ["jsonl", "tar", "k8s"])
@pytest.mark.parametrize("target", NEVER_REPLACED)
def test_one_file_format_over_a_file_force_never_replaces_says_so_at_once(with_bundle, fmt: str,
                                                                          target: str) -> None:
    env, work = with_bundle
    before = (work / target).read_bytes()
    proc = run_certkit("issue-server", "y.example", "--format", fmt, "--out", target, cwd=work, env=env)
    assert_clean_error(proc, "even with --force")
    assert "pass --force" not in proc.stderr, proc.stderr
    assert (work / target).read_bytes() == before


def test_a_plain_file_is_still_replaceable_with_force(with_bundle) -> None:
    """The advice stays where it is true: a file of no such kind is replaced with --force."""
    env, work = with_bundle
    (work / "notes.txt").write_text("mine\n")
    assert_clean_error(run_certkit("crl", "--out", "notes.txt", cwd=work, env=env), "pass --force to replace it")
    run_certkit("crl", "--out", "notes.txt", "--force", cwd=work, env=env, check=True)
    assert (work / "notes.txt").read_text().startswith("-----BEGIN X509 CRL-----")
    (work / "out.jsonl").write_text("")  # a jsonl, k8s or tar output replaces an earlier one, or an empty file
    proc = run_certkit("issue-server", "y.example", "--format", "jsonl", "--out", "out.jsonl", cwd=work, env=env)
    assert_clean_error(proc, "pass --force to replace it")
    (work / "out.jsonl").write_text("mine\n")  # a file of something else: refused even with --force (round 27)
    proc = run_certkit("issue-server", "y.example", "--format", "jsonl", "--out", "out.jsonl", cwd=work, env=env)
    assert_clean_error(proc, "no jsonl, k8s or tar output certkit wrote")


# --- 2: options a page's synopsis shows and the page never explains ------------------------------------------
# --ca-dir and --passphrase-file are every CA command's, explained once in ca-directory.md.
EVERY_COMMANDS = {"--ca-dir", "--passphrase-file"}


def test_every_option_of_a_synopsis_is_explained_on_its_page() -> None:
    unexplained = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        synopses = re.findall(r"```\n(certkit .*?)```", text, re.S)
        rest = text
        for synopsis in synopses:
            rest = rest.replace(synopsis, "")
        for synopsis in synopses:
            for option in sorted(set(re.findall(r"--[a-z0-9-]+", synopsis)) - EVERY_COMMANDS):
                if not re.search(re.escape(option) + r"(?![a-z0-9-])", rest):
                    unexplained.append(f"{page.name} {option}")
    assert not unexplained, unexplained


def _claim(page: str, pattern: str) -> re.Match:
    found = re.search(pattern, " ".join((REPO / "docs" / page).read_text(encoding="utf-8").split()))
    assert found, f"docs/{page} no longer says {pattern!r}"
    return found


def test_probe_timeout_as_probe_md_says(tmp_path: Path) -> None:
    from certkit.cli.inspect import probe

    claim = _claim("probe.md", r"`--timeout SECONDS` \(default (\d+), from ([\d.]+) to (\d+)\)")
    timeout = next(p for p in probe.params if p.name == "timeout")
    assert (float(claim[1]), float(claim[2]), float(claim[3])) == (timeout.default, timeout.type.min, timeout.type.max)
    message = _claim("probe.md", r"`(Error: HOST:PORT did not complete a TLS handshake: no answer within) 10 s\.`")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the connection, never says a word
        port = silent.getsockname()[1]
        started = time.monotonic()
        proc = run_certkit("probe", f"https://127.0.0.1:{port}/", "--timeout", "1",
                           env=certkit_env(HOME=str(tmp_path)))
        took = time.monotonic() - started
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    wanted = message[1].replace("HOST:PORT", f"127.0.0.1:{port}") + " 1 s."
    assert wanted in proc.stderr, proc.stderr
    assert took < 8, took


def test_sign_csr_lifetimes_as_sign_csr_md_says(tmp_path: Path) -> None:
    claim = _claim("sign-csr.md", r"(\d+) days for `--server` and `--peer` \(at most (\d+)\), (\d+) for `--client`")
    env = new_ca(tmp_path, "Docs14 CA")
    for kind, days in (("--server", claim[1]), ("--peer", claim[1]), ("--client", claim[3])):
        name = "s.example" if kind != "--client" else "bob"
        csr = tmp_path / f"{kind[2:]}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(tmp_path / f"{kind[2:]}.key"), "-subj", f"/CN={name}", "-out", str(csr)],
                       check=True, capture_output=True)
        out = run_certkit("sign-csr", str(csr), kind, "--out", str(tmp_path / kind[2:]), "--json", env=env,
                          check=True)
        from cryptography import x509

        cert = x509.load_pem_x509_certificate((tmp_path / kind[2:] / "cert.pem").read_bytes())
        lived = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert round(lived.total_seconds() / 86400) == int(days), (kind, lived, out.stdout)
    csr = tmp_path / "server.csr"
    too_long = run_certkit("sign-csr", str(csr), "--server", "--days", str(int(claim[2]) + 1), "--out",
                           str(tmp_path / "long"), env=env)
    assert_clean_error(too_long, f"at most {claim[2]} days")


def test_acme_verbose_as_acme_md_says(tmp_path: Path) -> None:
    import ssl
    import urllib.request

    example = _claim("acme.md", r'`--verbose` also logs every HTTP request to standard error, one line each, '
                                r'such as `(\d\d:\d\d:\d\d) 127\.0\.0\.1:\d+ "GET /directory HTTP/1\.1" 200`')
    assert example
    env = new_ca(tmp_path, "Docs14 CA")
    server = subprocess.Popen([sys.executable, "-m", "certkit", "acme", "serve", "--port", "0", "--verbose"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            if line.startswith("ACME directory: "):
                url = line.split(": ", 1)[1].strip()
        assert url, "acme serve printed no directory URL"
        context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
        while True:  # it prints the URL as it starts listening
            try:
                urllib.request.urlopen(url, context=context, timeout=30).read()  # logged before it answered
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "acme serve never answered"
                time.sleep(0.1)
    finally:
        server.terminate()
        wait_or_kill(server)
    log = server.stderr.read()
    assert re.search(r'(?m)^\d\d:\d\d:\d\d 127\.0\.0\.1:\d+ "GET /directory HTTP/1\.1" 200$', log), log
