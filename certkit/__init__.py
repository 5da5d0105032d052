"""certkit: a local certificate authority for TLS server and client certificates.

The library API (importable without the command line)::

    from certkit import CA
    ca = CA.create("My test CA")
    server = ca.issue_server(["localhost", "127.0.0.1"])
    client = ca.issue_client("alice")
    server.write("./localhost")

Importing this package is cheap: ``CA`` and friends load ``cryptography`` only
when first used, so ``certkit --help`` starts fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing would slow every start (mypy and pyright read this too)
if TYPE_CHECKING:  # what type checkers see: the real classes, not __getattr__'s Any
    from typing import Any

    from certkit.ca import CA, IssuedCert
    from certkit.errors import CertkitError
    from certkit.inventory import Inventory
    from certkit.store import CADirectory

__version__ = "0.1.0"

_LAZY = {
    "CA": "certkit.ca",
    "IssuedCert": "certkit.ca",
    "CADirectory": "certkit.store",
    "Inventory": "certkit.inventory",
    "CertkitError": "certkit.errors",
}

# Written out, not taken from _LAZY: type checkers read it as text (mypy --strict exports only these).
__all__ = ["__version__", "CA", "IssuedCert", "CADirectory", "Inventory", "CertkitError"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'certkit' has no attribute {name!r}")
