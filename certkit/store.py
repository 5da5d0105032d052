"""The CA directory: where a CA's certificate, encrypted key and inventory live.

Layout (the directory is 0700, the key 0600)::

    ca.pem            this CA's certificate
    ca-key.pem        its private key, encrypted PKCS#8 unless created without a passphrase
    parents.pem       the certificates above it, nearest first (absent for a root)
    inventory.sqlite3 every certificate issued (see certkit.inventory)

The directory is chosen by ``--ca-dir``, else ``CERTKIT_CA_DIR``, else a
per-user data directory, so issuing works from any folder (mkcert's CAROOT).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

from certkit.bundle import new_folder, write_new_file
from certkit.errors import CABroken, CAExists, CANotFound, CertkitError, PassphraseRequired
from certkit.inventory import Inventory
from certkit.keys import is_encrypted, load_private_key, private_key_pem, public_key_der

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA

CERT_FILE = "ca.pem"
KEY_FILE = "ca-key.pem"
PARENTS_FILE = "parents.pem"
INVENTORY_FILE = "inventory.sqlite3"
ENV_CA_DIR = "CERTKIT_CA_DIR"

Passphrase = Union[bytes, None, Callable[[], bytes | None]]


def default_ca_dir() -> Path:
    """The per-user data directory: XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "certkit"


def resolve_ca_dir(path: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get(ENV_CA_DIR)
    return Path(env) if env else default_ca_dir()


class CADirectory:
    """A CA stored on disk. ``CADirectory(path).load(passphrase)`` gives a :class:`~certkit.ca.CA`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = resolve_ca_dir(path)

    @property
    def cert_path(self) -> Path:
        return self.path / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def inventory(self) -> Inventory:
        return Inventory(self.path / INVENTORY_FILE)

    def exists(self) -> bool:
        return self.cert_path.exists() or self.key_path.exists()

    # --- creation -----------------------------------------------------------------
    def save_new(self, ca: "CA", passphrase: bytes | None) -> list[Path]:
        """Write ``ca`` as a new CA directory; refuse if one exists there.

        The files are assembled in a temporary sibling folder and renamed into
        place, so a half-created CA directory is never seen.
        """
        if self.exists():
            raise CAExists(
                f"A CA already exists in {self.path}; certkit will not overwrite a CA. "
                "Choose another --ca-dir or remove it yourself."
            )
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CAExists(f"{self.path} exists and is not an empty folder; choose another --ca-dir.")
        files = {CERT_FILE: ca.cert_pem, KEY_FILE: private_key_pem(ca.key, passphrase)}
        if ca.parents:
            from certkit.ca import certificate_pem

            files[PARENTS_FILE] = b"".join(certificate_pem(c) for c in ca.parents)
        try:
            with new_folder(self.path, mode=0o700) as staging:
                for name, data in files.items():
                    write_new_file(staging / name, data, 0o600 if name == KEY_FILE else 0o644)
                Inventory(staging / INVENTORY_FILE).create()
        except OSError as exc:
            raise CertkitError(f"Cannot create the CA directory {self.path}: {exc.strerror or exc}.") from None
        return [self.path / name for name in [*files, INVENTORY_FILE]]

    # --- loading ------------------------------------------------------------------
    def load_certificates(self) -> tuple["x509.Certificate", list["x509.Certificate"]]:
        """The CA certificate and its parents, without touching the key."""
        from cryptography import x509

        if not self.path.is_dir():
            raise CANotFound(
                f"No CA in {self.path}: the folder does not exist. Create one with "
                "'certkit init-ca', or point --ca-dir / CERTKIT_CA_DIR at an existing one."
            )
        if not self.cert_path.is_file():
            raise CANotFound(
                f"No CA in {self.path}: {CERT_FILE} is missing. Create one with 'certkit init-ca'."
            )
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            parents_path = self.path / PARENTS_FILE
            parents = x509.load_pem_x509_certificates(parents_path.read_bytes()) if parents_path.exists() else []
        except (ValueError, OSError) as exc:
            raise CABroken(f"The CA certificate in {self.path} cannot be read: {exc}.") from None
        return cert, parents

    def open(self) -> "CA":
        """The CA with its certificates and inventory, its key still locked: everything a command
        needs to check a request before asking for the passphrase (:meth:`CA.unlock` decrypts it)."""
        from certkit.ca import CA

        cert, parents = self.load_certificates()
        inventory = self.inventory
        inventory.check()
        return CA(cert, None, parents, inventory=inventory, store=self)

    def load(self, passphrase: Passphrase = None) -> "CA":
        """Load the CA, decrypting its key; ``passphrase`` may be a callable asked only if needed."""
        ca = self.open()
        ca.unlock(passphrase)
        return ca

    def load_key(self, cert: "x509.Certificate", passphrase: Passphrase = None) -> tuple[object, list[str]]:
        """The CA's private key, checked against ``cert``, and warnings about its file."""
        if not self.key_path.is_file():
            raise CABroken(f"The CA key {self.key_path} is missing; nothing can be issued without it.")
        try:
            data = self.key_path.read_bytes()
        except OSError as exc:
            raise CABroken(f"The CA key {self.key_path} cannot be read: {exc.strerror}.") from None
        warnings = self._key_mode_warnings(data)
        secret = None
        if is_encrypted(data):
            secret = passphrase() if callable(passphrase) else passphrase
            if secret is None:
                raise PassphraseRequired(
                    f"The CA key {self.key_path} is encrypted and no passphrase was given."
                )
        # trusted=True skips RSA's ~40 ms consistency check: the key is ours, and the
        # comparison with the certificate below catches a swapped or damaged key.
        key = load_private_key(data, secret, source=f"CA key {self.key_path}", trusted=True)
        if public_key_der(key.public_key()) != public_key_der(cert.public_key()):
            raise CABroken(
                f"The CA key {self.key_path} does not belong to the CA certificate "
                f"{self.cert_path}; restore the matching pair from a backup."
            )
        return key, warnings

    def _key_mode_warnings(self, data: bytes) -> list[str]:
        """Refuse an unencrypted CA key that others can read; warn for an encrypted one (ssh's rule)."""
        key_mode = self.key_path.stat().st_mode & 0o777
        if not key_mode & 0o077:
            return []
        if not is_encrypted(data):
            raise CABroken(
                f"The CA key {self.key_path} is not encrypted and has mode {key_mode:04o}: others can read "
                f"it and issue certificates your machines trust. Run: chmod 600 {self.key_path} "
                "(and consider the key compromised if others could log in here)."
            )
        return [f"the CA key {self.key_path} has mode {key_mode:04o}; others can read it (it is encrypted). "
                f"Run: chmod 600 {self.key_path}"]

