"""Round thirty-one, peers: what a cluster's operator pastes for a peer's host, and what certkit then says.

1. A host written in a notation certkit names the host of (a URL, a host with its port, an etcd --initial-cluster
   member, a subject attribute, a subjectAltName entry with its type, a Redis cluster node) was refused naming that
   host as the one to give, even when certkit refuses that host too: etcd's ``--listen-peer-urls
   https://0.0.0.0:2380`` (the address a member listens on, the most common line of its configuration) gave "the host
   is '0.0.0.0'", and ``issue-peer 0.0.0.0`` then said it is the unspecified address, no client connects to; so did
   ``[::]:2380``, a multicast URL, and ``https://[::ffff:10.0.0.1]:2380`` (a dual-stack socket's peer address, refused
   next as IPv4-mapped, to give 10.0.0.1). The refusal now says, at once, why that host is refused too; a host
   certkit certifies is named as before.
2. A folder holding a bundle of another kind (issue-server etcd-1, then issue-peer etcd-1 into the same default folder)
   was refused as any full folder, 'pass --force to replace them', and --force threw the server's key away for a peer
   certificate; the refusal now names the kind held and says to give the new one a folder of its own.
3. A wildcard peer certificate, which docs/peers.md asks a cluster's CA never to issue, was issued without a word; it
   now gets a note saying what its key can do.
4. issue-batch dropped the notes the single commands print beneath a certificate (that wildcard, a peer's first name
   too long for its subject, an Ed25519 key); its summary and --json ('advice') now carry them.
5. Under a CA made with --permit-dns alone an address was refused "(permitted: cluster.internal)", as if judged by
   the domain; it now says "; no IP addresses", as an IP-only CA's refusal says "; no DNS names, emails or URIs".
"""

from __future__ import annotations

import json
import subprocess

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


# --- 2. a bundle of another kind in the folder a command writes to -------------------------------------------------
def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _openssl_purpose(folder, purpose: str) -> bool:
    from conftest import openssl

    ran = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(folder / "ca.pem"),
                  str(folder / "cert.pem"))
    return ran.returncode == 0


USAGES = {"server": "serverAuth", "client": "clientAuth", "peer": "serverAuth, clientAuth"}


@pytest.mark.parametrize("held, command", [("server", "issue-peer"), ("peer", "issue-server"),
                                           ("server", "issue-client"), ("client", "issue-peer")])
def test_a_folder_holding_a_bundle_of_another_kind_is_named_so_before_force(tmp_path, held, command):
    """issue-server etcd-1.cluster.internal, then issue-peer etcd-1.cluster.internal: 'already holds cert.pem, ...; pass
    --force to replace them', and --force threw the server's certificate and key away for a peer certificate, which
    whatever served from the folder then presented. Now the refusal says which kind the folder holds, and where the
    new one goes; --force still replaces it (asked for, knowingly)."""
    env = new_ca(tmp_path, "certkit round 31 kinds CA")
    name = "etcd-1.cluster.internal"
    run_certkit(f"issue-{held}", name, env=env, cwd=tmp_path, check=True)
    folder, kind = tmp_path / name, command.removeprefix("issue-")
    before = _files(folder)
    ran = run_certkit(command, name, env=env, cwd=tmp_path)
    assert_clean_error(ran, f"{name} already holds cert.pem, privkey.pem, fullchain.pem, ca.pem: a {held} "
                            f"certificate's bundle ({USAGES[held]}), which this {kind} certificate would replace, key "
                            f"and all, so that whatever reads the folder would get another purpose; give the {kind} "
                            "certificate a folder of its own with --out; pass --force to replace them.")
    assert _files(folder) == before
    ssl_purpose = {"server": "sslserver", "client": "sslclient"}
    if held != "peer":  # the certificate left in place still serves its purpose, and only that one (openssl)
        other = "sslclient" if held == "server" else "sslserver"
        assert _openssl_purpose(folder, ssl_purpose[held]) and not _openssl_purpose(folder, other)
    run_certkit(command, name, "--out", tmp_path / kind, env=env, cwd=tmp_path, check=True)  # beside it
    run_certkit(command, name, "--force", env=env, cwd=tmp_path, check=True)
    wanted = ["sslserver", "sslclient"] if kind == "peer" else [ssl_purpose[kind]]
    assert all(_openssl_purpose(folder, p) for p in wanted), _files(folder)
    # Of its own kind, the refusal is as it was.
    assert_clean_error(run_certkit(command, name, env=env, cwd=tmp_path),
                       f"{name} already holds cert.pem, privkey.pem, fullchain.pem, ca.pem; pass --force to replace "
                       "them.")


