"""Choosing what a bulk renewal renews: :class:`Selection` (expiring within a period or all, by
kind and name), :func:`selected` (the inventory rows, a page at a time), :func:`plan_fleet`
(each one planned without the CA key, refusals and skips recorded as :class:`Outcome`), and
:class:`FleetPlan`, what :func:`certkit.fleet.renew_fleet` is handed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CERT_FILE, LEAF_KINDS
from certkit.errors import CertkitError, UnreadableFile
from certkit.fleet.folders import _read_error, damaged_cert, not_in_a_folder, on_other_host, other_host
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.fleet.hooks import HookRun
    from certkit.inventory import Inventory

_PAGE = 500  # inventory rows read at a time: memory stays flat for any fleet


@dataclass(frozen=True)
class Selection:
    """Which certificates a bulk renewal takes: valid ones, not renewed yet, expiring within
    ``expiring`` (or all of them), optionally of one ``kind`` and matching the glob ``name``.
    Expired ones only with ``include_expired``: a certificate left to expire may have been let go
    on purpose (a departed person's, a retired device's), and a daily timer must not bring it back."""

    expiring: dt.timedelta | None = None
    kind: str | None = None
    name: str | None = None
    include_expired: bool = False

    def describe(self, *, every: bool = True, one: bool = False) -> str:
        """``certificates expiring within 30 days``, ``all valid client certificates`` (without
        ``every``: ``valid client certificates``; with ``one``: ``certificate``, after "1 of 1")."""
        noun = "certificate" if one else "certificates"
        what = f"{self.kind} {noun}" if self.kind else noun
        if self.name:
            what += f" matching '{shown(self.name)}'"
        if self.expiring is None:
            return f"{'all ' if every else ''}{'valid or expired' if self.include_expired else 'valid'} {what}"
        return (f"{what} {'expired or ' if self.include_expired else ''}expiring within "
                f"{period_words(self.expiring)}")


def period_words(period: dt.timedelta) -> str:
    """A period as the messages say it: ``30 days``, ``12 hours``."""
    days = period / dt.timedelta(days=1)
    if days >= 1 and abs(days - round(days)) < 0.01:  # a lifetime counted inclusively ends a second early
        return f"{round(days)} day{'s' if round(days) != 1 else ''}"
    hours = round(period / dt.timedelta(hours=1))
    if hours == 0:  # a certificate capped at its CA's last minutes
        minutes = round(period / dt.timedelta(minutes=1))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


@dataclass
class Outcome:
    """What became of one selected certificate: renewed, failed (and at which stage) or skipped."""

    serial: str
    outcome: str  # renewed | failed | skipped
    folder: str | None = None
    kind: str | None = None
    names: list[str] = field(default_factory=list)  # as hooks get them (CERTKIT_NAMES): SAN values, else the CN
    new_serial: str | None = None
    not_after: str | None = None
    # plan | renew: where a failure happened; moved: a skipped bundle not found (or damaged: its cert.pem holds no
    # certificate, is no file, or is gone from a folder that still holds the bundle's other files); meanwhile:
    # skipped, renewed or revoked by another command while this run went on; interrupted: not_done, a stop came first;
    # other_host: a skipped bundle written on another host sharing the inventory; late: an ACME client's certificate
    # that client has not renewed in time (acme_late)
    stage: str | None = None
    error: str | None = None
    hook: HookRun | None = None
    notes: list[str] = field(default_factory=list)
    san: list[str] = field(default_factory=list)  # SAN entries as list and inspect write them (DNS:...)
    new_key: bool | None = None  # renewed: whether the new certificate has a new key
    sink: str | None = None  # skipped, in no bundle folder: where it was delivered (file, stream, acme, memory)

    @property
    def ok(self) -> bool:
        """Not failed, not left undone, nor skipped for a damaged bundle (a due certificate that will expire in a
        bundle a service cannot load: someone must act, so the run's exit status is 1), and its hook succeeded."""
        if self.outcome in ("failed", "not_done") or (self.outcome == "skipped" and self.stage == "damaged"):
            return False
        return self.hook is None or self.hook.ok

    def as_dict(self) -> dict:
        data = {"serial": self.serial, "old_serial": self.serial, "outcome": self.outcome, "folder": self.folder,
                "kind": self.kind, "names": self.san, "domains": self.domains}
        if self.outcome == "renewed":
            data |= {"new_serial": self.new_serial, "not_after": self.not_after, "new_key": self.new_key,
                     "notes": self.notes, "hook": self.hook.as_dict() if self.hook else None}
        elif self.outcome == "failed":
            data |= {"stage": self.stage, "error": self.error}
        elif self.outcome == "not_done":  # planned, but the run was stopped (or halted) before it came to it
            data |= {"reason": self.error, "why": self.stage}
        else:
            data |= {"reason": self.error, "why": self.stage or "elsewhere", "needs_attention": self.needs_attention}
        return data

    @property
    def domains(self) -> list[str]:
        """The SAN values alone (DNS names, IP addresses, emails, URIs), as certbot's RENEWED_DOMAINS holds
        them: none of them holds a space, so ``for d in $RENEWED_DOMAINS`` splits them right (a client's
        common name, ``Alice Smith``, would not be)."""
        return [entry.split(":", 1)[1] for entry in self.san if ":" in entry and not entry.startswith("DirName:")]

    @property
    def needs_attention(self) -> bool:
        """A skipped bundle that would expire unrenewed unless someone acts: moved, deleted or damaged, or the
        certificate of an ACME client late to renew it (one delivered elsewhere by design, or changed by another command
        meanwhile, needs nothing)."""
        return self.outcome == "skipped" and self.stage in ("moved", "damaged", "late")


@dataclass
class FleetPlan:
    """The certificates a bulk renewal will renew (serials, in expiry order), and what it will not."""

    selection: Selection
    todo: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # refused or skipped while planning
    options: dict = field(default_factory=dict)  # rekey, key_type, days, p12_password for plan_renewal
    planned: dict[str, Outcome] = field(default_factory=dict)  # each of todo as a run left undone would report it

    def undone(self, serials: list[str], why: str) -> list[Outcome]:
        """The planned renewals of ``serials`` that a stopped run left undone (``not_done``), ``why`` said."""
        from dataclasses import replace

        return [replace(self.planned[serial], error=why) for serial in serials]


def selected(inventory: "Inventory", selection: Selection, *, now: dt.datetime | None = None,
             damaged: list | None = None) -> Iterator[dict]:
    """The rows a bulk renewal considers, soonest expiry first, read a page at a time: valid
    leaves not renewed yet (nor being renewed), not expired (unless ``selection.include_expired``),
    expiring by ``now + selection.expiring``: the certificates ``certkit list --expiring`` shows.
    A run reads them all before it renews any, so it never meets its own successors. A damaged row
    among them raises :class:`~certkit.errors.DamagedRow`, or, given ``damaged``, goes there (its
    DamagedRow and what the row holds, when that may match the name) and the others are read on, as
    ``list`` reads on: one bad row must not stop the renewal of a whole fleet."""
    from certkit.errors import DamagedRow
    from certkit.inventory.query import server_renewed
    from certkit.inventory.rows import COLUMNS, SELECT_ROW, iso, name_match, name_patterns, row_dict

    now = now or dt.datetime.now(dt.UTC)
    held = server_renewed(inventory)  # an ACME server's own certificate, which it renews itself (list agrees)
    where = [f"status = 'valid' AND kind IN ({', '.join(repr(k) for k in LEAF_KINDS)})",
             "NOT EXISTS (SELECT 1 FROM certificates AS r WHERE r.renewed_from = certificates.serial"
             " AND r.status IN ('valid', 'revoked', 'pending'))"]
    where += [f"serial NOT IN ({', '.join('?' * len(held))})"] if held else []
    params: list = [*held, iso(now)]  # valid now: one with a later start is not renewed before it begins (list agrees)
    where.append("not_before <= ?")
    if selection.kind:
        where.append("kind = ?")
        params.append(selection.kind)
    if not selection.include_expired:
        where.append("not_after >= ?")
        params.append(iso(now))
    if selection.expiring is not None:
        where.append("not_after <= ?")
        params.append(iso(now + selection.expiring))
    pattern = name_patterns(selection.name) if selection.name else None
    last: tuple[str, str] | None = None
    while True:
        page_where = list(where)
        page_params = list(params)
        if last is not None:
            page_where.append("(not_after > ? OR (not_after = ? AND serial > ?))")
            page_params += [last[0], last[0], last[1]]
        with inventory.transaction() as tx:
            fetched = tx.execute(f"{SELECT_ROW} WHERE {' AND '.join(page_where)} ORDER BY not_after, serial "
                                 f"LIMIT {_PAGE}", tuple(page_params)).fetchall()
        for values in fetched:
            try:
                row = row_dict(values)
            except DamagedRow as exc:
                if damaged is None:
                    raise
                raw = dict(zip(COLUMNS, values, strict=True))
                if pattern is None or _may_match(pattern, raw):
                    damaged.append((exc, raw))
                continue
            if pattern is None or name_match(pattern, row["subject"], _names_json(row["names"])):
                yield row
        if len(fetched) < _PAGE:
            return
        raw = dict(zip(COLUMNS, fetched[-1], strict=True))  # the page's last row, damaged or not
        last = (raw["not_after"], raw["serial"])


def _names_json(names: list[str]) -> str:
    import json

    return json.dumps(names)


def _may_match(pattern: tuple[str, ...], raw: dict) -> bool:
    """Whether a damaged row's subject or names, as far as they read, match the glob (a subject that is no
    text cannot rule it out)."""
    from certkit.inventory.rows import name_match

    subject, names = raw.get("subject"), raw.get("names")
    if not isinstance(subject, str):
        return True
    return name_match(pattern, subject, names if isinstance(names, str) else "[]")


def plan_fleet(ca: "CA", selection: Selection, *, rekey: bool = False, key_type: str | None = None,
               days: int | None = None, p12_password: bytes | None = None, now: dt.datetime | None = None) -> FleetPlan:
    """Choose and plan every renewal, without the CA key: the certificates that will be renewed,
    those refused (with the reason) and those skipped (no bundle folder holds them)."""
    from certkit.renewal import plan_renewal

    inventory = ca.require_inventory()
    now = now or dt.datetime.now(dt.UTC)
    plan = FleetPlan(selection, options=dict(rekey=rekey, key_type=key_type, days=days, p12_password=p12_password,
                                             rekey_keeps_requesters=True))
    damaged: list = []
    for row in selected(inventory, selection, now=now, damaged=damaged):
        serial, folder = row["serial"], row.get("folder")
        names = row_names(row)
        try:
            here = row.get("sink") in (None, "folder") and folder and _holds(folder, serial)
        except UnreadableFile as exc:  # a disk error: a failure, said as it is, never "deleted by hand"
            plan.outcomes.append(Outcome(serial, "failed", folder, row["kind"], names, stage="plan", san=row["names"],
                                         error=f"{exc} It is not renewed."))
            continue
        if not here:
            plan.outcomes.append(folder_skipped(row))
            continue
        try:
            plan_renewal(ca, serial, **plan.options)
        except CertkitError as exc:
            plan.outcomes.append(Outcome(serial, "failed", folder, row["kind"], names, stage="plan", error=str(exc),
                                         san=row["names"]))
            continue
        plan.todo.append(serial)
        plan.planned[serial] = Outcome(serial, "not_done", folder, row["kind"], names, stage="interrupted",
                                       san=row["names"])
    for exc, raw in damaged:  # not renewed, and said: the others are (the exit status says one failed)
        text = [raw.get(k) if isinstance(raw.get(k), str) else None for k in ("folder", "kind")]
        plan.outcomes.append(Outcome(exc.serial, "failed", *text, stage="plan", error=f"{exc} It is not renewed."))
    return plan


def folder_skipped(row: dict) -> Outcome:
    """The certificate of inventory ``row`` skipped, its bundle folder not holding it: ``other_host`` (written
    on another host that shares the inventory, whose renewals renew it: quietly), ``moved`` (moved or
    deleted by mistake: warned of), ``damaged`` (:func:`bundle_damage`: warned of, and the run's exit status is
    1) or, delivered into an output file, a stream or a program, by design. A cert.pem the file system cannot
    read (an I/O error) is a failure, not a skip: nothing was done by hand, and the run's exit status says so."""
    serial, folder, sink = row["serial"], row.get("folder"), row.get("sink")
    if sink in (None, "folder") and (host := other_host(row)) is not None:  # that host's to renew, not moved
        return Outcome(serial, "skipped", folder, row["kind"], row_names(row), stage="other_host", san=row["names"],
                       error=f"{on_other_host(folder, host)}: a bulk renewal there renews it")
    if sink in (None, "folder") and (error := _read_error(folder)) is not None:  # a disk error: said, and a failure
        return Outcome(serial, "failed", folder, row["kind"], row_names(row), stage="plan", san=row["names"],
                       error=f"{shown(Path(folder) / CERT_FILE)} cannot be read ({error}): it is not renewed")
    stage, error = None, not_in_a_folder(sink, folder, serial)
    if sink in (None, "folder"):  # by design (an output file) or by mistake?
        stage = "damaged" if damaged_cert(folder) else "moved"
    elif late := acme_late(row, dt.datetime.now(dt.UTC)):  # by design, but its client's renewals stopped
        stage, error = "late", late
    return Outcome(serial, "skipped", folder, row["kind"], row_names(row), error=error, stage=stage, san=row["names"],
                   sink=sink)


def changed_meanwhile(ca: "CA", serial: str) -> Outcome | None:
    """What the planner would make now of ``serial``, planned earlier in this run, if it has left the selection since:
    renewed (or being renewed) or revoked by another command, or its bundle folder moved, deleted or damaged.
    Skipped, as at planning time, not failed: nothing went wrong here."""
    from certkit.inventory.succession import succession_words
    from certkit.vocabulary import moment_text

    inventory = ca.require_inventory()
    row = inventory.get(serial)
    if row is None:
        return None
    skipped = Outcome(serial, "skipped", row.get("folder"), row["kind"], row_names(row), stage="meanwhile",
                      san=row["names"])
    if row["status"] == "revoked":
        skipped.error = (f"it was revoked on {moment_text(row['revoked_at'])} (reason: {row['revocation_reason']}) "
                         "while this run went on, so it is not renewed")
        return skipped
    newer = inventory.rows("WHERE renewed_from = ? AND status IN ('valid', 'revoked', 'pending') "
                           "ORDER BY issued_at, serial", [serial])
    if newer:
        words = succession_words(row["kind"], newer[-1]["kind"], newer[-1]["serial"], " it")
        skipped.error = f"another command {words} while this run went on" + (
            " (still being written)" if newer[-1]["status"] == "pending" else "")
        return skipped
    folder = row.get("folder")
    try:
        here = row.get("sink") in (None, "folder") and folder and _holds(folder, serial)
    except UnreadableFile:
        return None  # a disk error, not a change: the caller's failure says it
    return None if here else folder_skipped(row)


def _holds(folder: str, serial: str) -> bool:
    from certkit.lifecycle import holds

    return holds(Path(folder), serial)


def acme_renewal(names: list[str]) -> str:
    """How the ACME client that holds a certificate issued by ``certkit acme serve`` renews it, in its own commands."""
    name = shown(names[0]) if names else "NAME"
    return (f"'certbot renew --cert-name {name}', 'lego ... --domains {name} renew', or let Caddy or Traefik, which "
            "renew by themselves, do it")


def acme_late(row: dict, now: dt.datetime) -> str | None:
    """For a valid certificate issued over ACME, not renewed yet, whose client is late to renew it, the warning that
    says so; None otherwise. Its clients renew once min(30 days, a third of its life) is left (certbot's and lego's
    30 days, Caddy's third); it is late once half that margin, at most a day (their timers run daily), has gone by."""
    if row.get("sink") != "acme" or row.get("status") != "valid" or row.get("renewed_by"):
        return None
    start, end = (dt.datetime.fromisoformat(row[name].replace("Z", "+00:00")) for name in ("not_before", "not_after"))
    due = min(dt.timedelta(days=30), (end - start) / 3)
    if not end - due + min(dt.timedelta(days=1), due / 2) <= now < end:  # not due, its client not late yet, or expired
        return None
    names = row_names(row)
    return (f"{row['serial']} ({', '.join(shown(n) for n in names) or row['kind']}) was issued over ACME and expires "
            f"{end:%Y-%m-%d %H:%M} UTC; its ACME client should have renewed it by {end - due:%Y-%m-%d %H:%M} UTC and "
            f"has not: check that client's renewal ({acme_renewal(names)}); certkit does not renew it, the key being "
            "the client's")


def refuse_acme_renewal(inventory: "Inventory", row: dict) -> None:
    """A certificate issued over ACME is its client's to renew: the client holds its key, and uses no bundle certkit
    writes. A CannotRenew that says so and names the client's command; and one for the HTTPS certificate of a
    server that may still run (acme serve, serve), whose key is in its memory alone."""
    from certkit.errors import CannotRenew
    from certkit.inventory.query import server_renewed

    if row.get("sink") == "memory" and row["serial"] in server_renewed(inventory, "listener"):
        raise CannotRenew(f"The certificate {row['serial']} is the HTTPS certificate of a running server (certkit "
                          "acme serve or certkit serve), whose key is in that server's memory alone: certkit does "
                          "not renew it (a renewal here would have no key, and the server would never use it). acme "
                          "serve renews its own; certkit serve makes a new one when it is started again. Nothing was "
                          "written.")

    if row.get("sink") == "acme":
        raise CannotRenew(f"The certificate {row['serial']} was issued over ACME (certkit acme serve) to an ACME "
                          "client, which holds its private key: certkit does not renew it (a renewal here would "
                          "have no key, and the client would never use it). Renew it through that client: "
                          f"{acme_renewal(row_names(row))}. Nothing was written.")


def row_names(row: dict) -> list[str]:
    """The names of a row's certificate (its SAN values, else its common name), as hooks get them."""
    from certkit.inventory.rows import subject_common_names

    values = [entry.split(":", 1)[1] for entry in row["names"] if ":" in entry and not entry.startswith("DirName:")]
    return values or subject_common_names(row["subject"])
