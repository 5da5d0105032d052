"""``certkit list``'s question to the inventory: which certificates, in which state, expiring when."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import TYPE_CHECKING

from certkit.inventory.rows import iso, name_match, name_patterns
from certkit.vocabulary import moment_text

if TYPE_CHECKING:
    from certkit.inventory import Inventory

from certkit.constants import LIST_STATUSES

# A successor counts once it was delivered: a pending or abandoned renewal renews nothing.
_RENEWED = ("EXISTS (SELECT 1 FROM certificates AS r WHERE r.renewed_from = certificates.serial"
            " AND r.status IN ('valid', 'revoked'))")


def server_renewed(inventory: "Inventory", held: str = "renewing") -> list[str]:
    """The serials of the ACME servers' own HTTPS certificates whose server may still run (of this host and
    alive, or of another host), which it renews in place and revokes when it stops (a row 'renewing SERIAL'
    in its tables, :meth:`certkit.acme.state.AcmeState.hold_listener`): no action is due for them, so
    ``list --expiring`` and ``renew --expiring`` leave them out. A server killed outright renews nothing.
    ``held="listener"``: the own certificates of every server that may still run, certkit serve's too."""
    from certkit.acme.records import gone
    from certkit.acme.schema import _columns

    with inventory.transaction() as tx:
        if "name" not in _columns(tx, "acme_keys"):  # no ACME server ever ran on this inventory
            return []
        rows = tx.execute("SELECT name, value FROM acme_keys WHERE name LIKE ?", (f"{held} %",)).fetchall()
    return [name.split(" ", 1)[1] for name, process in rows if process and not gone(process)]


def status_now(recorded: str, not_before: str, not_after: str, stamp: str) -> str:
    """A certificate's ``status`` as list, inspect --json, serve and probe all say it: the inventory's state
    (revoked, pending, abandoned), or for a delivered one whether it is valid at ``stamp`` (ISO, as
    :func:`iso` writes it): ``valid``, ``expired`` (past notAfter) or ``not yet valid`` (before notBefore)."""
    if recorded != "valid":
        return recorded
    return "expired" if not_after < stamp else "not yet valid" if not_before > stamp else "valid"


def query(inventory: "Inventory", *, kind: str | None, status: str | None, expiring_within: dt.timedelta | None,
          name: str | None, now: dt.datetime, limit: int | None, damaged: list | None) -> list[dict]:
    _check_filters(kind, status, expiring_within, name, now, limit)
    where, params = _where(inventory, kind, status, expiring_within, now)
    # Soonest expiry first; on a tie (a renewal made within the second), the older first, then the
    # first issue before its renewal: the same order every time, as docs and scripts read it.
    sql = where + " ORDER BY not_after, issued_at, renewed_from IS NOT NULL, serial"
    if limit is not None and not name:  # with a name filter, matching happens below
        rows = _first_rows(inventory, sql, params, int(limit), damaged)
    else:
        rows = inventory.rows(sql, params, damaged=damaged)
    if name:
        pattern = name_patterns(name)
        import json

        rows = [r for r in rows if name_match(pattern, r["subject"], json.dumps(r["names"]))][:limit]
    renewed_by, replaced_by, replaces = _renewed_by(inventory, [r["serial"] for r in rows])
    stamp = iso(now)
    for row in rows:
        row["status"] = status_now(row["status"], row["not_before"], row["not_after"], stamp)
        row["renewed_by"] = renewed_by.get(row["serial"])
        row["replaced_by"] = replaced_by.get(row["serial"])
        if row["serial"] in replaces:  # it took the place of one of another kind: that one it did not renew
            row["replaces"], row["renewed_from"] = row["renewed_from"], None
        else:
            row["replaces"] = None
        del row["writer"]
    return rows