def test_sign_csr_a_manifest_line_and_the_library_name_it_too(tmp_path):
    env = new_ca(tmp_path, "certkit round 31 kinds CA")
    run_certkit("issue-server", "node-1.db.internal", "--out", tmp_path / "b" / "node-1", env=env, check=True)
    before = _files(tmp_path / "b" / "node-1")
    csr = tmp_path / "node-1.csr"
    csr.write_bytes(subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         str(tmp_path / "node-1.key"), "-subj", "/CN=node-1.db.internal"], capture_output=True, check=True,
        timeout=60).stdout)
    assert_clean_error(run_certkit("sign-csr", csr, "--peer", "--out", tmp_path / "b" / "node-1", env=env),
                       "a server certificate's bundle (serverAuth), which this peer certificate would replace")
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\npeer,node-1.db.internal,node-1\n")
    ran = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=env)
    assert_clean_error(ran, "which this peer certificate would replace, key and all, so that whatever reads the "
                            "folder would get another purpose; give the peer certificate a folder of its own (the "
                            "line's 'out')")
    assert "--out;" not in ran.stderr
    assert _files(tmp_path / "b" / "node-1") == before

    from certkit import CA
    from certkit.errors import OutputExists

    lib = CA.create("lib", directory=tmp_path / "lib")
    lib.issue_server(["node-2.db.internal"]).write(tmp_path / "node-2")
    with pytest.raises(OutputExists, match=r"a server certificate's bundle \(serverAuth\), which this peer certificate "
                                           r"would replace.*a folder of its own\.$"):
        lib.issue_peer(["node-2.db.internal"]).write(tmp_path / "node-2")
    lib.issue_peer(["node-2.db.internal"]).write(tmp_path / "node-2", force=True)


# --- 3. a wildcard in a peer certificate ------------------------------------------------------------------------------
WILDCARD_NOTE = ("*.cluster.internal is a wildcard: whoever holds this key can act as every member it covers "
                 "(anything.cluster.internal), as the server and as a client, and etcd's --peer-cert-allowed-hostname "
                 "lets it in for any of those names; give each member a peer certificate of its own names instead "
                 "(docs/peers.md)")


