"""Round twenty-one, peers: hosts that clients read otherwise than certkit.

1. An IP address written in another script's digits (Arabic-Indic ١٢٧.0.0.1, Devanagari १२७.0.0.1, also ::١), which
   UTS 46 does not map to ASCII, was refused as "'١٢٧' is not a number"; curl and browsers do not read it as an
   address (curl looks up xn--9hbcp.0.0.1). It is refused naming the address in ASCII digits. A name whose last label
   holds such digits (example.१२३: example.xn--e4bcd to curl and browsers) was refused as "not a valid IPv4 address:
   it has 2 parts", since certkit took any Unicode digit for a digit: it is certified as the name clients read.
2. A name typed with the capital sharp s (FAẞ.DE) was certified as xn--fa-hia.de (faß.de: the idna package follows
   Unicode 15.1's UTS 46, which maps ẞ to ß), with a note that curl and browsers convert it so; curl, Node's URL
   (ICU), Python's ssl and Java map ẞ to 'ss' and connect to fass.de, so none matched it. It is refused, giving both
   lower-case spellings.
3. A renewal kept an IPv6 address that is an IPv4 address in the deprecated IPv4-compatible form (::1.2.3.4 is
   ::102:304), which certkit refuses to issue when written so, without a note, unlike an IPv4-mapped one.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from conftest import assert_clean_error, free_port, new_ca, require, run_certkit, wait_listening, wait_or_kill


def _node_hostname(host: str) -> str:
    """The host Node's WHATWG URL parser (as browsers) reads in https://HOST/, or 'invalid'."""
    script = ("let h; try { h = new URL('https://' + process.argv[1] + '/').hostname } catch (e) { h = 'invalid' }"
              " console.log(h)")
    return subprocess.run([require("node"), "-e", script, host], capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


def _san(cert) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.split()[-1]


def _openssl_verify(ca, cert, *check: str) -> bool:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), *check, str(cert)], capture_output=True,
                          text=True, timeout=60).returncode == 0


# --- 1. another script's digits ---------------------------------------------------------------------------------------
OTHER_DIGITS = {  # typed, the ASCII form, the address to give, the script
    "١٢٧.0.0.1": ("127.0.0.1", "127.0.0.1", "Arabic-Indic"),
    "127.0.0.١": ("127.0.0.1", "127.0.0.1", "Arabic-Indic"),
    "१२७.0.0.1": ("127.0.0.1", "127.0.0.1", "Devanagari"),
    "۱۰.1.1.1": ("10.1.1.1", "10.1.1.1", "Extended Arabic-Indic"),
    "::١": ("::1", "::1", "Arabic-Indic"),
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names21")
    return folder, new_ca(folder, "certkit round 21 names CA")


@pytest.mark.parametrize("typed", OTHER_DIGITS)
def test_an_address_in_another_scripts_digits_is_refused_naming_it_in_ascii_digits(tmp_path, ca, typed):
    written, address, script = OTHER_DIGITS[typed]
    assert _node_hostname(typed) not in (written, f"[{written}]")  # browsers never read the address in it
    assert_clean_error(run_certkit("issue-peer", typed, "--out", tmp_path / "p", env=ca[1]),
                       f"'{typed}' is not a valid IP address: it is {written} written in {script} digits, which curl "
                       "and browsers do not read as an address (they look the host up as a name, or refuse it); give "
                       f"the address in ASCII digits ('{address}').")


def test_a_name_whose_last_label_is_another_scripts_digits_is_certified_as_clients_read_it(tmp_path, ca):
    folder, env = ca
    typed, a_label = "svc.१२३", "svc.xn--e4bcd"
    assert _node_hostname(typed) == a_label  # a name to browsers (and curl: libidn2), not an address
    run_certkit("issue-peer", typed, "--out", tmp_path / "p", env=env, check=True)
    assert _san(tmp_path / "p" / "cert.pem") == f"DNS:{a_label}"
    assert _openssl_verify(folder / "ca" / "ca.pem", tmp_path / "p" / "cert.pem", "-verify_hostname", a_label)


def test_a_range_or_a_client_dns_name_in_another_scripts_digits_is_refused_naming_it_in_ascii_digits(tmp_path, ca):
    refused = run_certkit("init-ca", "--ca-dir", tmp_path / "c", "--no-passphrase", "--permit-ip", "١٠.0.0.0/8",
                          env=ca[1])
    assert_clean_error(refused, "'١٠.0.0.0/8' is 10.0.0.0/8 written in Arabic-Indic digits; an IP range is written in "
                                "ASCII digits: give '10.0.0.0/8'.")
    assert_clean_error(run_certkit("issue-client", "bob", "--dns", "١٢٧.0.0.1", "--out", tmp_path / "b", env=ca[1]),
                       "'١٢٧.0.0.1' is not a valid IP address: it is 127.0.0.1 written in Arabic-Indic digits")


# --- 2. the capital sharp s -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("typed", "ss", "sharp"), [("FAẞ.DE", "fass.de", "faß.de"),
                                                    ("*.STRAẞE.example", "*.strasse.example", "*.straße.example")])
