"""The one issuing pipeline: every certificate certkit signs goes through :func:`deliver`.

issue-server, issue-client, issue-peer, sign-csr, issue-batch, renew, serve and the ACME server all
take the same steps, in this order:

1. **plan**: check everything that can be checked without the CA key (the names, the CA's name
   constraints, the lifetime, every output path resolved against the CA directory, existing files);
2. only then is the passphrase asked for and the key decrypted (the caller's step);
3. **sign** (a fresh random serial);
4. **record** the row as ``pending``, with the folder its bundle goes to, in one transaction that
   also refuses a renewal of a revoked certificate;
5. **write** the bundle atomically (:mod:`certkit.bundle`; its folder checked against the CA
   directories again), with Ctrl-C and SIGTERM held off for the few milliseconds it takes;
6. **mark** the row ``valid`` (or ``abandoned`` if the bundle was not written), in one transaction
   that also revokes a same-key renewal whose predecessor was revoked meanwhile.

A process killed between 4 and 6 leaves a pending row that the next command settles by looking at the
folder (:mod:`certkit.inventory.reconcile`): never valid if it exists nowhere, never abandoned if unread."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit import names as _names
from certkit.ca_checks import check_still_home
from certkit.constants import DEFAULT_KEY_TYPE
from certkit.disk_flush import flush_after_failure, flushed_together
from certkit.errors import CannotRenew, CertkitError, InventoryError, Terminated, UnreadableFile, without_advice
from certkit.folder_target import FolderTarget, Target  # noqa: F401  (their home is certkit.folder_target)
from certkit.names import Identity
from certkit.san_identities import check_request_names, identities_of, renewal_identities  # noqa: F401
from certkit.testhooks import pause_at

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA, Host, IssuedCert
    from certkit.csr import CSRRequest
    from certkit.keys import PrivateKey


@dataclass(frozen=True)
class Request:
    """What to issue, decided before the CA key is touched."""

    kind: str  # server | client | peer
    identities: tuple[Identity, ...]
    common_name: str | None  # the subject CN; None for an empty subject
    key_type: str = DEFAULT_KEY_TYPE
    days: int | None = None
    public_key: Any = None  # a CSR's key: nothing private is generated or written
    key: Any = None  # an existing private key to certify again (renewal, a re-signed serial)
    subject: Any = None  # an exact x509.Name to keep (renewal); else built from common_name
    renewed_from: str | None = None
    default_days: int | None = None  # the lifetime without ``days`` (renewal: the old certificate's)
    not_before: dt.datetime | None = None
    csr: "CSRRequest | None" = None  # what a CSR asked for, to say what it did not get
    dropped: tuple[str, ...] = ()  # what of it the certificate will not carry (subject attributes, SANs)
    notes: tuple[str, ...] = ()  # what the issued certificate's notes say of the request (a key type chosen)

    @property
    def keyed(self) -> bool:
        """Whether the bundle holds a private key (not for a CSR: the requester keeps it)."""
        return self.public_key is None


# --- building requests ------------------------------------------------------------------
def server_request(names: "Host | Iterable[Host]", *, kind: str = "server", key_type: str | None = None,
                   days: int | None = None, key=None, not_before: dt.datetime | None = None) -> Request:
    """A server (or ``kind="peer"``) certificate for DNS names and IP addresses; the subject CN is
    the first DNS name (else the first address). ``key_type`` (by default :data:`DEFAULT_KEY_TYPE`)
    beside ``key`` must be ``key``'s type (:func:`certkit.key_choice.check_key_choice`)."""
    from certkit.key_choice import check_key_choice

    identities = _names.parse_hosts(names, kind)
    key_type = check_key_choice(key, key_type)
    return Request(kind, tuple(identities), server_cn(identities), key_type, days, key=key, not_before=not_before)


def server_cn(identities: Sequence[Identity]) -> str:
    # OpenSSL checks a subject CN that looks like a host name against DNS name constraints, and an
    # IP address looks like one: so a DNS name is preferred, whatever the order of the names.
    return next((i.value for i in identities if i.kind == "dns"), identities[0].value)


