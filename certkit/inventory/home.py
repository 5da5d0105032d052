"""Whose inventory it still is: a CA object holds its directory's SQLite inventory for as long as it lives.

A long-running process keeps a CA object (``CADirectory(path).open()``); if that directory is then removed
(or moved aside) and made again for another CA by ``certkit init-ca`` (a new certificate, a new key), the
same file name holds the other CA's inventory. Read through the old object, its rows, revocations and
serials would be answered as this CA's (``ca.inventory.get(serial)`` giving the other CA's certificate as
"valid"), and what it wrote there would be certificates the other CA never signed. So an inventory found
to be its CA's (:func:`certkit.store_binding.check_binding`, on opening or ``CA(..., inventory=...)``)
is bound to it (:func:`bind`) and checks, before each transaction, that its directory still holds that CA.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory


def bind(inventory: "Inventory", cert: "x509.Certificate") -> None:
    """Bind an SQLite inventory that lies in the CA directory of ``cert`` to it (one elsewhere, or in
    PostgreSQL, is bound by its ``meta`` row: :func:`certkit.store_binding.check_binding`)."""
    if inventory.path is None or inventory.home is not None:
        return
    held = _held(Path(inventory.path).parent / "ca.pem")
    if isinstance(held, tuple) and held[1] == cert:
        inventory.home = (cert, held[0])


def check(inventory: "Inventory") -> None:
    """Refuse to read or write an inventory whose directory no longer holds the CA it was bound to."""
    if (home := inventory.home) is None:
        return
    cert, seen = home
    where = Path(inventory.path).parent
    try:
        if (where / "ca.pem").read_bytes() == seen:  # the same file: nothing parsed (every transaction asks)
            return
    except OSError:
        pass
    held = _held(where / "ca.pem")
    from certkit.errors import CABroken
    from certkit.text import shown

    this = _name(cert, held[1] if isinstance(held, tuple) else None)
    if not isinstance(held, tuple):
        raise CABroken(f"The CA directory {shown(where)} no longer holds the certificate of this CA ({this}: "
                       f"{held}), so its inventory {shown(inventory.location)} cannot be told to be this CA's: "
                       "nothing was read or recorded. Load the CA again (CADirectory(path).open()).")
    if held[1] != cert:
        other = _name(held[1], cert)
        raise CABroken(f"The CA directory {shown(where)} now holds another CA ({other}), made again since this CA "
                       f"({this}) was loaded from it: its inventory {shown(inventory.location)} is that CA's "
                       "(its certificates, serials and revocations), so nothing was read or recorded through this "
                       "object. Load the CA again (CADirectory(path).open()).")
    inventory.home = (cert, held[0])  # the same certificate, written again


def _held(path: Path) -> "tuple[bytes, x509.Certificate] | str":
    """The bytes of ``path`` and the certificate they hold, or why there is none."""
    from cryptography import x509

    try:
        data = path.read_bytes()
        return data, x509.load_pem_x509_certificate(data)
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:
        return f"not a PEM certificate ({exc})"


def _name(cert: "x509.Certificate", other: "x509.Certificate | None") -> str:
    """The CA's subject, with its serial when ``other`` has the same (a CA made again under the same name)."""
    from certkit.text import shown

    name = shown(cert.subject.rfc4514_string())
    return f"{name}, serial {cert.serial_number:X}" if other is not None and other.subject == cert.subject else name
