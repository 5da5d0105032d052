"""The seventeenth round's team findings (audit team, round seventeen): a PostgreSQL inventory shared by
hosts, and a CA key in a PKCS#11 token (SoftHSM2).

1. Two hosts sharing one PostgreSQL inventory, each with its own bundle folders: every night each host's
   ``certkit renew --expiring`` warned, for every bundle of the other host, "was not renewed: no bundle folder
   is known to hold it (it was never written to one, or was moved); if the bundle was moved, renew the folder
   it is in now ... else renew it by name with --out DIR" (``needs_attention`` in ``--json``): advice that,
   followed on the wrong host, makes a second bundle there. A valid row now keeps its writer (host, boot, pid),
   so a bundle written on another host is skipped quietly (``why``: ``other_host``), and ``certkit renew NAME``
   on the wrong host names the host that renews it in place. Rows of older certkit versions (no writer) and
   a bundle moved on its own host are warned of as before.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error, openssl


# --- 1. two hosts sharing one PostgreSQL inventory ----------------------------------------------------------
def _as_host(name: str, hidden: Path, args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``certkit ARGS`` as the host ``name`` (its own host name, in a UTS namespace), which cannot see
    ``hidden`` (a tmpfs mounted over it in a mount namespace of its own): another machine's disk."""
    script = 'mount -t tmpfs none "$0" && hostname "$1" && shift 2 && exec "$@"'
    return subprocess.run(["unshare", "-Urum", "sh", "-c", script, str(hidden), name, "-",
                           sys.executable, "-m", "certkit", *args], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def two_hosts(tmp_path: Path, pg_ca: dict) -> tuple[dict, Path, Path]:
    """The environment of a file-key CA on PostgreSQL, and the two hosts' folders (each with a copy of the
    CA directory, ``ca``, and its bundles), which each other host cannot see."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-Urum", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("unshare cannot make user, UTS and mount namespaces here")
    a, b = tmp_path / "a", tmp_path / "b"
    for host in (a, b):
        host.mkdir()
        shutil.copytree(pg_ca["CERTKIT_CA_DIR"], host / "ca")
    env = {k: v for k, v in pg_ca.items() if k != "CERTKIT_CA_DIR"}
    return env, a, b


def _certkit(host: Path, other: Path, env: dict, command: str, *args: str) -> subprocess.CompletedProcess:
    return _as_host(f"{host.name}-host", other, [command, "--ca-dir", str(host / "ca"),
                                                  "--passphrase-file", str(host.parent / "pass"), *args], env)


def test_a_shared_inventorys_bulk_renewal_leaves_the_other_hosts_bundles_to_it(two_hosts) -> None:
    env, a, b = two_hosts
    for host, other, name in ((a, b, "web.example.com"), (b, a, "api.example.com")):
        issued = _certkit(host, other, env, "issue-server", name, "--days", "20", "--out", str(host / "bundle"))
        assert issued.returncode == 0, issued.stderr
    for host, other, mine, theirs in ((a, b, "web.example.com", "api.example.com"),
                                      (b, a, "api.example.com", "web.example.com")):
        ran = _certkit(host, other, env, "renew", "--expiring", "30d", "--json")
        assert ran.returncode == 0, ran.stderr
        report = json.loads(ran.stdout)
        outcomes = {c["domains"][0]: c for c in report["certificates"]}
        assert outcomes[mine]["outcome"] == "renewed", report
        skipped = outcomes[theirs]
        assert (skipped["outcome"], skipped["why"], skipped["needs_attention"]) == ("skipped", "other_host", False)
        assert f"written on the host {other.name}-host, not on this one ({host.name}-host)" in skipped["reason"]
        assert report["needs_attention"] == 0 and report["ok"], report
        assert "Warning" not in ran.stderr and "moved" not in ran.stderr, ran.stderr  # was: "...or was moved"
        # the renewed bundle is a good one, where its host's server reads it
        assert openssl("verify", "-purpose", "sslserver", "-CAfile", str(host / "ca" / "ca.pem"),
                       str(host / "bundle" / "cert.pem")).returncode == 0
    # Without --json, the summary says where the other host's bundle went, and no warning follows.
    ran = _certkit(a, b, env, "renew", "--expiring", "30d")
    assert ran.returncode == 0 and "Warning" not in ran.stderr, ran.stderr
    assert "skipped  1 in bundle folders of other hosts, renewed there" in ran.stdout, ran.stdout
    # The renewal of one by name on the wrong host names the host that renews it in place.
    wrong = _certkit(b, a, env, "renew", "web.example.com")
    assert_clean_error(wrong, f"its bundle folder {a / 'bundle'} was written on the host a-host, not on this one "
                              "(b-host); to renew it, run this on a-host, where it is renewed in place; or choose "
                              "where the renewed bundle goes with --out FOLDER")


def test_a_bundle_moved_on_its_own_host_or_written_by_an_older_certkit_is_still_warned_of(two_hosts) -> None:
    import psycopg

    env, a, b = two_hosts
    for host, other, name in ((a, b, "web.example.com"), (b, a, "api.example.com")):
        assert _certkit(host, other, env, "issue-server", name, "--days", "20",
                        "--out", str(host / "bundle")).returncode == 0
    (a / "bundle").rename(a / "moved")  # moved by hand on its own host: a bulk renewal there must say so
    url = json.loads((a / "ca" / "certkit-ca.json").read_text())["inventory"]
    with psycopg.connect(url, autocommit=True) as db:  # api's row as certkit before this round left it
        db.execute("UPDATE certificates SET writer = NULL WHERE subject = 'CN=api.example.com'")
    ran = _certkit(a, b, env, "renew", "--expiring", "30d", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert {c["domains"][0]: (c["why"], c["needs_attention"]) for c in report["certificates"]} == {
        "web.example.com": ("moved", True), "api.example.com": ("moved", True)}, report
    assert ran.stderr.count("Warning") == 2 and "renew the folder it is in now" in ran.stderr, ran.stderr
