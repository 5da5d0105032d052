"""renew --install-timer / --remove-timer: the systemd units pass systemd-analyze verify (system and
user), their ExecStart renews what is due; the crontab line runs as cron runs it; refusals leave no
file behind. Never touches this machine's systemd folders: units go to temporary folders."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca, bundle

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def due(tmp_path):
    """A CA (encrypted key) with one bundle due for renewal, its passphrase in a 0600 file, and an
    environment that holds no passphrase: what a timer or cron has."""
    ca = backdated_ca(tmp_path / "ca")
    bundle(ca, tmp_path / "web", "web.example.com", days=40, age=35)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "system"),
                      XDG_CONFIG_HOME=str(tmp_path / "config"))
    return tmp_path, secret, env


def serial_of(folder: Path) -> str:
    from cryptography import x509

    from certkit.vocabulary import serial_hex

    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


def exec_start(service: str) -> tuple[list[str], dict[str, str]]:
    """ExecStart= and Environment= of a unit, unquoted as systemd unquotes them (systemd.exec(5): "$$" is
    a "$" in a command line; in Environment= "$" has no special meaning, so "$$" stays two)."""
    def unquote(text: str, command: bool) -> list[str]:
        words = [w.replace("%%", "%") for w in shlex.split(text)]
        return [w.replace("$$", "$") for w in words] if command else words

    argv = unquote(re.search(r"^ExecStart=(.*)$", service, re.M).group(1), True)
    env = dict(w.split("=", 1) for line in re.findall(r"^Environment=(.*)$", service, re.M)
               for w in unquote(line, False))
    return argv, env


def plain_env(tmp_path: Path, **extra) -> dict[str, str]:
    """What a timer's service or cron starts with: no CERTKIT_ variables, no PYTHONPATH."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8", **extra}


def test_units_verified_and_their_command_renews(due):
    tmp_path, secret, env = due
    units = tmp_path / "units"
    hook = f'echo "100% reloaded $CERTKIT_RENEWED" >> {tmp_path / "hook.log"}'
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret,
                       "--expiring", "14d", "--exec-once", hook, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    service, timer = units / "certkit-renew.service", units / "certkit-renew.timer"
    assert data["files"] == [str(service), str(timer)] and data["ran"] == []  # a folder of ours: nothing enabled
    # systemd does not look in that folder: the units are linked into its unit path first
    assert data["todo"] == [f"systemctl link {service} {timer}", "systemctl daemon-reload",
                            "systemctl enable --now certkit-renew.timer"]
    text = timer.read_text()
    assert "OnCalendar=daily" in text and "RandomizedDelaySec=" in text and "Persistent=true" in text
    assert "WantedBy=timers.target" in text and "Type=oneshot" in service.read_text()
    assert PASSPHRASE not in service.read_text()  # the path of the passphrase file, never the passphrase
    if SYSTEMD_ANALYZE:
        for mode_args, extra in (([], {}), (["--user"], {"XDG_RUNTIME_DIR": str(tmp_path)})):
            checked = subprocess.run([SYSTEMD_ANALYZE, *mode_args, "verify", service, timer], capture_output=True,
                                     text=True, timeout=60, env=dict(os.environ, **extra))
            assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stderr
    # the service's command, run as systemd would run it, renews what is due and runs the hook
    argv, unit_env = exec_start(service.read_text())
    assert argv[argv.index("--exec-once") + 1] == hook
    old = serial_of(tmp_path / "web")
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert serial_of(tmp_path / "web") != old and (tmp_path / "hook.log").read_text() == "100% reloaded 1\n"
    again = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")  # the next day: quiet
    # installing the same again changes nothing; another selection replaces certkit's own units only
    # with --force (the daily renewal someone set up is not changed behind their back)
    before = service.read_text()
    assert run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret,
                       "--expiring", "14d", "--exec-once", hook, env=env).returncode == 0
    assert service.read_text() == before
    other = ["renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret, "--expiring", "20d"]
    assert_clean_error(run_certkit(*other, env=env), "already installed")
    assert service.read_text() == before
    assert run_certkit(*other, "--force", env=env).returncode == 0
    assert "20d" in exec_start(service.read_text())[0]
    # removing takes both away, once; it has no selection to give
    assert_clean_error(run_certkit("renew", "--remove-timer", "--all", "--unit-dir", units, env=env),
                       "--remove-timer removes the timer", code=2)
    removed = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env)
    assert removed.returncode == 0 and "removed" in removed.stdout, removed.stderr
    assert sorted(units.iterdir()) == []
    nothing = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env)
    assert nothing.returncode == 0 and "No certkit-renew timer to remove" in nothing.stdout


