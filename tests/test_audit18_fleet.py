r"""The eighteenth round's fleet findings (audit helper "fleet"), each as a class:

1. ``--format k8s`` cut each dot-separated part of a Secret's name at 63 characters (DNS's label limit, which
   the Kubernetes API server does not apply to object names): two bundles whose names differ only past that
   point got the same Secret name. ``issue-batch`` refused such a manifest ("its name in the output ... is also
   line 2's"), and two commands (two clients, two batches) wrote two Secrets of one name, so that applying the
   second replaced the first's certificate and key in the cluster.
2. ``renew --install-timer --cron`` (and ``--install-timer`` without systemd) printed a crontab line whose command
   was longer than Vixie cron, the cron of Debian and Ubuntu, takes (998 bytes; most of it the PATH a developer's
   shell has): its crontab refuses such a line ("command too long") and installs nothing, so the pipe certkit
   suggests, ``(crontab -l; certkit ...) | crontab -``, failed, and a line put in a crontab file by other means made
   cron drop that whole file.
3. The crontab line quoted each argument for the shell only: cron reads a backslash before a backslash or a '%' as
   its own escape, so a hook written as for cron (``date +\%F``) or any argument holding ``\%`` or ``\\`` reached
   the shell changed: Debian's cron ended the command at that '%' (the shell then failed on an open quote every
   night, renewing nothing), and read '\\' as '\'.
4. ``renew --install-timer`` said nothing of the certificates of its selection delivered with ``--format jsonl``,
   ``k8s`` or ``tar``: its runs skip them quietly (they have no bundle folder), so a fleet of Secrets expired under
   an installed timer without a word anywhere. Installing now says how many there are and names one.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from pathlib import Path

import pytest

from conftest import REPO, run_certkit
from fleet_helpers import secrets

SCHEMA = json.loads((REPO / "tests" / "k8s_secret_schema.json").read_text())
# The API server's rule for an object name (apimachinery's IsDNS1123Subdomain): at most 253 characters, lower-case
# alphanumeric parts joined by dots, '-' inside a part; no length limit on a part.
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _env(ca_env: dict, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return ca_env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def _checked_secrets(path: Path, tmp_path: Path) -> dict[str, dict]:
    """The Secrets of a manifest by name, each valid for the API server (schema and name rule), its tls.crt and
    tls.key a pair that OpenSSL loads (ssl's load_cert_chain checks that the key matches the certificate)."""
    import jsonschema

    found = {}
    for doc in secrets(path.read_text()):
        jsonschema.validate(doc, SCHEMA)
        name = doc["metadata"]["name"]
        assert len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name), name
        for key in ("tls.crt", "tls.key"):
            (tmp_path / key).write_bytes(base64.b64decode(doc["data"][key]))
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        assert name not in found, f"two Secrets named {name}"
        found[name] = doc
    return found


