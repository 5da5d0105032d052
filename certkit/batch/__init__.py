"""Issuing many certificates from one manifest in one process (``certkit issue-batch``).

A manifest is CSV with a header row, or JSON lines; one certificate per line
(see docs/issue-batch.md). :mod:`certkit.batch.manifest` reads it,
:mod:`certkit.batch.checking` checks it whole before anything is issued (a bad
line refuses the batch, naming every bad line); :mod:`certkit.batch.runner` issues it chunk by chunk through the
issuing pipeline, in one process or several, and can resume a batch that was
interrupted.
"""

from certkit.batch.checking import check_manifest
from certkit.batch.manifest import MAX_REPORTED, BatchLine, ManifestError, read_manifest
from certkit.batch.manifest_formats import COLUMNS
from certkit.batch.runner import CHUNK_SIZE, SYNC_MODES, BatchResult, BatchStopped, issue_batch

__all__ = ["CHUNK_SIZE", "COLUMNS", "MAX_REPORTED", "SYNC_MODES", "BatchLine", "BatchResult", "BatchStopped",
           "ManifestError", "check_manifest", "issue_batch", "read_manifest"]