def test_a_wildcard_peer_certificate_is_noted_for_what_its_key_can_do(tmp_path):
    """docs/peers.md asks a cluster's CA never to issue a wildcard peer certificate (etcd's
    --peer-cert-allowed-hostname lets one in for any member name it covers: tests/test_audit20_peers.py), and
    issue-peer '*.cluster.internal' issued one without a word. Its key poses as any member, on both sides of a
    connection (Python's ssl, below); every way of issuing one now says so, and a server's wildcard is left alone."""
    from certkit.tlscheck import Endpoint, client_context, handshake, server_context

    env = new_ca(tmp_path, "certkit round 31 wildcard CA")
    ran = run_certkit("issue-peer", "*.cluster.internal", "127.0.0.1", "--out", tmp_path / "wild", env=env,
                      check=True)
    assert WILDCARD_NOTE in " ".join(ran.stdout.split()), ran.stdout
    ran = run_certkit("issue-peer", "*.cluster.internal", "--out", tmp_path / "wild2", "--json", env=env, check=True)
    assert WILDCARD_NOTE in json.loads(ran.stdout)["notes"], ran.stdout
    renewed = run_certkit("renew", tmp_path / "wild", env=env, check=True)
    assert WILDCARD_NOTE in " ".join(renewed.stdout.split()), renewed.stdout
    csr = tmp_path / "w.csr"
    csr.write_bytes(subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         str(tmp_path / "w.key"), "-subj", "/CN=*.cluster.internal"], capture_output=True, check=True,
        timeout=60).stdout)
    signed = run_certkit("sign-csr", csr, "--peer", "--out", tmp_path / "wild3", env=env, check=True)
    assert WILDCARD_NOTE in " ".join(signed.stdout.split()), signed.stdout
    from certkit import CA

    assert WILDCARD_NOTE in CA.create("lib", directory=tmp_path / "lib").issue_peer(["*.cluster.internal"]).notes
    for args in (("issue-server", "*.cluster.internal"), ("issue-peer", "etcd-1.cluster.internal", "127.0.0.1")):
        plain = run_certkit(*args, "--out", tmp_path / args[-1].replace("*", "w"), env=env, check=True)
        assert "is a wildcard" not in plain.stdout, plain.stdout
    # What the note says its key can do: serve as any member, and log in to one that asks for a client certificate.
    wild, member = (Endpoint(tmp_path / f / "fullchain.pem", tmp_path / f / "privkey.pem")
                    for f in ("wild", "127.0.0.1"))
    ca = tmp_path / "wild" / "ca.pem"
    for name in ("etcd-2.cluster.internal", "etcd-3.cluster.internal"):
        posed = handshake(server_context(wild, ca), client_context(ca, member), server_hostname=name)
        assert posed.accepted, (name, posed)
    logged_in = handshake(server_context(member, ca), client_context(ca, wild), server_hostname="127.0.0.1")
    assert logged_in.accepted and logged_in.peer_subject == "commonName=*.cluster.internal", logged_in


# --- 4. what a batch issues is noted as the single commands note it -------------------------------------------------
LONG_NAME = "etcd-peers.a-cluster-whose-shared-name-is-rather-long.example.internal"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_batch_prints_the_notes_the_single_commands_print(tmp_path, jobs):
    """A manifest's peer line for a wildcard, or whose shared first name is too long for a common name (the subject is
    empty, and etcd's --peer-cert-allowed-cn then refuses every member: test_audit20_peers), or with an Ed25519 key,
    was issued with none of the notes issue-peer prints for the same certificate. The batch's summary now prints
    each note once, with the number of certificates it concerns (--json: 'advice')."""
    env = new_ca(tmp_path, "certkit round 31 batch CA")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"kind,names,key_type\npeer,*.cluster.internal 127.0.0.1,\npeer,{LONG_NAME} 127.0.0.1,\n"
                        "peer,etcd-1.cluster.internal,ed25519\nserver,web.example.test,ed25519\n"
                        "server,*.example.test,\npeer,etcd-2.cluster.internal,\n")
    singles = [run_certkit("issue-peer", *names.split(), "--out", tmp_path / f"single{i}", *extra, env=env,
                           check=True).stdout
               for i, (names, extra) in enumerate([("*.cluster.internal 127.0.0.1", ()), (f"{LONG_NAME} 127.0.0.1", ()),
                                                   ("etcd-3.cluster.internal", ("--key-type", "ed25519"))])]
    said = [" ".join(out.split()).split(" note ", 1)[1] for out in singles]  # each single issuance's note
    ran = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", "--jobs", jobs, env=env, check=True)
    printed = " ".join(ran.stdout.split())
    assert said[0] in printed and said[1] in printed, ran.stdout
    # An Ed25519 peer's note is a peer's (round 32: what cluster software does), the server's another: one each.
    assert said[2] in printed and f"{said[2]} (2 certificates)" not in printed, ran.stdout
    assert "*.example.test is a wildcard" not in printed  # a server's wildcard: nothing to say
    data = json.loads(run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out2", "--json", env=env,
                                  check=True).stdout)
    assert sorted((a["note"], a["certificates"]) for a in data["advice"] if "browsers" not in a["note"]) == sorted(
        [(said[0], 1), (said[1], 1), (said[2], 1)]), data["advice"]
    plain = tmp_path / "plain.csv"
    plain.write_text("kind,names\npeer,etcd-4.cluster.internal 127.0.0.1\nserver,www.example.test\n")
    quiet = run_certkit("issue-batch", plain, "--out-dir", tmp_path / "out3", "--json", env=env, check=True)
    assert json.loads(quiet.stdout)["advice"] == []


