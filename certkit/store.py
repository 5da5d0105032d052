"""The CA directory: where a CA's certificate, encrypted key and inventory live.

Layout (the directory is 0700, the key 0600)::

    ca.pem            this CA's certificate
    ca-key.pem        its private key, encrypted PKCS#8 unless created without a passphrase
    parents.pem       the certificates above it, nearest first (absent for a root)
    inventory.sqlite3 every certificate issued (see certkit.inventory)
    certkit-ca.json   only for a team's CA: where the inventory and the key live instead

``certkit-ca.json`` (``init-ca --inventory``, ``--key-uri``) names a PostgreSQL
inventory (``{"inventory": "postgresql://user@host/db"}``, never with a
password) and/or a key in a PKCS#11 token (``"key": "pkcs11:token=...;object=..."``
and ``"pkcs11_module"``); then ``inventory.sqlite3`` or ``ca-key.pem`` is absent.
``CERTKIT_INVENTORY_URL`` overrides the inventory it names. Without the file,
the directory is what it always was: zero setup.

The directory is chosen by ``--ca-dir``, else ``CERTKIT_CA_DIR``, else a
per-user data directory, so issuing works from any folder (mkcert's CAROOT).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

from certkit.atomic import new_folder, sweep_stale, write_new_file
from certkit.ca_checks import check_directory_chain as _check_chain
from certkit.ca_saving import after_saving
from certkit.constants import MAX_CERT_FILE_BYTES
from certkit.errors import CABroken, CAExists, CANotFound, CertkitError, loads_json
from certkit.files import read_limited
from certkit.inventory import Inventory
from certkit.key_encryption import private_key_pem
from certkit.paths import check_lengths
from certkit.store_binding import check_binding
from certkit.store_inventory import bind, check_inventory_file, record_ca_dir, record_saved_ca
from certkit.store_key import load_ca_key
from certkit.testhooks import pause_at
from certkit.text import Secret, shown
from certkit.vocabulary import file_kind_text, serial_hex

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA

CERT_FILE = "ca.pem"
KEY_FILE = "ca-key.pem"
PARENTS_FILE = "parents.pem"
INVENTORY_FILE = "inventory.sqlite3"
CONFIG_FILE = "certkit-ca.json"
CONFIG_KEYS = ("inventory", "key", "pkcs11_module")
ENV_CA_DIR = "CERTKIT_CA_DIR"

Passphrase = Union[Secret, None, Callable[[], Union[Secret, None]]]  # bytes, bytearray, memoryview or str
# What another user who can write the CA directory ("") or a file in it could do, as `certkit check` says it
_AT_STAKE = {"": "add and replace files in it", CERT_FILE: "replace it (and what peers are told to trust)",
             PARENTS_FILE: "replace it (and the chain every bundle hands to peers)", INVENTORY_FILE: "rewrite it (the "
             "record of what this CA issued and revoked, which its CRLs are made from)", CONFIG_FILE: "change it (and "
             "where the inventory and the key are taken from)"}


def default_ca_dir() -> Path:
    """The per-user data directory: XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        # The XDG base directory rules: a relative path in the variable is invalid and ignored (taken as it
        # is, the default CA would be a different folder from each current folder).
        if os.path.isabs(xdg):
            return utf8_path(Path(xdg), "$XDG_DATA_HOME") / "certkit"
        from certkit.files import home_folder

        base = utf8_path(home_folder(), "$HOME") / ".local" / "share"
    return base / "certkit"


def utf8_path(path: Path, label: str) -> Path:
    """``path`` if it is UTF-8 text; else a :class:`CertkitError` naming ``label`` (``$HOME``, ``The CA
    directory``): certkit records the paths of its CA and bundles as UTF-8, in the inventory and in
    messages, so a CA made under such a path could never be opened again."""
    from certkit.text import is_utf8

    text = os.fspath(path)
    if not is_utf8(text):
        shown_bytes = text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        raise CertkitError(f"{label} is '{shown_bytes}', which is not UTF-8 text; certkit records paths and URLs "
                           "as UTF-8.")
    return path


