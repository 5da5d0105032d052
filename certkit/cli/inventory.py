"""``certkit inventory``: where a CA's inventory lives (``migrate`` moves it to PostgreSQL)."""

from __future__ import annotations

import click

from certkit.cli.common import ca_dir_option, emit, json_option


@click.group("inventory")
def inventory() -> None:
    """The CA's inventory database: move it to PostgreSQL for a team.

    The inventory is an SQLite file in the CA directory unless init-ca
    --inventory or 'inventory migrate' put it in PostgreSQL (docs/team.md).

    \b
    Examples:
      certkit inventory migrate --to postgresql://certkit@db.internal/ca
    """


@inventory.command("migrate")
@click.option("--to", "url", required=True, metavar="URL",
              help="The empty PostgreSQL database to move the inventory into (postgresql://USER@HOST[:PORT]/DB; "
                   "no password in it: libpq's ~/.pgpass, $PGPASSWORD, a service file, or a prompt).")
@ca_dir_option
@json_option
def migrate(url, ca_dir, as_json):
    """Move the CA's SQLite inventory into a PostgreSQL database.

    Every table is copied in one transaction and every row compared with its
    source before it is committed; certkit-ca.json then names the database,
    and the old inventory.sqlite3 stays as a backup that refuses writes.
    Issuing commands running meanwhile wait, and refuse if they were
    already writing (pending certificates); while 'certkit acme serve' runs
    on the CA, the move is refused (stop it, move, start it again). Needs no
    CA key.

    \b
    Examples:
      certkit inventory migrate --to postgresql://certkit@db.internal/ca
      PGPASSFILE=~/.pgpass-ca certkit inventory migrate --ca-dir ./ca --to postgresql://certkit@db/ca --json
    """
    from certkit.db_url import check_stored_url
    from certkit.store import CONFIG_FILE, INVENTORY_FILE, CADirectory

    check_stored_url(url)
    store = CADirectory(ca_dir)
    copied = store.move_inventory(url)
    certificates = copied.tables.get("certificates", 0)
    data = {"ca_dir": str(store.path), "from": str(store.path / INVENTORY_FILE), "to": url,
            "tables": copied.tables, "rows": copied.rows, "verified": copied.rows, "resumed": copied.resumed,
            "config": str(store.config_path)}
    lines = [f"Moved the inventory of {store.path} to {url}",
             f"  certificates  {certificates} (every row compared after the copy)",
             *[f"  {table:13} {count}" for table, count in sorted(copied.tables.items()) if table != "certificates"],
             f"  now named in  {store.path / CONFIG_FILE}",
             f"  old file      {store.path / INVENTORY_FILE} (kept as a backup; it refuses writes)"]
    if copied.resumed:
        lines.insert(1, "  (the database held this very copy already: an earlier run of this command was "
                        "interrupted, or another copy of this CA directory moved it there)")
    emit(as_json, data, "\n".join(lines))
