"""Round fifteen, docs: every example the docs and --help show is one a test runs.

1. Fenced blocks no test ran, and nothing said so: README.md's `pip install . && certkit demo`, serve.md's
   log of the connections (a copy no test compared), two-tier-pki.md's nginx server (a test ran its own
   copy of the directives), peers.md's Redis and etcd logs. tests/docs_runner.py now reads a job's output
   block (``<!-- output of job N -->``) and finds every block that is neither run nor marked
   ``<!-- run by: TEST -->`` / ``<!-- not run: REASON -->`` (:func:`docs_runner.unexplained_blocks`).
2. README.md's first example, on a fresh venv from a clean environment, as README.md shows it.
3. Every command's --help "Examples:" ran in no test; each one now runs here, in a sandbox (a private
   HOME, CA directory and folder), but those that would change this machine or need what is not here,
   each with its reason and the test that runs it instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env, free_port, require
from docs_runner import Session, Step, run_page, steps, unexplained_blocks

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


# --- 1: every fenced block is run, or says why not --------------------------------------------------------
def test_every_fenced_block_is_run_or_says_why() -> None:
    found = [where for page in PAGES for where in unexplained_blocks(page)]
    assert not found, "\n".join(found)


def test_every_page_with_commands_is_run_by_a_test() -> None:
    tests = {path.name: path.read_text(encoding="utf-8") for path in (REPO / "tests").glob("test_*.py")}
    unrun = [page.name for page in PAGES if any(s.kind == "run" for s in steps(page))
             and not any("run_page(" in src and f'"{page.name}"' in src for src in tests.values())]
    assert not unrun, f"pages whose commands no test runs with docs_runner.run_page: {unrun}"


@pytest.mark.parametrize("body, problem", [
    ("```sh\nmake install\n```\n", "nothing runs"),
    ("<!-- not run: -->\n```sh\nmake install\n```\n", "without a reason"),
    ("<!-- run by: tests/test_nothing_here.py -->\n```sh\nmake install\n```\n", "does not run"),
    ("- a list item:\n\n  ```\n  certkit renew --all \\\n    --exec 'reload'\n  ```\n", "nothing runs"),
], ids=["unmarked", "no-reason", "no-such-test", "indented"])
def test_an_unexplained_block_is_found(tmp_path: Path, body: str, problem: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```console\n$ true\n```\n{body}")
    [found] = unexplained_blocks(page)
    assert problem in found


def test_a_console_block_in_a_list_item_runs(tmp_path: Path) -> None:
    page, work = tmp_path / "page.md", tmp_path / "work"
    work.mkdir()
    page.write_text("- an item:\n\n  ```console\n  $ echo hello\n  hello\n  $ echo moon\n  world\n  ```\n")
    assert [s.text for s in steps(page)] == ["echo hello", "echo moon"]
    with pytest.raises(AssertionError, match="documented line not in the output"):
        run_page(page, cwd=work, env=certkit_env())


@pytest.mark.parametrize("body", ["", "<!-- not run: needs a printer -->\n", "<!-- output of job 1 -->\n"])
def test_an_explained_block_is_not_found(tmp_path: Path, body: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```console\n$ true\n```\n{body}```text\nhello\n```\n```\ncertkit list [--json]\n```\n"
                    "```csv fleet.csv\nkind,names\n```\n")
    assert unexplained_blocks(page) == ([] if body else ["page.md:4: a ```text block that nothing runs "
                                                          "(mark it 'run by' or 'not run')"])


@pytest.mark.parametrize("shown, fails", [("hello ...\n... world\n", False), ("hello\nmoon\n", True)])
def test_a_job_output_block_is_checked(tmp_path: Path, shown: str, fails: bool) -> None:
    page, work = tmp_path / "page.md", tmp_path / "work"
    work.mkdir()
    page.write_text("```console\n$ sh -c 'trap \"exit 0\" TERM; echo hello there; echo the world; sleep 60 & wait' &\n"
                    "hello ...\n```\n"
                    f"<!-- output of job 1 -->\n```text\n{shown}```\n```console\n$ kill %1\n```\n")
    if fails:  # the job prints its two lines at once: 5 s is ample to know "moon" never comes
        with pytest.raises(AssertionError, match="never printed this line the page shows"):
            run_page(page, cwd=work, env=certkit_env(), job_wait=5)
    else:
        run_page(page, cwd=work, env=certkit_env())


def test_serve_md_log_is_a_job_output_the_page_run_checks() -> None:
    [log] = [s for s in steps(REPO / "docs" / "serve.md") if s.kind == "job output"]
    assert log.job == 1 and any("unsuitable certificate purpose" in line for line in log.expected)


def test_peers_md_logs_are_the_lines_the_peer_tests_find() -> None:
    from test_peers_etcd import KEY_USAGE
    from test_peers_redis import PRIMARY_IS_REFUSED, REPLICA_REFUSES

    text = (REPO / "docs" / "peers.md").read_text(encoding="utf-8")
    shown = re.findall(r"<!-- run by: (tests/\S+) -->\n```\n(.*?)\n```", text, re.S)
    assert shown[:2] == [("tests/test_peers_redis.py", REPLICA_REFUSES),
                         ("tests/test_peers_redis.py", PRIMARY_IS_REFUSED)], shown
    etcd = [body for path, body in shown if path == "tests/test_peers_etcd.py"]  # other tests' logs may come between
    assert etcd and f'"error":"{KEY_USAGE}"' in etcd[0], shown


# --- 2: README.md's two commands, on a fresh venv -------------------------------------------------------
def test_readme_install_and_demo_on_a_fresh_venv(tmp_path: Path) -> None:
    """`pip install . && certkit demo`, as README.md shows it, from a copy of this checkout in a new venv
    (its own pip, the package's own dependencies), with nothing of this environment but PATH's system
    folders: no HOME of ours, no CERTKIT_ variable."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [command] = re.findall(r"<!-- run by: tests/test_audit15_docs.py -->\n```sh\n(.*?)\n```", text)
    assert command == "pip install . && certkit demo"
    source = tmp_path / "certkit-src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home)}
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "PIP_CERT"):
        if name in os.environ:  # where this machine's pip finds packages, when the environment says it
            env[name] = os.environ[name]
    proc = subprocess.run(["sh", "-c", command], cwd=source, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    if (proc.returncode != 0 and "Could not find a version that satisfies" in proc.stderr
            and not os.environ.get("CERTKIT_REQUIRE_PEERS")):  # no package index here: CI has one
        pytest.skip("pip reaches no package index for certkit's dependencies")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "10 of 10 outcomes as expected." in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (venv / "bin" / "certkit").exists()
    assert sorted(p.name for p in home.iterdir()) in ([], [".cache"]), list(home.iterdir())  # pip's cache at most


# --- 3: every --help example runs -------------------------------------------------------------------------
def _help_examples() -> list[tuple[str, str]]:
    """(command, example) for every line of every --help's Examples: section (continued lines joined)."""
    import click
    from click.testing import CliRunner

    from certkit.cli import main

    def walk(group: click.Group, path: tuple[str, ...]):
        yield path
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            yield from walk(command, (*path, name)) if isinstance(command, click.Group) else [(*path, name)]

    found = []
    for path in walk(main, ()):
        text = CliRunner().invoke(main, [*path, "--help"]).output
        section = re.search(r"^  Examples:\n(.*?)(?:\n\n|\Z)", text, re.S | re.M)
        assert section, f"certkit {' '.join(path)} --help shows no examples"
        joined = re.sub(r"\s*\\\n\s*", " ", section.group(1))
        found += [(" ".join(path) or "certkit", line.strip()) for line in joined.splitlines() if line.strip()]
    return found


EXAMPLES = _help_examples()

# Examples this test cannot run here, each with why and the test that runs that command instead.
NOT_RUN = {
    "certkit init-ca --ca-dir ./team-ca --inventory postgresql://certkit@db.internal/ca --key-uri "
    "'pkcs11:token=ca;object=root' --pkcs11-module /usr/lib/softhsm/libsofthsm2.so":
        "needs a PostgreSQL server and a PKCS#11 token (tests/test_team_docs.py runs docs/team.md)",
    "certkit inventory migrate --to postgresql://certkit@db.internal/ca": "needs a PostgreSQL server "
        "(tests/test_team_postgres.py)",
    "PGPASSFILE=~/.pgpass-ca certkit inventory migrate --ca-dir ./ca --to postgresql://certkit@db/ca --json":
        "needs a PostgreSQL server (tests/test_team_postgres.py)",
    "certkit probe https://example.com --json": "needs the internet (tests/test_probe.py probes local servers)",
    "certkit renew --install-timer --expiring 30d --passphrase-file /etc/certkit/passphrase":
        "writes and enables a systemd timer on this machine (tests/test_fleet_timer.py, with --unit-dir)",
    "REQUESTS_CA_BUNDLE=ca.pem certbot certonly --standalone --server https://127.0.0.1:14000/directory -d "
    "app.internal.example.com": "certbot binds port 80 (tests/test_acme_clients.py runs certbot)",
    "certkit trust install --nss": "changes trust stores (tests/test_trust.py, on stores of its own)",
    "sudo certkit trust install --system --ca-dir ~/.local/share/certkit": "changes this machine's trust store",
    "certkit trust uninstall --every-certkit-ca": "changes trust stores (tests/test_trust.py)",
    "certkit trust uninstall --every-certkit-ca   # every certkit CA, this one too":
        "changes trust stores (tests/test_trust.py)",
    "certkit trust install                 # every store this user can write":
        "changes this machine's trust stores (tests/test_trust.py)",
    "certkit trust install --nss           # Chromium, Firefox, Thunderbird":
        "changes trust stores (tests/test_trust.py, on stores of its own)",
    "sudo certkit trust install --system --ca-dir /home/me/.local/share/certkit":
        "changes this machine's trust store",
    "certkit trust install --java --json": "changes this machine's Java cacerts",
    "certkit trust uninstall": "changes this machine's trust stores (tests/test_trust.py)",
    "sudo certkit trust uninstall --system --ca-dir /home/me/.local/share/certkit":
        "changes this machine's trust store",
}
# Stand-ins for what is not here, in an example that is run: a manifest generator, kubectl (a YAML
# parser reads what it would apply), a device reached over ssh (its CSR is here), and this machine's nginx,
# which a hook must never reload (nothing in the sandbox is due, but should something be).
STAND_INS = {
    "generate-manifest": "cat fleet.csv",
    "systemctl reload nginx": "echo reload nginx",
    "kubectl apply -f -": "python3 -c 'import sys, yaml; assert list(yaml.safe_load_all(sys.stdin))'",
    "ssh device cat /etc/device.csr": "cat alice.csr",
}
SERVERS = ("certkit serve", "certkit acme serve")


def test_not_run_names_only_examples_that_exist() -> None:
    assert set(NOT_RUN) <= {example for _, example in EXAMPLES}, set(NOT_RUN) - {e for _, e in EXAMPLES}
    assert all(any(old in example for _, example in EXAMPLES) for old in STAND_INS)


def _sh(command: str, cwd: Path, env: dict) -> str:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, command + "\n" + proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> tuple[Path, dict]:
    """A folder holding what the examples name: the CA in ./ca (also $CERTKIT_CA_DIR), another in ./root,
    bundles (localhost, alice, db.internal, old-laptop, a peer's
    etcd-2.cluster.internal), CSRs, manifests and copies of the files."""
    require("openssl")
    top = tmp_path_factory.mktemp("help-examples")
    work, home = top / "work", top / "home"
    work.mkdir()
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "p12-password").write_text("p12 password\n")
    (home / ".config" / "p12-password").chmod(0o600)
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(work / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_P12_PASSWORD="p12 password",
                      PYTHONPATH=str(REPO))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    run = f"{sys.executable} -m certkit"
    for command in (f'{run} init-ca --name "Home Lab CA"', f"{run} init-ca --ca-dir ./root --name Root",
                    f"{run} issue-server localhost 127.0.0.1 ::1", f"{run} issue-client alice --email a@example.com",
                    f"{run} issue-server db.internal", f"{run} issue-client old-laptop",
                    f"{run} issue-peer etcd-2.cluster.internal 10.0.0.12",
                    "cp ca/ca.pem ca.pem && cp ca/ca.pem root.pem && cp ca/ca.pem chain.pem",
                    "cp localhost/fullchain.pem fullchain.pem && cp alice/cert.pem cert.pem",
                    "openssl x509 -in localhost/cert.pem -outform der -out server.der",
                    "for n in request alice web; do openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                    "-nodes -keyout $n.key -subj /CN=$n.internal -out $n.csr 2>/dev/null; done",
                    "printf 'kind,names\\nserver,web1.example.com 10.0.0.2\\nclient,backup-job\\n' > fleet.csv",
                    "cp fleet.csv pods.csv",
                    "printf '{\"kind\": \"server\", \"names\": \"sensor-gw.example.com\"}\\n' > devices.jsonl"):
        _sh(command, work, env)
    serials = {name: _sh(f"openssl x509 -in {name}/cert.pem -noout -serial", work, env).split("=")[1].strip()
               for name in ("db.internal", "old-laptop")}
    env["EXAMPLE_SERIALS"] = " ".join(serials[n] for n in ("db.internal", "old-laptop"))
    # Each example gets the sandbox afresh, in this same folder: the inventory records its folders.
    work.rename(top / "prepared")
    return work, env


