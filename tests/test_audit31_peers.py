"""Round thirty-one, peers: what a cluster's operator pastes for a peer's host, and what certkit then says.

1. A host written in a notation certkit names the host of (a URL, a host with its port, an etcd --initial-cluster
   member, a subject attribute, a subjectAltName entry with its type, a Redis cluster node) was refused naming that
   host as the one to give, even when certkit refuses that host too: etcd's ``--listen-peer-urls
   https://0.0.0.0:2380`` (the address a member listens on, the most common line of its configuration) gave "the host
   is '0.0.0.0'", and ``issue-peer 0.0.0.0`` then said it is the unspecified address, no client connects to; so did
   ``[::]:2380``, a multicast URL, and ``https://[::ffff:10.0.0.1]:2380`` (a dual-stack socket's peer address, refused
   next as IPv4-mapped, to give 10.0.0.1). The refusal now says, at once, why that host is refused too; a host
   certkit certifies is named as before.
"""

from __future__ import annotations

import pytest

from conftest import assert_clean_error, new_ca, run_certkit

UNSPECIFIED = "'0.0.0.0' is the unspecified address"
MAPPED = "'::ffff:10.0.0.1' is the IPv4 address 10.0.0.1 written as IPv6"
TOO = "Given alone, that host is refused too: "


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers31")
    return folder, new_ca(folder, "certkit round 31 peers CA")


# (what an operator pastes, what certkit says of its notation, what it says of the host within)
REFUSED_WITHIN = [
    ("https://0.0.0.0:2380", "is a URL", UNSPECIFIED),
    ("0.0.0.0:2380", "has a port (:2380)", UNSPECIFIED),
    ("[::]:2380", "has a port (:2380)", "'::' is the unspecified address"),
    ("etcd-1=https://0.0.0.0:2380", "is a NAME=VALUE pair", UNSPECIFIED),
    ("CN=0.0.0.0", "is a NAME=VALUE pair", UNSPECIFIED),
    ("IP:0.0.0.0", "is a subjectAltName entry", UNSPECIFIED),
    ("0.0.0.0:6379@16379,redis-0.redis.internal", "is a Redis cluster node", UNSPECIFIED),
    ("https://224.0.0.1:2380", "is a URL", "'224.0.0.1' is a multicast address"),
    ("https://[::ffff:10.0.0.1]:2380", "is a URL", MAPPED),
    ("[::ffff:10.0.0.1]:2379", "has a port (:2379)", MAPPED),
]


@pytest.mark.parametrize("given, notation, within", REFUSED_WITHIN, ids=[case[0] for case in REFUSED_WITHIN])
@pytest.mark.parametrize("command", ["issue-peer", "issue-server"])
def test_a_notation_whose_host_is_refused_too_says_so_at_once(ca, tmp_path, command, given, notation, within):
    folder, env = ca
    ran = run_certkit(command, given, "--out", tmp_path / "out", env=env)
    assert_clean_error(ran, notation)
    assert (TOO + within).lower() in ran.stderr.lower(), ran.stderr
    assert not (tmp_path / "out").exists()
    # The host it names: refused alone for the reason now said with the notation.
    host = ran.stderr.split(TOO, 1)[1].split("'")[1]
    alone = run_certkit(command, host, "--out", tmp_path / "alone", env=env)
    assert alone.returncode == 1 and ran.stderr.split(TOO, 1)[1].strip() in alone.stderr, (ran.stderr, alone.stderr)


def test_a_manifest_line_and_the_library_say_it_too(ca, tmp_path):
    folder, env = ca
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\npeer,https://0.0.0.0:2380\nserver,etcd-1.cluster.internal 0.0.0.0:2379\n")
    ran = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "batch", env=env)
    assert_clean_error(ran, "2 bad lines")
    assert ran.stderr.count(TOO + UNSPECIFIED) == 2, ran.stderr
    assert not (tmp_path / "batch").exists()

    from certkit import CA
    from certkit.errors import InvalidName

    lib = CA.create("lib", directory=tmp_path / "lib")
    with pytest.raises(InvalidName, match=r"is a URL.*" + TOO + UNSPECIFIED):
        lib.issue_peer(["https://0.0.0.0:2380"])


@pytest.mark.parametrize("given, host", [
    ("https://10.0.0.11:2380", "10.0.0.11"),
    ("etcd-1=https://etcd-1.cluster.internal:2380", "etcd-1.cluster.internal"),
    ("[::1]:2380", "::1"),
    ("https://127.1:2380", "127.0.0.1"),
    ("IP:10.0.0.11", "10.0.0.11"),
])
def test_a_notation_whose_host_is_certified_names_it_as_before(ca, tmp_path, given, host):
    folder, env = ca
    ran = run_certkit("issue-peer", given, "--out", tmp_path / "out", env=env)
    assert_clean_error(ran, f"'{host}'")
    assert "refused too" not in ran.stderr, ran.stderr
    issued = run_certkit("issue-peer", host, "--out", tmp_path / "out", env=env)
    assert issued.returncode == 0, issued.stderr
