"""Audit round fourteen, fleetserve14: fleets and the serve page, each finding as a class.

1. ``--name`` globs typed in Unicode inside a label (``'bü*'``, ``'*ücher.example'``, ``'[bc]ücher.example'``)
   matched nothing, because names are stored as A-labels (``xn--bcher-kva.example``) and only labels without
   glob characters were converted: ``list --name`` said "No certificates match" and a cron's
   ``renew --expiring 30d --name 'bü*'`` renewed nothing, exit 0, while the certificate expired.
2. ``certkit serve`` chose its answer by substring, not by the Accept header's q-values: ``application/json;q=0,
   text/html`` (JSON refused) got JSON, ``text/plain, application/json;q=0.5`` got JSON, and
   ``application/json-seq`` got ``application/json``.
3. renew.md said hooks written for certbot run unchanged; certbot's folder always has ``chain.pem``, certkit's
   only under an intermediate CA, so a certbot hook that copies ``chain.pem`` fails under a root.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    run_certkit("init-ca", "--name", "Fleet14 CA", env=env, check=True)
    return env


# --- 1: a Unicode glob matches the names issued in Unicode ----------------------------------------------------------
@pytest.mark.parametrize(("glob", "kinds"), [("bü*", ["server"]), ("BÜ*", ["server"]),
                                             ("*ücher.example", ["client", "server"]),
                                             ("[bc]ücher.example", ["server"]), ("*@bü*", ["client"])])
def test_unicode_glob_finds_names_issued_in_unicode(tmp_path: Path, fleet: dict, glob: str, kinds: list):
    run_certkit("issue-server", "bücher.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    run_certkit("issue-client", "kim", "--email", "kim@bücher.example", "--days", "10", env=fleet, cwd=tmp_path,
                check=True)
    run_certkit("issue-server", "other.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    listed = json.loads(run_certkit("list", "--name", glob, "--json", env=fleet, check=True).stdout)
    assert sorted(c["kind"] for c in listed["certificates"]) == kinds, listed
    assert listed["total"] == len(kinds)
    ran = run_certkit("renew", "--expiring", "30d", "--name", glob, "--days", "60", "--json", env=fleet, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["renewed"] == len(kinds), report
    wanted = {"server": "DNS:xn--bcher-kva.example", "client": "email:kim@xn--bcher-kva.example"}
    assert {c["names"][0] for c in report["certificates"]} == {wanted[k] for k in kinds}


def test_unicode_glob_still_matches_only_what_it_says(tmp_path: Path, fleet: dict):
    run_certkit("issue-server", "bücher.example", "--days", "10", env=fleet, cwd=tmp_path, check=True)
    for glob in ("zü*", "bü", "ü*"):
        assert run_certkit("list", "--name", glob, env=fleet).stdout.strip() == "No certificates match.", glob
    assert "1 certificate" in run_certkit("list", "--name", "xn--bcher*", env=fleet, check=True).stdout
