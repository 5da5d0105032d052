"""Commands for sign-csr, list, renew, revoke and crl: parse, call the library, print.

Imported by :mod:`certkit.cli`, whose ``main`` group the commands register on.
Like cli.py, this module imports only click and the standard library at import time.
"""

from __future__ import annotations
