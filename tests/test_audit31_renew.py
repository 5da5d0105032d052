"""Round 31, renew (issue 13): the timer's refusals say what is wrong and what holds a value it cannot carry,
every --json report of --install-timer / --remove-timer has the same keys, a bulk renewal at a terminal that
renews nothing says so, list's count line is wrapped (never cut) on a narrow terminal, and renew/revoke name what
a file given as a certificate holds instead. Never touches this machine's systemd folders: units go to temporary
folders (CERTKIT_SYSTEMD_SYSTEM_DIR, --unit-dir)."""

from __future__ import annotations

import json

import pytest
from test_fleet_timer import due  # noqa: F401 (a CA with one bundle due in 5 days, its passphrase in a file)

from conftest import PASSPHRASE, assert_clean_error, run_certkit
from fleet_helpers import run_in_pty


@pytest.mark.parametrize("name, said", [
    ("x" * 202, "202 characters long; give at most 201"),
    ("-x", "begin it with a letter or a digit, not '-'"),
    (".hidden", "begin it with a letter or a digit, not '.'"),
    ("_x", "begin it with a letter or a digit, not '_'"),
    ("nightly.timer", "without .timer or .service"),
    ("nightly.service", "without .timer or .service"),
    ("a/b", "use letters, digits, '-', '_' and '.'"),
    ("a@b", "use letters, digits, '-', '_' and '.'"),
])
def test_a_timer_name_systemd_cannot_take_is_refused_saying_why(due, name, said):  # noqa: F811
    """'-x' or a 202-character name is made of letters, digits and '-' only, yet was refused with 'use
    letters, digits, '-', '_' and '.'': the refusal said nothing of what was wrong. Installing and
    removing both say it, and nothing is written."""
    tmp_path, secret, env = due
    units = tmp_path / "units"
    for args in (["--install-timer", "--passphrase-file", secret], ["--remove-timer"]):
        proc = run_certkit("renew", *args, "--unit-dir", units, "--timer-name", name, env=env)
        assert_clean_error(proc, "cannot name a systemd unit")
        assert said in proc.stderr, proc.stderr
    assert not units.exists()
    longest = "x" * 201  # the longest name taken
    run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units, "--timer-name",
                longest, env=env, check=True)
    assert {p.name for p in units.iterdir()} == {longest + ".service", longest + ".timer"}


def test_every_timer_json_report_says_ok_and_notes(due):  # noqa: F811
    """--remove-timer --json with no timer to remove printed {"removed": [], "ran": [], ...} without the
    "ok" and "notes" a removal has (a script reading .ok got nothing), and --install-timer --cron --json
    had no "ok" either. Each report has them now."""
    tmp_path, secret, env = due
    units = tmp_path / "units"
    installed = json.loads(run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units,
                                       "--json", env=env, check=True).stdout)
    removed = json.loads(run_certkit("renew", "--remove-timer", "--unit-dir", units, "--json", env=env,
                                     check=True).stdout)
    nothing = run_certkit("renew", "--remove-timer", "--unit-dir", units, "--json", env=env, check=True)
    absent = json.loads(nothing.stdout)
    assert installed["ok"] is True and removed["ok"] is True and removed["removed"]
    assert absent["ok"] is True and absent["removed"] == [] and absent["notes"] == []
    assert set(absent) == set(removed), (absent, removed)
    cron = json.loads(run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, "--json",
                                  env=env, check=True).stdout)
    assert cron["ok"] is True and cron["notes"] == [] and cron["systemd"] is False and "renew" in cron["crontab"]


