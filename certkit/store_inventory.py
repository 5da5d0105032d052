"""A CA directory's inventory beyond opening it: what stands where the SQLite file should be, and moving
the SQLite inventory into PostgreSQL (``certkit inventory migrate``) while no server holds it. An inventory
tied to its CA is :mod:`certkit.store_binding`'s."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CABroken, CertkitError
from certkit.paths import absolute
from certkit.store_binding import BINDING, bind
from certkit.text import HIDDEN, is_utf8, shown

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory
    from certkit.store import CADirectory


def hold(store: "CADirectory") -> int | None:
    """For a server that runs for days (``certkit acme serve``): a shared lock on the SQLite
    inventory file, held by the returned fd for as long as the process lives, so that :func:`move`
    refuses to move the inventory from under it (the server would go on with the old file, which
    then refuses every write). A PostgreSQL inventory is not moved, so holds nothing (None)."""
    from certkit.store import INVENTORY_FILE

    path = store.path / INVENTORY_FILE
    if store.inventory.db.dialect != "sqlite" or not path.is_file():
        return None
    return _flock(path, exclusive=False, refused=f"The inventory {shown(path)} is being moved (certkit "
                  "inventory migrate); start again once that is done.")


def _check_can_move(store: "CADirectory", inventory_file: Path, *, marked: bool = False) -> None:
    """Before anything is copied: certkit-ca.json can be written (it will name the database), and so can
    the old inventory (it will refuse writes once moved). Either failing after the copy's commit would
    leave a database holding a copy the CA does not use."""
    from certkit.paths import check_can_write

    check_can_write(store.config_path, "CA configuration")
    if marked:  # the old file refuses writes already: a move being finished writes certkit-ca.json only
        return
    try:
        read_only = bool(os.statvfs(inventory_file).f_flag & os.ST_RDONLY) or not os.access(inventory_file, os.W_OK)
    except OSError:
        return
    if read_only:
        raise CertkitError(f"The inventory {shown(inventory_file)} cannot be written (a read-only file or mount), "
                           "and once moved it must be made to refuse writes; nothing was changed.")


def move(store: "CADirectory", url: str):
    """Move the SQLite inventory of ``store`` (a CA directory) into the empty PostgreSQL database
    ``url`` (every table, every row compared after the copy) and name it in certkit-ca.json;
    returns what was copied (:class:`certkit.db_copy.Copied`).

    The SQLite write lock is held from before the copy until the old file refuses every write
    (triggers that name the new place, committed before certkit-ca.json names the database), so no
    certificate can be recorded in the old inventory once the copy is taken: a command that opened
    it earlier fails with words, and every command started later refuses the moved file until
    certkit-ca.json names the database, then uses the database. The old file stays as a backup.
    A move stopped after the old file was marked (killed, or certkit-ca.json could not be written)
    is finished by running it again with the same URL.
    """
    from certkit.constants import ENV_INVENTORY_URL
    from certkit.db_postgres import PostgresDatabase
    from certkit.db_url import check_stored_url
    from certkit.store import INVENTORY_FILE

    if os.environ.get(ENV_INVENTORY_URL):
        raise CertkitError(f"${ENV_INVENTORY_URL} is set, and it would override the inventory certkit-ca.json "
                           "names; unset it before moving the inventory.")
    from certkit.paths import refuse_bundle_as_ca

    refuse_bundle_as_ca(store.path, new=False)  # as open() says it, not "the inventory is missing"
    cert, _parents = store.load_certificates()
    source = store.inventory
    if source.db.dialect != "sqlite":
        _refuse_a_second_move(store, str(source.location), url)
    target = PostgresDatabase(check_stored_url(url))  # as inventory migrate --to: written into certkit-ca.json
    check_inventory_file(source, moving=True)
    if not os.path.lexists(store.path / INVENTORY_FILE):  # said as every other command says it
        raise CABroken(f"The inventory {shown(store.path / INVENTORY_FILE)} {source.db.missing}")
    earlier = moved_to(source)
    if earlier is not None and earlier != url:
        from certkit.db_url import shown_url

        raise CertkitError(f"The inventory {shown(source.location)} was moved to {shown_url(earlier)} already: it is a "
                           "backup of that day, and copying it elsewhere would fork the inventory. Name "
                           f"{shown_url(earlier)} in certkit-ca.json (run certkit inventory migrate --to "
                           f"{shown_url(earlier)} to finish that move); nothing was changed.")
    _check_can_move(store, store.path / INVENTORY_FILE, marked=earlier is not None)
    # Closing a descriptor of the file drops every POSIX lock this process holds on it, its SQLite
    # connections' included (see SQLiteDatabase.sync): none is open whenever one of the flock's is closed.
    source.db.release()
    moving = _exclusive(store.path / INVENTORY_FILE)  # no server holds it (hold); none starts
    try:
        copied = _copy_and_mark(store, source, target, cert, marked=earlier is not None)
        _name_database(store, url)
        return copied
    finally:
        source.db.release()
        os.close(moving)


def _copy_and_mark(store: "CADirectory", source: Inventory, target, cert: "x509.Certificate", *, marked: bool):
    """Copy ``source`` into ``target`` (committed there) and, in the same SQLite transaction, make the
    old file refuse every write; ``marked``: it does already (a move being finished)."""
    from cryptography.hazmat.primitives import hashes

    from certkit.acme.state import SCHEMA as ACME_SCHEMA
    from certkit.db_copy import copy_inventory

    if not marked:
        source.check()  # migrated to the current schema, pending rows of dead writers settled
    binding = (BINDING, cert.fingerprint(hashes.SHA256()).hex())
    copied = None
    try:
        with source.db.transaction(write=True) as tx:
            pending = tx.execute("SELECT count(*) FROM certificates WHERE status = 'pending'").fetchone()[0]
            if pending and not marked:
                raise CertkitError(f"{pending} certificate{'s are' if pending > 1 else ' is'} being issued "
                                   "right now (pending); run this again when those commands are done.")
            copied = copy_inventory(tx, target, binding, ACME_SCHEMA)
            moved = f"this inventory moved to {target.url}; certkit-ca.json names it".replace("'", "''")
            for table in [name for (name,) in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                                         " AND name NOT LIKE 'sqlite_%'")]:
                for event in ("INSERT", "UPDATE", "DELETE"):
                    tx.execute(f"CREATE TRIGGER IF NOT EXISTS {MOVED_TRIGGER}{event.lower()}_{table} BEFORE "
                               f"{event} ON {table} BEGIN SELECT RAISE(ABORT, '{moved}'); END")
    except (CertkitError, OSError) as exc:
        if copied is None:
            raise
        from certkit.db_url import shown_url

        url = shown_url(target.url)
        raise CertkitError(f"{_reason(exc, source.location)}. The copy of the inventory in {url} is committed, but "
                           f"{shown(source.location)} could not be marked as moved (it may still take writes), and "
                           "certkit-ca.json does not name the database: the CA goes on using the SQLite file. Fix "
                           "that and run certkit inventory migrate --to "
                           f"{url} again before issuing anything (it resumes from that copy); once a certificate is "
                           "issued meanwhile, the copy is out of date: drop the database and create it empty "
                           "again first.") from None
    return copied


def _name_database(store: "CADirectory", url: str) -> None:
    """Last step of :func:`move`: certkit-ca.json names the database (the old file refuses writes already)."""
    import json

    from certkit.atomic import replace_file
    from certkit.db_url import shown_url

    try:
        replace_file(store.config_path, (json.dumps(store.config | {"inventory": url}, indent=2) + "\n").encode(),
                     0o644)
    except (CertkitError, OSError) as exc:
        raise CertkitError(f"{_reason(exc, store.config_path)}. The inventory was copied to {shown_url(url)} "
                           f"(committed, every row compared) and {shown(store.path / 'inventory.sqlite3')} now "
                           "refuses writes, but certkit-ca.json does not name the database yet: the CA cannot be "
                           f"used until it does. Fix that and run certkit inventory migrate --to {shown_url(url)} "
                           "again: it finishes the move.") from None


def _reason(exc: BaseException, path: str | Path) -> str:
    """What failed, as the start of a sentence: an OSError in words, naming ``path`` (the file being
    written, never its hidden temporary twin); a certkit error as said."""
    if isinstance(exc, OSError):
        from certkit.bundle import os_reason

        return f"Writing {shown(path)} failed: {os_reason(exc)}"
    return str(exc).rstrip(".")


def _exclusive(path: Path) -> int:
    """An exclusive lock on ``path`` (an fd to close), or an error naming who holds it: a server
    started with :func:`hold` (a shared lock), or another move (an exclusive one: no shared lock is
    given then either)."""
    for _ in range(2):  # a holder that let go between the two looks: taken the second time
        try:
            return _flock(path, exclusive=True, refused="")
        except CertkitError:
            pass
        try:
            os.close(_flock(path, exclusive=False, refused=""))
        except CertkitError:
            raise CertkitError(f"Another certkit inventory migrate is moving the inventory {shown(path)} right "
                               "now; nothing was changed. Let it finish (certkit-ca.json then names where it "
                               "went).") from None
    raise CertkitError(f"A running server (certkit acme serve) is using the inventory {shown(path)}; it would go on "
                       "with the old file, which refuses every write once moved. Stop it, move the inventory, then "
                       "start it again.")


def _flock(path: Path, *, exclusive: bool, refused: str) -> int:
    """A shared or exclusive ``flock`` on ``path``, taken without waiting: the fd that holds it,
    or ``refused`` as the error when another process holds a lock in the way."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CertkitError(refused) from None
    return fd


