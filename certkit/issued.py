"""An issued certificate, as the CA hands it out: the certificate, its key, its chain, its files."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE
from certkit.key_encryption import private_key_pem
from certkit.names import Identity
from certkit.vocabulary import serial_hex

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from cryptography import x509

    from certkit.inventory.rows import Facts
    from certkit.keys import PrivateKey
    from certkit.sslcontext import BundlePaths


def certificate_pem(cert: "x509.Certificate") -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def pem_of_der(der: bytes) -> bytes:
    """A certificate's PEM from its DER, byte for byte what ``public_bytes(Encoding.PEM)`` writes (RFC 7468:
    base64 in lines of 64 characters, each ending in a line feed), in a third of the time: a batch has the
    DER already (its inventory row), and cryptography would serialize the certificate again."""
    from binascii import b2a_base64

    text = b2a_base64(der, newline=False)
    return b"".join([b"-----BEGIN CERTIFICATE-----\n", *[text[i:i + 64] + b"\n" for i in range(0, len(text), 64)],
                     b"-----END CERTIFICATE-----\n"])


@dataclass
class IssuedCert:
    """A certificate the CA issued, with its key (unless signed from a CSR) and chain."""

    kind: str  # "server" | "client" | "peer"
    cert: "x509.Certificate"
    private_key: "PrivateKey | None"  # None when certkit does not hold it (a CSR's, a renewal keeping it)
    intermediates: list  # x509.Certificate, nearest issuer first; empty under a root
    root: "x509.Certificate"
    identities: list[Identity]
    notes: list[str] = field(default_factory=list)
    # For a CSR: the extensions it requested that the certificate carries as asked, and what it
    # asked for but did not get (extensions, subject attributes, SAN entries), in words.
    granted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    # The subject as it was given to the builder (the certificate's, without parsing it back).
    subject: "x509.Name | None" = field(default=None, repr=False)
    # The CA directories of the CA that issued it (CA.directories), where write() never writes; any
    # other CA directory is told by what it holds (certkit.paths.is_ca_directory).
    ca_directories: list = field(default_factory=list, repr=False)
    # For a certificate a CA directory issued to memory: what write() records of the folder it goes to
    # (certkit.memory_delivery.WriteRecorder); None otherwise.
    recorder: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def serial_hex(self) -> str:
        return serial_hex(self.cert.serial_number)

    @cached_property
    def facts(self) -> "Facts":
        """Serial, subject, names, dates, fingerprint and DER, taken from the certificate once: the
        inventory row and a batch's JSON line or Secret say the same."""
        from certkit.inventory.rows import facts_of

        return facts_of(self.cert, self.san_text, self.subject)

    @property
    def der(self) -> bytes:
        return self.facts.der

    @property
    def fingerprint_sha256(self) -> str:
        return self.facts.fingerprint

    @cached_property
    def san_text(self) -> list[str]:
        """The SAN entries as :func:`certkit.vocabulary.san_entries` writes them, from the identities it
        was issued for (the profile put exactly these in, or the subject DN when there are none)."""
        if self.identities:
            return [str(identity) for identity in self.identities]
        return [f"DirName:{(self.subject if self.subject is not None else self.cert.subject).rfc4514_string()}"]

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def cert_pem(self) -> bytes:
        facts = self.__dict__.get("facts")  # taken already (the row recorded): its DER, not the certificate again
        return pem_of_der(facts.der) if facts is not None else certificate_pem(self.cert)

    @property
    def private_key_pem(self) -> bytes | None:
        return private_key_pem(self.private_key) if self.private_key is not None else None

    @property
    def chain_pem(self) -> bytes:
        return b"".join(certificate_pem(c) for c in self.intermediates)

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem

    @property
    def issuer_cert(self):
        """The certificate of the CA that signed this one."""
        return self.intermediates[0] if self.intermediates else self.root

    @property
    def ca_pem(self) -> bytes:
        return certificate_pem(self.root)

    def bundle_files(self) -> dict[str, bytes]:
        """The files of an output folder, by name (certbot's names)."""
        cert_pem = self.cert_pem  # once: issue-batch writes thousands of these
        files = {CERT_FILE: cert_pem}
        if self.private_key is not None:
            files[KEY_FILE] = self.private_key_pem
        files[FULLCHAIN_FILE] = cert_pem + self.chain_pem
        if self.intermediates:
            files[CHAIN_FILE] = self.chain_pem
        files[CA_FILE] = self.ca_pem
        return files

    def configure_cert(self, ctx: "ssl.SSLContext") -> None:
        """Make the ``ssl.SSLContext`` ``ctx`` present this certificate (chain and key); anything else
        is a TypeError, before the key is written anywhere."""
        from certkit.sslcontext import configure_cert

        configure_cert(self, ctx)

    def files(self) -> "AbstractContextManager[BundlePaths]":
        """Context manager: the bundle as files in a private temporary folder (``.cert``, ``.key``,
        ``.fullchain``, ``.ca`` paths), removed when the block ends. Without a private key (signed
        from a CSR, renewed without ``key=``) there is no key file, and ``.key`` raises saying so."""
        from certkit.sslcontext import bundle_files

        return bundle_files(self)

    def write(self, folder: str | os.PathLike[str], *, force: bool = False,
              extra: Mapping[str, bytes] | None = None) -> list[Path]:
        """Write the bundle, plus ``extra`` files (plain names such as ``bundle.p12``, none of the
        bundle's own), into ``folder`` atomically (see :func:`certkit.bundle.write_bundle`); return the
        paths written. Without a private key the bundle has no privkey.pem. Over an old bundle
        (``force``), the old bundle's files that this one lacks are removed; other files are kept. Extra
        files are 0600 unless plainly public (certificates), and no file replaced becomes more readable.

        Like every certkit output, ``folder`` may not be, or lie inside, a CA directory, whatever
        ``force`` says. For certificates of a CA directory, issue with :func:`certkit.issuing.deliver`
        and a FolderTarget instead: that records the folder. A certificate such a CA issued to memory is
        recorded in the first folder it is written to, and, written over the bundle of the certificate it
        renews, as that one's successor (:mod:`certkit.memory_delivery`)."""
        from certkit.bundle import check_extra, of_another_kind, write_bundle
        from certkit.constants import BUNDLE_FILES
        from certkit.errors import OutputExists
        from certkit.paths import check_output

        _check_write(folder, extra, force)
        if self.recorder is None:  # issued through deliver(): its CA's inventory may record it revoked since
            from certkit.memory_delivery import recorded_row, refuse_revoked

            refuse_revoked(recorded_row(self, "written"), "written")
        files = self.bundle_files()
        files |= check_extra(extra, files)
        check_output(folder, self.ca_directories, what="output folder")
        from certkit.bundle_locks import folders_held

        dirs = self.recorder.ca.directories if self.recorder is not None else []
        # One writer of a folder at a time: other processes (the folder's lock) and this process's other threads.
        with _thread_held(folder), folders_held(dirs[0] if dirs else None, [Path(folder)]):
            planned = self.recorder.before(self, folder) if self.recorder is not None else None
            foreign = None
            if force:  # read before the old bundle goes: another CA's certificate, its key going with it
                from certkit.inventory.succession import foreign_replaced

                foreign = foreign_replaced(self.issuer_cert, folder)
            # A whole new bundle: an old one's files that this one lacks (its chain.pem, bundle.p12, a
            # private key that is not this certificate's) go with it, as with the issuing commands' --force.
            # Recorded pending with its folder first (before()), settled after (after()), as deliver() does.
            try:
                written = write_bundle(Path(folder), files, force=force, replaces=BUNDLE_FILES)
            except BaseException as exc:
                if planned is not None:
                    self.recorder.undo(self, planned, type(exc).__name__ == "HalfWritten")
                if isinstance(exc, OutputExists):  # a bundle of another kind is said as such
                    from certkit.bundle import certified_names

                    names = certified_names(self.identities, self.subject or self.cert.subject)
                    raise of_another_kind(exc, Path(folder), self.kind, names) from None
                raise
            if planned is not None:
                self.notes += self.recorder.after(self, planned)
        if foreign:
            import warnings

            warnings.warn(foreign[0].upper() + foreign[1:], stacklevel=2)
        return written


