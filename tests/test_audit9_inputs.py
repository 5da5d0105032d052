"""Audit round nine, bad input (report badinput9), each as a class:

2. an IPv6 zone in a range (``fe80::%eth0/64``) is refused as in an address, by --permit-ip, --allow-ip and
   the library (the zone was dropped, and the range went into the CA certificate);
4. a whole number is written in the digits 0 to 9, with no underscore (``--days 1_0`` issued a 10-day
   certificate): every Whole option, the manifest's days, and probe --timeout;
6. a domain with a leading dot is refused with the form to give, by init-ca --permit-dns and acme serve
   --allow-domain alike (one read it as the domain, the other called it "an empty label").
"""

from __future__ import annotations

import pytest

from conftest import assert_clean_error, run_certkit


@pytest.mark.parametrize("network", ["fe80::%eth0/64", "fe80::1%eth0/128", "2001:db8::%1/32"])
def test_a_zone_in_a_range_is_refused_everywhere(network, ca_dir, ca_env, tmp_path):
    from certkit import CA
    from certkit.acme.policy import Policy
    from certkit.errors import InvalidName

    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "z", "--name", "Z", "--permit-ip", network, env=ca_env)
    assert_clean_error(proc, "has an IPv6 zone (%")
    assert not (tmp_path / "z").exists()
    for build in (lambda: Policy.build(ips=[network]), lambda: CA.create("Z", permitted_ips=[network])):
        with pytest.raises(InvalidName, match="has an IPv6 zone"):
            build()
    Policy.build(ips=["fe80::/64"])  # the range without it is fine


@pytest.mark.parametrize("value", ["1_0", "3_0", "٣٠", "３０", "0x1e", "30.0"])
def test_a_whole_number_is_in_the_digits_0_to_9_alone(value, ca_dir, ca_env, tmp_path):
    proc = run_certkit("issue-server", "u.example", "--days", value, "--out", tmp_path / "u", env=ca_env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"'{value}' is not" in proc.stderr and not (tmp_path / "u").exists(), proc.stderr
    assert_clean_error(run_certkit("list", "--limit", value, env=ca_env), "is not", code=2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"kind,names,days\nserver,m.example,{value}\n", encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=ca_env)
    assert proc.returncode != 0 and "days is" in proc.stderr and not (tmp_path / "b").exists(), proc.stderr


@pytest.mark.parametrize("value", ["１", "1_0", "nan", "inf", "+inf", "1e1"])
def test_probe_timeout_is_seconds_in_the_digits_0_to_9(value):
    proc = run_certkit("probe", "https://127.0.0.1:1/", "--timeout", value)
    assert_clean_error(proc, "is not a number of seconds", code=2)


def test_ordinary_whole_numbers_still_pass(ca_dir, ca_env, tmp_path):
    for i, days in enumerate(("30", " 30 ", "+30")):
        run_certkit("issue-server", "ok.example", "--days", days, "--out", tmp_path / f"o{i}", env=ca_env, check=True)


def test_a_leading_dot_is_refused_by_both_domain_options(ca_dir, ca_env, tmp_path):
    from certkit.acme.policy import Policy
    from certkit.errors import InvalidName

    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "z", "--name", "Z", "--permit-dns", ".example.com",
                       env=ca_env)
    assert_clean_error(proc, "'.example.com' starts with a dot: a domain covers itself and its subdomains, so give "
                             "'example.com' without it.")
    with pytest.raises(InvalidName, match="starts with a dot"):
        Policy.build(domains=[".example.com"])
    proc = run_certkit("acme", "serve", "--port", "1", "--allow-domain", ".example.com", env=ca_env)
    assert proc.returncode != 0 and "starts with a dot" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert Policy.build(domains=["example.com"]).allow_domains == ("example.com",)


# --- 7. what an error names: the folder given, not a temporary file in it ------------------------------------
def test_a_timer_folder_that_cannot_hold_files_is_named(ca_dir, ca_env, tmp_path):
    from conftest import PASSPHRASE

    env = dict(ca_env, HOME=str(tmp_path))
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", "/proc", "--passphrase-file", secret, env=env)
    assert_clean_error(proc, "Error: Cannot write the timer units to /proc: ")
    assert "certkit-tmp" not in proc.stderr


# --- 8. '-' where an option reads no standard input ------------------------------------------------------------
@pytest.mark.parametrize("args", [["probe", "https://127.0.0.1:1/", "--ca-file", "-"],
                                  ["serve", "--port", "0", "--cert", "-", "--key", "k.pem"],
                                  ["serve", "--port", "0", "--client-ca", "-"]])
def test_a_dash_where_no_standard_input_is_read_says_so(args, ca_dir, ca_env, tmp_path):
    proc = run_certkit(*args, env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "'-' names no file here (this option does not read standard input); for a file of "
                             "that name, give ./-")


# --- 3, 5. a ca.pem with a byte-order mark, and one of the wrong kind -------------------------------------------
def test_check_reads_a_ca_pem_with_a_byte_order_mark_as_every_command_does(ca_dir, ca_env):
    pem = (ca_dir / "ca.pem").read_bytes()
    (ca_dir / "ca.pem").write_bytes(b"\xef\xbb\xbf" + pem)
    proc = run_certkit("check", env=ca_env)
    assert proc.returncode == 0 and "damaged" not in proc.stdout, proc.stdout
    run_certkit("list", env=ca_env, check=True)


@pytest.mark.parametrize(("kind", "said"), [
    ("key", "it holds a private key, not a certificate (were a key and a certificate copied over each other?)"),
    ("der", "it is a DER (binary) certificate; certkit keeps it in PEM: openssl x509 -inform DER"),
    ("csr", "it holds a certificate signing request, not a certificate"),
])
def test_a_ca_pem_of_the_wrong_kind_says_what_it_holds(kind, said, ca_dir, ca_env, tmp_path):
    import subprocess

    pem = ca_dir / "ca.pem"
    if kind == "key":
        pem.write_bytes((ca_dir / "ca-key.pem").read_bytes())
    elif kind == "der":
        subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER", "-out", str(pem)], check=True)
    else:
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(tmp_path / "k.pem"), "-subj", "/CN=x", "-out", str(pem)], check=True,
                       capture_output=True)
    assert_clean_error(run_certkit("list", env=ca_env), said)


# --- 1. $HOME empty, relative or missing ---------------------------------------------------------------------------
@pytest.mark.parametrize(("home", "said"), [("", "$HOME is set but empty (an unset variable?)"),
                                            ("rel", "$HOME is 'rel', not an absolute path"),
                                            ("missing", "is not an existing folder; certkit does not create a home")])
def test_a_home_that_is_empty_relative_or_missing_is_refused_where_it_is_used(home, said, ca_dir, ca_env, tmp_path):
    from conftest import certkit_env

    value = str(tmp_path / "no" / "such") if home == "missing" else home
    work = tmp_path / "work"
    work.mkdir()
    for args in (["trust", "install", "--nss", "--unconstrained"], ["trust", "status", "--nss"]):
        assert_clean_error(run_certkit(*args, env=dict(ca_env, HOME=value), cwd=work), said)
    default = certkit_env(HOME=value)  # no CERTKIT_CA_DIR: the default CA is under $HOME
    assert_clean_error(run_certkit("init-ca", "--no-passphrase", env=default, cwd=work), said)
    assert list(work.iterdir()) == [] and not (tmp_path / "no").exists() and not (work / ".pki").exists()
    # A command that needs no home is not refused for it.
    run_certkit("list", env=dict(ca_env, HOME=value), cwd=work, check=True)
