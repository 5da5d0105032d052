"""A pause point for fault-injection tests; inert unless a test sets two environment variables.

``CERTKIT_TEST_PAUSE_AT=<point>`` and ``CERTKIT_TEST_PAUSE_FILE=<path>`` make
the process that reaches ``<point>`` create ``<path>`` (holding its pid) and
wait until the file is deleted (at most a minute). A test can then kill the
process with SIGKILL at exactly that point, or delete the file to let it go
on. The points, in the order a certificate is issued:

- ``checking``: ``issue-batch`` is about to check its manifest, nothing issued yet;
- ``signed``: the certificate is signed, nothing recorded or written yet;
- ``recorded``: the inventory holds the certificate, no file written yet;
- ``writing``: a bundle folder is about to be checked again and written (each of a batch's, in turn);
- ``staged``: the bundle is complete in a hidden temporary folder beside its
  destination, not yet renamed into place (also in renew, before the swap; in ``export-p12``: its
  bundle.p12 under a temporary name in the folder; in
  ``trust install|uninstall --java``: the keystore's changed copy, beside it; in ``trust install --system``:
  the anchor file written, the refresh not run yet);
- ``swapped``: renew only: the new bundle is in place, the old one not yet deleted;
- ``placed``: ``--format jsonl|k8s|tar`` into a file: the file is in place, its
  certificates not yet marked valid (``init-ca`` of an intermediate: its CA directory
  is in place, its parent has not yet marked it valid);
- ``removed-one``: ``trust uninstall``: one certificate deleted from an NSS database, the next not yet;
- ``handshakes``: ``demo`` has written its certificates, no handshake has run;
- ``listener``: ``acme serve`` has its own HTTPS certificate, recorded valid, and does not serve yet.

``CERTKIT_TEST_CHUNK_SIZE=<n>`` makes ``issue-batch`` issue chunks of ``n``
certificates instead of hundreds, so a test interrupts a batch of several
chunks with a manifest of a few lines.
"""

from __future__ import annotations

import os
import time

from certkit.text import is_digits

ENV_POINT = "CERTKIT_TEST_PAUSE_AT"
ENV_FILE = "CERTKIT_TEST_PAUSE_FILE"
ENV_CHUNK = "CERTKIT_TEST_CHUNK_SIZE"


def pause_at(point: str) -> None:
    if os.environ.get(ENV_POINT) != point or not os.environ.get(ENV_FILE):
        return
    marker = os.environ[ENV_FILE]
    # Written aside and renamed into place: a test reading the marker (or a second process
    # pausing at the same point) never sees it empty.
    aside = f"{marker}.{os.getpid()}"
    with open(aside, "w") as f:
        f.write(str(os.getpid()))
    os.replace(aside, marker)
    deadline = time.monotonic() + 60
    while os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)


def chunk_size(default: int) -> int:
    """``issue-batch``'s chunk size: ``default`` unless a test sets ``CERTKIT_TEST_CHUNK_SIZE``."""
    value = os.environ.get(ENV_CHUNK, "")
    return int(value) if is_digits(value) and int(value) > 0 else default
