"""What the inventory records of a one-output file and the folders around it: which certificates a file
``--force`` overwrites held (:func:`identity`, :func:`release`), and the bundle folders no output file
may be written into (:func:`refuse_a_bundle_file`, :func:`refuse_a_recorded_file`)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import BUNDLE_FILES, CERT_FILE, FULLCHAIN_FILE, KEY_FILE, P12_FILE
from certkit.errors import UnsafeOutputPath
from certkit.formats.file_kinds import holds_a_private_key
from certkit.paths import absolute
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.inventory import Inventory


def identity(names: list[str], subject: str):
    """What a recorded certificate is for: its SAN entries, in any order; its subject when those only
    repeat it (a client known by its common name alone)."""
    if names and all(n.startswith("DirName:") for n in names):
        return ("subject", subject)
    return frozenset(names)


def release(inventory: "Inventory", path: Path, serials: list[str]) -> list[str]:
    """The certificates of ``serials``, recorded in the output file ``path`` that was just replaced, that no
    new certificate succeeds: their rows stop naming the file (it no longer holds them nor their keys).
    Returns their serials."""
    from certkit.errors import InventoryError

    gone = []
    try:
        with inventory.transaction(write=True) as tx:
            for serial in serials:
                if tx.execute("UPDATE certificates SET folder = NULL WHERE serial = ? AND folder = ? AND sink = "
                              "'file' AND status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates n WHERE "
                              "n.renewed_from = ? AND n.status IN ('valid', 'revoked'))",
                              (serial, str(path), serial)).rowcount:
                    gone.append(serial)
    except InventoryError as exc:  # the file is in place, the certificates issued: said, with what is now untrue
        listed = ", ".join(serials[:3]) + (", ..." if len(serials) > 3 else "")
        raise InventoryError(f"{str(exc).rstrip()} {shown(path)} was replaced and holds what this command issued; "
                             f"the inventory still says it holds the {len(serials)} certificate(s) it held before "
                             f"({listed}), whose keys went with the old file: revoke any that nobody else "
                             "holds.") from None
    return gone


# Files certkit reads that the environment names: an inventory, and what PostgreSQL (libpq) and SoftHSM read.
_ENV_FILES = ("CERTKIT_INVENTORY_URL", "PGPASSFILE", "PGSERVICEFILE", "PGSSLKEY", "PGSSLCERT", "PGSSLROOTCERT",
              "SOFTHSM2_CONF")
# What libpq reads for an inventory on PostgreSQL when nothing names them, in the home folder: the password file,
# the service file, the client certificate and its key, the CAs it checks the server with. (Not root.crl: a CRL
# of this CA is what ``certkit crl`` writes, and refreshing it there is its use.)
_LIBPQ_HOME_FILES = (".pgpass", ".pg_service.conf", ".postgresql/postgresql.key", ".postgresql/postgresql.crt",
                     ".postgresql/root.crt")
# The parameters of an inventory's PostgreSQL URL (or key=value string) that name a file libpq reads.
_URL_FILES = ("passfile", "sslkey", "sslcert", "sslrootcert")
# An SQLite database (an inventory), its write-ahead log (two magics) and its rollback journal.
_SQLITE_MAGIC = (b"SQLite format 3\x00", b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83", b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")


def refuse_a_file_certkit_reads(path: Path, text: str, inventory: "Inventory | None" = None) -> None:
    """Refuse the output file ``path`` (given as ``text``) when certkit reads it (:func:`files_certkit_reads`:
    what the environment names, libpq's own files, the files ``inventory``'s URL names), or when it is an
    SQLite database, wherever it is kept (an inventory: the record of every certificate), even with --force."""
    for value, what in files_certkit_reads(inventory):
        try:
            same = bool(value) and os.path.isfile(value) and os.path.samefile(value, path)
        except (OSError, ValueError):
            continue
        if same:
            raise UnsafeOutputPath(f"{shown(text)} is {what}; certkit will not write over it, even with --force. "
                                   "Choose another file.")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read
            return
        with open(path, "rb") as file:
            head = file.read(16)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:  # what it holds cannot be told, so it is not written over
        raise _cannot_check(text, exc) from None
    if head.startswith(_SQLITE_MAGIC):
        raise UnsafeOutputPath(f"{shown(text)} is an SQLite database (an inventory keeps the record of every "
                               "certificate in one); certkit will not write over it, even with --force. Choose "
                               "another file.")


def files_certkit_reads(inventory: "Inventory | None" = None) -> Iterator[tuple[str, str]]:
    """(a path, what it is) for each file certkit, or libpq for it, reads whoever names it: the files the
    environment names ($CERTKIT_INVENTORY_URL, $PGPASSFILE...), libpq's own in the home folder (~/.pgpass,
    ~/.postgresql/postgresql.key...) and in $PGSYSCONFDIR, and those the inventory URL's ``passfile=``,
    ``sslkey=``... name (``inventory``'s, and $CERTKIT_INVENTORY_URL's)."""
    for name in _ENV_FILES:
        value = os.environ.get(name, "")
        value = value[len("sqlite:///"):] if value.startswith("sqlite:///") else value
        yield value, f"the file ${name} names, which certkit reads"
    if os.environ.get("PGSYSCONFDIR"):
        yield (os.path.join(os.environ["PGSYSCONFDIR"], "pg_service.conf"),
               "the service file in $PGSYSCONFDIR, which libpq reads for an inventory on PostgreSQL")
    for home in _homes():
        for name in _LIBPQ_HOME_FILES:
            yield os.path.join(home, name), f"libpq's ~/{name}, which it reads for an inventory on PostgreSQL"
    urls = {os.environ.get("CERTKIT_INVENTORY_URL", ""), getattr(getattr(inventory, "db", None), "url", None) or ""}
    for url in urls - {""}:
        for key, value in _url_files(url):
            yield value, f"the file the inventory URL's {key}= names, which libpq reads for the inventory"


def _homes() -> set[str]:
    """The home folders libpq may take for ~: $HOME, and the user's in the password database."""
    import pwd

    homes = {os.environ.get("HOME", "")}
    with contextlib.suppress(KeyError, OSError):
        homes.add(pwd.getpwuid(os.geteuid()).pw_dir)
    return homes - {""}