def _check_filters(kind, status, expiring_within, name, now, limit) -> None:
    """:meth:`Inventory.query`'s arguments, the caller's mistakes said as certkit errors naming them: a kind or
    status outside its list (a kind no certificate has would list nothing, as if there were none), a time span
    that is not a ``timedelta``, a naive ``now``, a ``limit`` that is not a whole number of rows."""
    from certkit.constants import KINDS
    from certkit.errors import InvalidArgument
    from certkit.profiles import aware
    from certkit.text import shown
    from certkit.vocabulary import wrong_type

    for what, value, choices in (("kind", kind, KINDS), ("status", status, (*LIST_STATUSES, "not yet valid"))):
        if value is not None and not isinstance(value, str):
            raise wrong_type(what, f"a str ({', '.join(choices)}) or None", value)
        if value is not None and value not in choices:
            raise InvalidArgument(f"Unknown {what} '{shown(value)}'; choose one of: {', '.join(choices)}.")
    if expiring_within is not None and not isinstance(expiring_within, dt.timedelta):
        raise wrong_type("expiring_within", "a datetime.timedelta, such as timedelta(days=30), or None",
                         expiring_within)
    if name is not None and not isinstance(name, str):
        raise wrong_type("name", "a str (a glob over the subject and names) or None", name)
    aware(now, "now")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise wrong_type("limit", "a whole number of rows, 0 or more, or None", limit)


def _first_rows(inventory: "Inventory", sql: str, params: list, limit: int, damaged: list | None) -> list[dict]:
    """The first ``limit`` rows of ``sql`` that read: a damaged row among them (collected in ``damaged``, as
    :func:`query` collects it) leaves its place to the next one, so ``list --limit 5`` shows five while five
    read, not four beside a warning."""
    extra = 0
    while True:
        found: list = []
        rows = inventory.rows(sql + f" LIMIT {limit + extra}", params, damaged=None if damaged is None else found)
        if len(rows) >= limit or len(rows) + len(found) < limit + extra:  # enough, or every row was read
            break
        extra = len(found)
    if damaged is not None:
        damaged += found
    return rows[:limit]


def count(inventory: "Inventory", *, kind: str | None, status: str | None, expiring_within: dt.timedelta | None,
          name: str | None, now: dt.datetime) -> int:
    """How many certificates :func:`query` finds with these filters and no limit (``certkit list
    --limit``'s "5 of 1,500"): the same conditions, and, as :func:`query` lists none of them, no damaged
    row (one ``certkit check`` names); a name is matched here as :func:`query` matches it."""
    where, params = _where(inventory, kind, status, expiring_within, now)
    rows = inventory.rows(where, params, damaged=[])
    if not name:
        return len(rows)
    import json

    pattern = name_patterns(name)
    return sum(name_match(pattern, row["subject"], json.dumps(row["names"])) for row in rows)


def _where(inventory: "Inventory", kind, status, expiring_within, now) -> tuple[str, list]:
    """The WHERE clause (and its parameters) of the filters: the same for the list and its count."""
    where, params = _filters(kind, status, expiring_within, now)
    if expiring_within is not None and (held := server_renewed(inventory)):  # renewed by its server itself
        where.append(f"serial NOT IN ({', '.join('?' * len(held))})")
        params += held
    return " WHERE " + " AND ".join(where), params


def _filters(kind, status, expiring_within, now) -> tuple[list[str], list]:
    where: list[str] = []
    params: list = []
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if status in ("revoked", "pending", "abandoned"):
        where.append("status = ?")
        params.append(status)
    elif status == "valid":
        where.append("status = 'valid' AND not_before <= ? AND not_after >= ?")
        params += [iso(now), iso(now)]
    elif status == "not yet valid":  # the library's (Inventory.query); list's --status has no such choice yet
        where.append("status = 'valid' AND not_before > ?")
        params.append(iso(now))
    elif status == "expired":
        where.append("status = 'valid' AND not_after < ?")
        params.append(iso(now))
    elif status is None:
        where.append("status <> 'abandoned'")  # never delivered: shown only when asked for
    else:
        raise ValueError(f"unknown status {status!r}; choose one of: {', '.join(LIST_STATUSES)}")
    if expiring_within is not None:
        # A certificate already renewed needs no action, so it is not "expiring".
        # valid now: a certificate that is not yet valid (a later start) is not expiring, nor due for renewal
        where.append(f"status = 'valid' AND not_before <= ? AND not_after >= ? AND not_after <= ? AND NOT {_RENEWED}")
        params += [iso(now), iso(now), iso(now + expiring_within)]
    return where, params