def test_a_run_at_a_terminal_that_renews_nothing_says_so(due):  # noqa: F811
    """On a terminal, a bulk renewal that found nothing due said 'Checking certificates expiring within 30 days
    before anything is renewed...' and then nothing: the person watching could not tell a finished run from one
    still checking, nor whether anything was due. It now answers: nothing to renew, or how many were skipped
    (a moved bundle, with its warning). Cron's runs (no terminal) and --json stay as they were."""
    tmp_path, secret, env = due
    env = env | {"CERTKIT_CA_PASSPHRASE": PASSPHRASE}
    for args, said in ((["--expiring", "2d"], "Nothing to renew: no certificates expiring within 2 days."),
                       (["--all", "--kind", "client"], "Nothing to renew: no valid client certificates."),
                       (["--expiring", "12h", "--name", "web*"],
                        "Nothing to renew: no certificates matching 'web*' expiring within 12 hours.")):
        code, shown, _ = run_in_pty(["renew", *args], env=env, cwd=tmp_path, cols=200)
        assert code == 0 and "Checking" in shown and said in shown, shown
        assert shown.index("Checking") < shown.index(said), shown
        quiet = run_certkit("renew", *args, env=env, cwd=tmp_path, subprocess=True)  # cron: nothing at all
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", ""), quiet
    code, shown, stdout = run_in_pty(["renew", "--expiring", "2d", "--json"], env=env, cwd=tmp_path,
                                     stdout_tty=False)
    assert code == 0 and "Nothing to renew" not in shown + stdout and json.loads(stdout)["renewed"] == 0
    (tmp_path / "web").rename(tmp_path / "web.moved")  # due, and skipped: a warning, and the count
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d"], env=env, cwd=tmp_path, cols=400)
    assert code == 0, shown
    assert "Renewed none of 1 certificate expiring within 30 days: it was skipped (--json says why)." in shown
    assert "Warning:" in shown and "web.example.com" in shown, shown
    (tmp_path / "web.moved").rename(tmp_path / "web")
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d"], env=env, cwd=tmp_path, cols=400)
    assert code == 0 and "Renewed 1 of 1" in shown and "Nothing to renew" not in shown, shown


@pytest.mark.parametrize("where", ["units", "cron"])
def test_a_value_a_timer_cannot_carry_is_refused_naming_what_holds_it(due, where):  # noqa: F811
    """A line break in the --passphrase-file path, in $PATH or $SSL_CERT_FILE, or in the --name glob was refused
    with "'...' holds a control character (a line break?); a timer or crontab line cannot carry it. Put the command
    in a script and give its path.": no command was at fault, and the value (all of $PATH) was not named. The
    refusal now names the option or variable, with what to do about it; nothing is written."""
    import os

    tmp_path, secret, env = due
    odd = tmp_path / "pass\nwords"
    odd.mkdir()
    (odd / "passphrase").write_bytes(secret.read_bytes())
    (odd / "passphrase").chmod(0o600)
    units = tmp_path / "units"
    target = ["--unit-dir", units] if where == "units" else ["--cron"]
    cases = [
        (["--passphrase-file", odd / "passphrase"], {}, f"--passphrase-file '{tmp_path}/pass\\x0awords/passphrase'",
         "give a path without it"),
        (["--passphrase-file", secret], {"PATH": os.environ["PATH"] + ":/opt/a\nb"}, "$PATH '", "set it without one"),
        (["--passphrase-file", secret], {"SSL_CERT_FILE": "/etc/ssl/a\nb.pem"}, "$SSL_CERT_FILE '/etc/ssl/a\\x0ab.pem'",
         "set it without one"),
        (["--passphrase-file", secret, "--name", "web\t*"], {}, "--name 'web\\x09*'", "'?' matches any one character"),
        (["--passphrase-file", secret, "--exec-once", "a\nb"], {}, "--exec-once 'a\\x0ab'",
         "put the command in a script"),
    ]
    for args, extra, named, advice in cases:
        proc = run_certkit("renew", "--install-timer", *target, *args, env=env | extra)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stdout == "", proc
        error = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        assert len(error) == 1 and error[0].startswith(f"Error: {named}"), proc.stderr
        assert "holds a control character" in error[0] and advice in error[0], proc.stderr
        assert "Put the command in a script" not in error[0] or "--exec" in named, proc.stderr
    assert not units.exists()


def test_list_on_a_narrow_terminal_wraps_its_count_never_cuts_it(due):  # noqa: F811
    """On a terminal of 60 columns, 'list --limit 1 --kind server --name ... --expiring 300d' ended with '1 of 3
    server certificates matching '*.fleet.example' expiring w…': the line that says how many match, and within
    which period, was cut like a table cell. It is wrapped between words now, counting columns (a wide character
    takes two), as the note on shortened serials is; the table's cells are still cut to fit."""
    from certkit.text import columns

    tmp_path, _secret, env = due
    env = env | {"CERTKIT_CA_PASSPHRASE": PASSPHRASE}
    for name in ("a", "b", "c"):
        run_certkit("issue-server", f"{name}.fleet.example", "--days", "40", env=env, cwd=tmp_path, check=True)
        run_certkit("issue-client", f"山田太郎{name}", "--days", "40", env=env, cwd=tmp_path, check=True)
    for args, said, width in (
            (["--kind", "server", "--name", "*.fleet.example", "--expiring", "300d"],
             "1 of 3 server certificates matching '*.fleet.example' expiring within 300 days", 60),
            (["--kind", "server", "--name", "*.fleet.example", "--expiring", "300d"],
             "1 of 3 server certificates matching '*.fleet.example' expiring within 300 days", 24),
            (["--name", "山田太郎*"], "1 of 3 certificates matching '山田太郎*'", 24)):
        code, shown, _ = run_in_pty(["list", "--limit", "1", *args], env=env, cwd=tmp_path, cols=width)
        lines = shown.rstrip("\n").split("\n")
        assert code == 0 and all(columns(line) <= width for line in lines), shown
        assert said in " ".join(lines), shown  # every word of it, lines joined
        assert "…" not in "".join(lines[lines.index(next(x for x in lines if x.startswith("1 of"))):]), shown