@pytest.mark.parametrize("command, example", EXAMPLES, ids=[f"{c}: {e}" for c, e in EXAMPLES])
def test_help_example_runs(command: str, example: str, sandbox) -> None:
    if example in NOT_RUN:
        pytest.skip(f"certkit {command} --help: {example!r} {NOT_RUN[example]}")
    if example.startswith("openssl") or "curl" in example:
        require(example.split()[0])
    if "acme serve" in example:
        pytest.importorskip("josepy", reason="pip install 'certkit[acme]'")
    work, env = sandbox
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(work.parent / "prepared", work, symlinks=True)
    program = re.sub(r"^(?:[A-Z_0-9]+=\S+ )*(?:certkit )?", "", example).split()[0]
    # The folders an example makes are the sandbox's already: the example starts without them.
    remove = {"init-ca": ["ca", "issuing"], "issue-server": ["localhost", "db.internal"],
              "issue-client": ["alice"], "issue-peer": []}.get(program, [])
    for name in remove:
        shutil.rmtree(work / name, ignore_errors=True)
    serial_for_renew, serial_for_revoke = env["EXAMPLE_SERIALS"].split()
    port = str(free_port())
    substitutions = {**STAND_INS, "5F3A9C01D2B4": serial_for_revoke[:12], "5F3A9C01D2": serial_for_renew[:10],
                     "8443": port, "14000": port}
    session = Session(REPO / f"certkit {command} --help", work, env, substitutions)
    try:
        if any(example.startswith(server) for server in SERVERS) and "--json" not in example:
            shown = example if "--port" in example else example.replace(" serve", f" serve --port {port}", 1)
            session.run(Step("run", shown + " &", 0, expected=["..." + ("ACME directory" if "acme" in example
                                                                         else "Listening on") + "..."]))
            session.run(Step("run", "kill %1", 0))
        elif any(example.startswith(server) for server in SERVERS):  # --port 0 --json: one JSON line, then serves
            session.run(Step("run", example + " &", 0, expected=['..."directory"...' if "acme" in example
                                                                  else '..."url"...']))
            session.run(Step("run", "kill %1", 0))
        else:
            if "localhost:8443" in example:  # probe and curl: a server that asks for a client certificate
                session.run(Step("run", f"certkit serve --port {port} &", 0, expected=["Listening on..."]))
            session.run(Step("run", example, 0))
    finally:
        session.close()