def _url_files(url: str) -> list[tuple[str, str]]:
    """The (parameter, file) pairs of a PostgreSQL URL or key=value string that name a file libpq reads."""
    if url.startswith("sqlite:") or ("=" not in url and "?" not in url):
        return []
    params: dict[str, str] = {}
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception:  # no psycopg (then no PostgreSQL inventory either), or no URL it reads: its query, as a URL's
        from urllib.parse import parse_qsl, urlsplit

        with contextlib.suppress(ValueError):
            params = dict(parse_qsl(urlsplit(url).query))
    return [(key, params[key]) for key in _URL_FILES if params.get(key)]


def refuse_a_bundle_file(path: Path, text: str, inventory: "Inventory | None") -> None:
    """Refuse the output file ``path`` (given as ``text``) when it is a file of a bundle folder the inventory
    records (its cert.pem, privkey.pem...): written over, the inventory would go on saying the folder holds
    its certificate, whose key would be gone. A bundle folder no inventory here records (another CA's) is
    refused by what it holds."""
    if path.name not in (*BUNDLE_FILES, P12_FILE):
        return
    rows = [] if inventory is None else inventory.rows(
        "WHERE folder = ? AND (sink IS NULL OR sink = 'folder') AND status IN ('valid', 'pending') ORDER BY "
        "issued_at DESC LIMIT 1", (str(path.parent),))
    if rows:
        raise UnsafeOutputPath(f"{shown(text)} is the {path.name} of the bundle folder of certificate "
                               f"{rows[0]['serial']} ({rows[0]['status']}), which the inventory records there; "
                               "certkit will not write another format over it, even with --force. Choose another "
                               "file.")
    if _is_a_bundle_folder(path.parent):
        raise UnsafeOutputPath(f"{shown(text)} is the {path.name} of a bundle folder (it holds {CERT_FILE} and "
                               f"{KEY_FILE} or {FULLCHAIN_FILE}); certkit will not write another format over a "
                               "bundle's file, even with --force. Choose another file.")


def refuse_a_recorded_file(path: str | Path, inventory: "Inventory | None", *, what: str = "a CRL") -> None:
    """Refuse writing ``what`` over a file the inventory records as holding certificates (a jsonl, k8s or tar
    output, and its keys) or over a recorded bundle's file, even with --force: the keys would be gone, and the
    inventory would go on saying they are there. Nor over any other file holding a private key (another CA's
    output or bundle, the user's own key file)."""
    real = Path(os.path.realpath(os.path.dirname(absolute(path)))) / Path(path).name
    refuse_a_file_certkit_reads(real, str(path), inventory)
    refuse_a_bundle_file(real, str(path), inventory)
    rows = [] if inventory is None else inventory.rows(
        "WHERE folder = ? AND sink = 'file' AND status IN ('valid', 'pending') ORDER BY issued_at DESC LIMIT 1",
        (str(real),))
    if rows:
        raise UnsafeOutputPath(f"{shown(path)} holds certificate {rows[0]['serial']} and its private key (a --format "
                               f"jsonl, k8s or tar output), which the inventory records there; certkit will not "
                               f"write {what} over it, even with --force. Choose another file.")
    try:
        holds_key = holds_a_private_key(real)
    except OSError as exc:
        raise _cannot_check(str(path), exc) from None
    if holds_key:  # another CA's output, or a key file of the user's own
        raise UnsafeOutputPath(f"{shown(path)} holds a private key; certkit will not write {what} over it, even "
                               "with --force. Choose another file.")


