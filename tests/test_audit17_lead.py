"""Round seventeen, the lead's own findings."""
from __future__ import annotations

import gc
import inspect
import sqlite3
from pathlib import Path

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _open_transactions() -> list:
    """certkit.db transactions entered and never left (their generator waits at its yield)."""
    return [o for o in gc.get_objects()
            if inspect.isgenerator(o) and o.gi_code.co_name == "transaction"
            and o.gi_code.co_filename.endswith(("certkit/db.py", "certkit/db_postgres.py"))
            and inspect.getgeneratorstate(o) == inspect.GEN_SUSPENDED]


def test_an_acme_server_that_fails_to_start_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A start that failed (here: a view where the server's table belongs) left the connection it
    holds open inside a transaction, closed only when the garbage collector came by, from whatever
    thread it ran in (SQLite then refused: 'objects created in a thread can only be used in that
    same thread'). The start now closes what it opened."""
    ca = tmp_path / "ca"
    env = certkit_env(CERTKIT_CA_DIR=str(ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Start Failure", env=env, check=True)
    with sqlite3.connect(ca / "inventory.sqlite3") as db:
        db.execute("CREATE VIEW acme_orders AS SELECT 1 AS id, 2 AS account_id, 3 AS created_at")
    db.close()
    before = len(_open_transactions())
    proc = run_certkit("acme", "serve", "--port", "0", env=env)  # in this process: its objects are here
    assert_clean_error(proc, "views may not be indexed", 1)
    assert len(_open_transactions()) == before