# --- 4: README.md said every error is one line; a usage mistake shows the usage first ---------------------
def test_errors_are_one_line_and_usage_mistakes_show_the_usage_as_readme_says(tmp_path: Path) -> None:
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert ("Errors are one line, `Error: ...`, exit status 1, and leave no files behind; a usage mistake (an unknown "
            "option, a bad value) exits 2, its `Error:` line after the command's usage line and a pointer to its "
            "`--help`.") in readme
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "no-ca"))
    run = [sys.executable, "-m", "certkit", "list"]
    error = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert error.returncode == 1 and len(error.stderr.splitlines()) == 1, error.stderr
    assert error.stderr.startswith("Error: ") and error.stdout == ""
    for mistake in (["--expiring", "soon"], ["--bogus"]):
        usage = subprocess.run([*run, *mistake], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        lines = usage.stderr.splitlines()
        assert usage.returncode == 2 and len(lines) == 4, usage.stderr
        assert lines[0] == "Usage: certkit list [OPTIONS]" and lines[1] == "Try 'certkit list --help' for help."
        assert lines[2] == "" and lines[3].startswith("Error: ")


# --- 5: list --help's pager, which list.md never named ------------------------------------------------------
def test_list_pages_a_long_table_on_a_terminal_as_list_md_says(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    page = " ".join((REPO / "docs" / "list.md").read_text(encoding="utf-8").split())
    assert "On a terminal, a table longer than the window goes through a pager (`$PAGER`, else `less`)" in page
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("LINES", "COLUMNS"):  # the window's size is the terminal's (they would stand for it)
        env.pop(name, None)
    (tmp_path / "fleet.csv").write_text("kind,names\n" + "".join(f"client,c{i}\n" for i in range(30)))
    for args in (["init-ca"], ["issue-batch", "fleet.csv", "--out-dir", "certs"]):
        subprocess.run([sys.executable, "-m", "certkit", *args], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=120)
    paged = tmp_path / "paged.txt"
    for rows, expect_paged in ((10, True), (60, False)):
        paged.unlink(missing_ok=True)
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 200, 0, 0))
        pager = f"{sys.executable} -c \"import sys; open('{paged}', 'w').write(sys.stdin.read())\""
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "list"], cwd=tmp_path, env=dict(env, PAGER=pager),
                                stdin=terminal, stdout=terminal, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other side closed: the command ended
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
        assert proc.wait(60) == 0, shown
        if expect_paged:
            assert "30 certificates" in paged.read_text() and b"CN=c1" not in shown, shown
        else:
            assert not paged.exists() and b"30 certificates" in shown, shown
    piped = subprocess.run([sys.executable, "-m", "certkit", "list"], cwd=tmp_path, env=dict(env, PAGER=pager),
                           capture_output=True, text=True, timeout=60)
    assert "30 certificates" in piped.stdout and not paged.exists()