def test_refusals_leave_nothing_behind(due):
    tmp_path, secret, env = due
    units = tmp_path / "units"
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, env=dict(env, CERTKIT_CA_PASSPHRASE="x"))
    assert_clean_error(proc, "cannot type its passphrase")
    assert "is never copied into the timer" in proc.stderr and not units.exists()
    secret.chmod(0o644)
    assert_clean_error(run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret,
                                   env=env), "other users can read it")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    assert_clean_error(run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file", wrong,
                                   env=env), "does not decrypt")  # now, not every night
    assert not units.exists()
    units.mkdir()
    (units / "certkit-renew.timer").write_text("[Timer]\nOnCalendar=hourly\n")  # someone else's
    for args in (["--install-timer", "--passphrase-file", secret], ["--remove-timer"]):
        assert_clean_error(run_certkit("renew", *args, "--unit-dir", units, env=env), "was not written by certkit")
    assert (units / "certkit-renew.timer").read_text() == "[Timer]\nOnCalendar=hourly\n"
    assert not (units / "certkit-renew.service").exists()
    assert_clean_error(run_certkit("renew", "--install-timer", "--unit-dir", units, "--timer-name", "x.timer",
                                   "--passphrase-file", secret, env=env), "cannot name a systemd unit")


def test_the_unit_folder_is_an_output_like_any_other(due):
    """--unit-dir in the CA directory (directly or through a link) or in a folder every user can
    write is refused, for installing and for removing: the CA directory stays as it was."""
    tmp_path, secret, env = due
    ca = tmp_path / "ca"
    before = sorted(p.name for p in ca.iterdir())
    (tmp_path / "link").symlink_to(ca)
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    inside = "is in the CA directory"
    for folder, fragment in ((ca, inside), (ca / "sub", inside), (tmp_path / "link", inside),
                             (tmp_path / "open", "writable by every user")):
        for args in (["--install-timer", "--passphrase-file", secret], ["--remove-timer"]):
            assert_clean_error(run_certkit("renew", *args, "--unit-dir", folder, env=env), fragment)
    assert sorted(p.name for p in ca.iterdir()) == before and list((tmp_path / "open").iterdir()) == []


def test_default_folders_are_overridable(due, monkeypatch):
    """Where the units go without --unit-dir: the system folder as root, the user's otherwise; both
    moved away from this machine's real ones here."""
    from certkit import fleet

    tmp_path, _secret, env = due
    monkeypatch.setenv("CERTKIT_SYSTEMD_SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert fleet.unit_dir(system=True) == tmp_path / "system"
    assert fleet.unit_dir(system=False) == tmp_path / "config" / "systemd" / "user"
    change = fleet.install_timer(["renew", "--expiring", "30d"], description="test", manage=False)
    expected = fleet.unit_dir()
    assert change.files == [expected / "certkit-renew.service", expected / "certkit-renew.timer"]
    assert change.system == (os.geteuid() == 0) and change.ran == []
    assert fleet.remove_timer(manage=False).files == [expected / "certkit-renew.timer",
                                                      expected / "certkit-renew.service"]


def test_crontab_line_runs_as_cron_runs_it(due):
    tmp_path, secret, env = due
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, "--exec-once",
                       f'echo "50% done" > {tmp_path / "done"}', env=env)
    assert proc.returncode == 0, proc.stderr
    assert "crontab -e" in proc.stderr
    [line] = proc.stdout.splitlines()
    minute, hour, dom, month, dow, command = line.split(" ", 5)
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 6 and (dom, month, dow) == ("*", "*", "*")
    assert "50\\% done" in command  # cron would end the command at a bare %
    old = serial_of(tmp_path / "web")
    ran = subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], env=plain_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert serial_of(tmp_path / "web") != old and (tmp_path / "done").read_text() == "50% done\n"
    again = subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], env=plain_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")  # cron mails nothing


