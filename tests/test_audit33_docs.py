"""Round 33, docs: the prose today's changes wrote, checked by running certkit as each page says.

1. docs/renew.md: 'Every `--json` report of `renew` (one certificate, a bulk renewal, `--install-timer`,
   `--remove-timer`) has `"ok"` ... and `"notes"` (what the run as a whole warns of ...)'. --install-timer warned
   on standard error (a certificate the timer would renew each day, bundle.p12 files its renewals remove,
   certificates delivered into output files that no run renews) and its --json had `"notes": []`; so did a single
   renewal of a peer (its peer warning) and a bulk or timer run whose --name matched nothing.
2. README.md's command table did not name verify --purpose peer.
3. docs/verify.md: a reason both sides share is said once; a verifier error both shared was said twice.
4. docs/acme.md: a refused deactivation changes nothing; it made the authorization's ready order invalid.
5. docs/issue-batch.md: a bundle replaced by a line of another kind is recorded as replaced, not renewed.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_acme_inputs import ready_order
from test_fleet_timer import due  # noqa: F401 (a CA with one bundle due in 5 days, its passphrase in a file)

from acme_client import AcmeError, Client
from acme_helpers import serving
from conftest import REPO, new_ca, run_certkit

RENEW_MD = (REPO / "docs" / "renew.md").read_text(encoding="utf-8")


def _issue(tmp_path, secret, env, *args: str) -> None:
    run_certkit(*args, "--passphrase-file", secret, cwd=tmp_path, env=env, check=True)


def test_install_timer_json_notes_hold_what_the_install_warns_of(due):  # noqa: F811
    tmp_path, secret, env = due
    assert 'has\n`"ok"`' in RENEW_MD and '`"notes"` (what the run as a whole warns of' in RENEW_MD
    pw = tmp_path / "p12pw"
    pw.write_text("p12 secret\n")
    pw.chmod(0o600)
    _issue(tmp_path, secret, env, "issue-server", "short.example.com", "--days", "20")  # due again every day
    _issue(tmp_path, secret, env, "issue-server", "p12.example.com", "--p12", "--p12-password-file", str(pw))
    _issue(tmp_path, secret, env, "issue-server", "line.example.com", "--format", "jsonl", "--out",
           str(tmp_path / "out.jsonl"))
    args = ["renew", "--install-timer", "--passphrase-file", secret, "--json"]
    for extra in (["--unit-dir", tmp_path / "units"], ["--cron"]):  # units written; a crontab line printed instead
        proc = run_certkit(*args, *extra, env=env, subprocess=True)
        assert proc.returncode == 0, proc
        data = json.loads(proc.stdout)
        warned = [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        assert len(warned) == 3, proc.stderr
        assert data["ok"] is True and data["notes"] == warned, (data["notes"], proc.stderr)
        notes = " ".join(data["notes"])
        assert "short.example.com" not in notes  # the serial names it; the three kinds of warning are there:
        for said in ("no more than a day longer than the renewal window", "remove the bundle.p12",
                     "delivered with --format jsonl, k8s or tar"):
            assert said in notes, notes


def test_a_single_peer_renewal_json_notes_hold_its_peer_warning(due):  # noqa: F811
    """A bulk renewal's --json "notes" hold the peer warning it says on standard error; `renew FOLDER --json` of a
    peer certificate said the same warning and had "notes": []. Its notes now begin with it; a server's stay []."""
    tmp_path, secret, env = due
    _issue(tmp_path, secret, env, "issue-peer", "node1.example", "--days", "40")
    for target, extra in (("node1.example", []), ("node1.example", ["--out", str(tmp_path / "moved")]),
                          ("web", [])):
        proc = run_certkit("renew", tmp_path / target, *extra, "--passphrase-file", secret, "--json", env=env,
                           subprocess=True)
        assert proc.returncode == 0, proc
        data = json.loads(proc.stdout)
        warned = [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        assert data["ok"] is True and data["notes"][:len(warned)] == warned, (data["notes"], proc.stderr)
        assert len(warned) == (target != "web") and all("peer certificate carries both" in w for w in warned)


def test_readme_command_table_names_verify_purpose_peer() -> None:
    """Today's verify --purpose peer (docs/verify.md, issue-peer.md, peers.md) was missing from README.md's
    command table, which names each command's chief options (renew's --expiring)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith("| `certkit verify CERT` |")]
    assert "`--purpose peer`" in row and "both sides" in row, row
    assert "peer" in run_certkit("verify", "--help").stdout


def test_verify_purpose_peer_says_a_verifier_error_both_sides_share_once(tmp_path, ca_env, ca_dir) -> None:
    """docs/verify.md: 'A reason only one purpose has begins with it (`as a client: ...`); one both share
    (revoked, expired, another CA) is said once', and --json's `verifier_error` is 'the two sides' together
    (each side's own prefixed as above)'. A peer certificate of another CA said its reason once, but its verifier
    line twice: 'as a server: validation failed: no chain ...; as a client: validation failed: no chain ...'."""
    page = (REPO / "docs" / "verify.md").read_text(encoding="utf-8")
    assert "one both share (revoked, expired, another CA) is said once" in " ".join(page.split())
    other = new_ca(tmp_path / "other", "Other CA")
    run_certkit("issue-peer", "other.internal", cwd=tmp_path, env=other, check=True)
    run_certkit("issue-server", "web.internal", cwd=tmp_path, env=ca_env, check=True)
    for target, shared in (("other.internal", True), ("web.internal", False)):
        proc = run_certkit("verify", tmp_path / target / "cert.pem", "--purpose", "peer", "--json", env=ca_env)
        data = json.loads(proc.stdout)
        assert proc.returncode == 1 and data["valid"] is False, proc
        sides = {side: v["verifier_error"] for side, v in data["purposes"].items()}
        if shared:  # the same error from both sides: said once, without a side
            assert sides["server"] == sides["client"] and data["verifier_error"] == sides["server"], data
        else:  # a server certificate fails as a client only: that side's, prefixed
            assert data["verifier_error"] == f"as a client: {sides['client']}" and sides["server"] is None, data
        text = run_certkit("verify", tmp_path / target / "cert.pem", "--purpose", "peer", env=ca_env).stdout
        [line] = [line for line in text.splitlines() if line.startswith("  verifier")]
        assert line.count("validation failed") == 1 and ("as a " in line) is not shared, line


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme33"), ("d1.acme.test", "d2.acme.test"))


def _expire(acme, authz_url: str) -> None:
    with sqlite3.connect(acme.issuing / "inventory.sqlite3") as db:
        db.execute("UPDATE acme_authorizations SET expires = '2020-01-01T00:00:00Z' WHERE id = ?",
                   (authz_url.rsplit("/", 1)[1],))
    db.close()


def test_a_refused_deactivation_changes_nothing_not_even_its_order(acme) -> None:
    """docs/acme.md: an authorization that is invalid or expired cannot be deactivated, 'the request is
    `malformed` (...), nothing changed'. The refusal was said, but the order of that expired authorization, ready
    to be finalized, had been made invalid by it all the same (its row updated whether or not the authorization's
    was). The order is changed only when its authorization is deactivated."""
    page = " ".join((REPO / "docs" / "acme.md").read_text(encoding="utf-8").split())
    assert "one that is invalid or expired cannot be, and the request is `malformed`" in page
    c = Client(acme.server.directory, acme.root)
    c.register()
    url, order = ready_order(acme, c, "d1.acme.test")
    authz = order["authorizations"][0]
    _expire(acme, authz)
    before = c.get(url)["status"]
    with pytest.raises(AcmeError) as refused:
        c.post(authz, {"status": "deactivated"})
    assert refused.value.type == "malformed" and "nothing changed" in refused.value.problem["detail"]
    assert c.get(url)["status"] == before, (before, c.get(url))
    with sqlite3.connect(f"file:{acme.issuing / 'inventory.sqlite3'}?mode=ro", uri=True) as db:
        [(stored,)] = db.execute("SELECT status FROM acme_orders WHERE id = ?", (url.rsplit("/", 1)[1],)).fetchall()
    db.close()
    assert stored == "ready", stored
    pending_url, pending = c.new_order("d2.acme.test")  # a pending one deactivated: its order becomes invalid
    c.post(pending["authorizations"][0], {"status": "deactivated"})
    assert c.get(pending_url)["status"] == "invalid"


@pytest.mark.parametrize("pattern", ["nomatch*", "web.example.com:443"], ids=["typo", "host-with-port"])
def test_a_name_matching_nothing_is_in_the_notes_of_bulk_and_timer_json(due, pattern) -> None:  # noqa: F811
    """`renew --expiring 30d --name 'nomatch*' --json` warned '--name ... matches no certificate ...' on standard
    error and its report said "notes": [], as did --install-timer's: docs/renew.md's "notes" is what the run as a
    whole warns of. Both reports' notes now hold it."""
    tmp_path, secret, env = due
    for extra in (["--expiring", "30d"], ["--install-timer", "--unit-dir", tmp_path / "units"]):
        proc = run_certkit("renew", *extra, "--name", pattern, "--passphrase-file", secret, "--json", env=env,
                           subprocess=True)
        assert proc.returncode == 0, proc
        warned = [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        data = json.loads(proc.stdout)
        assert warned and f"--name '{pattern}' matches no certificate" in warned[0], proc.stderr
        assert data["ok"] is True and data["notes"] == warned, (data["notes"], proc.stderr)


def test_a_batch_line_of_another_kind_over_a_bundle_is_recorded_replaced_as_its_page_says(tmp_path, ca_env,
                                                                                          ca_dir) -> None:
    """docs/issue-batch.md said a bundle a `folder` batch replaced with --force is 'recorded as renewed'; since
    today a line of another kind (a peer line over a server's bundle) records it as replaced, and says so in
    `advice` (a note the page's list of advice did not name). The page now says both; here, as it says."""
    page = " ".join((REPO / "docs" / "issue-batch.md").read_text(encoding="utf-8").split())
    assert "recorded as renewed, or as replaced when the line issues another kind, a note in `advice`" in page
    assert "a bundle of another kind or for other names that `--force` replaced, whose certificate stays valid" in page
    run_certkit("issue-server", "web", "--out", tmp_path / "b" / "web", env=ca_env, check=True)
    run_certkit("issue-server", "same", "--out", tmp_path / "b" / "same", env=ca_env, check=True)
    (tmp_path / "m.csv").write_text("kind,names,out\npeer,web,web\nserver,same,same\n")
    data = json.loads(run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "b", "--force",
                                  "--json", env=ca_env, check=True).stdout)
    assert data["released"] == [] and len(data["advice"]) == 1, data
    assert "the bundle replaced held the server certificate" in data["advice"][0]["note"], data["advice"]
    rows = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    old = {r["names"][0]: r for r in rows if r["kind"] == "server" and (r["renewed_by"] or r["replaced_by"])}
    assert old["DNS:web"]["replaced_by"] and not old["DNS:web"]["renewed_by"], old
    assert old["DNS:same"]["renewed_by"] and not old["DNS:same"]["replaced_by"], old
