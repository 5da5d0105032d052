"""RFC 7512's ``module-name``: the PKCS#11 module a name stands for, found as p11-kit finds it: a
``NAME.module`` file (the user's ~/.config/pkcs11/modules, then /etc/pkcs11/modules, then
/usr/share/p11-kit/modules) whose ``module:`` line names the library, a relative one in p11-kit's
module folder (/usr/lib/<arch>/pkcs11); else a library ``NAME.so`` or ``libNAME.so`` in that folder.
softhsm2 registers itself so: ``?module-name=softhsm2`` names SoftHSM's library."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.pkcs11.errors import TokenError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.pkcs11.uri import KeyURI


def _registrations() -> list[Path]:
    return [Path.home() / ".config" / "pkcs11" / "modules", Path("/etc/pkcs11/modules"),
            Path("/usr/share/p11-kit/modules")]


def _module_folders() -> list[Path]:
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    return [Path(p) for p in (f"/usr/lib/{arch}/pkcs11" if arch else "", "/usr/lib64/pkcs11", "/usr/lib/pkcs11") if p]


def named_module(uri: "KeyURI", module: str | Path | None) -> str | None:
    """The module the URI's module-name stands for, if it has one; given --pkcs11-module too (init-ca),
    it must be that module, when the name stands for one here."""
    if uri.module_name is None:
        return None
    if not module:
        return module_by_name(uri.module_name, uri.text)
    try:
        path = module_by_name(uri.module_name, uri.text)
    except TokenError:
        return None  # a name this host does not know: the module given is the one to use
    if os.path.realpath(path) != os.path.realpath(module):
        raise TokenError(f"The key URI's module-name {shown(uri.module_name)} stands for {shown(path)}, and "
                         f"--pkcs11-module {shown(str(module))}: they must be the same module; give one of them.")
    return path


def module_by_name(name: str, uri_text: str) -> str:
    """The library of the module ``name`` (a URI's module-name), as p11-kit registers it; a TokenError
    that says where certkit looked when no module has that name."""
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise TokenError(f"The module-name in {shown(uri_text)} is not a module's name (a name such as softhsm2, "
                         "without a folder or .so); name a library by its path with ?module-path=PATH.")
    for folder in _registrations():
        library = _registered(folder / f"{name}.module")
        if library is not None:
            return library
    for folder in _module_folders():
        for candidate in (f"{name}.so", f"lib{name}.so"):
            if (folder / candidate).is_file():
                return str(folder / candidate)
    places = ", ".join(str(p) for p in [*_registrations(), *_module_folders()])
    raise TokenError(f"No PKCS#11 module named {shown(name)} (the module-name in {shown(uri_text)}) is registered "
                     f"here: certkit looked for {name}.module in p11-kit's folders and for {name}.so or lib{name}.so "
                     f"in its module folders ({places}). Name the library with ?module-path=PATH or --pkcs11-module "
                     "PATH.")


def _registered(path: Path) -> str | None:
    """The library a p11-kit ``.module`` file names (its ``module:`` line), if it exists; None without one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == "module" and value.strip():
            library = value.strip()
            if os.path.isabs(library):
                return library
            for folder in _module_folders():
                if (folder / library).is_file():
                    return str(folder / library)
            return library  # as p11-kit would try it: the loader's own search; said missing if it is
    return None
