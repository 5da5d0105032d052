"""PKCS#12 (``.p12``/``.pfx``): key, certificate and chain in one password-protected file.

Browsers (via NSS or the OS key store), curl ``--cert-type P12``, Java
keystores and Windows import a client certificate this way. Two encryptions:

- ``modern`` (default): PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for the
  key and certificate bags, HMAC-SHA256 integrity MAC. What OpenSSL 3 writes by
  default; read by OpenSSL 1.1.1+, NSS 3.x, Java 11.0.12+/17, macOS 14+,
  Windows 10 1709+.
- ``legacy``: pbeWithSHA1And3-KeyTripleDES-CBC and an HMAC-SHA1 MAC, the only
  combination older macOS Keychain, older Windows and Java 8 imports accept.
  Weak by today's standards: use it only for those importers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import ENV_P12_PASSWORD, P12_FILE  # noqa: F401 (also this module's public names)
from certkit.errors import CertkitError

if TYPE_CHECKING:
    import datetime as dt

    from cryptography import x509

    from certkit.ca import IssuedCert
    from certkit.text import Secret


@dataclass(frozen=True)
class Encryption:
    name: str
    description: str
    kdf_rounds: int


ENCRYPTIONS = {
    # 100 000 PBKDF2 rounds: a .p12 travels by mail and USB stick, so its password
    # must resist offline guessing; importing still takes well under a second.
    "modern": Encryption("modern", "AES-256-CBC with PBKDF2-SHA256, HMAC-SHA256 MAC", 100_000),
    # 2048 rounds is what `openssl pkcs12 -export -legacy` writes, the value the
    # old importers this flavour exists for have always been tested with.
    "legacy": Encryption("legacy", "3DES (pbeWithSHA1And3-KeyTripleDES-CBC), HMAC-SHA1 MAC", 2048),
}


def pkcs12_bytes(private_key, cert: "x509.Certificate", chain: list["x509.Certificate"], password: Secret,
                 *, friendly_name: str | None = None, legacy: bool = False) -> bytes:
    """A DER PKCS#12 holding ``private_key``, ``cert`` and the CA certificates ``chain``.

    ``friendly_name`` labels the key and certificate in the importer's list
    (Keychain, certmgr, keytool's alias, NSS's nickname); default the subject CN.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    password = check_password(password)
    enc = ENCRYPTIONS["legacy" if legacy else "modern"]
    builder = PrivateFormat.PKCS12.encryption_builder().kdf_rounds(enc.kdf_rounds)
    if legacy:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    name = friendly_name if friendly_name is not None else entry_name(cert)
    return pkcs12.serialize_key_and_certificates(
        name.encode() if name else None, private_key, cert, chain or None, builder.build(password))


# pbeWithSHAAnd3-KeyTripleDES-CBC (1.2.840.113549.1.12.1.3), DER-encoded: a bag encrypted the legacy way,
# as --p12-legacy and `openssl pkcs12 -export -legacy` write a key.
_LEGACY_PBE = bytes.fromhex("060a2a864886f70d010c0103")


def is_legacy(path: Path) -> bool:
    """Whether the PKCS#12 file ``path`` was written the legacy way (3DES), so that one written in its
    place (a renewal's) keeps to what its importer takes; False for one that is gone. One that cannot be
    read is refused (:class:`~certkit.errors.UnreadableFile`), before anything is signed: written again the
    modern way, unasked, it would no longer import where it was made to."""
    import errno
    import os

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.errors import UnreadableFile
    from certkit.files import read_limited
    from certkit.text import shown

    try:
        return _LEGACY_PBE in read_limited(path, MAX_CERT_FILE_BYTES, what="PKCS#12 file")
    except UnreadableFile as exc:
        if exc.errno == errno.ENOENT:
            return False
        why = os.strerror(exc.errno) if exc.errno else str(exc).rstrip(".")
        raise UnreadableFile(f"Whether {shown(path)} was written the legacy way (3DES, for an older importer) "
                             f"cannot be told, so the bundle is not renewed: it cannot be read: {why}. Make it "
                             "readable, or remove it and export it again once renewed (certkit export-p12).",
                             exc.errno) from None
    except CertkitError:  # larger than any PKCS#12 file certkit writes: not one it wrote
        return False


