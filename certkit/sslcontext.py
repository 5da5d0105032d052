"""Ready TLS contexts and files for code and tests: what trustme users reach for, with certkit's
strict purposes.

    ca = CA.create("test CA")
    server = ca.issue_server(["localhost", "127.0.0.1"])
    client = ca.issue_client("alice")
    server_ctx = ca.server_context(server)          # presents server, requires a client of ca
    client_ctx = ca.client_context(client)          # trusts ca, presents client
    with client.files() as paths:                   # cert.pem, privkey.pem, ... in a private temp folder
        requests.get(url, cert=(paths.cert, paths.key), verify=paths.ca)

Python's ``ssl`` loads keys only from files, so a key is written for the
moment OpenSSL reads it, into a private (0700) temporary folder removed at
once; nothing is left on disk.

Trust is exactly the CA asked for: its own certificate is the anchor. For an
intermediate CA that means ``VERIFY_X509_PARTIAL_CHAIN`` (the chain may end at
a trusted certificate that is not self-signed), so a certificate issued by a
sibling intermediate, or straight by the root above, is refused (``certkit
serve`` follows the same rule). For a root CA nothing differs.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CA_FILE, CERT_FILE, FULLCHAIN_FILE, KEY_FILE
from certkit.tlscheck import new_context

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert


def missing_key(issued: "IssuedCert") -> str:
    """Why a certificate comes without its private key, and what to do about it."""
    return (f"certkit does not hold the private key of certificate {issued.serial_hex}: it was signed from a CSR "
            "(the requester keeps the key), or renewed keeping its key without key=. Pass the old private key "
            "(ca.renew(old, key=old_private_key)), or renew with a new key (ca.renew(old, rekey=True)).")


@dataclass(frozen=True)
class BundlePaths:
    """Where :func:`bundle_files` put an issued certificate's files (certbot's names). ``key`` raises
    when there is no key file (``missing`` says why): it never names a file that does not exist."""

    folder: Path
    missing: str | None = None

    @property
    def cert(self) -> Path:
        return self.folder / CERT_FILE

    @property
    def key(self) -> Path:
        if self.missing is not None:
            from certkit.errors import CertkitError

            raise CertkitError(self.missing)
        return self.folder / KEY_FILE

    @property
    def fullchain(self) -> Path:
        return self.folder / FULLCHAIN_FILE

    @property
    def ca(self) -> Path:
        return self.folder / CA_FILE


def refuse_revoked(issued: "IssuedCert", what: str) -> None:
    """As ``write()`` and ``certkit serve --cert`` refuse it: a certificate its CA's inventory records as
    revoked is not ``what`` (nobody may use its key); one whose inventory cannot be read is refused too."""
    from certkit.memory_delivery import recorded_row, refuse_revoked

    refuse_revoked(recorded_row(issued, what), what)


@contextmanager
def bundle_files(issued: "IssuedCert") -> Iterator[BundlePaths]:
    """The bundle of ``issued`` as files in a private temporary folder, removed when the block ends."""
    from certkit.atomic import SECRET_MODE, write_new_file

    refuse_revoked(issued, "handed out as files")
    with tempfile.TemporaryDirectory(prefix="certkit-") as tmp:
        for name, data in issued.bundle_files().items():
            write_new_file(Path(tmp) / name, data, SECRET_MODE, sync=False)
        yield BundlePaths(Path(tmp), None if issued.private_key is not None else missing_key(issued))


@contextmanager
def in_memory(*blobs: bytes) -> Iterator[list[Path]]:
    """Paths from which OpenSSL reads ``blobs`` (``ssl`` loads certificates and keys from files only) that
    never touch a disk: anonymous memory files (memfd), opened through /proc/self/fd, gone when the block ends
    or the process dies, even killed. Where there is no memfd, a private temporary folder (removed when the
    block ends)."""
    import os

    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        from certkit.atomic import SECRET_MODE, write_new_file

        with tempfile.TemporaryDirectory(prefix="certkit-") as tmp:
            paths = [Path(tmp) / f"{i}.pem" for i in range(len(blobs))]
            for path, data in zip(paths, blobs, strict=True):
                write_new_file(path, data, SECRET_MODE, sync=False)
            yield paths
        return
    fds: list[int] = []
    try:
        for data in blobs:
            fds.append(os.memfd_create("certkit", os.MFD_CLOEXEC))
            view = memoryview(data)
            while view:
                view = view[os.write(fds[-1], view):]
        yield [Path(f"/proc/self/fd/{fd}") for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


@contextmanager
def pem_file(data: bytes, name: str = "file.pem") -> Iterator[Path]:
    """``data`` as a private temporary file, removed when the block ends (trustme's ``Blob.tempfile``)."""
    from certkit.atomic import SECRET_MODE, write_new_file

    with tempfile.TemporaryDirectory(prefix="certkit-") as tmp:
        path = Path(tmp) / name
        write_new_file(path, data, SECRET_MODE, sync=False)
        yield path


def configure_cert(issued: "IssuedCert", ctx: ssl.SSLContext) -> None:
    """Make ``ctx`` present ``issued`` (its full chain and key). ``ctx`` is checked first: nothing is
    written for a context that cannot take it."""
    if not isinstance(ctx, ssl.SSLContext):
        from certkit.vocabulary import wrong_type

        raise wrong_type("ctx", "an ssl.SSLContext", ctx)
    if issued.private_key is None:
        from certkit.errors import CertkitError

        raise CertkitError(missing_key(issued))
    refuse_revoked(issued, "presented in a TLS context")
    with in_memory(issued.fullchain_pem, issued.private_key_pem) as (chain, key):
        ctx.load_cert_chain(chain, key)


def configure_trust(ca: "CA", ctx: ssl.SSLContext) -> None:
    """Make ``ctx`` trust certificates issued by ``ca``, and no other CA under the same root: ``ca``'s
    own certificate is the anchor, with a partial chain for an intermediate (see the module's notes)."""
    ctx.load_verify_locations(cadata=ca.cert_pem.decode("ascii"))
    _end_chain_at(ca, ctx)


def _end_chain_at(ca: "CA", ctx: ssl.SSLContext) -> None:
    if ca.parents:  # an intermediate: its certificate ends the chain, its root is not trusted
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN


def server_context(ca: "CA", issued: "IssuedCert", *, client_certificates: str = "required") -> ssl.SSLContext:
    """A server context presenting ``issued``; client certificates issued by ``ca`` (no other CA under its
    root) ``required`` (mutual TLS), ``optional`` or ``none``."""
    modes = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    if not isinstance(client_certificates, str):
        from certkit.vocabulary import wrong_type

        raise wrong_type("client_certificates", f"a str, one of {', '.join(modes)}", client_certificates)
    if client_certificates not in modes:
        from certkit.errors import InvalidArgument
        from certkit.text import shown

        raise InvalidArgument(f"client_certificates must be one of {', '.join(modes)}, not "
                              f"'{shown(client_certificates)}'.")
    ctx = new_context(ssl.PROTOCOL_TLS_SERVER)
    configure_cert(issued, ctx)
    refuse_withdrawn_chain(ca, issued)
    if client_certificates != "none":
        configure_trust(ca, ctx)
    ctx.verify_mode = modes[client_certificates]
    return ctx


def client_context(ca: "CA", issued: "IssuedCert | None" = None) -> ssl.SSLContext:
    """A client context that trusts servers issued by ``ca`` (host names checked; no other CA, not the
    system's) and presents ``issued`` when given."""
    # As ssl.create_default_context(cadata=...) makes it (CERT_REQUIRED, host names checked, and on Python 3.13
    # X.509 strict), but not from it: it opens the file $SSLKEYLOGFILE names and writes every session's secrets.
    ctx = new_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert_pem.decode("ascii"))
    if sys.version_info >= (3, 13):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    _end_chain_at(ca, ctx)
    if issued is not None:
        configure_cert(issued, ctx)
        refuse_withdrawn_chain(ca, issued)
    return ctx


def refuse_withdrawn_chain(ca: "CA", issued: "IssuedCert") -> None:
    """As ``certkit serve --ca-dir ROOT --cert`` refuses it: ``issued``, presented under ``ca``, whose chain passes
    through an intermediate that ``ca``'s inventory records as revoked (or never delivered): every peer that loads
    ``ca``'s next CRL refuses it. An inventory that cannot be read refuses it too: that cannot be told."""
    from certkit.errors import AlreadyRevoked, CertkitError
    from certkit.vocabulary import serial_hex
    from certkit.withdrawals import THIS_CA, issuer_withdrawn

    for above in (c for c in issued.intermediates if ca.inventory is not None and c != ca.cert):
        if above in ca.parents:  # above ca: its record is not in ca's inventory
            break
        try:
            row = ca.inventory.get(serial_hex(above.serial_number))
            why = issuer_withdrawn(row, above, THIS_CA) if row and ca.inventory.certificate(row["serial"]) == above \
                else None
        except CertkitError as exc:
            raise CertkitError(f"Whether the chain of certificate {issued.serial_hex} was revoked cannot be told, so "
                               f"it is not presented in a TLS context: {str(exc).rstrip('.')}.") from None
        if why:
            raise AlreadyRevoked(f"The certificate {issued.serial_hex} is not presented in a TLS context: {why}. "
                                 "Issue a new one from a CA that is not revoked instead.")
