"""Commands for serve and PKCS#12 export: parse, call the library, print.

Imported by :mod:`certkit.cli`, whose ``main`` group the commands register on.
Like cli.py, this module imports only click and the standard library at import time.
"""

from __future__ import annotations
