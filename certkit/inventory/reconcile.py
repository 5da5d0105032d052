"""Settling pending rows whose writer is gone: delivered -> ``valid``, not delivered -> ``abandoned``.

A row is ``pending`` from the moment a certificate is signed and recorded to
the moment its bundle is complete. If the process holding it dies (SIGKILL, a
power cut, a full disk it could not report), the next certkit command settles
the row by looking at what is on disk: the bundle in the recorded folder holds
this very certificate (and its key, if the bundle should have one) -> valid;
anything else -> abandoned. A row whose writer still runs is left alone, and
so is one that cannot be judged: its files unreadable here, or its record sent
to standard output (it may have been delivered; see :func:`holding`).

A writer is named by host, boot, machine id, PID namespace, pid and the process's
start time, so a recycled pid is never mistaken for the writer. A writer of an
earlier boot of this machine (the same host name and /etc/machine-id) is dead:
after a power cut, this host settles its rows as soon as it is up. A writer whose pid
means nothing here is presumed alive until :data:`FOREIGN_LEASE` has passed
since its row was recorded: one on another host (a shared PostgreSQL
inventory; after the lease its row is settled here only if its bundle is
visible here, see :meth:`certkit.inventory.Inventory.reconcile`), one in
another PID namespace of this machine (a container or a sandboxed job sharing
the CA directory), and one whose /proc entry is hidden from this user
(``hidepid``) although its pid exists. A writer that outlives its lease and
finds its row settled as abandoned makes it valid again when it marks it
(:mod:`certkit.inventory.marking`).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from certkit.errors import UnreadableFile
from certkit.text import is_digits

# A pending row lasts as long as writing one chunk of bundles: seconds. A writer on another
# host cannot be asked whether it lives, so its rows are settled after this long.
FOREIGN_LEASE = dt.timedelta(minutes=15)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), None if gone, "dead" if
    a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[:1] in ([b"Z"], [b"X"]):  # a zombie (dead, not reaped: atomic.zombie) is no writer's start
        return "dead"
    return fields[19].decode() if len(fields) > 19 else "?"


def _machine_id() -> str:
    """This machine's id (the start of /etc/machine-id: the same across boots), "-" where it has none."""
    try:
        with open("/etc/machine-id") as f:
            return f.read().strip()[:8] or "-"
    except OSError:
        return "-"


@cache
def _host() -> str:
    return f"{socket.gethostname()}/{_boot_id()}/{_machine_id()}"


@cache
def _pid_namespace() -> str:
    """This process's PID namespace (the inode of /proc/self/ns/pid), "-" where there is none to read."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def writer_id(pid: int | None = None) -> str:
    """``host/boot/machine#pidns pid start`` of this process (or ``pid``, taken to be in this PID namespace)."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}#{_pid_namespace()} {pid} {_start_time(pid) or '?'}"


def _parse(writer: str) -> tuple[str, str | None, int, str]:
    """(host/boot/machine, PID namespace or None if not recorded, pid, start time) of a writer id; ValueError
    if it is none. Rows of certkit before the namespace was recorded have none (nor, earlier still, the machine)."""
    host, pid_text, start = writer.rsplit(" ", 2)
    machine, mark, namespace = host.rpartition("#")
    if not mark or not (is_digits(namespace) or namespace == "-"):
        machine, namespace = host, None
    return machine, namespace, int(pid_text), start


def is_local(writer: str | None) -> bool:
    """Whether ``writer`` ran on this host, in this boot or an earlier one (the same host name and machine id:
    a power cut's pending rows are this host's to settle once it is up again): only then can its folder be
    judged here. A writer that names no host counts as local: no other host would settle its row."""
    try:
        machine, _namespace, _pid, _start = _parse(writer)
    except (AttributeError, ValueError):
        return True
    if machine == _host():
        return True
    name, *rest = machine.split("/")
    here = _host().split("/")
    # Another boot of this machine, known by its id (a row of certkit before the id was kept, or a machine
    # without one, names no machine: another host's, as before).
    return name == here[0] and here[2] != "-" and rest[1:] == here[2:]