# --- 1: Secret names are not cut at 63 characters ----------------------------------------------------------------
def test_k8s_secret_names_keep_their_length_and_two_long_names_stay_two_secrets(tmp_path, ca_env, ca_dir):
    env = _env(ca_env, tmp_path)
    long = "clients/eu-west-1/payments-reconciliation-batch-worker-primary-0"  # '/' -> '-': one part of 64+
    (tmp_path / "m.csv").write_text(f"kind,names,out\nclient,worker1,{long}1\nclient,worker2,{long}2\n")
    proc = run_certkit("issue-batch", "m.csv", "--format", "k8s", "--out", "b.yaml", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr  # was: "its name in the output, clients-...-primary, is also line 2's"
    made = _checked_secrets(tmp_path / "b.yaml", tmp_path)
    assert set(made) == {long.replace("/", "-") + "1", long.replace("/", "-") + "2"}, set(made)

    # Two commands, two clients whose names differ in their 64th (last) character: two Secrets (was one name for
    # both, so the second kubectl apply replaced the first client's certificate and key)
    names = {}
    for n, cn in enumerate(["Payments-Reconciliation-Batch-Worker-Primary-Europe-West-Team-01",
                            "Payments-Reconciliation-Batch-Worker-Primary-Europe-West-Team-02"]):
        assert len(cn) == 64  # the longest common name X.509 allows (ub-common-name)
        out = tmp_path / f"c{n}.yaml"
        proc = run_certkit("issue-client", cn, "--format", "k8s", "--out", out, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        [name] = _checked_secrets(out, tmp_path)
        assert name == cn.lower() and json.loads(proc.stdout)["secret"] == name
        names[cn] = name
    assert len(set(names.values())) == 2, names

    # A name over the 253 characters of an object name is cut, with a suffix of the whole name: two such names that
    # begin alike are still two Secrets, each a name the API server takes.
    part = "x" * 60
    outs = ["/".join([part] * 5) + end for end in ("/a", "/b")]
    (tmp_path / "l.csv").write_text("kind,names,out\n" + "".join(f"client,l{i},{o}\n" for i, o in enumerate(outs)))
    proc = run_certkit("issue-batch", "l.csv", "--format", "k8s", "--out", "l.yaml", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    made = _checked_secrets(tmp_path / "l.yaml", tmp_path)
    assert len(made) == 2 and all(name.startswith(part + "-" + part) and re.search(r"x-[0-9a-f]{8}$", name)
                                  for name in made), made


@pytest.mark.parametrize("name", ["web.example.com", "_wildcard.example.com", "Alice Smith", "web/a"])
def test_k8s_secret_names_of_short_names_are_unchanged(name):
    from certkit.formats import secret_name

    assert secret_name(name) == {"web.example.com": "web.example.com", "_wildcard.example.com": "wildcard.example.com",
                                 "Alice Smith": "alice-smith", "web/a": "web-a"}[name]


# --- 2: a crontab line cron takes ---------------------------------------------------------------------------------
# Vixie cron (Debian's and Ubuntu's cron package) reads a crontab command into a buffer of MAX_COMMAND = 1000 bytes:
# its crontab(1) refuses a line whose command is 999 bytes or more ('"-":1: command too long', 'errors in crontab
# file, can't install.'), checked with cron 3.0pl1-162's crontab in a private mount namespace.
VIXIE_COMMAND_MAX = 998


def _cron_command(line: str) -> str:
    """The command of a crontab line, as cron hands it to /bin/sh (its '\\%' read as '%'), after checking that its
    five time fields are a daily run and that Vixie cron takes it."""
    minute, hour, dom, month, dow, command = line.split(" ", 5)
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 6 and (dom, month, dow) == ("*", "*", "*"), line
    assert len(command.encode()) <= VIXIE_COMMAND_MAX, f"cron refuses a command of {len(command.encode())} bytes"
    return command.replace("\\%", "%")


def test_a_crontab_line_too_long_for_cron_is_refused_and_one_it_takes_runs(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import PASSPHRASE, assert_clean_error, certkit_env
    from fleet_helpers import backdated_ca, bundle

    ca = backdated_ca(tmp_path / "ca")
    bundle(ca, tmp_path / "web", "web.example.com", days=40, age=35)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    folders = []
    for n in range(30):  # a PATH as a developer's shell has it: SDKs, language managers, tool folders
        folders.append(tmp_path / "opt" / f"toolchain-{n:02d}" / "bin")
        folders[-1].mkdir(parents=True)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path),
                      PATH=os.pathsep.join([*map(str, folders), os.environ.get("PATH", "/usr/bin:/bin")]))
    args = ["renew", "--install-timer", "--cron", "--passphrase-file", secret, "--exec-once",
            f'echo "100% renewed: $CERTKIT_RENEWED" > {tmp_path / "done"}']
    proc = run_certkit(*args, env=env, subprocess=True)
    # was: exit 0 and a line of 1,400 bytes and more, which crontab refuses ("command too long")
    assert_clean_error(proc, "998")
    assert proc.stdout == "" and "PATH takes" in proc.stderr and "command too long" in proc.stderr, proc.stderr
    proc = run_certkit(*args, "--json", env=env, subprocess=True)
    assert proc.returncode == 1 and "998" in json.loads(proc.stdout)["error"]

    # With the PATH certkit and the hook need, the line fits and runs as cron runs it (in cron's environment)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    proc = run_certkit(*args, env=env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    ran = subprocess.run(["/bin/sh", "-c", _cron_command(line)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh", "LOGNAME": "root"},
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "done").read_text() == "100% renewed: 1\n"


# --- 3: a crontab line hands its hooks to the shell as given --------------------------------------------------------
def _debian_cron(command: str) -> str:
    r"""What the cron of Debian and Ubuntu (Vixie cron 3.0pl1) hands to /bin/sh -c: '\%' becomes '%', '\\' becomes
    '\', and a bare '%' ends the command (what follows is the job's standard input). Observed with cron
    3.0pl1-162 run in a private mount namespace: 'a\\b' reached the job as a\b, and 'x\\%y' ended the command."""
    out, i = [], 0
    while i < len(command):
        if command[i] == "\\" and command[i + 1:i + 2] in ("%", "\\"):
            out.append(command[i + 1])
            i += 2
            continue
        if command[i] == "%":
            break
        out.append(command[i])
        i += 1
    return "".join(out)


def _cronie(command: str) -> str:
    r"""The same for cronie (Fedora, RHEL, Arch: its do_command.c): only '\%' is an escape (it becomes '%'), a backslash
    before anything else stays, and that other thing is not escaped: '\\%' ends the command at its '%'."""
    out: list[str] = []
    escaped = False
    for ch in command:
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
        elif ch == "%":
            break
        else:
            escaped = ch == "\\"
            out.append(ch)
    return "".join(out)


def test_a_crontab_line_hands_hooks_with_backslashes_and_percents_to_the_shell_as_given(tmp_path):
    import os
    import shlex
    import subprocess
    import sys

    from conftest import PASSPHRASE, certkit_env
    from fleet_helpers import backdated_ca, bundle

    ca = backdated_ca(tmp_path / "ca")
    bundle(ca, tmp_path / "web", "web.example.com", days=40, age=35)
    secret = tmp_path / "pass\\word%file"  # a path with both, as any argument may hold them
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path),
                      PATH=os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]))
    # a hook as one writes it for cron and the shell: date +\%F, a literal \\ and a %
    hook = f"printf '%s|%s\\n' 'x\\\\%y' \"$(date -u -d @0 +\\%F)\" > {tmp_path / 'hook.out'}"
    by_hand = subprocess.run(["/bin/sh", "-c", hook], capture_output=True, text=True, timeout=60)
    assert by_hand.returncode == 0 and (tmp_path / "hook.out").read_text() == "x\\\\%y|1970-01-01\n"
    (tmp_path / "hook.out").unlink()

    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, "--exec-once", hook,
                       env=env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    command = line.split(" ", 5)[5]
    for cron in (_debian_cron, _cronie):  # each hands the shell the very arguments certkit was given
        words = shlex.split(cron(command))  # was: "No closing quotation" (the command ended at the '%' of '\\%')
        assert words[words.index("--exec-once") + 1] == hook, cron.__name__
        assert words[words.index("--passphrase-file") + 1] == str(secret), cron.__name__
    # and run as Debian's cron runs it: the renewal is done and the hook wrote what it writes by hand
    before = (tmp_path / "web" / "cert.pem").read_bytes()
    ran = subprocess.run(["/bin/sh", "-c", _debian_cron(command)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "web" / "cert.pem").read_bytes() != before
    assert (tmp_path / "hook.out").read_text() == "x\\\\%y|1970-01-01\n"


# --- 4: installing a timer names the deliveries it will never renew ------------------------------------------------
def test_install_timer_says_which_deliveries_into_files_its_runs_never_renew(tmp_path, ca_env, ca_dir):
    from conftest import PASSPHRASE

    env = _env(ca_env, tmp_path) | {"CERTKIT_SYSTEMD_SYSTEM_DIR": str(tmp_path / "system")}
    (tmp_path / "m.csv").write_text("kind,names\nserver,api1.example.com\nserver,api2.example.com\n")
    run_certkit("issue-batch", "m.csv", "--format", "k8s", "--out", "fleet.yaml", "--days", "20", cwd=tmp_path,
                env=env, check=True)
    proc = run_certkit("issue-server", "stream.example.com", "--format", "jsonl", "--days", "20", env=env,
                       subprocess=True)  # to standard output, as | kubectl apply -f - takes it
    assert proc.returncode == 0 and json.loads(proc.stdout)["name"] == "stream.example.com", proc.stderr
    run_certkit("issue-server", "web.example.com", "--days", "90", "--out", tmp_path / "web", env=env, check=True)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    plain = {k: v for k, v in env.items() if k != "CERTKIT_CA_PASSPHRASE"}  # what a timer has

    # what the timer runs: the three due certificates are skipped, quietly (exit 0, nothing said)
    proc = run_certkit("renew", "--expiring", "30d", "--passphrase-file", secret, env=plain)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc.stderr
    assert len(secrets((tmp_path / "fleet.yaml").read_text())) == 2

    for cron in (False, True):
        args = ["renew", "--install-timer", "--passphrase-file", secret,
                *(["--cron"] if cron else ["--unit-dir", tmp_path / "units"])]
        proc = run_certkit(*args, env=plain)
        assert proc.returncode == 0, proc.stderr
        [warning] = [line for line in proc.stderr.splitlines() if "--format jsonl, k8s or tar" in line]
        # was: no word of them
        assert warning.startswith("Warning: 3 valid certificates of this selection were delivered"), warning
        assert str(tmp_path / "fleet.yaml") in warning or "written to standard output" in warning, warning
        assert "certkit renew SERIAL --out DIR" in warning and "Traceback" not in proc.stderr

    # a selection without them says nothing of them; one renewed into a folder leaves the count
    proc = run_certkit("renew", "--install-timer", "--cron", "--kind", "client", "--passphrase-file", secret,
                       env=plain)
    assert proc.returncode == 0 and "k8s or tar" not in proc.stderr, proc.stderr
    serial = next(line.split('"')[1] for line in (tmp_path / "fleet.yaml").read_text().splitlines()
                  if "certkit/serial:" in line)
    run_certkit("renew", serial, "--out", tmp_path / "api", env=env, check=True)
    assert ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        tmp_path / "api" / "fullchain.pem", tmp_path / "api" / "privkey.pem") is None
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, env=plain)
    assert "Warning: 2 valid certificates of this selection" in proc.stderr, proc.stderr
    # one that --force released from its file (in no file now, named by that command) is not counted; the new one is
    (tmp_path / "m2.csv").write_text("kind,names\nserver,other.example.com\n")
    proc = run_certkit("issue-batch", "m2.csv", "--format", "k8s", "--out", "fleet.yaml", "--days", "20", "--force",
                       "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["released"]) == 1, proc.stdout + proc.stderr
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, env=plain)
    assert "Warning: 2 valid certificates of this selection" in proc.stderr, proc.stderr