def _renewed_by(inventory: "Inventory", serials: list[str]) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """The latest delivered successor of each of ``serials`` that has one (the successions, then their
    predecessors' kinds by serial):
    those of its own kind (renewed by), those of another kind (replaced by: ``--force`` wrote a peer
    certificate's bundle over a server's, which renews nothing), and which of ``serials`` replaced one."""
    wanted = set(serials)
    renewed: dict[str, str] = {}
    replaced: dict[str, str] = {}
    replaces: set[str] = set()
    with inventory.transaction() as tx:
        successions = tx.execute("SELECT renewed_from, serial, kind FROM certificates WHERE renewed_from IS NOT NULL"
                                 " AND status IN ('valid', 'revoked') ORDER BY issued_at, serial").fetchall()
        befores = sorted({old for old, _new, _kind in successions})
        kinds: dict[str, str] = {}
        for start in range(0, len(befores), 500):  # by serial, through its index (SQLite's oldest limit: 999)
            part = befores[start:start + 500]
            marks = ",".join("?" * len(part))
            kinds.update(tx.execute(f"SELECT serial, kind FROM certificates WHERE serial IN ({marks})", part))
        for old, new, kind in successions:
            other = kinds.get(old, kind) != kind
            if other and new in wanted:
                replaces.add(new)
            if old in wanted:
                (replaced if other else renewed)[old] = new
                (renewed if other else replaced).pop(old, None)
    return renewed, replaced, replaces


def compromised(inventory: "Inventory", public_key) -> tuple[str, str] | None:
    """(serial, revoked_at) of a certificate revoked for keyCompromise whose public key is
    ``public_key``, or None: a key once compromised is never certified again. A keyCompromise row
    whose certificate cannot be read is a :class:`DamagedRow`: its key might be this one."""
    from certkit.errors import DamagedRow
    from certkit.inventory.rows import load_der
    from certkit.keys import public_key_der

    wanted = public_key_der(public_key)
    with inventory.transaction() as tx:
        rows = tx.execute("SELECT serial, der, revoked_at FROM certificates WHERE status = 'revoked'"
                          " AND revocation_reason = 'keyCompromise'").fetchall()
    for serial, der, revoked_at in rows:
        try:
            if public_key_der(load_der(serial, der).public_key()) == wanted:
                return serial, revoked_at
        except DamagedRow as exc:  # never skipped: the compromised key it holds would be certified again
            raise DamagedRow(serial, f"{exc.reason}; it was revoked for keyCompromise, so no key is certified "
                                     "until it is restored: its key cannot be told apart") from None
    return None