def writer_host(writer: str | None) -> str | None:
    """The host name in ``writer`` (without its boot and machine id), None if it names none (a row of certkit
    before valid rows kept their writer)."""
    try:
        machine, _namespace, _pid, _start = _parse(writer)
    except (AttributeError, ValueError):
        return None
    return machine.split("/")[0] or None


def this_host() -> str:
    """This host's name, as :func:`writer_host` reads it from the rows written here."""
    return _host().split("/")[0]


def writer_alive(writer: str | None, recorded_at: dt.datetime, now: dt.datetime | None = None) -> bool:
    """Whether the process named by ``writer`` may still be writing the row it holds."""
    if not writer:
        return False
    try:
        machine, namespace, pid, start = _parse(writer)
    except ValueError:
        return False
    leased = (now or dt.datetime.now(dt.UTC)) - recorded_at < FOREIGN_LEASE
    if machine != _host() and is_local(writer):
        return False  # this machine has rebooted since: every process of its earlier boot is gone
    if machine != _host() or (namespace is not None and namespace != _pid_namespace()):
        return leased  # its pid names another process here, or none: it cannot be asked
    current = _start_time(pid)
    if current is None:  # no /proc entry: gone, or hidden from this user (hidepid) if the pid exists
        return _pid_exists(pid) and leased
    if start == "?" or current == "?":  # no /proc: fall back to "the pid exists"
        return _pid_exists(pid)
    return current == start


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _absent(exc: OSError | Exception) -> bool:
    """Whether a failed read says the file is not there (gone, or a folder above it is no folder); any other
    error (an I/O error, no permission, a loop of links) says nothing of what the file holds."""
    return getattr(exc, "errno", None) in (None, errno.ENOENT, errno.ENOTDIR)


def unreadable(path: str | Path, exc: Exception) -> UnreadableFile:
    from certkit.text import shown

    return UnreadableFile(f"Cannot read {shown(path)}: {getattr(exc, 'strerror', None) or exc}.",
                          getattr(exc, "errno", None))


def ca_directory_holds(folder: str | Path, der: bytes) -> bool:
    """Whether the CA directory ``folder`` is the intermediate CA ``der`` (its ca.pem), written whole.
    :class:`UnreadableFile` when the file system will not say (an I/O error, no permission)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.atomic import sweep_stale

    sweep_stale(Path(folder).absolute().parent, Path(folder).name)  # a dead init-ca's staged copy (the CA's key)
    try:
        cert = x509.load_pem_x509_certificate((Path(folder) / "ca.pem").read_bytes())
        return cert.public_bytes(Encoding.DER) == bytes(der)
    except ValueError:
        return False
    except OSError as exc:
        if _absent(exc) or isinstance(exc, IsADirectoryError):
            return False
        raise unreadable(Path(folder) / "ca.pem", exc) from None


def bundle_holds(folder: str | Path, der: bytes, keyed: bool) -> bool:
    """Whether ``folder`` holds a complete bundle of the certificate ``der``: its cert.pem is that
    certificate, fullchain.pem starts with it, and privkey.pem (if ``keyed``) is its key.
    :class:`UnreadableFile` when the file system will not say (an I/O error, no permission): that is no
    bundle gone."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.bundle import settle_folder
    from certkit.constants import CERT_FILE, FULLCHAIN_FILE, KEY_FILE, MAX_CERT_FILE_BYTES
    from certkit.errors import CertkitError, parse_errors
    from certkit.files import read_limited
    from certkit.keys import load_private_key, public_key_der

    folder = Path(folder)
    settle_folder(folder)  # finish or remove what a dead writer left half-done there
    try:
        cert_pem = read_limited(folder / CERT_FILE, MAX_CERT_FILE_BYTES)
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.public_bytes(Encoding.DER) != bytes(der):
            return False
        chain = read_limited(folder / FULLCHAIN_FILE, MAX_CERT_FILE_BYTES)
        if not chain.startswith(cert_pem):
            return False
        if keyed:
            key = load_private_key(read_limited(folder / KEY_FILE, MAX_CERT_FILE_BYTES), None)
            return public_key_der(key.public_key()) == public_key_der(cert.public_key())
    except UnreadableFile as exc:
        if _absent(exc):
            return False
        raise
    except OSError as exc:
        if _absent(exc):
            return False
        raise unreadable(folder, exc) from None
    except (CertkitError, *parse_errors()):
        return False
    return True


