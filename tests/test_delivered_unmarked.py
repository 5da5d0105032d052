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


CUT = '''import os, sys
import psycopg
count = os.path.join(os.path.dirname(__file__), "count")
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
if n == 2:  # after the second renewal, the inventory's database goes away
    with psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{sys.argv[3]}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (sys.argv[3],))
'''


def test_bulk_renewal_cut_off_from_the_inventory_reports_what_it_renewed(tmp_path, postgres_url, postgres_server):
    """The inventory goes away in the middle of renew --all: the renewals done are reported (text and
    JSON), --exec-once still runs for them (the servers must load the files already replaced), and
    the command fails with one Error line saying why it stopped."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      PGPASSFILE=os.environ["PGPASSFILE"])
    run_certkit("init-ca", "--name", "Outage CA", "--inventory", postgres_url, env=env, check=True, subprocess=True)
    for i in range(5):
        run_certkit("issue-server", f"r{i}.internal", "--days", "10", "--out", tmp_path / f"r{i}", env=env,
                    check=True, subprocess=True)
    database = urlsplit(postgres_url).path.lstrip("/")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "cut.py").write_text(CUT)
    cut = f"{sys.executable} {tmp_path / 'hook' / 'cut.py'} {postgres_server.url('postgres')} " \
          f"{postgres_server.password} {database}"
    try:
        proc = run_certkit("renew", "--expiring", "30d", "--days", "90", "--exec", cut,
                           "--exec-once", f"touch {tmp_path / 'reloaded'}", "--json", env=env, subprocess=True)
    finally:
        with postgres_server.connect() as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    # The server answered (round nine says so: it refuses connections to that database), or it is gone.
    assert data["renewed"] == 2 and data["halted"] and ("cannot be reached" in data["halted"]
                                                         or "refused the connection" in data["halted"]), data
    assert (tmp_path / "reloaded").exists()  # --exec-once ran for the two renewed bundles
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "stopped after 2 renewals" in error, proc.stderr
    again = run_certkit("renew", "--expiring", "30d", "--days", "90", "--json", env=env,
                        subprocess=True)  # the rest, once it is back
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["renewed"] == 3


def test_a_batch_cut_off_after_writing_a_chunk_counts_it_as_pending(tmp_path, postgres_url, postgres_server):
    """The inventory goes away while a chunk is being written: the account says those bundles are
    written and recorded as pending only (not 'recorded' like the others), in the plural."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      PGPASSFILE=os.environ["PGPASSFILE"], CERTKIT_TEST_CHUNK_SIZE="2")
    run_certkit("init-ca", "--name", "Outage CA", "--inventory", postgres_url, env=env, check=True, subprocess=True)
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,b{i}.internal\n" for i in range(6)))
    database = urlsplit(postgres_url).path.lstrip("/")
    marker = tmp_path / "paused"
    paused = env | {"CERTKIT_TEST_PAUSE_AT": "staged", "CERTKIT_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", "m.csv", "--out-dir", "out", "--jobs",
                             "1"], cwd=tmp_path, env=paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    with postgres_server.connect() as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        while proc.poll() is None and time.monotonic() < deadline + 60:  # each bundle of the chunk pauses there
            if marker.exists():
                marker.unlink()
            time.sleep(0.02)
        out, err = proc.communicate(timeout=60)
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "2 bundles were written whole" in err and "records them as issued" in err, err
    assert "after 2 bundles were written and recorded (2 of them as pending only" in err, err
    assert len(list((tmp_path / "out").iterdir())) == 2
    listed = json.loads(run_certkit("list", "--json", env=env, check=True, subprocess=True).stdout)
    assert sorted(c["status"] for c in listed["certificates"]) == ["valid", "valid"]  # settled by the next command