def test_renew_and_revoke_name_what_a_file_given_as_a_certificate_holds(due):  # noqa: F811
    """'renew web/privkey.pem' (a slip of the tab key), 'revoke request.csr' or 'renew bundle.p12' said only
    'X does not hold a readable certificate.', as for a damaged one. They now say what the file holds (a private
    key, a CSR, a CRL, a bundle.p12, in PEM or in DER as openssl writes them) and what to give instead: the
    bundle's folder or its cert.pem, or the certificate's file, serial or name. Nothing is renewed or revoked."""
    from conftest import openssl

    tmp_path, _secret, env = due
    env = env | {"CERTKIT_CA_PASSPHRASE": PASSPHRASE, "CERTKIT_P12_PASSWORD": "p12 password here"}
    web = tmp_path / "web"
    run_certkit("export-p12", web, env=env, check=True)
    openssl("pkey", "-in", str(web / "privkey.pem"), "-outform", "DER", "-out", str(tmp_path / "key.der"))
    openssl("req", "-new", "-key", str(web / "privkey.pem"), "-subj", "/CN=web.example.com",
            "-out", str(tmp_path / "web.csr"))
    openssl("req", "-in", str(tmp_path / "web.csr"), "-outform", "DER", "-out", str(tmp_path / "web.csr.der"))
    run_certkit("crl", "--out", tmp_path / "ca.crl", env=env, check=True)
    openssl("crl", "-in", str(tmp_path / "ca.crl"), "-outform", "DER", "-out", str(tmp_path / "ca.crl.der"))
    (tmp_path / "empty.pem").write_bytes(b"")
    in_folder = f"give its bundle folder, {web}, or its cert.pem"
    elsewhere = "give the certificate's own file, its serial or the name it was issued for"
    cases = [(web / "privkey.pem", "it holds a private key", in_folder),
             (web / "bundle.p12", "it holds a PKCS#12 bundle", in_folder),
             (tmp_path / "key.der", "it holds a private key in DER form", elsewhere),
             (tmp_path / "web.csr", "it holds a certificate signing request", elsewhere),
             (tmp_path / "web.csr.der", "it holds a certificate signing request", elsewhere),
             (tmp_path / "ca.crl", "it holds a certificate revocation list (CRL)", elsewhere),
             (tmp_path / "ca.crl.der", "it holds a certificate revocation list (CRL)", elsewhere),
             (tmp_path / "empty.pem", "it is empty", "")]
    for path, held, give in cases:
        for args in (["renew", path], ["revoke", path], ["revoke", path, "--json"]):
            proc = run_certkit(*args, env=env, cwd=tmp_path)
            assert_clean_error(proc, f"{path} does not hold a readable certificate: {held}")
            assert give in proc.stdout + proc.stderr, proc
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [row["status"] for row in listed] == ["valid"], listed  # nothing renewed, nothing revoked


@pytest.mark.parametrize("width", [4, 9, 12, 24, 80])
def test_wrapped_count_lines_fit_and_keep_every_word(width):
    """certkit.text.wrap_columns, which list's count line goes through: no line wider than the terminal (wide
    characters count two), none empty or ending in a blank, every word kept in order (cut only when longer
    than a whole line)."""
    from certkit.text import columns, wrap_columns

    for text in ("1 of 3 certificates matching 'a  b' expiring within 30 days", "山田太郎 山田太郎 of  10,000",
                 "x" * 30 + " y"):
        lines = wrap_columns(text, width).split("\n")
        assert all(line and not line.endswith(" ") and columns(line) <= width for line in lines), lines
        if all(columns(word) <= width for word in text.split()):
            assert " ".join(lines).split() == text.split(), lines
