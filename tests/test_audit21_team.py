"""The twenty-first round's team findings (audit team, round twenty-one): a PostgreSQL inventory shared by hosts,
and a CA key in a PKCS#11 token.

1. ``certkit acme serve``: a finalize that failed on the database or the token answered the ACME client (anyone
   on the network) with the operator's message: the inventory URL (host, port, role, database) and the GRANT to
   run, or the token's label. The client now gets what happened and what to do; the server's log gets the rest.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from test_acme_concurrency import _two_tier

from acme_helpers import AcmeServer


def test_a_finalize_failing_on_the_database_does_not_tell_the_client_its_url(tmp_path: Path, postgres_server) -> None:
    """The database server's disk is full (a trigger raises PostgreSQL's disk_full on the certificate's row): a
    finalize gets 503, the order stays ready, and the detail names no URL, host, port, role or database (it did:
    "... the server's database is unavailable: The inventory postgresql://certkit@127.0.0.1:PORT/db ..."); the
    server's log has the whole message. With room again, the same order is finalized."""
    from acme_client import Client, HTTP01Responder, make_csr
    from acme_helpers import ports

    url = postgres_server.create_database("leak")
    root, _issuing, env = _two_tier(tmp_path, url, **postgres_server.env())
    http_port = ports(1)[0]
    server = AcmeServer("--allow-domain", "acme.test", "--http01-port", str(http_port), "--resolve",
                        "a.acme.test=127.0.0.1", env=env)
    database = url.rsplit("/", 1)[1]
    try:
        with HTTP01Responder(http_port) as web:
            client = Client(server.directory, root)
            client.register()
            order_url, order = client.new_order("a.acme.test")
            client.authorize(order, web)
            assert client.wait(order_url)["status"] == "ready"
            with postgres_server.connect(database) as conn:
                conn.execute("CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                             "'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$")
                conn.execute("CREATE TRIGGER disk_full BEFORE INSERT ON certificates FOR EACH ROW "
                             "EXECUTE FUNCTION disk_full()")
            csr = make_csr(ec.generate_private_key(ec.SECP256R1()), ["a.acme.test"])
            response = client.finalize(client.get(order_url), csr, check=False)
            problem = response.json()
            assert response.status_code == 503 and response.headers.get("Retry-After"), problem
            assert problem["detail"] == ("The certificate was not issued, the server's database is unavailable. "
                                         "The order is ready again: finalize it again later."), problem
            for secret in ("postgresql://", str(postgres_server.port), "127.0.0.1", database, "disk"):
                assert secret not in response.text, (secret, problem)
            server.wait_for_log("nothing issued, the order is ready again: the server's database is unavailable: "
                                f"The inventory {url} ")
            assert client.get(order_url)["status"] == "ready"
            with postgres_server.connect(database) as conn:
                conn.execute("DROP TRIGGER disk_full ON certificates")
            response = client.finalize(client.get(order_url), csr, check=False)
            assert response.status_code == 200, response.text
            assert client.wait(order_url, ("valid", "invalid"))["status"] == "valid"
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr
