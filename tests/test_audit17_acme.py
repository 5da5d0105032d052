"""The ACME server, audit round seventeen (acme), each as a class:

1. ``certkit list --expiring 30d`` (and ``renew --expiring 30d``) listed the ACME server's own 30-day HTTPS
   certificate every day of its life, though the server renews it in place and revokes it when it stops:
   ``list --help`` and docs/list.md define ``--expiring`` as the certificates "that need action", and nothing
   is due for this one (``certkit renew`` cannot renew it: its key lives in the server's memory). A cron job
   alerting on ``list --expiring`` fired for as long as an ACME server ran. A certificate that a running
   ``acme serve`` holds and renews itself is left out now; ``certkit serve``'s one-day certificate, which serve
   does not renew (restart it for a new one), and every other certificate are listed as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_acme_concurrency import BACKENDS, _inventory, _two_tier

from acme_helpers import AcmeServer
from conftest import run_certkit
from serve_process import ServeProcess


def _listed(env: dict, *args: str) -> dict[str, dict]:
    """serial -> row of ``certkit list --json ARGS``."""
    rows = json.loads(run_certkit("list", "--json", *args, env=env, check=True).stdout)["certificates"]
    return {row["serial"]: row for row in rows}


# --- 1: list --expiring and the server's own certificate -------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_list_expiring_leaves_out_the_certificate_a_running_acme_server_renews_itself(request, backend,
                                                                                      tmp_path: Path) -> None:
    root, issuing, env = _two_tier(tmp_path, _inventory(request, backend))
    due = tmp_path / "due"
    run_certkit("issue-server", "due.example", "--days", "20", "--out", due, env=env, check=True)
    due_serial = _listed(env)
    with AcmeServer(env=env) as server:
        own = server.info["server_certificate"]["serial"]
        everything = _listed(env)
        assert everything[own]["status"] == "valid"  # list shows it, as every certificate
        expiring = _listed(env, "--expiring", "30d")
        assert own not in expiring, "the ACME server renews its own certificate: nothing is due for it"
        assert set(due_serial) <= set(expiring)  # a certificate due is listed as before
        count = json.loads(run_certkit("list", "--json", "--expiring", "30d", "--limit", "1", env=env,
                                       check=True).stdout)
        assert count["total"] == len(due_serial)  # counted as listed
        renewal = json.loads(run_certkit("renew", "--expiring", "30d", "--json", env=env, cwd=tmp_path).stdout)
        assert own not in {c["serial"] for c in renewal["certificates"]}, renewal
        assert renewal["renewed"] == 1, renewal
        with ServeProcess(env=env, cwd=tmp_path) as serve:  # serve renews nothing: its certificate is due
            served = serve.info["server_certificate"]["serial"]
            expiring = _listed(env, "--expiring", "30d")
            assert served in expiring and own not in expiring
    assert _listed(env)[own]["status"] == "revoked"  # stopped: revoked, as before