def issued_into(path: Path, inventory: "Inventory | None") -> str:
    """What the refusal to write over the output file ``path`` without --force adds when the inventory records
    certificates issued into it: the command that put it in place finished (one stopped just after it did too, its
    rows settled valid by the next command), and --force would issue them all again, those staying valid."""
    if inventory is None:
        return ""
    with inventory._read(readonly=True) as tx:
        count = tx.execute("SELECT COUNT(*) FROM certificates WHERE folder = ? AND sink = 'file' AND status IN "
                           "('valid', 'pending')", (str(path),)).fetchone()[0]
    if not count:
        return ""
    them, it = ("1 certificate", "it") if count == 1 else (f"{count:,} certificates", "them")
    stays = "the one in it stays" if count == 1 else f"the {count:,} in it stay"
    return (f", holding {them} this CA recorded valid ('certkit list' shows {it}): the command that wrote it "
            f"finished, even if stopped just after putting it in place. --force issues {it} again ({stays} valid)")


def refuse_a_key_file(path: Path, text: str) -> None:
    """Refuse writing a jsonl, k8s or tar output over a file holding a private key that is no such output (a key
    file of the user's own, an OpenSSH key, a PKCS#12 file, a keystore), even with --force: the rule of every
    output (a CRL is written over none, :func:`refuse_a_recorded_file`), but for an earlier output of these
    formats, which is what --force replaces (its certificates recorded as replaced or released)."""
    from certkit.errors import CertkitError
    from certkit.formats.reading import holds_a_whole_record

    try:
        if not holds_a_private_key(path) or holds_a_whole_record(path):
            return
    except OSError as exc:
        raise _cannot_check(text, exc) from None
    except CertkitError as exc:  # the file system refused the read (reading.UnreadableFile)
        number = getattr(exc, "errno", None)
        raise _cannot_check(text, OSError(number, os.strerror(number) if number else str(exc))) from None
    raise UnsafeOutputPath(f"{shown(text)} holds a private key and is no jsonl, k8s or tar output certkit wrote; "
                           "certkit will not write over it, even with --force. Choose another file.")


def _cannot_check(text: str, exc: OSError) -> UnsafeOutputPath:
    return UnsafeOutputPath(f"{shown(text)} cannot be read ({exc.strerror or exc}), so whether it holds a private key "
                            "or an inventory cannot be told; certkit will not write over it, even with --force. "
                            "Choose another file, or make it readable.")


def _is_a_bundle_folder(folder: Path) -> bool:
    return (folder / CERT_FILE).is_file() and ((folder / KEY_FILE).is_file() or (folder / FULLCHAIN_FILE).is_file())


def foreign_notes(path: Path, ca) -> list[str]:
    """Notes for the certificates of another CA than ``ca`` in the output file ``path`` that ``--force``
    overwrites: this CA cannot record them as gone, and their keys go with the file (named, so that their
    CA can revoke them)."""
    from cryptography import x509

    from certkit.formats.reading import certificates_in
    from certkit.inventory.succession import foreign_note, of_this_ca

    if not path.is_file():
        return []
    certs = [x509.load_der_x509_certificate(der) for der in certificates_in(path)]
    return [foreign_note(cert, "file") for cert in certs if not of_this_ca(cert, ca.cert)]


_COMPRESSED = (".gz", ".tgz", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".zst", ".tzst", ".lz", ".lzma", ".Z", ".lz4",
               ".taz", ".tlz", ".lzo", ".br", ".zip", ".7z", ".rar")
_PLAIN = {"tar": ("archive", "an uncompressed tar", ".tar"), "jsonl": ("file", "uncompressed JSON lines", ".jsonl"),
          "k8s": ("file", "uncompressed YAML", ".yaml"), "crl": ("file", "an uncompressed PEM CRL", ".pem"),
          "crl-der": ("file", "an uncompressed DER CRL", ".der")}