def check_inventory_file(inventory: Inventory, *, moving: bool = False) -> None:
    """Name what stands where an SQLite inventory should be, which the inventory alone calls missing;
    refuse one that was moved into PostgreSQL (:func:`check_not_moved`), unless ``moving`` (:func:`move`)."""
    path = inventory.path
    if path is not None and os.path.lexists(path) and not os.path.isfile(path):
        from certkit.vocabulary import file_kind_text  # the one wording of what stands where a file should be

        raise CABroken(f"The inventory {shown(path)} is {file_kind_text(path)}; the CA directory is "
                       "damaged: restore it from a backup.")
    if not moving:
        check_not_moved(inventory)


MOVED_TRIGGER = "certkit_moved_"  # the triggers by which a moved SQLite inventory refuses writes (:func:`move`)


def moved_to(inventory: Inventory) -> str | None:
    """Where ``inventory`` (an SQLite file) was moved by ``certkit inventory migrate`` (the URL its
    refuse-writes triggers name), or None if it was not moved (or cannot be read: said by whoever opens it)."""
    import re
    import sqlite3

    from certkit.errors import InventoryError

    if inventory.db.dialect != "sqlite" or not os.path.isfile(inventory.path):
        return None
    try:
        with inventory.db.transaction(readonly=True) as tx:
            found = tx.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? LIMIT 1",
                               (MOVED_TRIGGER + "%",)).fetchone()
    except (InventoryError, sqlite3.Error):
        return None
    if found is None:
        return None
    url = re.search(r"moved to (.*); certkit-ca\.json names it", found[0] or "")
    return url.group(1).replace("''", "'") if url else "PostgreSQL"