# --- 5. a CA made with --permit-dns alone: the refusal of an address says that it permits none ---------------------
def _leaf_signed_outside_certkit(ca_dir, ip: str, out) -> None:
    """A peer certificate naming ``ip``, signed with the CA's key by cryptography, not certkit (which refuses it)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca_cert.subject).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_an_address_under_a_ca_that_permits_dns_names_only_is_refused_saying_it_permits_no_address(tmp_path):
    """init-ca --permit-dns cluster.internal (no --permit-ip) excludes every IP address (0.0.0.0/0 and ::/0, as its
    help says), and issue-peer etcd-1.cluster.internal 127.0.0.1 (the address every etcd member of docs/peers.md
    names) said "'127.0.0.1' is outside the name constraints of CA ... (permitted: cluster.internal)", as if an
    address were judged by the DNS domain; an IP-only CA's refusal already said "; no DNS names, emails or URIs".
    It now says "; no IP addresses", for every command, and OpenSSL agrees: it refuses such a leaf signed outside
    certkit for an excluded subtree."""
    from conftest import certkit_env, openssl

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--name", "DNS only CA", "--no-passphrase", "--permit-dns", "cluster.internal", env=env,
                check=True)
    said = ("'127.0.0.1' is outside the name constraints of CA 'DNS only CA' (permitted: cluster.internal; no IP "
            "addresses).")
    for command in (["issue-peer", "etcd-1.cluster.internal", "127.0.0.1"], ["issue-server", "127.0.0.1"],
                    ["issue-peer", "etcd-1.cluster.internal", "::1"]):
        ran = run_certkit(*command, "--out", tmp_path / "out", env=env)
        assert_clean_error(ran, said.replace("127.0.0.1", command[-1]))
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\npeer,etcd-2.cluster.internal 127.0.0.1\n")
    assert_clean_error(run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=env), said)
    assert not (tmp_path / "out").exists() and not (tmp_path / "b").exists()
    # A DNS name outside, and a CA that permits a range: said as before, with no such words.
    assert_clean_error(run_certkit("issue-peer", "etcd-1.other.internal", env=env),
                       "(permitted: cluster.internal; no IP addresses).")
    ranged = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca2"))
    run_certkit("init-ca", "--name", "Ranged CA", "--no-passphrase", "--permit-dns", "cluster.internal",
                "--permit-ip", "10.0.0.0/8", env=ranged, check=True)
    assert_clean_error(run_certkit("issue-peer", "127.0.0.1", "--out", tmp_path / "o2", env=ranged),
                       "(permitted: cluster.internal, 10.0.0.0/8).")
    # OpenSSL reads the CA so: a leaf naming the address, signed with the CA's key outside certkit, is refused.
    _leaf_signed_outside_certkit(tmp_path / "ca", "127.0.0.1", tmp_path / "forged.pem")
    checked = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tmp_path / "ca" / "ca.pem"),
                      str(tmp_path / "forged.pem"))
    assert checked.returncode != 0 and b"excluded subtree violation" in checked.stdout + checked.stderr, checked
