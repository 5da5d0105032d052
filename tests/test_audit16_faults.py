"""The sixteenth round's fault findings (audit faults, round sixteen): interruptions and races of
``inventory migrate`` to PostgreSQL, of a CA key kept in a PKCS#11 token (SoftHSM2), and of the ACME
account key rollover (RFC 8555 7.3.5).

1. An ACME key change whose new key another account took at the same moment (on PostgreSQL, between the
   server's look for a holder and its UPDATE) was answered 503 "The server's database is unavailable; try
   again later.": the database was fine, and trying again got the 409 the RFC names. Now it is that 409,
   with the holder's URL in Location, and the account keeps its key.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import run_certkit  # noqa: F401


# --- 1. a key change racing another account for the same key (PostgreSQL) -----------------------------------
def test_a_key_change_losing_a_race_for_the_key_is_a_409_naming_the_holder(tmp_path: Path, postgres_server,
                                                                            postgres_url: str) -> None:
    import psycopg
    from cryptography.hazmat.primitives import hashes
    from test_acme_concurrency import _two_tier

    from acme_client import Client, account_key, b64, sign
    from acme_helpers import AcmeServer

    root, _issuing, env = _two_tier(tmp_path, postgres_url, **postgres_server.env())
    server = AcmeServer("--allow-domain", "kc.test", env=env)
    try:
        mover, holder = Client(server.directory, root), Client(server.directory, root)
        mover.register()
        holder.register()
        new_key, new_alg = account_key("ES256")
        thumb = b64(new_key.public_key().thumbprint(hashes.SHA256))
        url = mover.directory["keyChange"]
        inner = sign({"account": mover.kid, "oldKey": mover.key.public_key().to_json()}, new_key, new_alg,
                     url=url, nonce=None)
        # Another account takes the new key in a transaction not yet committed: the server's look for a
        # holder finds none, and its UPDATE waits on that row until the other transaction commits.
        other = psycopg.connect(postgres_url, password=postgres_server.password)
        try:
            other.execute("UPDATE acme_accounts SET thumbprint = %s WHERE id = %s",
                          (thumb, holder.kid.rsplit("/", 1)[1]))
            answer: dict = {}
            thread = threading.Thread(target=lambda: answer.setdefault("r", mover.post(url, inner, check=False)))
            thread.start()
            with psycopg.connect(postgres_url, password=postgres_server.password, autocommit=True) as watch:
                deadline = time.monotonic() + 60
                while not watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                        " AND datname = current_database()").fetchone()[0]:
                    assert time.monotonic() < deadline and thread.is_alive(), answer
                    time.sleep(0.02)
            other.commit()
            thread.join(60)
        finally:
            other.close()
        response = answer["r"]
        assert response.status_code == 409, response.text
        assert response.headers["Location"] == holder.kid, response.headers
        assert "belongs to an account already" in response.json()["detail"]
        # Nothing changed for the account that asked: its old key still signs for it, the new one does not.
        assert mover.post(mover.kid).json()["status"] == "valid"
        assert mover.post(mover.kid, key=new_key, alg=new_alg, check=False).status_code in (400, 401, 403)
        assert "database is unavailable" not in server.stderr
    finally:
        server.stop()