def test_without_systemd_the_crontab_line(due):
    from certkit.fleet import systemd_running

    if systemd_running():
        pytest.skip("systemd runs this machine: --install-timer would enable a real timer")
    tmp_path, secret, env = due
    proc = run_certkit("renew", "--install-timer", "--passphrase-file", secret, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "systemd does not run this machine" in proc.stderr and " renew --expiring 30d " in proc.stdout
    assert not (tmp_path / "system").exists() and not (tmp_path / "config").exists()


def test_the_timer_renews_against_the_inventory_this_command_uses(due):
    """$CERTKIT_INVENTORY_URL (a shared inventory for this host) goes into the unit and the crontab
    line: the timer renews what is due there, not in the inventory the CA directory names."""
    tmp_path, secret, env = due
    shared_file = tmp_path / "sha$red%i.sqlite3"  # "$" and "%" mean something to systemd: carried as given
    shutil.copy(tmp_path / "ca" / "inventory.sqlite3", shared_file)
    shared = dict(env, CERTKIT_INVENTORY_URL=f"sqlite:///{shared_file}",
                  CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("issue-server", "shared.example.com", "--days", "5", "--out", tmp_path / "shared", env=shared,
                check=True)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", secret,
                       env=shared)
    assert proc.returncode == 0, proc.stderr
    _argv, unit_env = exec_start((tmp_path / "u" / "certkit-renew.service").read_text())
    assert unit_env["CERTKIT_INVENTORY_URL"] == shared["CERTKIT_INVENTORY_URL"]
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, env=shared)
    [line] = proc.stdout.splitlines()
    old = serial_of(tmp_path / "shared")
    ran = subprocess.run(["/bin/sh", "-c", line.split(" ", 5)[5].replace("\\%", "%")],  # as cron reads "\%"
                         env=plain_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert serial_of(tmp_path / "shared") != old  # renewed, as recorded in the shared inventory
    # and so does the service's command, with the environment systemd gives it
    run_certkit("issue-server", "unit.example.com", "--days", "5", "--out", tmp_path / "unit", env=shared, check=True)
    argv, unit_env = exec_start((tmp_path / "u" / "certkit-renew.service").read_text())
    old = serial_of(tmp_path / "unit")
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert serial_of(tmp_path / "unit") != old


def test_a_p12_password_from_the_environment_is_said_not_to_reach_the_timer(due):
    tmp_path, secret, env = due
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", secret,
                       env=dict(env, CERTKIT_P12_PASSWORD="p12 password"))
    assert proc.returncode == 0 and "Warning: $CERTKIT_P12_PASSWORD is not copied into the timer" in proc.stderr
    assert "p12 password" not in (tmp_path / "u" / "certkit-renew.service").read_text()
    p12 = tmp_path / "p12pass"
    p12.write_text("p12 password\n")
    p12.chmod(0o600)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", secret,
                       "--p12-password-file", p12, "--force", env=dict(env, CERTKIT_P12_PASSWORD="p12 password"))
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr


def test_a_token_key_needs_its_pin_in_a_file(tmp_path, token):
    """A CA key in a PKCS#11 token: the timer cannot type the PIN, so --passphrase-file (the PIN)
    is required and tried at install time, as for an encrypted key file. Every command in a process
    of its own: a PKCS#11 module loaded here would keep its login, and SoftHSM its list of tokens,
    for the other tests of this worker."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", "HSM timer", "--key-uri", token.uri("root"), "--pkcs11-module", token.module,
                env=env, check=True, subprocess=True)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", env=env, subprocess=True)
    assert_clean_error(proc, "cannot type its PIN")
    assert not (tmp_path / "u").exists()
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000\n")
    wrong.chmod(0o600)
    assert run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", wrong,
                       env=env, subprocess=True).returncode != 0
    assert not (tmp_path / "u").exists()
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", token.pin_file,
                       env=env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
