"""Why a certificate is not renewed in the bundle folder the inventory records for it, in words: the folder was
written on another host sharing the inventory (:func:`other_host`), its cert.pem cannot be read or the bundle is
damaged (:func:`bundle_damage`), it was moved or deleted, or the certificate never went to a folder (an output file,
a stream, an ACME client, a program: :func:`not_in_a_folder`); and what to do instead (:func:`not_in_place`, the
advice of a bulk renewal's report). Bulk renewal (:mod:`certkit.fleet.plan`) skips such certificates; renew
refuses to renew them in place."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.constants import CERT_FILE
from certkit.errors import CertkitError
from certkit.text import shown
from certkit.vocabulary import file_kind_text

# What to do about a bundle folder whose cert.pem holds no certificate (see :func:`damaged_cert`).
DAMAGED_ADVICE = ("put the certificate back into cert.pem (fullchain.pem begins with it, if that file is intact) "
                  "and run again, or renew it by serial with --out DIR")
# What to do about a bundle folder that no longer holds its certificate (moved or deleted): renewing the folder
# where the bundle is now records it there, so that later runs renew it in place; --out DIR makes a new one.
MOVED_ADVICE = ("if the bundle was moved, renew the folder it is in now (certkit renew FOLDER), and later runs "
                "renew it there; else renew it by name with --out DIR")


def other_host(row: dict) -> str | None:
    """The host that wrote the bundle folder of ``row`` when it is another than this one (two hosts sharing a
    PostgreSQL inventory each keep their own folders); None when it is this one, or the row does not say (a
    row of an older certkit, or of the library)."""
    from certkit.inventory.reconcile import this_host, writer_host

    host = writer_host(row.get("writer"))
    return host if host is not None and host != this_host() else None


def on_other_host(folder: str | None, host: str) -> str:
    """Why a bundle folder of another ``host`` (:func:`other_host`) is not renewed here, in words."""
    from certkit.inventory.reconcile import this_host

    return (f"its bundle folder {shown(folder or '(none)')} was written on the host {shown(host)}, not on this one "
            f"({shown(this_host())})")


def _read_error(folder: str | None) -> str | None:
    """Why ``folder``'s cert.pem cannot be read, when the file system says so (an I/O error, no permission, a loop
    of links); None when it reads, is not there (moved or deleted: :func:`folder_skipped`'s business) or is no
    file (a folder, a pipe, never opened: :func:`bundle_damage`'s)."""
    import stat

    if not folder:
        return None
    try:
        if not stat.S_ISREG((Path(folder) / CERT_FILE).stat().st_mode):
            return None
        with open(Path(folder) / CERT_FILE, "rb") as file:
            file.read(1 << 16)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def damaged_cert(folder: str | None) -> bool:
    """Whether ``folder`` holds a damaged bundle (:func:`bundle_damage`)."""
    return bundle_damage(folder) is not None


def bundle_damage(folder: str | None) -> str | None:
    """How the bundle in ``folder`` is damaged, in words, when it is: its cert.pem holds no readable certificate
    (truncated, junk, a key), is not a file (a folder), is a link to nothing, or is gone while the bundle's other
    files are still there. None when cert.pem is a readable certificate (whichever), when the folder is gone, or
    when it holds none of a bundle's files (the bundle was deleted, or moved)."""
    import stat

    from certkit.constants import BUNDLE_FILES
    from certkit.lifecycle import _read_cert

    if not folder:
        return None
    cert = Path(folder) / CERT_FILE
    try:
        mode = cert.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError:  # the file system's own error: :func:`_read_error` says it
        return None
    if mode is not None and not stat.S_ISREG(mode):
        return f"its bundle folder {shown(folder)} is damaged: its cert.pem is {file_kind_text(cert)}"
    if mode is not None:
        try:
            _read_cert(cert)
        except (CertkitError, OSError):
            return (f"its bundle folder {shown(folder)} holds no readable certificate in cert.pem (the file is "
                    "damaged or was replaced by hand), so certkit will not write into it")
        return None
    if not Path(folder).is_dir():
        return None
    if cert.is_symlink():
        return (f"its bundle folder {shown(folder)} is damaged: its cert.pem is a link to "
                f"{shown(os.readlink(cert))}, which does not exist")
    others = [name for name in BUNDLE_FILES if name != CERT_FILE and os.path.lexists(Path(folder) / name)]
    if others:
        return (f"its bundle folder {shown(folder)} is damaged: it holds {', '.join(others)} but no cert.pem, so "
                "certkit will not write into it")
    return None


def not_in_a_folder(sink: str | None, folder: str | None, serial: str) -> str:
    """Why the certificate ``serial`` has no bundle folder to renew in, by where it was delivered."""
    if sink == "file" and not folder:
        return ("it was delivered into an output file (--format jsonl, k8s or tar) that --force has since "
                "overwritten with other certificates, so nothing certkit knows of holds it")
    if sink == "file":
        return (f"it was delivered into the output file {shown(folder)} (--format jsonl, k8s or tar), not into a "
                "bundle folder, so it has no folder to renew in")
    if sink == "stream":
        return ("it was delivered to standard output (--format jsonl, k8s or tar), not into a bundle folder, so "
                "it has no folder to renew in")
    if sink == "acme":
        return "it was issued over ACME, to an ACME client, which renews it itself"
    if sink == "memory":
        return ("it was handed to a program, not written to a bundle folder (the library, certkit serve, or acme "
                "serve's own certificate), which issues itself a new one")
    from certkit.lifecycle import holds

    if (damage := bundle_damage(folder)) is not None:
        return damage
    if folder and (Path(folder) / CERT_FILE).is_file() and not holds(Path(folder), serial):
        return (f"its bundle folder {shown(folder)} now holds another certificate in cert.pem (replaced by hand, "
                "or the folder was reused), so certkit will not overwrite it")
    if folder and Path(folder).is_dir():
        return f"its bundle folder {shown(folder)} no longer holds its cert.pem (deleted by hand)"
    return "no bundle folder is known to hold it (it was never written to one, or was moved)"


def not_in_place(row: dict) -> str:
    """Why the certificate of ``row`` cannot be renewed in place, and what to do instead of choosing where its
    renewed bundle goes (the caller's end of the sentence): ``...; to renew it, ... or``."""
    sink, folder = row.get("sink"), row.get("folder")
    why = not_in_a_folder(sink, folder, row["serial"])
    # A bundle folder moved by hand can be named; one never written (a file, a stream) cannot.
    moved = "if its bundle folder was moved, give that folder; otherwise " if sink in (None, "folder") else ""
    if sink in (None, "folder") and (host := other_host(row)) is not None:  # that host renews it
        why, moved = on_other_host(folder, host), f"run this on {shown(host)}, where it is renewed in place; or "
    elif damaged_cert(folder):
        moved = "put the certificate back into its cert.pem (fullchain.pem begins with it) and renew the folder; or "
    return f"{why}; to renew it, {moved}"