def test_a_name_with_the_capital_sharp_s_is_refused_as_clients_connect_to_another_host(tmp_path, ca, typed, ss,
                                                                                       sharp):
    dialed = typed.removeprefix("*.")
    assert _node_hostname(dialed) == ss.removeprefix("*.")  # Node's URL (ICU), as Chrome
    assert dialed.encode("idna").decode().lower() == ss.removeprefix("*.")  # Python's ssl (and Java): IDNA2003
    curl = subprocess.run([require("curl"), "-sS", "-v", "-o", "/dev/null", "--max-time", "20", "--resolve",
                           f"{ss.removeprefix('*.')}:1:127.0.0.1", f"https://{dialed}:1/"], capture_output=True,
                          text=True, timeout=60)  # libidn2: it takes the entry for the 'ss' spelling, no look-up
    assert f"Hostname {ss.removeprefix('*.')} was found in DNS cache" in curl.stderr, curl.stderr
    assert_clean_error(run_certkit("issue-peer", typed, "--out", tmp_path / "p", env=ca[1]),
                       f"'{typed}' holds the capital sharp s (ẞ), which clients convert two ways: curl, Node (ICU, "
                       f"as Chrome), Python's ssl and Java read it as 'ss' and connect to {ss}, while newer IDNA "
                       f"tables (Unicode 15.1, as certkit's) read it as ß ({sharp}); give the name as clients are "
                       f"given it, '{ss}' or '{sharp}'.")
    assert not (tmp_path / "p").exists()


# --- 3. IPv6 addresses in ::/96 ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _older():
    """certkit before round twenty-one, which took an address of ::/96 written in hexadecimal (::102:304, ::1:2380)."""
    import certkit.names
    import certkit.names_notation as notation

    with pytest.MonkeyPatch.context() as older:
        older.setattr(notation, "refuse_ipv4_compatible", lambda text, address: None)
        certkit.names._parse_host.cache_clear()
        try:
            yield
        finally:
            certkit.names._parse_host.cache_clear()  # its reading, in this process, was the older certkit's