def refuse_compressed_name(path: Path | None, text: str, stream, fmt: str) -> None:
    """Refuse an output named as a compressed one (``.tar.gz``, ``> x.TGZ``, ``secrets.yaml.gz``, ``.jsonl.zst``,
    ``crl --out crl.pem.gz``): certkit writes it uncompressed, and what reads it by its name (``tar -tzf``,
    ``zcat``, ``kubectl``) fails."""
    from certkit.formats.encoding import FormatRefused

    if path is None:  # standard output redirected to a file (> fleet.tar.gz): its name, as the kernel knows it
        with contextlib.suppress(OSError, ValueError, AttributeError):
            text = os.readlink(f"/proc/self/fd/{stream.fileno()}")
    if text.lower().endswith(tuple(suffix.lower() for suffix in _COMPRESSED)):
        kind, what, suffix = _PLAIN[fmt]
        raise FormatRefused(f"{shown(text)} is named as a compressed {kind}, but certkit writes {what}; name it "
                            f"{suffix}, or write to standard output and compress it: --out - | gzip")


def refuse_unreadable_tar(path: Path | None, text: str, stream) -> None:
    """Refuse a tar archive that tar would not read as it is given: one named as a compressed archive, in any case
    (``.tar.gz``, ``> x.TGZ``: certkit writes an uncompressed one, and ``tar -tzf`` fails on it), or one appended to a
    file that holds data already (``>> fleet.tar``: tar stops at the first archive's end, and never sees the
    new certificates or their keys, which the inventory would say were delivered)."""
    from certkit.formats.encoding import FormatRefused

    refuse_compressed_name(path, text, stream, "tar")
    if path is None and appended_to(stream) is not None:
        raise FormatRefused("Standard output is a file that already holds data (>>?): a tar archive written after it "
                            "is one tar never reads (it stops at the first archive's end); write a new file "
                            "(--out FILE, or > FILE).")


def appended_to(stream) -> int | None:
    """The descriptor of standard output (``stream``) when it appends to a regular file that already holds data
    (``>> FILE``, or a file written on from where it was left), else None: a pipe, a terminal, a new file."""
    try:
        import fcntl

        fd = stream.fileno()
        appended = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND or os.lseek(fd, 0, os.SEEK_CUR) > 0
        holds = stat.S_ISREG(os.fstat(fd).st_mode) and os.fstat(fd).st_size > 0
    except (OSError, ValueError, AttributeError):  # no descriptor, or one that cannot be asked: a pipe's end
        return None
    return fd if appended and holds else None


def names_appended_to(stream, fmt: str) -> set[str]:
    """What the records already in the file standard output appends to (:func:`appended_to`) are called: its
    Secrets' names (k8s), its records' ``name`` (jsonl); none for a file that cannot be read back (write-only)."""
    from certkit.formats.reading import record_names

    fd = appended_to(stream) if fmt in ("k8s", "jsonl") else None
    if fd is None:
        return set()
    try:  # opened anew for reading: standard output is open for writing only
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return record_names(f, fmt)
    except OSError:
        return set()


def refuse_held_name(held: set[str], key: str, fmt: str) -> None:
    """Refuse the Secret name (a jsonl name) ``key`` that the file standard output appends to holds already
    (``held``: :func:`names_appended_to`), as two lines of one batch are refused."""
    if key in held:
        from certkit.formats.encoding import FormatRefused

        what = f"a Secret named '{shown(key)}'" if fmt == "k8s" else f"a record named '{shown(key)}'"
        then = ("kubectl apply -f would replace that Secret by this one, and its certificate would be gone "
                "from the cluster" if fmt == "k8s" else "a reader by name would take one for the other")
        raise FormatRefused(f"Standard output is a file that already holds {what} (>>?): {then}. Write this "
                            "certificate to a new file (--out FILE, or > FILE).")


def refuse_output_misfits(path: Path | None, text: str, inventory, fmt: str, stream=None) -> None:
    """For a one-output file at ``path`` (None: standard output, ``stream``): what no --force writes over
    (:func:`refuse_a_file_certkit_reads`, :func:`refuse_a_bundle_file`, :func:`refuse_a_key_file`), and a tar
    archive tar would not read (:func:`refuse_unreadable_tar`)."""
    from certkit.formats.replaced import refuse_a_bad_append, refuse_a_foreign_file

    if path is not None:
        refuse_a_file_certkit_reads(path, text, inventory)
        refuse_a_bundle_file(path, text, inventory)
        refuse_a_key_file(path, text)
        refuse_a_foreign_file(path, text, fmt)
    elif fmt in ("jsonl", "k8s"):
        refuse_a_bad_append(stream, fmt)
    if fmt == "tar":
        refuse_unreadable_tar(path, text, stream)
    elif fmt in _PLAIN:
        refuse_compressed_name(path, text, stream, fmt)