def client_request(name: str, *, emails: Iterable[str] = (), uris: Iterable[str] = (),
                   dns_names: Iterable[str] = (), key_type: str | None = None, days: int | None = None,
                   key=None, not_before: dt.datetime | None = None) -> Request:
    """A client certificate whose subject CN is ``name``, with optional email, URI and DNS identities."""
    from certkit.key_choice import check_key_choice

    cn = _names.parse_client_name(name)
    identities = _names.client_identities(cn, emails, uris, dns_names)
    key_type = check_key_choice(key, key_type)
    return Request("client", tuple(identities), cn, key_type, days, key=key, not_before=not_before)


def csr_request(request: "CSRRequest | bytes | str | x509.CertificateSigningRequest", kind: str, *,
                extra_names: "Host | Iterable[Host]" = (), days: int | None = None) -> Request:
    """A certificate for the key in a CSR (see :func:`certkit.csr.csr_of`): only its key and names are
    taken (checked as issue-server / issue-client check them); every extension comes from the profile."""
    from certkit.csr import csr_of
    from certkit.csr_plan import plan

    request = csr_of(request)
    identities, cn, dropped = plan(request, kind, _names.name_list(extra_names, "extra_names"))
    return Request(kind, tuple(identities), cn, days=days, public_key=request.public_key, csr=request,
                   dropped=tuple(dropped))


def renewal_request(old: "x509.Certificate", kind: str, *, rekey: bool = False, key_type: str | None = None,
                    days: int | None = None, key: "PrivateKey | None" = None,
                    new_key: "PrivateKey | None" = None, ca: "x509.Certificate | None" = None) -> Request:
    """The successor of certificate ``old``: same subject, names and purpose. The public key is kept
    unless ``rekey``; ``key``, the old private key, goes in the bundle when given (with ``rekey`` it is
    left out). With ``rekey`` the new key is ``new_key``, else one of ``key_type`` (the old key's type
    by default); both are refused without it. Without ``days`` it lives as long as the old one did, and
    one that ended with its CA ``ca`` (the CA's end cut it short) ends with it again, not sooner."""
    from cryptography import x509

    from certkit.keys import check_new_key, check_private_key, public_key_der
    from certkit.vocabulary import check_bool, serial_hex, wrong_type

    if not isinstance(old, x509.Certificate):
        raise wrong_type("The certificate to renew", "an x509.Certificate or an IssuedCert", old)
    check_bool("rekey", rekey)
    check_new_key(new_key, old.public_key(), key_type, rekey=rekey)
    if key is not None:
        check_private_key(key)
    identities = renewal_identities(old, kind)  # and its kind, the old one's: a purpose is never changed so
    lifetime = old.not_valid_after_utc - old.not_valid_before_utc + dt.timedelta(seconds=1)
    default_days = max(1, round(lifetime / dt.timedelta(days=1)))
    if ca is not None and old.not_valid_after_utc >= ca.not_valid_after_utc:  # then capped at the CA's end
        default_days = max(default_days, (ca.not_valid_after_utc - dt.datetime.now(dt.UTC)).days + 2)
    common = dict(identities=tuple(identities), common_name=None, subject=old.subject, days=days,
                  renewed_from=serial_hex(old.serial_number), default_days=default_days)
    if rekey and (new_key is not None or key_type is not None):
        return Request(kind, key=new_key, key_type=DEFAULT_KEY_TYPE if new_key is not None else key_type, **common)
    if rekey:
        from certkit.key_choice import renewal_key_type

        chosen, notes = renewal_key_type(old.public_key())
        return Request(kind, key_type=chosen, notes=tuple(notes), **common)
    if key is not None and public_key_der(key.public_key()) != public_key_der(old.public_key()):
        raise CannotRenew(f"The private key given does not belong to the certificate {serial_hex(old.serial_number)}.")
    if key is not None:
        return Request(kind, key=key, **common)
    return Request(kind, public_key=old.public_key(), **common)


@dataclass
class Delivery:
    """An issued certificate, where its files went, and what the user should know."""

    issued: "IssuedCert"
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)  # of ``notes``: what befell its row while it was written


