"""Audit round twenty-four, what the lead fixed beside the helpers' branches (each a case a helper found and left):

1. ``certkit trust status`` of a CA whose root or intermediate has expired opened with the header
   'CA "Dated Root" (...), expires 2026-12-01 ...' (and '(expires ...)' of the intermediate) for a date in the past,
   the line under it saying it "expired on" that day: the header now says "expired" of a past end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_audit6_trust import _cas, add_by_hand, new_db, trust

from certkit.trust import Anchor


@pytest.mark.parametrize("which", ["root", "intermediate"])
def test_the_header_of_trust_status_says_expired_of_an_ended_ca(tmp_path: Path, which: str) -> None:
    ca_dir = _cas(tmp_path, which, "expired")
    anchor = Anchor.from_ca_dir(ca_dir)
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    add_by_hand(db, anchor.nickname, anchor.pem)  # as an install before it expired left it
    status = trust("status", "--nss", home=home, ca_dir=ca_dir)
    header = status.stdout.splitlines()[0]
    assert header.startswith('CA "Dated '), status.stdout
    ended = {"root": "Dated Root", "intermediate": "Dated Issuing"}[which]
    if which == "root":
        assert ", expired 20" in header and "expires" not in header, header
    else:  # the root is valid for years, its intermediate ended
        assert ", expires 20" in header and '"Dated Issuing" (expired 20' in header, header
    assert any(ended in line and "expired on" in line for line in (status.stdout + status.stderr).splitlines())