def file_holds(path: str | Path, wanted: dict[bytes, bool]) -> set[bytes]:
    """Which of the certificates ``wanted`` (DER -> whether its key must be there too) the output
    file ``path`` (``--format jsonl``, ``k8s`` or ``tar``, sink ``file``) holds whole: a file a
    killed writer had already put in place. Read once for all of its rows."""
    from certkit.formats import holds_certificates

    return holds_certificates(path, wanted)


def holding(orphans: list[tuple[str, bytes, str | None, str | None, bool]]) -> tuple[set[str], dict[str, str]]:
    """The serials of ``orphans`` (serial, DER, folder, sink, keyed) whose bundle is where their row
    says: a complete bundle folder (sink ``folder``), a CA directory (``ca-dir``) or an output file
    that holds them (sink ``file``). A certificate handed to memory cannot be found again (its process is
    gone with it). Also, the serials that cannot be judged here, which stay pending (serial -> why): those
    whose files the file system would not read, and those sent to standard output (sink ``stream``, its
    writer killed while writing them: a row is recorded pending right before its record is written, and
    marked once its chunk is written, so each may have been delivered, with its key: :data:`STREAMED`)."""
    found: set[str] = set()
    unknown: dict[str, str] = {}
    by_file: dict[str, dict[bytes, str]] = {}
    keyed_of: dict[str, dict[bytes, bool]] = {}
    for serial, der, folder, sink, keyed in orphans:
        if sink == "stream":
            unknown[serial] = STREAMED
            continue
        try:
            if (sink == "folder" and folder and bundle_holds(folder, der, keyed)) or (
                    sink == "ca-dir" and folder and ca_directory_holds(folder, der)):
                found.add(serial)
        except UnreadableFile as exc:
            unknown[serial] = str(exc)
        if sink == "file" and folder:
            by_file.setdefault(folder, {})[bytes(der)] = serial
            keyed_of.setdefault(folder, {})[bytes(der)] = keyed
    for path, serials in by_file.items():
        try:
            found.update(serials[der] for der in file_holds(path, keyed_of[path]))
        except UnreadableFile as exc:
            unknown.update((serial, str(exc)) for serial in serials.values())
    return found, unknown


# Why a pending row sent to standard output by a writer that died stays pending (see holding).
STREAMED = "standard output"
STREAMED_WORDS = ("were being written to standard output when the command writing them died, so each may have "
                  "been delivered, with its private key, to whatever read that output; which ones were cannot "
                  "be told, so they stay pending (revocable; certkit list --status pending lists them, "
                  "with their names)")


def warn_unjudged(unknown: dict[str, str]) -> None:
    """Pending rows that cannot be judged here: left pending (revocable, listed as pending), said once per
    command: those whose files could not be read, and those a killed writer was sending to standard output."""
    import warnings

    streamed = sorted(serial for serial, why in unknown.items() if why == STREAMED)
    if streamed:
        shown_serials = ", ".join(streamed[:5]) + (f" and {len(streamed) - 5} more" if len(streamed) > 5 else "")
        warnings.warn(f"{_were(len(streamed))} pending ({shown_serials}): they {STREAMED_WORDS}. Revoke those the "
                      "output you kept does not hold, and any you do not mean to use (certkit revoke SERIAL).",
                      stacklevel=3)
    unknown = {serial: why for serial, why in unknown.items() if why != STREAMED}
    for serial, why in sorted(unknown.items())[:5]:
        warnings.warn(f"The pending certificate {serial} stays pending: {why[:1].lower()}{why[1:]} Its files "
                      "may be whole; a command that can read them settles it.", stacklevel=3)
    if len(unknown) > 5:
        warnings.warn(f"{len(unknown) - 5} more pending certificates stay pending for the same reason.", stacklevel=3)


def _were(count: int) -> str:
    return "1 certificate stays" if count == 1 else f"{count} certificates stay"


def settle_or_warn(inventory) -> None:
    """Settle the pending rows of dead writers (:meth:`Inventory.reconcile`); an inventory that cannot be
    written here (read-only media, a PostgreSQL standby, a role that may only read, a full disk) is read as
    it is, with a warning (:func:`warn_unsettled`): listing what a CA holds never needs to write."""
    from certkit.errors import InventoryError

    if not getattr(inventory.db, "read_only", False):
        try:
            inventory.reconcile()
            return
        except InventoryError as exc:
            if not getattr(exc, "cannot_write", False):
                raise
    warn_unsettled(inventory)


