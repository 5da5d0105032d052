"""Round twenty-six, the lead's own fixes (each test fails without its fix)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certkit.atomic import make_folders
from certkit.errors import CertkitError
from certkit.paths import check_folders_above


def _made_meanwhile(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` at the moment certkit first asks whether anything stands at its place: another worker of
    the same batch (``issue-batch --jobs 2``) making the shared output folder between certkit's two looks at it."""
    lexists = os.path.lexists

    def looked_at(path) -> bool:
        if Path(path) == folder and not lexists(folder):
            os.mkdir(folder)
        return lexists(path)

    monkeypatch.setattr(os.path, "lexists", looked_at)


@pytest.mark.parametrize("check", ["check_folders_above", "make_folders"])
def test_an_output_folder_another_worker_makes_meanwhile_is_no_file_in_the_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: str) -> None:
    # CI on 9856d84: issue-batch --jobs 2 stopped with "out is not a folder, so the output folder out/h3.example
    # cannot be written": one worker saw no folder 'out', the other made it, and the first then found something
    # there and called it not a folder.
    out = tmp_path / "out"
    _made_meanwhile(monkeypatch, out)
    if check == "check_folders_above":
        check_folders_above(out / "h3.example" / "cert.pem", "output folder")
    else:
        made = make_folders(out / "h3.example")
        assert made == [out / "h3.example"]  # 'out' is the other worker's, not this call's to remove
    assert out.is_dir()


@pytest.mark.parametrize("check", ["check_folders_above", "make_folders"])
def test_a_file_where_the_output_folder_must_be_is_still_refused(tmp_path: Path, check: str) -> None:
    (tmp_path / "out").write_text("a file\n")
    with pytest.raises((CertkitError, NotADirectoryError), match="out is a file, not a folder"):
        if check == "check_folders_above":
            check_folders_above(tmp_path / "out" / "h3.example", "output folder")
        else:
            make_folders(tmp_path / "out" / "h3.example")
    assert (tmp_path / "out").read_text() == "a file\n"