_THREAD_LOCKS: dict[str, "threading.RLock"] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def _thread_held(folder) -> "Iterator[None]":
    """Hold ``folder`` against this process's other threads: the folder lock (an ``fcntl`` range) is the
    process's, so two threads would both walk in, each taking the old bundle for the one it replaces."""
    key = os.path.realpath(folder)  # (not abspath first: it takes link/.. by name, the kernel as it leads)
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(key, threading.RLock())
    with lock:
        yield


def check_folder(folder, *, what: str = "folder") -> None:
    """A bundle folder as the library is given it (``write``, ``FolderTarget``), refused as the command line
    refuses ``--out``: not a str or a Path (a TypeError that names it, not a failure deep inside, nor a false
    one: a bytes folder is not "a bytes-like object required"), empty (an unset variable: taken as it is, the
    current folder), or not UTF-8 text (no path the inventory records, nor a message, can hold it)."""
    from certkit.errors import InvalidArgument, UnsafeOutputPath
    from certkit.names import check_utf8
    from certkit.vocabulary import wrong_type

    if not isinstance(folder, (str, os.PathLike)) or not isinstance(os.fspath(folder), str):
        raise wrong_type(what, "a str or a Path", folder)
    if not os.fspath(folder).strip():
        raise InvalidArgument(f"{what} is {'empty (an unset variable?)' if not os.fspath(folder) else 'blank'}; give "
                              + ("the folder the bundle goes to ('.' for the current folder)." if what == "folder"
                                 else "the file the certificates go to (None for standard output)."))
    check_utf8(os.fspath(folder), "The output folder" if what == "folder" else "The output file", UnsafeOutputPath)