# --- the pipeline ---------------------------------------------------------------------
def plan(ca: "CA", request: Request, target: Target) -> list[str]:
    """Every check that needs no CA key; return the notes issuing will carry (a capped lifetime)."""
    check_request_names(request)  # as the builders made them: a Request built by hand is held to the same rules
    notes = ca.check_request(request)
    target.check(ca, request)
    return notes


def deliver(ca: "CA", request: Request, target: Target | None = None, *, planned: bool = False) -> Delivery:
    """Issue ``request`` to ``target`` through every step of the pipeline (see the module docstring)."""
    from certkit.ca import CA
    from certkit.vocabulary import wrong_type

    if not isinstance(ca, CA):
        raise wrong_type("ca", "a CA (CADirectory(path).open(), or CA.create())", ca)
    if not isinstance(request, Request):
        raise wrong_type("request", "a Request (server_request(), client_request(), csr_request() or "
                         "renewal_request())", request)
    if target is not None and not isinstance(target, Target):
        raise wrong_type("target", "a Target (FolderTarget(folder)) or None", target)
    target = target or Target()
    if not planned:
        plan(ca, request, target)
    return deliver_many(ca, [(request, target)])[0]


def deliver_many(ca: "CA", items: Sequence[tuple[Request, Target]], *, sync: bool = False,
                 then: Callable[[list[Delivery]], None] | None = None) -> list[Delivery]:
    """Issue several certificates with one inventory transaction per step (``issue-batch``'s chunks).

    Signing can be interrupted; from recording to marking, Ctrl-C and SIGTERM are held off (they take effect right
    after; one already on its way lands while marking, the rows settled first), so an interruption never leaves a row
    without its answer. If writing fails part-way (a full disk), every bundle complete on disk is marked valid and the
    rest abandoned before the error goes on. ``then`` runs while they are still held off, once the certificates are
    marked (a batch counts its chunk there); an interruption that lands after it counts none (``certkit_delivered`` 0).
    """
    done, reported = [], False  # the indexes of the bundles written; whether ``then`` counted them
    check_still_home(ca)
    try:
        issued = [ca.sign(request) for request, _target in items]
        pause_at("signed")
        # One writer of a folder at a time, from recording to marking (waited for, interruptibly):
        # what a renewal or --force replaces is decided, and checked again, with the folder held.
        with _folders_held(ca, items), uninterrupted():
            for _request, target in items:
                getattr(target, "recheck", lambda: None)()
            record(ca, items, issued)
            # After record(): a serial taken meanwhile (by another host) was signed again in place.
            deliveries = [Delivery(one, notes=list(one.notes)) for one in issued]
            try:
                pause_at("recorded")
                with flushed_together([t.folder for _r, t in items if sync and t.folder is not None]) as flush:
                    for index, ((_request, target), one) in enumerate(zip(items, issued, strict=True)):
                        deliveries[index].files = target.write(one)
                        deliveries[index].notes += [n for n in (getattr(target, "foreign", None),) if n]
                        deliveries[index].notes += getattr(target, "removed", [])
                        done.append(index)
                    if sync:  # durable before the inventory says so (syncfs: a write-back error is raised)
                        flush()
            except BaseException as exc:
                # A bundle left half replaced (its journal finishes it) stays pending, never abandoned.
                half = getattr(exc, "folder", None) if type(exc).__name__ == "HalfWritten" else None
                exc.certkit_delivered = _settle_after_failure(ca, items, issued, done, half, exc)
                raise
            if ca.inventory is not None:
                # A deferred target (one output file for many certificates) marks them once it is in place.
                ready = [one.serial_hex for (_r, target), one in zip(items, issued, strict=True)
                         if not target.deferred and not getattr(target, "relayed", False)]
                # Bundles on disk can be found again by reconciliation: their mark needs no fsync of its own.
                on_disk = all(target.sink in ("folder", "file") for _r, target in items)
                try:
                    notes = ca.inventory.mark_issued(ready, durable=not on_disk) if ready else {}
                except InventoryError as exc:  # the inventory went away after the bundles were written
                    raise _delivered_unmarked(exc, items, on_disk, [deliveries[i] for i in done]) from None
                except (KeyboardInterrupt, Terminated) as exc:  # on disk: valid; in memory (never handed): abandoned
                    exc.certkit_delivered = _settle_after_failure(ca, items, issued, [
                        i for i in done if items[i][1].sink in ("folder", "file")])
                    raise
                for delivery in deliveries:
                    delivery.marked = notes.get(delivery.issued.serial_hex, [])
                    delivery.notes += delivery.marked
            if then is not None:
                then(deliveries)
                reported = True
    except (KeyboardInterrupt, Terminated) as exc:
        # A signal held off while the bundles were written lands here, right after them: the
        # command can still say how many were delivered (none, if it came while signing, and
        # none more once ``then`` has counted them).
        if not hasattr(exc, "certkit_delivered"):
            exc.certkit_delivered = 0 if reported else len(done)
        raise
    return deliveries


