"""Fixtures for team scale, imported by conftest.py: a PostgreSQL server, a SoftHSM2, and the
second inventory backend for the existing issuing tests.

Test modules marked ``pytest.mark.both_inventories`` (and tests so marked) run twice when they
use the ``ca_dir`` fixture (or ``inventory_url``): as they are, on SQLite, with their ids
unchanged, and once more with ``[postgresql]`` appended to the id, where ``ca_dir`` is created
with ``init-ca --inventory`` pointing at a fresh database of the session's PostgreSQL server
(and ``PGPASSFILE`` in the environment, where libpq finds the password as users' would).
A parametrized test runs on PostgreSQL with its first parameters only (the others vary the
input, not the inventory: the machines running the suite have two cores); a test marked
``sqlite_only`` (it reads inventory.sqlite3 itself, or runs a docs page) is not repeated.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from conftest import require

PG_SUFFIX = "postgresql"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "both_inventories: also run the test with the inventory on PostgreSQL")
    config.addinivalue_line("markers", "sqlite_only: a both_inventories test that reads inventory.sqlite3 itself")
    config.addinivalue_line("markers", "inventory_backend(name): the inventory backend of this run (set by "
                                       "team_fixtures)")


def _wants_both(item) -> bool:
    # ca_dir asks for inventory_url: "inventory_url" is among the fixtures of every test that uses either.
    return (item.get_closest_marker("both_inventories") is not None
            and item.get_closest_marker("sqlite_only") is None
            and "inventory_url" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(session, config, items) -> None:
    """Add a ``[postgresql]`` twin after every test that wants both backends; the original keeps its id."""
    out, seen = [], set()
    for item in items:
        out.append(item)
        if not isinstance(item, pytest.Function) or not _wants_both(item):
            continue
        function = (item.parent.nodeid, item.originalname)
        if function in seen:
            continue
        seen.add(function)
        name = item.name[:-1] + f"-{PG_SUFFIX}]" if item.name.endswith("]") else item.name + f"[{PG_SUFFIX}]"
        twin = pytest.Function.from_parent(
            item.parent, name=name, callspec=getattr(item, "callspec", None), callobj=item.obj,
            fixtureinfo=item._fixtureinfo, originalname=item.originalname)
        twin.add_marker(pytest.mark.inventory_backend(PG_SUFFIX))
        out.append(twin)
    items[:] = out


def inventory_backend_of(request) -> str:
    marker = request.node.get_closest_marker("inventory_backend")
    return marker.args[0] if marker else "sqlite"


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for this session (this xdist worker), stopped at its end, also on failure."""
    with started_postgres() as server:
        yield server


@contextlib.contextmanager
def started_postgres():
    """A PostgreSQL server of its own, started now and stopped when the block ends, also on failure
    (skipped without initdb or psycopg, failed instead in CI: CERTKIT_REQUIRE_PEERS=1)."""
    from team_postgres import PostgresServer, bindir

    if bindir() is None:
        require("initdb")
    if not os.environ.get("CERTKIT_REQUIRE_PEERS"):
        pytest.importorskip("psycopg")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch):
    """A fresh, empty database (its URL, without the password), with PGPASSFILE set for this test."""
    from certkit.db_postgres_pool import close_idle

    for name, value in postgres_server.env().items():
        monkeypatch.setenv(name, value)
    url = postgres_server.create_database()
    yield url
    close_idle(url)  # the connections this test's library calls left open in the pytest process


@pytest.fixture
def pg_ca(tmp_path, postgres_server, postgres_url):
    """A file-key CA on PostgreSQL, its passphrase in a 0600 file; HOME without a ~/.pgpass: its environment."""
    from conftest import PASSPHRASE, certkit_env, run_certkit

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home))
    run_certkit("init-ca", "--name", "Team CA", "--inventory", postgres_url, "--passphrase-file", tmp_path / "pass",
                env=env, check=True)
    return env


@pytest.fixture
def inventory_url(request) -> str | None:
    """None on the SQLite run; on the ``[postgresql]`` run, the URL of a fresh database."""
    if inventory_backend_of(request) != PG_SUFFIX:
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def softhsm():
    """A SoftHSM2 of this session: its configuration in SOFTHSM2_CONF, for this process and its children."""
    from team_hsm import SoftHSM, module

    if module() is None or shutil.which("softhsm2-util") is None:
        require("softhsm2-util")
        pytest.skip("SoftHSM2's module libsofthsm2.so is not installed")
    if not os.environ.get("CERTKIT_REQUIRE_PEERS"):
        pytest.importorskip("pkcs11")
    hsm = SoftHSM()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in hsm.env().items():
            patch.setenv(name, value)
        try:
            yield hsm
        finally:
            hsm.close()


@pytest.fixture
def token(softhsm):
    """A fresh token in the session's SoftHSM2."""
    return softhsm.new_token()