def key_reuse(inventory: "Inventory", public_key, *, for_ca: bool = False) -> str | None:
    """Why ``public_key`` must not be certified by the CA of ``inventory``, in words to follow "The
    key to certify is", or None: revoked for keyCompromise (never certified again); the key of an
    intermediate CA this CA signed (a leaf's privkey.pem would hand out that CA's key); and, for a
    new intermediate (``for_ca``), the key of any certificate this CA issued that is not revoked
    (whoever holds that bundle's privkey.pem could sign as the CA); and the key of an ACME account of
    this CA (RFC 8555 11.1: whoever held the bundle's privkey.pem would control the account)."""
    from certkit.acme.account_keys import account_holding
    from certkit.errors import CertkitError
    from certkit.inventory.rows import load_der, subject_text
    from certkit.keys import public_key_der

    hit = compromised(inventory, public_key)
    if hit:
        return (f"the key of certificate {hit[0]}, revoked for keyCompromise on {moment_text(hit[1])}: a compromised "
                "key is never certified again")
    wanted = public_key_der(public_key)
    where = "status IN ('valid', 'pending')" if for_ca else "kind = 'ca' AND status IN ('valid', 'pending')"
    with inventory.transaction() as tx:
        account = account_holding(tx, public_key)
        rows = [] if account else tx.execute(f"SELECT serial, der, kind FROM certificates WHERE {where}").fetchall()
    if account:
        return (f"the key of the ACME account {account} of this CA: an account key is never a certificate's key "
                "(RFC 8555 11.1; whoever read the bundle's privkey.pem would control the account)")
    for serial, der, kind in rows:
        try:
            cert = load_der(serial, der)
        except CertkitError:
            continue  # a damaged row: check names it
        if public_key_der(cert.public_key()) == wanted:
            what = "the intermediate CA" if kind == "ca" else f"the {kind} certificate {serial}"
            return (f"the key of {what} '{subject_text(cert.subject)}' this CA issued: a certificate needs a key of "
                    "its own (a bundle holding it would hand out that key)")
    return None


def get_row(inventory: "Inventory", serial) -> dict | None:
    """:meth:`Inventory.get`: the row of one of :func:`serial_keys`, or None."""
    keys = serial_keys(serial)
    rows = inventory.rows(f"WHERE serial IN ({','.join('?' * len(keys))})", keys) if keys else []
    return rows[0] if rows else None


def serial_keys(serial) -> list[str]:
    """The serials :func:`get_row` looks for: ``serial`` as given (the inventory's own form) and as
    :func:`normalize_serial` reads it (hex in either case, colons, ``0x``), or the int ``cert.serial_number``
    as ``serial_hex`` writes it; none for text that is no serial (a lone surrogate, not hex): no such row.
    Anything else is a WrongType naming it."""
    from certkit.text import is_utf8
    from certkit.vocabulary import normalize_serial, serial_hex, wrong_type

    if isinstance(serial, int) and not isinstance(serial, bool):
        return [serial_hex(serial)] if serial > 0 else []
    if not isinstance(serial, str):
        raise wrong_type("serial", "a str of hex digits or an int", serial)
    if not is_utf8(serial):
        return []
    normal = normalize_serial(serial)
    return [serial] + ([normal] if normal is not None and normal != serial else [])


@contextmanager
def current_read(inventory: "Inventory", *, write: bool = False, durable: bool = True):
    """:meth:`Inventory.transaction` for reading an SQLite inventory, refused once ``certkit inventory migrate``
    moved it into PostgreSQL (its triggers, looked for in the same transaction): that file is a backup of the
    day it moved, where a certificate revoked since is valid. An object loaded before the move
    (``ca.inventory.get(serial)`` of a long-lived server) would answer from it as if current."""
    from certkit.inventory.home import check
    from certkit.store_inventory import MOVED_TRIGGER, check_not_moved

    check(inventory)  # a CA object's directory made again for another CA since: that CA's inventory
    if write or not inventory.current:  # a moved SQLite file refuses writes itself (its triggers)
        with inventory.db.transaction(write=write, durable=durable) as tx:
            yield tx
        return
    with inventory.db.transaction() as tx:
        if tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? LIMIT 1",
                      (MOVED_TRIGGER + "%",)).fetchone() is None:
            yield tx
            return
    check_not_moved(inventory)  # says where it went
    from certkit.errors import CABroken
    from certkit.text import shown

    raise CABroken(f"The inventory {shown(inventory.location)} was moved into PostgreSQL (certkit inventory "
                   "migrate) and is only a backup of that day: it is not read as the inventory.")