def _redis_node(folder, port: int, bus: int) -> subprocess.Popen:
    folder.mkdir()
    # its cluster bus on a free port of its own (``bus``): the default, port + 10000, may be taken or past 65535
    return subprocess.Popen([require("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "::1", "--save", "",
                             "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-port", str(bus)],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cluster_address_of(port: int, other: int, bus: int) -> str:
    """The address and port of the node on ``other`` (its cluster bus on ``bus``) as CLUSTER NODES of the node on
    ``port`` writes it, once the node has met it."""
    for _ in range(600):
        listed = subprocess.run([require("redis-cli"), "-p", str(port), "cluster", "nodes"], capture_output=True,
                                text=True, timeout=60).stdout
        found = [line.split()[1].partition("@")[0] for line in listed.splitlines() if f":{other}@" in line]
        if found and found[0] != f":{other}":
            return found[0]
        subprocess.run([require("redis-cli"), "-p", str(port), "cluster", "meet", "::1", str(other), str(bus)],
                       capture_output=True, timeout=60)
        time.sleep(0.1)  # the meeting is said in the next answer (a poll, not a wait for time)
    raise AssertionError(f"the node on {port} never listed the node on {other}: {listed}")


def test_an_address_and_port_as_redis_cluster_nodes_writes_them_is_refused_naming_the_address(tmp_path, ca):
    folder, env = ca
    ports, buses = (free_port(), free_port()), (free_port(), free_port())
    nodes = [_redis_node(tmp_path / str(port), port, bus) for port, bus in zip(ports, buses, strict=True)]
    try:
        for node, port in zip(nodes, ports, strict=True):
            wait_listening(port, node, "redis-server")
        written = _cluster_address_of(*ports, buses[1])
    finally:
        for node in nodes:
            node.terminate()
            wait_or_kill(node)
    assert written == f"::1:{ports[1]}", written
    # a free port has 5 digits, more than an IPv6 group holds: no address, and certkit said only that
    assert_clean_error(run_certkit("issue-peer", written, "--out", tmp_path / "p", env=env),
                       f"'{written}' is not a valid IPv6 address: it is ::1 with the port {ports[1]}, written without "
                       f"the brackets of [::1]:{ports[1]} (as Redis's CLUSTER NODES writes an address and its port); "
                       "give '::1' (a certificate is valid on every port).")
    # a port of 4 digits or fewer makes an address of ::/96, which certkit certified
    assert_clean_error(run_certkit("issue-peer", "::1:6379", "--out", tmp_path / "p", env=env),
                       "'::1:6379' is the IPv6 address ::1:6379, in the deprecated IPv4-compatible range ::/96 "
                       "(RFC 4291), which no host has: if it is ::1 with the port 6379, written without the brackets "
                       "of [::1]:6379 (as Redis's CLUSTER NODES writes an address and its port), give '::1' (a "
                       "certificate is valid on every port).")
    with _older():  # as certkit issued it before: OpenSSL (so Redis) never matches it for a client connecting to ::1
        run_certkit("issue-peer", "::1:6379", "--out", tmp_path / "old", env=env, check=True)
    assert not _openssl_verify(folder / "ca" / "ca.pem", tmp_path / "old" / "cert.pem", "-verify_ip", "::1")
    run_certkit("issue-peer", "::1", "--out", tmp_path / "new", env=env, check=True)
    assert _openssl_verify(folder / "ca" / "ca.pem", tmp_path / "new" / "cert.pem", "-verify_ip", "::1")


@pytest.mark.parametrize(("given", "note"), [
    ("::102:304", "it names the IPv6 address ::102:304, which is also how the IPv4 address 1.2.3.4 is written in the "
                  "deprecated IPv4-compatible form (::1.2.3.4): no host has it, and clients connecting to 1.2.3.4 "
                  "never match it; if 1.2.3.4 is meant, issue a new certificate naming 1.2.3.4"),
    ("::1:2380", "it names the IPv6 address ::1:2380, in the deprecated IPv4-compatible range ::/96, which no host "
                 "has; to change it, issue a new certificate naming the host's own address (::1 with the port 2380, "
                 "written without brackets, is written so: then ::1)")])
def test_a_renewal_of_an_address_of_the_ipv4_compatible_range_says_which_address_to_certify(tmp_path, ca, given,
                                                                                             note):
    folder, env = ca
    assert_clean_error(run_certkit("issue-peer", given, "--out", tmp_path / "new", env=env),
                       "in the deprecated IPv4-compatible range ::/96 (RFC 4291), which no host has")
    with _older():
        run_certkit("issue-peer", given, "--out", tmp_path / "p", env=env, check=True)
    renewed = run_certkit("renew", tmp_path / "p", env=env, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    assert f"note {note}" in " ".join(renewed.stdout.split()), renewed.stdout
    cert = tmp_path / "p" / "cert.pem"
    assert _san(cert).endswith(given.replace("::", ":0:0:0:0:0:0:" if given.count(":") == 3 else ":0:0:0:0:0:")), \
        _san(cert)  # kept as certified
    if given == "::102:304":  # the note's claim, as OpenSSL checks it
        assert not _openssl_verify(folder / "ca" / "ca.pem", cert, "-verify_ip", "1.2.3.4")