@dataclass(frozen=True)
class RefusedPassword:
    """A bundle.p12 password a bulk renewal was given that the rule of a new secret refuses (a renewal timer
    installed before the rule, whose file holds a NUL byte or several lines): the bundles holding a bundle.p12
    fail with ``reason``, and the others are renewed, as they were before the rule."""
    reason: str


def check_password(password: Secret) -> bytes:
    """A PKCS#12 password: not empty, and one a prompt could give again (UTF-8 text on one line, no NUL, which
    every importer would take as its end: :func:`certkit.text.new_secret_problem`); taken as every library
    secret is (:func:`certkit.text.secret_bytes`: bytes, a bytearray or memoryview, or a str as UTF-8)."""
    from certkit.errors import InvalidArgument
    from certkit.text import new_secret_problem, secret_bytes

    password = secret_bytes(password, "The PKCS#12 password")
    if not password:
        raise CertkitError("The PKCS#12 password is empty; choose a non-empty one.")
    if problem := new_secret_problem(password):
        raise InvalidArgument(f"The PKCS#12 password {problem}.")
    return password


def issued_pkcs12(issued: "IssuedCert", password: Secret, *, legacy: bool = False, key=None,
                  delivering: bool = False) -> bytes:
    """The ``bundle.p12`` of a freshly issued certificate: key, certificate, intermediates and root.
    ``key`` is the private key when the certificate kept one certkit did not generate (renewal)."""
    from certkit.issued import IssuedCert
    from certkit.keys import public_key_der
    from certkit.memory_delivery import recorded_row, refuse_revoked
    from certkit.vocabulary import check_bool, wrong_type

    if not isinstance(issued, IssuedCert):
        raise wrong_type("issued", "an IssuedCert (ca.issue_server(), deliver(...).issued)", issued)
    check_bool("legacy", legacy)
    if not delivering:  # the pipeline's own call, for the bundle it writes: its row is pending, in this delivery
        refuse_revoked(recorded_row(issued, "packed into a PKCS#12 file"), "packed into a PKCS#12 file")
    key = key if key is not None else issued.private_key
    if key is None:
        raise CertkitError("This certificate was signed from a CSR: certkit does not hold its private key, "
                           "so it cannot write a PKCS#12 file for it.")
    if not hasattr(key, "public_key") or public_key_der(key.public_key()) != public_key_der(issued.cert.public_key()):
        raise CertkitError(f"The key given is not the key of the certificate {issued.serial_hex}; a PKCS#12 file "
                           "pairs a certificate with its own key.")
    return pkcs12_bytes(key, issued.cert, [*issued.intermediates, issued.root], password, legacy=legacy)


def common_name(cert: "x509.Certificate") -> str | None:
    """The certificate's subject CN (the friendly name of its PKCS#12 entry)."""
    from certkit.vocabulary import common_name as cn_of

    return cn_of(cert.subject)


def entry_name(cert: "x509.Certificate") -> str | None:
    """The friendly name of the certificate's PKCS#12 entry (keytool's alias): its CN, else (a server name too
    long for a CN, a certificate signed from a CSR without one) its first subjectAltName entry."""
    from cryptography import x509

    if (name := common_name(cert)) is not None:
        return name
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return next((str(n.value) for n in names if isinstance(n.value, str) or hasattr(n.value, "packed")), None)


@dataclass
class BundleFolder:
    """An output folder's certificate, key and CA certificates, read back from disk, and what the
    person exporting it should know (``notes``: an expired certificate, a certificate left out)."""

    folder: Path
    cert: "x509.Certificate"
    private_key: object
    chain: list  # x509.Certificate: the CA certificates above cert, the issuer first, up to the root
    notes: list[str] = field(default_factory=list)


def read_bundle_folder(folder: str | Path, *, renew_with: str | None = "") -> BundleFolder:
    """Read ``cert.pem``, ``privkey.pem`` and (if present) ``chain.pem`` and ``ca.pem`` from ``folder``
    (each through the one bounded reader, :mod:`certkit.material`). ``renew_with`` is what the note of an
    expired certificate adds to its ``certkit renew FOLDER`` (`` --ca-dir DIR``: see
    :func:`certkit.folder_record.ca_option`), or None when no CA directory known issued it."""
    from certkit.constants import CERT_FILE, KEY_FILE, MAX_CERT_FILE_BYTES
    from certkit.files import broken_link, read_limited
    from certkit.keys import load_private_key
    from certkit.material import load_certificates
    from certkit.text import shown

    folder = Path(folder)
    if not folder.is_dir():
        raise CertkitError(f"{shown(folder)} is not a folder; give the output folder of issue-server or "
                           "issue-client.")
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    for path in (cert_path, key_path):
        if path.exists() and not path.is_file():
            from certkit.vocabulary import file_kind_text

            raise CertkitError(f"{shown(path)} is {file_kind_text(path)}; a PKCS#12 file is made from the bundle's "
                               "files.")
        if (broken := broken_link(path)) is not None:  # a loop, or a link to nothing: said as such
            raise CertkitError(f"{broken} A PKCS#12 file is made from the bundle's files: restore it.")
    if not cert_path.is_file():
        raise CertkitError(f"{shown(folder)} holds no cert.pem; give the output folder of issue-server or "
                           "issue-client.")
    if not key_path.is_file():
        raise CertkitError(f"{shown(folder)} holds no privkey.pem (a certificate signed from a CSR?); "
                           "a PKCS#12 file needs the private key.")
    certs = load_certificates(cert_path, "the certificate to pack")  # a CSR or a key there: said so
    cert, notes = certs[0], []
    if len(certs) > 1:
        from certkit.verify_names import cn_text

        notes.append(f"{shown(cert_path)} holds {len(certs)} certificates; only the first, "
                     f"{shown(cn_text(cert.subject))}, is packed (the others: "
                     f"{', '.join(shown(cn_text(c.subject)) for c in certs[1:])})")
    key = load_private_key(read_limited(key_path, MAX_CERT_FILE_BYTES, what="private key"),
                           source=f"key {shown(key_path)}")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CertkitError(f"{shown(key_path)} is not the private key of {shown(cert_path)}; they do not belong "
                           "together.")
    chain = _chain_of(folder, cert, notes)
    if (problem := validity_problem(cert)) is not None:
        notes.append(f"the certificate {problem}: every verifier refuses it"
                     + (_renew_hint(folder, renew_with) if problem.startswith("expired") else " until then"))
    return BundleFolder(folder, cert, key, chain, notes)


def _renew_hint(folder: Path, renew_with: str | None) -> str:
    from certkit.text import shown

    if renew_with is None:
        return (f"; renew it with the CA that issued it (certkit renew {shown(folder)} --ca-dir ITS_CA_DIR) and "
                "export it again")
    return f"; renew it (certkit renew {shown(folder)}{renew_with}) and export it again"


def _chain_of(folder: Path, cert: "x509.Certificate", notes: list[str]) -> list:
    """The CA certificates of the folder's chain.pem and ca.pem that lead from ``cert`` up (its issuer
    first). A certificate there that is no CA (another's client certificate pasted in) is refused: the
    .p12 would hand it to whoever imports it as a CA's. A CA off the way up is left out, with a note."""
    import os

    from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE
    from certkit.material import load_material
    from certkit.signatures import issuer_among
    from certkit.text import shown
    from certkit.verify_names import cn_text
    from certkit.vocabulary import is_ca, leaf_kind, serial_hex

    for name in (CHAIN_FILE, CA_FILE):  # there but no file (a pipe, a folder): never said to be missing
        if os.path.lexists(folder / name) and not (folder / name).is_file():
            from certkit.vocabulary import file_kind_text

            raise CertkitError(f"{shown(folder / name)} is {file_kind_text(folder / name)}; a PKCS#12 file is made "
                               "from the bundle's files: restore it (certkit renew rewrites it).")
    files = [name for name in (CHAIN_FILE, CA_FILE) if (folder / name).is_file()]
    pool: dict = {}  # each CA certificate found -> the file it is in
    for name in files:
        for other, _ in load_material(folder / name).certificates:
            if not is_ca(other):
                kind = {"unknown": "a leaf"}.get(leaf_kind(other), f"a {leaf_kind(other)}")
                raise CertkitError(f"{shown(folder / name)} holds {shown(cn_text(other.subject))}, {kind} "
                                   "certificate, not a CA certificate; a PKCS#12 file's chain holds CA certificates "
                                   "only. Put back the CA files of its bundle (certkit renew rewrites them).")
            pool.setdefault(other, name)
    chain, top = [], cert
    while issuer := issuer_among(top, [ca for ca in pool if ca not in chain and ca != top]):  # a valid one first
        chain.append(issuer)
        top = issuer
    if pool and not chain:
        # another CA's ca.pem copied in: the .p12 would teach whoever imports it to trust the wrong CA
        raise CertkitError(f"None of the CA certificates in {shown(folder)} ({' and '.join(files)}) issued "
                           f"{shown(folder / CERT_FILE)}; they do not belong together. Put back the CA files of "
                           "its bundle (certkit renew rewrites them).")
    for ca in (ca for ca in pool if ca not in chain):
        notes.append(f"{shown(cn_text(ca.subject))} (serial {serial_hex(ca.serial_number)}, in {pool[ca]}) is left "
                     f"out of the file: a CA certificate that is not in the chain of {shown(cn_text(cert.subject))}")
    return chain


def validity_problem(cert: "x509.Certificate", now: "dt.datetime | None" = None) -> str | None:
    """What keeps ``cert`` from being valid ``now``, in the words serve uses (``expired on ...``, ``is not
    valid before ...``); None when it is valid."""
    import datetime as dt

    from certkit.vocabulary import iso, moment_text

    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now:
        return f"expired on {moment_text(iso(cert.not_valid_after_utc))}"
    if cert.not_valid_before_utc > now:
        return f"is not valid before {moment_text(iso(cert.not_valid_before_utc))}"
    return None


def export_folder(folder: str | Path, password: Secret, *, legacy: bool = False, force: bool = False,
                  ca_dir: str | Path | None = None) -> Path:
    """Write ``bundle.p12`` into an existing output folder; refuse to replace one without ``force``, and a
    certificate its CA (``ca_dir``, else $CERTKIT_CA_DIR or the per-user CA:
    :func:`~certkit.pkcs12_issuer.issuing_store`) revoked."""
    from certkit.bundle import check_writable, settle_folder
    from certkit.pkcs12_issuer import issuing_store, refuse_revoked_export
    from certkit.vocabulary import check_bool, wrong_type

    if not isinstance(folder, (str, Path)):
        raise wrong_type("folder", "a str or a Path", folder)
    check_bool("legacy", legacy)
    check_bool("force", force)
    from certkit.issued import check_folder
    from certkit.paths import check_output

    check_folder(folder)  # as write() takes it: not empty, UTF-8 text
    folder = Path(folder)
    check_output(folder / P12_FILE, what="PKCS#12 file")  # as export-p12 checks it: a name too long is said so
    settle_folder(folder)  # a killed writer's leftover beside it (it may hold the key) goes before any refusal
    check_writable(folder, [P12_FILE], force=force)
    bundle = read_bundle_folder(folder)
    refuse_revoked_export(issuing_store(bundle.cert, ca_dir, chain=bundle.chain), bundle.cert)
    data = pkcs12_bytes(bundle.private_key, bundle.cert, bundle.chain, password, legacy=legacy)
    return _put_p12(folder, data, force=force)


def _put_p12(folder: Path, data: bytes, *, force: bool) -> Path:
    """Write ``data`` as the bundle.p12 of ``folder``, the rest of the bundle untouched: a private temporary file in
    the folder, renamed into place (over the old one only with ``force``). Never the folder swapped whole: an
    export killed while writing left a copy of the bundle, its private key included, in a hidden folder beside it
    that only a later write there removed (``certkit list`` and ``check`` did not, nor ``rm -r`` of the folder);
    now it leaves at most its temporary file in the folder, which the next write there removes."""
    import os

    from certkit.atomic import fsync_dir, temporary_name, unlink_quietly
    from certkit.bundle import bundle_error
    from certkit.errors import OutputExists
    from certkit.file_modes import mode_for, write_kept
    from certkit.formats.placing import put_new
    from certkit.testhooks import pause_at
    from certkit.text import shown

    path = folder / P12_FILE
    tmp = path.with_name(temporary_name(P12_FILE))
    try:
        try:
            write_kept(tmp, data, path, mode_for(P12_FILE, data))
            pause_at("staged")
            os.replace(tmp, path) if force else put_new(tmp, path)
        except BaseException:
            unlink_quietly(tmp)
            raise
    except FileExistsError:
        raise OutputExists(f"{shown(path)} appeared while it was being written; nothing was replaced.",
                           replaceable=False) from None
    except OSError as exc:
        raise bundle_error(folder, exc, "nothing was replaced (the bundle was left as it was)") from None
    fsync_dir(folder)
    return path


def _spki(public_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