def _folders_held(ca: "CA", items: Sequence[tuple[Request, Target]]):
    """Hold the folders (and files) of ``items`` for this process alone: see
    :func:`certkit.bundle_locks.folders_held`."""
    from certkit.bundle_locks import folders_held

    places = [target.folder for _r, target in items if target.folder is not None and not target.deferred
              and target.sink in ("folder", "file")]
    return folders_held(ca.directories[0] if ca.directories and ca.inventory is not None else None, places)


def _delivered_unmarked(exc: InventoryError, items, on_disk: bool, delivered: list[Delivery]) -> InventoryError:
    """The error when all was delivered but the inventory could not mark it: the reason, and that the certificates
    exist (nobody issues them again or deletes the files); ``certkit_deliveries``: those written whole."""
    from certkit.text import shown

    folders = [str(target.folder) for _r, target in items if target.folder is not None]
    one = len(folders) == 1
    where, it = (shown(folders[0]), "it") if one else (f"{len(folders)} bundles", "them")
    if on_disk:
        told = (f" {where} {'was' if one else 'were'} written whole; the next certkit command that reaches the "
                f"inventory records {it} as issued ('certkit list' shows {it}), so do not issue {it} again.")
    else:
        told = " The certificate was delivered, but the inventory still lists it as pending."
    error = InventoryError(without_advice(exc) + told)  # not "try again": it was written
    error.certkit_delivered, error.certkit_deliveries = len(delivered), delivered if on_disk else []
    error.certkit_unmarked = len(items)  # written, not yet marked: the batch's count says so
    return error


@contextmanager
def begin(ca: "CA", request: Request, target: Target | None = None) -> Iterator["IssuedCert"]:
    """Issue ``request`` and let the caller deliver it: the row is pending inside the ``with``
    block, valid if the block finishes, abandoned if it raises (the ACME server stores the
    certificate in its order; ``serve`` loads it into its TLS context)."""
    target = target or Target()
    plan(ca, request, target)
    issued = sign_and_record(ca, [(request, target)])[0]
    try:
        yield issued
    except BaseException:
        if ca.inventory is not None:
            ca.inventory.mark_abandoned([issued.serial_hex])
        raise
    if ca.inventory is not None:
        issued.notes += ca.inventory.mark_issued([issued.serial_hex]).get(issued.serial_hex, [])


def sign_and_record(ca: "CA", items: Sequence[tuple[Request, Target]]) -> list["IssuedCert"]:
    """Sign each request and record it pending (see :func:`record`)."""
    issued = [ca.sign(request) for request, _target in items]
    pause_at("signed")
    record(ca, items, issued)
    return issued


def _predecessor(ca: "CA", request: Request, target: Target) -> str | None:
    """What the new certificate is recorded as succeeding: the one it renews, or the certificate of
    this CA whose bundle ``--force`` replaces (its key deleted with it), so that the replaced one no
    longer counts as due for renewal (single issuance and batches alike)."""
    if request.renewed_from is not None:
        return request.renewed_from if getattr(target, "succeeds", True) else None
    if getattr(target, "force", False) and target.folder is not None:
        from certkit.inventory.succession import replaced_certificate

        return replaced_certificate(ca, target.folder)
    replaced = getattr(target, "replaced", None)  # one file of certificates (certkit.formats.OutputTarget)
    return replaced(ca, request) if replaced is not None else None