def check_not_moved(inventory: Inventory) -> None:
    """Refuse an SQLite inventory that ``certkit inventory migrate`` moved into PostgreSQL: it is a
    backup of the day it moved, and reading it as current would show revoked certificates as valid."""
    from certkit.db_url import shown_url

    url = moved_to(inventory)
    if url is not None:
        raise CABroken(f"The inventory {shown(inventory.location)} was moved to {shown_url(url)} (certkit "
                       "inventory migrate) and is only a backup of that day: it is not read as the inventory. Use "
                       f"the CA directory whose certkit-ca.json names {shown_url(url)} (or set "
                       "$CERTKIT_INVENTORY_URL to it); if certkit-ca.json does not name it yet, the move is under "
                       f"way or was interrupted: run certkit inventory migrate --to {shown_url(url)} to finish it.")


def _refuse_a_second_move(store, location: str, url: str) -> None:
    """Refuse to move an inventory that is in PostgreSQL (at ``location``) already: into that very database, there is
    nothing to move; into another (``url``), say how a DBA moves one database to another, which migrate does not."""
    from certkit.db_url import shown_url

    if location == url:
        raise CertkitError(f"The inventory of {shown(store.path)} is already in PostgreSQL, in {shown_url(url)} "
                           "(certkit-ca.json names it); there is nothing to move.")
    raise CertkitError(f"The inventory of {shown(store.path)} is already in PostgreSQL ({shown_url(location)}); "
                       "certkit inventory migrate moves an SQLite inventory only. To move it to "
                       f"{shown_url(url)}: stop every certkit command of this CA (on every host), copy the database "
                       "with pg_dump and pg_restore (every serial, revocation and CRL number goes with it), then "
                       "write the new URL as \"inventory\" in certkit-ca.json on every host (docs/team.md); "
                       "nothing was changed.")


