"""Every Python example in README.md and docs/ runs (docs/library.md's run in test_library_docs.py).

Each ```python block (those without a ``<!-- file: -->`` mark: the page's own run writes and
runs those) runs as a script in a fresh folder, with ``CERTKIT_CA_DIR`` there and the files the
page's earlier console steps made, made by those same steps (:data:`SETUP`). A block that cannot
run here says why in the page (``<!-- python: skip REASON -->``), and the test reports the reason.
Also the runner's rules the pages rely on (tests/docs_runner.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env
from docs_runner import Session, python_blocks, run_page, run_python, steps

PAGES = [REPO / "README.md", *(p for p in sorted((REPO / "docs").glob("*.md")) if p.name != "library.md")]
# The page's own console steps that make what its Python example reads, run first (output checked).
SETUP = {
    "inspect.md": ['certkit init-ca --name "Home Lab CA"', "certkit issue-server localhost 127.0.0.1"],
    "verify.md": ['certkit init-ca --name "Home Lab CA"', "certkit issue-client alice"],
}
EXAMPLES = [(page, block) for page in PAGES for block in python_blocks(page)]


@pytest.mark.parametrize("page, block", EXAMPLES, ids=[f"{p.name}:{b.line}" for p, b in EXAMPLES])
def test_python_example_runs(page: Path, block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(f"{page.name}:{block.line}: {block.skip}")
    work = tmp_path / "work"
    work.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(work / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    wanted = SETUP.get(page.name, [])
    session = Session(page, work, env, {})
    try:
        for command in wanted:
            session.run(next(s for s in steps(page) if s.kind == "run" and s.text == command))
    finally:
        session.close()
    run_python(block.code, cwd=session.cwd, env=session.env, where=f"{page.name}:{block.line}")


def test_every_page_with_a_setup_has_those_steps_and_an_example() -> None:
    """A setup names commands the page shows, for a page that still has a Python example."""
    for name, commands in SETUP.items():
        page = REPO / "docs" / name
        shown = {s.text for s in steps(page) if s.kind == "run"}
        assert set(commands) <= shown, (name, set(commands) - shown)
        assert python_blocks(page), name
    assert {p.name for p, _ in EXAMPLES} >= {"README.md", "demo.md", "inspect.md", "issue-peer.md", "verify.md"}


def test_skip_mark_needs_a_reason(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- python: skip needs a running server -->\n```python\nraise SystemExit(1)\n```\n"
                    "<!-- file: x.py -->\n```python\nraise SystemExit(1)\n```\n```python\nprint(1)\n```\n")
    found = python_blocks(page)
    assert [(b.line, b.skip) for b in found] == [(3, "needs a running server"), (10, None)]
    page.write_text("<!-- python: skip -->\n```python\npass\n```\n")
    with pytest.raises(AssertionError, match="without a reason"):
        python_blocks(page)


def test_a_raising_example_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited 1"):
        run_python("raise ValueError('drift')", cwd=tmp_path, env=certkit_env())
    with pytest.raises(AssertionError):
        run_python("print('one')  # two", cwd=tmp_path, env=certkit_env())


# --- the runner: a command shown printing nothing, and a stated exit status ----------------------
@pytest.mark.parametrize("body, fails", [
    ("$ echo setup\n$ echo shown\nshown\n", False),  # a block's opening commands are setup
    ("$ echo shown\nshown\n$ echo hidden\n", True),  # after shown output, nothing shown = prints nothing
    ("$ echo shown\nshown\n$ echo hidden\n...\n", False),  # '...' stands for the output left out
    ("$ echo shown\nshown\n$ true\n", False),
    ("$ echo Error: no >&2; exit 2\nError: no\n", False),  # any failure, when no status is stated
    ("$ (echo Error: no >&2; exit 2); echo \"exit status $?\"\nError: no\nexit status 2\n", False),
    ("$ (echo Error: no >&2; exit 1); echo \"exit status $?\"\nError: no\nexit status 2\n", True),
], ids=["setup", "hidden", "elided", "silent", "any-failure", "status", "wrong-status"])
def test_runner_rules(tmp_path: Path, body: str, fails: bool) -> None:
    page, work = tmp_path / "page.md", tmp_path / "work"
    work.mkdir()
    page.write_text(f"```console\n{body}```\n")
    if fails:
        with pytest.raises(AssertionError):
            run_page(page, cwd=work, env=certkit_env())
    else:
        run_page(page, cwd=work, env=certkit_env())