def record(ca: "CA", items: Sequence[tuple[Request, Target]], issued: list["IssuedCert"]) -> None:
    """Record ``issued`` pending, each with its target's folder; a serial already taken is signed
    again (same key, fresh serial) in place in ``issued``."""
    from certkit.inventory import Pending
    from certkit.memory_delivery import record_pending, remember_unrecorded

    if ca.inventory is None and remember_unrecorded(ca, items, issued):  # in memory: recorded if it is saved
        return
    # Certificates that only go into a file put in place later (a batch's jsonl or tar) need not be
    # on disk in the inventory yet: the file syncs the inventory before it is put in place
    # (certkit.formats.Output.commit), and until then nothing of theirs is delivered.
    durable = not all(target.deferred for _request, target in items)
    todo = list(range(len(items)))
    before = [_predecessor(ca, request, target) for request, target in items]
    for _attempt in range(5):
        entries = [Pending(issued[i].cert, issued[i].kind, str(items[i][1].folder) if items[i][1].folder else None,
                           items[i][1].sink, before[i],
                           issued[i].private_key is not None or getattr(items[i][1], "keeps_key", False),
                           facts=issued[i].facts, in_place=items[i][0].renewed_from is None
                           or getattr(items[i][1], "replacing", None) == items[i][0].renewed_from)
                   for i in todo]
        taken = record_pending(ca.inventory, entries, durable=durable)  # a failure: nothing was issued
        if not taken:
            _note_other_kinds(ca, items, issued, before)
            return
        todo = [todo[j] for j in taken]
        for i in todo:  # the same key, a fresh serial
            request = items[i][0]
            issued[i] = ca.sign(replace(request, key=issued[i].private_key) if request.keyed else request)
    # five 159-bit collisions in a row means the random source is broken
    raise CertkitError("Could not find an unused serial number; check the system's random source.")


def _note_other_kinds(ca: "CA", items, issued: list["IssuedCert"], before: list[str | None]) -> None:
    """Note, for each bundle ``--force`` replaced with a certificate of another kind (a peer's over a
    server's; ``list`` says "replaced", not renewed) or for other names, that the inventory records the new one as
    its successor (so that it is no longer due, its key gone), and how to revoke the old one."""
    from certkit.inventory.succession import replaced_note

    for i, old in enumerate(before):
        if old is not None and items[i][0].renewed_from is None and (row := ca.inventory.get(old)) is not None:
            if (note := replaced_note(row, issued[i].kind, issued[i].facts.names)) is not None:
                issued[i].notes.append(note)


def _settle_after_failure(ca: "CA", items, issued, done: list[int], half: Path | None = None, failure=None) -> int:
    """After ``failure`` part-way: what is complete on disk is valid (once flushed: a disk failing that is told in
    ``failure``'s words), the rest abandoned but the one whose folder ``half`` was left half replaced, or that cannot
    be read (pending: the next command settles it). How many were delivered."""
    if ca.inventory is None:
        return len(done)
    from certkit.inventory.reconcile import bundle_holds

    delivered, lost, indexes = [], [], []
    for index, ((_request, target), one) in enumerate(zip(items, issued, strict=True)):
        keyed = one.private_key is not None or getattr(target, "keeps_key", False)
        try:
            complete = index in done or (target.sink == "folder" and target.folder is not None and bundle_holds(
                target.folder, one.der, keyed))
        except UnreadableFile:
            continue
        # only in a temporary file, which its output removes, or in memory, never handed to the writer
        complete = complete and not target.deferred and not getattr(target, "relayed", False)
        if not complete and half is not None and target.folder is not None and Path(target.folder) == half:
            continue
        (delivered if complete else lost).append(one.serial_hex)
        if complete:
            indexes.append(index)
    with uninterrupted():
        if delivered:  # durable before the inventory says so
            flush_after_failure([items[i][1].folder for i in indexes if items[i][1].folder is not None], failure)
            ca.inventory.mark_issued(delivered)
        if lost:
            ca.inventory.mark_abandoned(lost)
        done[:] = indexes  # before a held signal lands: deliver_many reports these, not all written before
    return len(delivered)


# --- signals --------------------------------------------------------------------------
HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP off for a short step that must finish once started (writing one
    bundle, settling the inventory); they arrive right after it. SIGKILL cannot: the next command settles it."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