def inventory_from_environment() -> str | None:
    """``$CERTKIT_INVENTORY_URL``, if set: a PostgreSQL URL, or an SQLite file that exists (its path, or
    ``sqlite:///PATH``). Anything else is refused naming the variable, not blamed on the CA directory
    (a typo is not a damaged inventory to restore from a backup)."""
    import re
    import stat

    from certkit.constants import ENV_INVENTORY_URL
    from certkit.db_postgres import shown_url

    url = os.environ.get(ENV_INVENTORY_URL)
    if url is not None and not is_utf8(url):  # a URL may hold a secret: shown masked
        text = url.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        raise CertkitError(f"${ENV_INVENTORY_URL} is '{shown_url(text)}', which is not UTF-8 text; certkit records "
                           "paths and URLs as UTF-8.")
    if url is None or url.startswith(("postgresql://", "postgres://")):
        return url
    unset = "or unset it to use the CA directory's own inventory"
    if not url.strip():
        raise CertkitError(f"${ENV_INVENTORY_URL} is set but empty (an unset variable?); set it, {unset}.")
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme and path is url:
        raise CertkitError(f"${ENV_INVENTORY_URL} is a {shown(scheme.group(1))}:// URL; certkit keeps its inventory "
                           f"in PostgreSQL (postgresql://USER@HOST[:PORT]/DATABASE) or an SQLite file; fix it, "
                           f"{unset}.")
    header, why = b"", "which is not an SQLite database"
    try:
        if stat.S_ISREG(os.stat(path).st_mode):  # never opened otherwise: a FIFO would block
            with open(path, "rb") as f:
                header = f.read(16)
    except OSError as exc:
        why = f"which cannot be read ({exc.strerror})"
    if header != b"SQLite format 3\x00":
        # a mistyped URL (postgresql//user:pw@host) is no URL to mask by: any user:password@ is masked
        path = re.sub(r"(?<=:)[^:@/\s]+(?=@)", HIDDEN, path)
        raise CertkitError(f"${ENV_INVENTORY_URL} names {shown_url(path)}, {why}: it is neither a PostgreSQL URL "
                           f"(postgresql://USER@HOST[:PORT]/DATABASE) nor an SQLite inventory; fix it, {unset}.")
    return url


def create_staged_inventory(path: Path, ca_dir: Path, cert: "x509.Certificate | None" = None,
                            parent_dir: Path | None = None) -> None:
    """Create the inventory in the staging folder, tied to the CA whose certificate is ``cert`` (as a
    shared one is: a copy of it kept elsewhere is refused by another CA, :func:`check_binding`); a failure
    names the CA directory asked for, not the temporary folder it was being assembled in (gone by the
    time the message is read)."""
    from certkit.errors import InventoryError
    from certkit.inventory import Inventory
    from certkit.store import INVENTORY_FILE

    try:
        Inventory(path).create()
        if cert is not None:
            bind(Inventory(path), cert, parent_dir)
    except InventoryError as exc:
        reason = "the disk is full" if "disk is full" in str(exc) else str(exc).replace(str(path), INVENTORY_FILE)
        raise CertkitError(f"Cannot create the CA directory {shown(ca_dir)}: {reason.rstrip('.')}.") from None


def record_saved_ca(inventory: Inventory, serial: str, ca_dir: Path) -> None:
    """An intermediate its parent recorded as handed to a program (``CA.create(parent=...)`` without
    ``directory=``), now saved in ``ca_dir``: its row names that directory, as init-ca's does."""
    with inventory.transaction(write=True) as tx:
        tx.execute("UPDATE certificates SET folder = ?, sink = 'ca-dir' WHERE serial = ? AND sink = 'memory' AND "
                   "folder IS NULL AND status = 'valid'", (absolute(ca_dir), serial))


def record_ca_dir(inventory: Inventory, serial: str, ca_dir: Path) -> None:
    """An intermediate recorded pending for one CA directory (``CA.create(..., directory=...)``) and saved in
    ``ca_dir``: its row names ``ca_dir``, where it is, so that the row is settled by what is there (valid
    once written; reconciled by looking there after a crash), never abandoned for a folder it never went to.
    A row settled abandoned meanwhile (the process that planned it ended) is pointed there too, and marked
    valid again once the directory is written."""
    with inventory.transaction(write=True) as tx:
        tx.execute("UPDATE certificates SET folder = ? WHERE serial = ? AND sink = 'ca-dir' AND status IN "
                   "('pending', 'abandoned')", (absolute(ca_dir), serial))
