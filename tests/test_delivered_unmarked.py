"""The inventory lost after a bundle was written, before it was marked issued (a PostgreSQL
outage at that moment): the command fails, and says that the bundle is complete and will be
recorded as issued, rather than only "the inventory cannot be reached"; the next command that
reaches the database settles it valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

from conftest import PASSPHRASE, certkit_env, run_certkit


def test_an_outage_after_the_bundle_was_written_says_it_was_written(tmp_path, postgres_url, postgres_server):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      PGPASSFILE=os.environ["PGPASSFILE"])
    run_certkit("init-ca", "--name", "Outage CA", "--inventory", postgres_url, env=env, check=True, subprocess=True)
    database = urlsplit(postgres_url).path.lstrip("/")
    marker = tmp_path / "paused"
    paused = env | {"CERTKIT_TEST_PAUSE_AT": "recorded", "CERTKIT_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-server", "mid.internal", "--out", "mid"],
                            cwd=tmp_path, env=paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    with postgres_server.connect() as admin:  # the database goes away, and stays away until told
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        marker.unlink()
        out, err = proc.communicate(timeout=60)
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("Error: ") and "mid" in err and "written whole" in err and "do not issue it again" in err
    assert sorted(p.name for p in (tmp_path / "mid").iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem",
                                                                    "privkey.pem"]
    listed = json.loads(run_certkit("list", "--json", env=env, check=True, subprocess=True).stdout)
    assert [(c["subject"], c["status"]) for c in listed["certificates"]] == [("CN=mid.internal", "valid")]