# --- 6: README's apt-get line is .ci/run's, and installs every peer a test requires ----------------------------
# The Debian package of each program a test require()s (where CI fails rather than skips without it).
PEER_PACKAGES = {
    "openssl": "openssl", "curl": "curl", "certutil": "libnss3-tools", "pk12util": "libnss3-tools",
    "vfychain": "libnss3-tools", "keytool": "default-jdk-headless", "java": "default-jdk-headless",
    "javac": "default-jdk-headless",
    "gnutls-cli": "gnutls-bin", "gnutls-serv": "gnutls-bin", "certtool": "gnutls-bin", "lego": "lego",
    "mkcert": "mkcert", "etcd": "etcd-server", "etcdctl": "etcd-client", "chromium": "chromium",
    "cfssl": "golang-cfssl", "cfssljson": "golang-cfssl", "softhsm2-util": "softhsm2", "redis-server": "redis-server",
    "redis-cli": "redis-server", "postgres": "postgresql", "initdb": "postgresql", "pkcs11-tool": "opensc",
    "node": "nodejs", "nginx": "nginx-light", "haproxy": "haproxy", "certbot": "certbot", "caddy": "caddy",
    # Debian's essential tar and util-linux; pkilint comes with the test extra
    "tar": None, "taskset": None, "lint_pkix_cert": None,
}


