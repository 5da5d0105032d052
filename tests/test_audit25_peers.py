"""Round twenty-five, peers.

1. ``certkit renew NAME`` given a peer's host as etcd's and Redis's settings write it (a peer URL from
   --initial-advertise-peer-urls, ``host:port``, an IPv6 address in a URL's brackets, ``[::1]:2380``) said only
   "No certificate of this CA matches '...'; 'certkit list' shows them", though the host in it names one: what
   issue-peer, issue-server and verify --name say of the same text (the host to give) was not said. Where the
   host it holds names a certificate, renew now says so in the same words, and renews nothing.
"""

from __future__ import annotations

import json

import pytest

from conftest import assert_clean_error, new_ca, run_certkit


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers25")
    env = new_ca(folder, "certkit round 25 peers CA")
    run_certkit("issue-peer", "etcd-1.cluster.internal", "2001:db8::11", "127.0.0.1", "--out", folder / "etcd-1",
                env=env, check=True)
    return folder, env


# --- 1. renew given a peer's host in a URL's, a port's or brackets' notation ----------------------------------------
@pytest.mark.parametrize(("given", "said"), [
    ("https://etcd-1.cluster.internal:2380", "is a URL; a certificate names the host alone (the host is "
                                             "'etcd-1.cluster.internal')"),
    ("etcd-1.cluster.internal:2380", "has a port (:2380); a certificate names the host alone "
                                     "('etcd-1.cluster.internal')"),
    ("ETCD-1.Cluster.Internal:2380", "has a port (:2380); a certificate names the host alone"),
    ("[2001:db8::11]", "is the IPv6 address 2001:db8::11 in the brackets of a URL: a certificate names the address "
                       "alone ('2001:db8::11')"),
    ("[2001:db8::11]:2380", "has a port (:2380); a certificate names the host alone ('2001:db8::11')"),
    ("https://[2001:DB8:0::11]:2380/", "is a URL; a certificate names the host alone"),
    ("127.0.0.1:2380", "has a port (:2380); a certificate names the host alone ('127.0.0.1')"),
])
def test_renew_says_which_host_a_peer_url_or_host_port_holds(peers, given, said):
    folder, env = peers
    before = (folder / "etcd-1" / "cert.pem").read_bytes()
    ran = run_certkit("renew", given, env=env)
    assert_clean_error(ran, f"No certificate of this CA matches '{given}' (looked for a bundle folder, a serial or "
                            f"a name). '{given}' {said}")
    assert "certkit list" not in ran.stderr, ran.stderr
    assert_clean_error(run_certkit("renew", given, "--json", env=env), said)
    assert (folder / "etcd-1" / "cert.pem").read_bytes() == before
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert listed["count"] == 1, listed


@pytest.mark.parametrize("given", ["other.cluster.internal:2380", "https://[2001:db8::99]:2380", "alice",
                                   "alice@etcd-1.cluster.internal"])
def test_renew_of_a_host_no_certificate_names_says_what_it_said(peers, given):
    _folder, env = peers
    ran = run_certkit("renew", given, env=env)
    assert_clean_error(ran, f"No certificate of this CA matches '{given}' (looked for a bundle folder, a serial or "
                            "a name); 'certkit list' shows them.")


def test_renew_given_a_redis_url_with_its_password_names_the_host_and_never_the_password(peers):
    _folder, env = peers
    ran = run_certkit("renew", "rediss://default:s3cret-pw@127.0.0.1:6380/0", env=env)
    assert_clean_error(ran, "'rediss://...@127.0.0.1:6380/0' is a URL; a certificate names the host alone (the host "
                            "is '127.0.0.1')")
    assert "s3cret" not in ran.stdout + ran.stderr, ran.stderr