def warn_unsettled(inventory) -> None:
    """An inventory that cannot be written here (read-only media, a full disk) is read as it is:
    its pending rows stay pending, and a warning says so."""
    import warnings

    from certkit.text import shown

    if inventory.pending_count():
        warnings.warn(f"The inventory {shown(inventory.location)} cannot be written here, so the certificates it "
                      "lists as pending were not settled (a command run where it can be written settles them).",
                      stacklevel=3)


def release_replaced(tx, delivered: Iterable[str]) -> list[str]:
    """For the output files in which a dead writer's rows were just found (``delivered``, their serials): the
    valid rows that still name one of those files but whose certificate it no longer holds stop naming it.
    The file the writer replaced held them, and the writer died before recording that it had (see
    ``Output.released``): their keys went with the old file. Returns their serials."""
    serials = list(delivered)
    paths = {row[0] for start in range(0, len(serials), 500) for row in tx.execute(
        f"SELECT DISTINCT folder FROM certificates WHERE sink = 'file' AND folder IS NOT NULL AND serial IN "
        f"({','.join('?' * len(serials[start:start + 500]))})", serials[start:start + 500]).fetchall()}
    gone = []
    for path in sorted(paths):
        rows = tx.execute("SELECT serial, der, keyed FROM certificates WHERE folder = ? AND sink = 'file' AND "
                          "status = 'valid'", (path,)).fetchall()
        try:
            held = file_holds(path, {bytes(der): bool(keyed) for _serial, der, keyed in rows}) if rows else set()
        except UnreadableFile:  # what it holds cannot be told: every row keeps naming it
            continue
        for serial, der, _keyed in rows:
            if bytes(der) not in held:
                tx.execute("UPDATE certificates SET folder = NULL WHERE serial = ? AND status = 'valid'", (serial,))
                gone.append(serial)
    return gone


def pending_words(rows: Iterable[tuple]) -> list[str]:
    """What ``certkit check`` says of the pending rows (``(writer, issued_at, sink)`` each), by what holds them: a
    command still writing them, one on another host (settled there: this host cannot see its folders), one
    that died here (the next command that writes to the inventory, or list, settles those from their files)."""
    from certkit.inventory.rows import parse_iso
    from certkit.text import shown

    alive = streamed = dead = 0
    hosts: dict[str, int] = {}
    for writer, issued_at, sink in rows:
        try:
            recorded = parse_iso(issued_at)
        except (TypeError, ValueError):
            recorded = dt.datetime.now(dt.UTC)
        if writer_alive(writer, recorded):
            alive += 1
        elif sink == "stream":
            streamed += 1
        elif (host := writer_host(writer)) is not None and not is_local(writer):
            hosts[host] = hosts.get(host, 0) + 1
        else:
            dead += 1
    said = []
    if alive:
        said.append(f"{_are(alive)} pending: being written by a certkit command that still runs (or by one on "
                    "another host, which cannot be asked until its lease of 15 minutes has passed)")
    for host, count in sorted(hosts.items()):
        said.append(f"{_are(count)} pending, written on the host {shown(host)} by a command that has not marked them "
                    "within its lease of 15 minutes (stopped, or that host went down): certkit commands there settle "
                    "them by their files; here only one that finds those files complete (a shared folder) can, so "
                    "until then they stay pending, and revocable")
    if dead:
        said.append(f"{_are(dead)} pending, left by a command that died (killed, or a power cut) before it marked "
                    "them: check changes nothing; the next command that writes to the inventory, or certkit list, "
                    "settles them by their files (valid where their bundle or output file holds them, abandoned "
                    "where it does not; where those files cannot be read they stay pending: a command that can "
                    "read them settles those)")
    if streamed:
        said.append(f"{_are(streamed)} pending: they {STREAMED_WORDS}; revoke those the output you kept does not "
                    "hold, and any you do not mean to use")
    return said


def _are(count: int) -> str:
    return "1 certificate is" if count == 1 else f"{count} certificates are"