def certificate_argument(value, what: str) -> "x509.Certificate":
    """A certificate as the library is given one (``describe_certificate``, ``verify_certificate``): an
    x509.Certificate, or what the library hands out, an IssuedCert or a CA, whose ``cert`` it is; anything
    else is a TypeError naming ``what``, not an AttributeError deep inside."""
    from cryptography import x509

    from certkit.ca import CA
    from certkit.vocabulary import wrong_type

    if isinstance(value, (IssuedCert, CA)):
        return value.cert
    if not isinstance(value, x509.Certificate):
        raise wrong_type(what, "an x509.Certificate (x509.load_pem_x509_certificate() reads a PEM), an IssuedCert or "
                         "a CA", value)
    return value


def p12_guard(target) -> "Callable[[], None]":
    """The check, made once the target is about to be recorded (its ``extra=`` may be set after it is
    made, once a password is read: ``issue-server --p12`` does), that a ``FolderTarget(p12=True)`` has an
    ``extra`` that makes the bundle.p12: ``p12`` itself only checks for one already in the folder."""
    def guard() -> None:
        if target.extra is None:
            from certkit.errors import InvalidArgument

            raise InvalidArgument("FolderTarget(p12=True) writes no bundle.p12 by itself: pass extra=lambda issued: "
                                  "{'bundle.p12': certkit.pkcs12.issued_pkcs12(issued, password)}, with the password "
                                  "as bytes (read from a file, never from the command line), or leave p12 out. "
                                  "Nothing was recorded or written.")
    return guard


def _check_write(folder, extra, force) -> None:
    """``write``'s arguments, each refused with a sentence before anything is written: the folder
    (:func:`check_folder`); ``extra`` a dict of plain names that are UTF-8 text without control characters
    (the folder's own rule: a name with a line break breaks every tool reading paths a line at a time)."""
    from certkit.errors import UnsafeOutputPath
    from certkit.names import check_utf8
    from certkit.paths import _has_control
    from certkit.text import shown
    from certkit.vocabulary import check_bool, wrong_type

    check_bool("force", force)
    check_folder(folder)
    if extra is not None and not (isinstance(extra, Mapping) and all(
            isinstance(name, str) and isinstance(data, (bytes, bytearray)) for name, data in extra.items())):
        raise wrong_type("extra", "a dict of file name (str) -> content (bytes)", extra, secret=True)
    for name in extra or {}:
        check_utf8(name, "The extra file name", UnsafeOutputPath)
        if _has_control(name) and "\0" not in name:  # a NUL: no plain name at all (check_extra says so)
            raise UnsafeOutputPath(f"The extra file name {shown(name)} contains a control character; certkit does not "
                                   "create names that break tools reading paths a line at a time. Choose another "
                                   "name.")