def test_readme_apt_line_is_what_ci_installs_and_covers_every_required_peer() -> None:
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    [listed] = re.findall(r"`apt-get install ([^`]+)`, which is what `\.ci/run` installs", readme)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    [array] = re.findall(r"^packages=\((.*?)\)", ci, re.S | re.M)
    assert sorted(listed.split()) == sorted(array.split())
    required = set()
    for test in (REPO / "tests").glob("*.py"):
        required |= set(re.findall(r'\brequire\("([^"]+)"\)', test.read_text(encoding="utf-8")))
    assert required <= set(PEER_PACKAGES), f"required, with no package named here: {required - set(PEER_PACKAGES)}"
    missing = {tool: PEER_PACKAGES[tool] for tool in required if PEER_PACKAGES[tool] not in (None, *array.split())}
    assert not missing, f"CI (CERTKIT_REQUIRE_PEERS=1) fails without these, which .ci/run does not install: {missing}"


# --- 7: export-p12's advice for an expired certificate named a renewal that fails ---------------------------
def _export_warning(folder: Path, cwd: Path, env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "certkit", "export-p12", str(folder), "--force", *args], cwd=cwd,
                          env=dict(env, CERTKIT_P12_PASSWORD="p12 password"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if "expired on" in line]
    return warning


def test_export_p12_advice_for_an_expired_certificate_is_a_renewal_that_works(tmp_path: Path) -> None:
    """pkcs12.md: an expired certificate is packed with a warning; its advice, `certkit renew FOLDER`, renewed
    with whatever CA $CERTKIT_CA_DIR named, not the one export-p12 found (--ca-dir), so it failed ('not issued
    by this CA'); for another CA's bundle no command can be named. Each advice is now one that works."""
    from fleet_helpers import backdated_ca, bundle

    issuing = backdated_ca(tmp_path / "issuing")
    bundle(issuing, tmp_path / "web", "web.example.com", days=2, age=10)
    other = tmp_path / "other"
    env = certkit_env(HOME=str(tmp_path / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    subprocess.run([sys.executable, "-m", "certkit", "init-ca", "--ca-dir", str(other)], env=env, check=True,
                   capture_output=True, timeout=120)
    # $CERTKIT_CA_DIR names another CA, --ca-dir the issuing one: the advice names it
    warning = _export_warning(tmp_path / "web", tmp_path, dict(env, CERTKIT_CA_DIR=str(other)),
                              "--ca-dir", str(tmp_path / "issuing"))
    advice = re.search(r"\(certkit (renew .*?)\) and export it again", warning)
    assert advice and f"--ca-dir {tmp_path / 'issuing'}" in advice.group(1), warning
    renewed = subprocess.run([sys.executable, "-m", "certkit", *shlex.split(advice.group(1)), "--days", "30"],
                             cwd=tmp_path, env=dict(env, CERTKIT_CA_DIR=str(other)), capture_output=True, text=True,
                             timeout=120)
    assert renewed.returncode == 0, renewed.stderr
    # the issuing CA is the default one: the advice is the plain command
    bundle(issuing, tmp_path / "api", "api.example.com", days=2, age=10)
    warning = _export_warning(tmp_path / "api", tmp_path, dict(env, CERTKIT_CA_DIR=str(tmp_path / "issuing")))
    assert f"renew it (certkit renew {tmp_path / 'api'}) and export it again" in warning, warning
    # no CA directory known to have issued it (its CA is elsewhere): no command that cannot work
    warning = _export_warning(tmp_path / "api", tmp_path, dict(env, CERTKIT_CA_DIR=str(other)))
    assert "renew it with the CA that issued it (certkit renew" in warning and "--ca-dir ITS_CA_DIR" in warning


# --- 8: where the database password comes from: init-ca --help left out the service file --------------------
def test_the_password_sources_are_the_same_in_both_helps_and_team_md() -> None:
    from click.testing import CliRunner

    from certkit.cli import main

    sources = "libpq's ~/.pgpass, $PGPASSWORD, a service file, or a prompt"
    for command in (["init-ca"], ["inventory", "migrate"]):
        shown = " ".join(CliRunner().invoke(main, [*command, "--help"]).output.split())
        assert sources in shown.replace("per- user", "per-user"), (command, shown)
    team = " ".join((REPO / "docs" / "team.md").read_text(encoding="utf-8").split())
    assert "libpq finds it in `~/.pgpass` (or the file `$PGPASSFILE` names), in `$PGPASSWORD` or in a service file, " \
           "and on a terminal certkit asks for it" in team


# --- 9: a documented failure is held to README's exit statuses --------------------------------------------
@pytest.mark.parametrize("body, fails", [
    ("$ certkit list --ca-dir nowhere\nError: ...\n", False),  # an error: 1
    ("$ certkit list --expiring soon\nUsage: certkit list [OPTIONS]\n...\nError: ...\n", False),  # usage: 2
    ("$ certkit list --expiring soon 2>&1 | grep Error\nError: ...\n", True),  # a usage mistake shown as an error
    ("$ sh -c 'echo Error: no; exit 3'\nError: no\n", False),  # other programs: any failure
], ids=["error", "usage", "usage-shown-as-error", "other-program"])
def test_a_documented_failure_has_readmes_exit_status(tmp_path: Path, body: str, fails: bool) -> None:
    page, work = tmp_path / "page.md", tmp_path / "work"
    work.mkdir()
    page.write_text(f"```console\n{body}```\n")
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    if fails:
        with pytest.raises(AssertionError, match="documented as exiting 1, exited 2"):
            run_page(page, cwd=work, env=env)
    else:
        run_page(page, cwd=work, env=env)


# --- 10: team.md said `certkit list` shows when each certificate was issued; only --json does ------------------
def test_list_gives_the_issuing_time_where_team_md_says(tmp_path: Path) -> None:
    import json

    team = " ".join((REPO / "docs" / "team.md").read_text(encoding="utf-8").split())
    assert "(`certkit list --json` gives each certificate's issuing time, `issued_at`; the table shows none)" in team
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for args in (["init-ca"], ["issue-client", "alice"], ["list"], ["list", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "certkit", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=True, timeout=120)
    [row] = json.loads(proc.stdout)["certificates"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["issued_at"])
    table = subprocess.run([sys.executable, "-m", "certkit", "list"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True, timeout=120).stdout
    assert "ISSUED" not in table.splitlines()[0] and row["issued_at"][:10] not in table.replace(
        row["not_after"][:10], "")  # no column but NOT AFTER has a date
    # renew.md: after a renewal killed before its hooks, list --json gives the bundles to run them for
    renew = " ".join((REPO / "docs" / "renew.md").read_text(encoding="utf-8").split())
    assert ("(`certkit list --json` gives them: each renewal has `renewed_from`, its `issued_at` in that run and "
            "its `folder`; the table shows no folder)") in renew
    subprocess.run([sys.executable, "-m", "certkit", "renew", "alice"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=120)
    rows = json.loads(subprocess.run([sys.executable, "-m", "certkit", "list", "--json"], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, check=True, timeout=120).stdout)["certificates"]
    [renewal] = [r for r in rows if r["renewed_from"] == row["serial"]]
    assert renewal["folder"] == str(tmp_path / "alice") and renewal["issued_at"] >= row["issued_at"]
    assert "FOLDER" not in table.splitlines()[0] and "alice/" not in table


def _certkit(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certkit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("given", [True, False], ids=["ca-dir-given", "the-default-ca"])
def test_renew_refusals_advise_commands_for_the_ca_that_refused(tmp_path: Path, given: bool) -> None:
    """The export-p12 advice's siblings: renew's refusals named 'certkit renew FOLDER' and 'certkit revoke SERIAL
    --reason superseded' without the --ca-dir renew was given, so with $CERTKIT_CA_DIR naming another CA the
    advice acted on that CA ('not issued by this CA', 'No certificate of this CA matches')."""
    issuing, other = tmp_path / "issuing", tmp_path / "other"
    env = certkit_env(HOME=str(tmp_path / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_CA_DIR=str(other if given else issuing))
    for ca in (issuing, other):
        assert _certkit(["init-ca", "--ca-dir", str(ca)], tmp_path, env).returncode == 0
    ca = ["--ca-dir", str(issuing)] if given else []
    for name in ("web.example", "api.example"):
        assert _certkit(["issue-server", name, *ca], tmp_path, env).returncode == 0
    shutil.copytree(tmp_path / "web.example", tmp_path / "copy")
    option = f" --ca-dir {issuing}" if given else ""
    for args, advice in ((["renew", "./copy"], rf"\(certkit (renew {tmp_path / 'web.example'}{option})\)"),
                         (["renew", "./web.example", "--out", "api.example", "--force"],
                          rf"first revoke it: certkit (revoke [0-9A-F]+ --reason superseded{option})\.")):
        refused = _certkit([*args, *ca], tmp_path, env)
        assert refused.returncode == 1, refused.stderr
        found = re.search(advice, refused.stderr)
        assert found, refused.stderr
        followed = _certkit(shlex.split(found.group(1)), tmp_path, env)  # the advice, as a reader types it
        assert followed.returncode == 0, followed.stderr


# --- 11: issue-batch's default workers, "one per CPU": the machine's CPUs, not those it may use ----------------
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_issue_batch_workers_are_the_cpus_it_may_use(tmp_path: Path) -> None:
    """issue-batch.md: --jobs defaults to one worker per CPU. Under `taskset -c 0` (or a container's CPU set) it
    forked one per CPU of the machine, each waiting for the one CPU it may use; it forks none now."""
    taskset = require("taskset")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU here: one worker either way")
    from certkit.batch import CHUNK_SIZE

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    assert _certkit(["init-ca"], tmp_path, env).returncode == 0
    (tmp_path / "fleet.csv").write_text("kind,names\n" + "".join(f"client,c{i}\n" for i in range(CHUNK_SIZE + 1)))
    marker = tmp_path / "paused"
    proc = subprocess.Popen([taskset, "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-m", "certkit",
                             "issue-batch", "fleet.csv", "--out-dir", "certs", "--json"], cwd=tmp_path,
                            env=dict(env, CERTKIT_TEST_PAUSE_AT="signed", CERTKIT_TEST_PAUSE_FILE=str(marker)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the first chunk is signed: every worker there is is at work
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        workers = _children(proc.pid)
        while proc.poll() is None:  # let every chunk go on
            marker.unlink(missing_ok=True)
            assert time.monotonic() < deadline + 120, "the batch did not end"
            time.sleep(0.05)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out)["issued"] == CHUNK_SIZE + 1
    assert workers == [], f"{len(workers)} worker processes for the one CPU the batch may use"