def _unreadable(exc: Exception, data: bytes | None = None) -> str:
    """Why a PEM file of the CA directory cannot be read, in words (not the parser's): what it holds
    instead of a certificate, when that can be told (a key and a certificate copied over each other)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    from certkit.material_kinds import held_instead_of_certificate

    held = held_instead_of_certificate(data) if data else None
    if held is not None:
        return held
    return "it is not a complete PEM certificate (damaged or cut short?); restore it from a backup"


def resolve_ca_dir(path: str | Path | None = None, *, strict: bool = True) -> Path:
    """The CA directory: ``path``, else $CERTKIT_CA_DIR, else the per-user one. A variable set but empty
    is refused (``strict``); else (a folder kept out of CA directories) it is taken as unset."""
    env = os.environ.get(ENV_CA_DIR)
    if path and (env is None or env.strip() or os.fspath(path) != env):
        return utf8_path(Path(path), f"${ENV_CA_DIR}" if os.fspath(path) == env else "The CA directory")
    if strict and env is not None and not env.strip():  # `CERTKIT_CA_DIR="$TEAM_CA"` with the variable unset
        raise CertkitError(f"${ENV_CA_DIR} is set but empty (an unset variable?); set it to a CA directory, or "
                           f"unset it to use the default one ({default_ca_dir()}).")
    return utf8_path(Path(env), f"${ENV_CA_DIR}") if env and env.strip() else default_ca_dir()


class CADirectory:
    """A CA stored on disk. ``CADirectory(path).load(passphrase)`` gives a :class:`~certkit.ca.CA`."""
    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None and (not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str)):
            from certkit.vocabulary import wrong_type

            raise wrong_type("path", "a str or a Path (or None: $CERTKIT_CA_DIR, else the per-user CA)", path)
        if path is not None and "\0" not in os.fspath(path):  # a name the kernel refuses: said, not an OSError
            check_lengths(os.fspath(path), "CA directory", temporary=False)  # creating one: check_new
        # not taken for None (the command line's --ca-dir): an empty $CERTKIT_CA_DIR is said by resolve_ca_dir
        if path is not None and not os.fspath(path).strip() and os.fspath(path) != os.environ.get(ENV_CA_DIR):
            from certkit.errors import InvalidArgument

            raise InvalidArgument(f"path is {'empty (an unset variable?)' if not os.fspath(path) else 'blank'}; "
                                  "give a CA directory, or None for $CERTKIT_CA_DIR, else the per-user CA.")
        self._given = path

    @property
    def path(self) -> Path:
        """Resolved when first used: a command that needs no CA directory (serve --cert --client-ca) is not
        refused for an empty $CERTKIT_CA_DIR, one that uses it is."""
        if "_path" not in self.__dict__:
            self._path = resolve_ca_dir(self._given)
        return self._path

    @path.setter
    def path(self, value: Path) -> None:
        self._path = value

    @property
    def cert_path(self) -> Path:
        return self.path / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def config(self) -> dict[str, str]:
        """What ``certkit-ca.json`` says (empty without it): the inventory URL, the key URI."""
        if not os.path.lexists(self.config_path):
            return {}
        try:
            data = read_limited(self.config_path, MAX_CERT_FILE_BYTES, what="CA configuration")
        except CertkitError as exc:
            raise CABroken(str(exc)) from None
        try:
            config = loads_json(data)
        except ValueError as exc:
            raise CABroken(f"{shown(self.config_path)} is not JSON ({exc}); restore it from a backup.") from None
        if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
            raise CABroken(f"{shown(self.config_path)} is not an object of strings; restore it from a backup.")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise CABroken(f"{shown(self.config_path)} names {', '.join(map(shown, unknown))}, which this certkit "
                           "does not know (written by a newer one?); upgrade certkit.")
        if "key" in config:  # a token CA's key URI: refused here if it names no key (no message shows a PIN in it)
            from certkit.pkcs11.uri import stored_uri_problem

            if problem := stored_uri_problem(config["key"], self.config_path):
                raise CABroken(problem)
        return config

    @property
    def inventory_location(self) -> str | Path:
        """``$CERTKIT_INVENTORY_URL``, else the URL in certkit-ca.json, else inventory.sqlite3 here."""
        from certkit.db_postgres_errors import configured_url  # (a URL holding a secret: refused, naming which)

        return configured_url(self.config.get("inventory"), self.config_path) or self.path / INVENTORY_FILE

    @property
    def inventory(self) -> Inventory:
        return Inventory(self.inventory_location)

    @property
    def key_uri(self) -> str | None:
        """The PKCS#11 URI of the CA key when a token holds it (else the key is ca-key.pem)."""
        return self.config.get("key")

    def exists(self) -> bool:
        return self.cert_path.exists() or self.key_path.exists() or self.config_path.exists()

    # --- creation -----------------------------------------------------------------
    def check_new(self) -> None:
        """Refuse to create a CA here: one exists, the folder is not empty, or it lies in another CA's
        directory (whose backups and copies would carry this CA's key). Checked before any
        passphrase is asked for, and again by :meth:`save_new`."""
        from certkit.paths import check_can_write, check_output, refuse_bundle_as_ca, refuse_controlled_above

        refuse_bundle_as_ca(self.path)
        if self.exists():
            raise CAExists(f"A CA already exists in {self.path}; certkit will not overwrite a CA. Choose another CA "
                           "directory or remove it yourself.")
        if self.path.is_symlink():
            from certkit.errors import UnsafeOutputPath

            raise UnsafeOutputPath(f"The CA directory {shown(self.path)} is a symbolic link; certkit does not write "
                                   "through links. Give the real path.")
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CAExists(f"{self.path} exists and is not an empty folder; choose another CA directory.")
        check_output(self.path, what="CA directory")
        refuse_controlled_above(self.path, "CA directory")
        check_can_write(self.path, "CA directory")

    def save_new(self, ca: "CA", passphrase: Secret | None, *, inventory_url: str | None = None,
                 parent: "CA | None" = None) -> list[Path]:
        """Write ``ca`` as a new CA directory; refuse if one exists there.

        The files are assembled in a temporary sibling folder and renamed into
        place, so a half-created CA directory is never seen. ``inventory_url``
        (PostgreSQL) puts the inventory in that empty database instead of
        inventory.sqlite3; a key held by a PKCS#11 token (:class:`certkit.pkcs11.TokenKey`)
        is named in certkit-ca.json instead of written to ca-key.pem. An intermediate that
        ``parent`` recorded pending (``CA.create(..., directory=...)``) is marked valid in its
        inventory once the directory is in place, and abandoned if it could not be written.
        """
        from certkit.ca_saving import check_not_stored, check_saved, recorded_by, settle_unsaved

        passphrase = check_saved(ca, passphrase, inventory_url)
        check_not_stored(ca, self.path, parent)
        sweep_stale(self.path.absolute().parent, self.path.name)  # what a killed init-ca left here
        self.check_new()
        serial = serial_hex(ca.cert.serial_number)
        recorded = recorded_by(ca, parent)  # CA.create(parent=..., directory=...) recorded it pending
        if recorded is not None:  # here, wherever it was planned to go (a crash: reconciled by looking here)
            record_ca_dir(recorded, serial, self.path)
        try:
            files = self._write_new(ca, passphrase, inventory_url)
        except BaseException:
            if recorded is not None:
                settle_unsaved(recorded, serial, self.path, ca.cert)  # placed after all: valid, else abandoned
            raise
        ca._saved_in = self.path.absolute()  # saved once: a second directory of it is refused
        with after_saving(self.path, ca, recorded, serial):  # what fails from here on says that the CA exists
            pause_at("placed")
            if recorded is not None:
                recorded.mark_issued([serial])
                record_saved_ca(recorded, serial, self.path)
            if ca.inventory is None and ca.store is None:  # from now on it records what it issues, as if loaded here
                from certkit.memory_delivery import record_issued_before

                record_issued_before(ca, self.open().inventory, self)  # and what it issued before, in memory
        return files

    def _write_new(self, ca: "CA", passphrase: bytes | None, inventory_url: str | None) -> list[Path]:
        import json

        files = {CERT_FILE: ca.cert_pem}
        config: dict[str, str] = {}
        if inventory_url:
            config["inventory"] = inventory_url
        token_uri = getattr(ca.key, "uri", None)
        if token_uri is not None:
            config["key"], config["pkcs11_module"] = token_uri.text, ca.key.module
        else:
            files[KEY_FILE] = private_key_pem(ca.key, passphrase)
        if ca.parents:
            from certkit.ca import certificate_pem

            files[PARENTS_FILE] = b"".join(certificate_pem(c) for c in ca.parents)
        if config:
            files[CONFIG_FILE] = (json.dumps(config, indent=2) + "\n").encode()
        try:
            with new_folder(self.path, mode=0o700) as staging:
                for name, data in files.items():
                    write_new_file(staging / name, data, 0o600 if name == KEY_FILE else 0o644)
                if inventory_url:
                    # Last, just before the rename: a database is not rolled back with the folder.
                    inventory = Inventory(inventory_url)
                    inventory.create()
                    bind(inventory, ca.cert, ca._parent_dir)
                else:
                    from certkit.store_inventory import create_staged_inventory

                    create_staged_inventory(staging / INVENTORY_FILE, self.path, ca.cert, ca._parent_dir)
        except OSError as exc:
            from certkit.bundle import os_reason

            raise CertkitError(f"Cannot create the CA directory {shown(self.path)}: {os_reason(exc)}.") from None
        return [self.path / name for name in [*files, *([] if inventory_url else [INVENTORY_FILE])]]

    # --- loading ------------------------------------------------------------------
    def load_certificates(self) -> tuple["x509.Certificate", list["x509.Certificate"]]:
        """The CA certificate and its parents, without touching the key; the folder must be safe
        (no one else can replace what is in it) and the chain must hold together."""
        from cryptography import x509

        from certkit.errors import parse_errors

        if not self.path.is_dir():
            what = "the folder does not exist"  # else a file, a link, a device (in every file's words):
            if os.path.lexists(self.path):
                what = f"it is {'a file' if self.path.is_file() else file_kind_text(self.path)}"
                what = what.removesuffix(", not a file") + ("" if what.endswith("exist") else ", not a folder")
            raise CANotFound(f"No CA in {shown(self.path)}: {what}. Create one with 'certkit init-ca', or point "
                             "--ca-dir / CERTKIT_CA_DIR at an existing one.")
        if os.path.lexists(self.cert_path) and not self.cert_path.is_file():
            raise CABroken(f"{shown(self.cert_path)} is {file_kind_text(self.cert_path)}; the CA directory is "
                           f"damaged: restore {CERT_FILE} from a backup.")
        if not self.cert_path.is_file():
            kept = [name for name in (KEY_FILE, CONFIG_FILE, INVENTORY_FILE) if os.path.lexists(self.path / name)]
            if kept:  # what is left of a CA: never "no CA here, create one" (init-ca refuses it)
                raise CABroken(f"The CA directory {shown(self.path)} has lost its {CERT_FILE} ({' and '.join(kept)} "
                               f"{'are' if len(kept) > 1 else 'is'} there): restore it from a backup, or take it from "
                               "a bundle this CA issued (a "
                               "root's ca.pem; an intermediate's is the first certificate of chain.pem); certkit "
                               "checks it against the key.")
            raise CANotFound(f"No CA in {shown(self.path)}: {CERT_FILE} is missing. Create one with 'certkit init-ca'.")
        self.check_safe()
        parents_path = self.path / PARENTS_FILE
        cert_pem = None
        try:
            cert_pem = read_limited(self.cert_path, MAX_CERT_FILE_BYTES, what="CA certificate")
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (*parse_errors(), OSError) as exc:
            raise CABroken(f"The CA certificate {shown(self.cert_path)} cannot be read: "
                           f"{_unreadable(exc, cert_pem)}.") from None
        try:
            parents = (x509.load_pem_x509_certificates(read_limited(parents_path, MAX_CERT_FILE_BYTES,
                                                                    what="parent certificates"))
                       if parents_path.exists() else [])
        except (*parse_errors(), OSError) as exc:
            raise CABroken(f"The parent certificates {shown(parents_path)} cannot be read: "
                           f"{_unreadable(exc)}.") from None
        _check_chain(self.path, cert, parents)
        return cert, parents

    def check_safe(self) -> None:
        """Refuse a CA directory, or a file in it, that another user could write, saying what they could do."""
        me = os.geteuid()
        for name, stake in _AT_STAKE.items():  # certkit-ca.json says where the inventory and the key are
            path = self.path / name if name else self.path
            try:  # the directory itself may be a link (/etc/pki/current -> ca-2026): judge where it leads
                info = path.stat() if path == self.path else path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode):
                raise CABroken(f"{shown(path)} is a symbolic link; a CA directory holds its own files. "
                               "Replace the link with the file it points to.")
            if info.st_uid not in (me, 0):
                raise CABroken(f"{shown(path)} belongs to another user (uid {info.st_uid}), who could {stake}; use a "
                               "CA directory of your own.")
            if info.st_mode & 0o022:
                raise CABroken(f"{shown(path)} has mode {stat.S_IMODE(info.st_mode):04o}: other users can {stake}. "
                               f"Run: chmod go-w {shown(path)}")

    def open(self) -> "CA":
        """The CA with its certificates and inventory, its key still locked: everything a command
        needs to check a request before asking for the passphrase (:meth:`CA.unlock` decrypts it)."""
        from certkit.ca import CA
        from certkit.paths import refuse_bundle_as_ca

        refuse_bundle_as_ca(self.path, new=False)
        cert, parents = self.load_certificates()
        inventory = self.inventory
        check_inventory_file(inventory)
        # Another CA's inventory (a wrong URL) is refused before this command migrates it or settles its rows; a
        # missing one is said by check(), one that cannot be reached by exists().
        if inventory.db.exists():
            check_binding(inventory, cert)
        inventory.check()
        inventory.current = inventory.db.dialect == "sqlite"  # once moved (inventory migrate), a backup: not read
        return CA(cert, None, parents, inventory=inventory, store=self)

    def load(self, passphrase: Passphrase = None) -> "CA":
        """Load the CA, decrypting its key; ``passphrase`` may be a callable asked only if needed."""
        ca = self.open()
        ca.unlock(passphrase)
        return ca

    def load_key(self, cert: "x509.Certificate", passphrase: Passphrase = None) -> tuple[object, list[str]]:
        """The CA's private key, checked against ``cert``, and warnings about its file. For a key in a
        PKCS#11 token, ``passphrase`` is the token's PIN and the key a :class:`certkit.pkcs11.TokenKey`."""
        return load_ca_key(self, cert, passphrase)

    # --- the inventory, held and moved (certkit.store_inventory) ------------------------
    def hold_inventory(self) -> None:
        """For a server that runs for days (``certkit acme serve``): the SQLite inventory cannot be
        moved from under it for as long as this process lives (:func:`certkit.store_inventory.hold`)."""
        from certkit.store_inventory import hold

        self._held = hold(self)  # released when the process ends

    def move_inventory(self, url: str):
        """Move this CA's SQLite inventory into the empty PostgreSQL database ``url`` and name it in
        certkit-ca.json (:func:`certkit.store_inventory.move`)."""
        from certkit.store_inventory import move

        return move(self, url)
