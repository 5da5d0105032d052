"""A large manifest is checked by one process per core: the verdict (which lines are bad, why, in
which order, how many) is exactly the one a single process gives, for every class of bad line,
including two lines in different processes' shares that reach one output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certkit.batch import ManifestError, check_manifest, checking, issue_batch
from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, run_certkit

LINES = 1600  # 4 chunks of 500 (the default): both workers check some; the file is over 32 KiB


def manifest_with_faults(path: Path, out_dir: Path) -> None:
    """1,600 server lines, with one bad line of each kind spread over the chunks, and lines whose
    outputs collide across chunks (by name, and through a symbolic link)."""
    (out_dir / "real").mkdir(parents=True)
    (out_dir / "alias").symlink_to(out_dir / "real")
    (out_dir / "taken").mkdir()
    (out_dir / "taken" / "cert.pem").write_text("an earlier bundle")
    rows = [["server", f"host{i:05d}-with-a-longer-name.example.com", ""] for i in range(LINES)]
    rows[4] = ["sever", "typo.example.com", ""]                     # chunk 0: an unknown kind
    rows[520] = ["server", "*.co.uk", ""]                           # chunk 1: a wildcard over a public suffix
    rows[610] = ["server", "same.example.com", "real/node"]        # chunk 1 ...
    rows[1180] = ["server", "other.example.com", "alias/node"]       # ... chunk 2: one folder through a link
    rows[30] = ["server", "first.example.com", "shared"]            # chunk 0 ...
    rows[1010] = ["server", "second.example.com", "shared"]         # ... chunk 2: one folder by name
    rows[1590] = ["server", "again.example.com", "shared"]          # ... chunk 3, a third time
    rows[1300] = ["server", "https://www.example.com/", ""]         # chunk 2: a URL
    rows[800] = ["server", "exists.example.com", "taken"]           # chunk 1: a folder with a bundle
    rows[1400] = ["server", "../escape.example.com", "../outside"]  # chunk 2: out of --out-dir
    lines = ["kind,names,out"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > checking.PARALLEL_FROM_BYTES


def verdict(ca, manifest: Path, out_dir: Path, jobs: int, **options) -> tuple:
    try:
        return ("ok", check_manifest(ca, manifest, out_dir=out_dir, jobs=jobs, **options))
    except ManifestError as exc:
        return ("refused", exc.bad_lines, exc.problems, exc.replaceable, str(exc))


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """How many times the check ran in worker processes (so a test knows the parallel path ran)."""
    calls: list[int] = []
    original = checking._check_in_workers

    def counted(check, jobs, spool):
        calls.append(jobs)
        return original(check, jobs, spool)

    monkeypatch.setattr(checking, "_check_in_workers", counted)
    return calls


def test_several_processes_refuse_exactly_what_one_refuses(ca_dir: Path, tmp_path: Path, forks) -> None:
    out_dir, manifest = tmp_path / "out", tmp_path / "fleet.csv"
    manifest_with_faults(manifest, out_dir)
    ca = CADirectory(ca_dir).open()
    one = verdict(ca, manifest, out_dir, jobs=1)
    assert forks == []
    assert one[0] == "refused"
    # every fault above, by its file line (the header is line 1), in line order
    assert [n for n, _ in one[2]] == [6, 522, 802, 1012, 1182, 1302, 1402, 1592]
    reasons = dict(one[2])
    assert "is also line 32's" in reasons[1012] and "is also line 32's" in reasons[1592]
    assert "is also line 612's" in reasons[1182] and "symbolic link" in reasons[1182]
    assert "public suffix" in reasons[522] or "co.uk" in reasons[522]
    assert "URL" in reasons[1302]
    assert one[1] == 8 and one[3] is True  # the folder holding a bundle could be replaced with --force
    for jobs in (2, 3):
        assert verdict(ca, manifest, out_dir, jobs=jobs) == one
    assert forks == [2, 3]
    assert not any(p.name.startswith("host") for p in out_dir.iterdir())  # nothing was written


def test_a_clean_manifest_counts_the_same_and_resume_keeps_the_same(ca_dir: Path, tmp_path: Path, forks) -> None:
    out_dir, manifest = tmp_path / "out", tmp_path / "fleet.jsonl"
    out_dir.mkdir()
    manifest.write_text("".join(json.dumps({"kind": "server" if i % 3 else "client",
                                            "names": f"device-{i:05d}.fleet.example.net"}) + "\n"
                                for i in range(LINES)))
    ca = CADirectory(ca_dir).open()
    assert verdict(ca, manifest, out_dir, jobs=1) == verdict(ca, manifest, out_dir, jobs=2) == ("ok", LINES)
    assert forks == [2]
    # Issue some lines of two chunks (one for each worker): --resume keeps exactly those.
    lines = manifest.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:150] + lines[1500:1550]))
    ca.unlock(PASSPHRASE.encode())
    assert issue_batch(ca, part, out_dir=out_dir, jobs=1, sync="none").issued == 200
    kept = {jobs: verdict(ca, manifest, out_dir, jobs=jobs, resume=True) for jobs in (1, 2)}
    assert kept[1] == kept[2] == ("ok", LINES - 200)
    assert forks == [2, 2]


def test_duplicate_names_in_one_output_are_found_across_processes(ca_env, ca_dir: Path, tmp_path: Path,
                                                                   forks) -> None:
    manifest = tmp_path / "pods.csv"
    rows = [f"server,pod{i:05d}.cluster.example.internal,pod-{i}" for i in range(LINES)]
    rows[1550] = "server,late.cluster.example.internal,pod-7"  # chunk 3 reuses chunk 0's Secret name
    manifest.write_text("kind,names,out\n" + "\n".join(rows) + "\n")
    out = tmp_path / "pods.yaml"
    proc = run_certkit("issue-batch", str(manifest), "--format", "k8s", "--out", str(out), "--jobs", "2",
                       env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "line 1552: its name in the output")
    assert "is also line 9's" in proc.stderr
    assert not out.exists()
    assert forks == [2]


def test_an_unreadable_line_far_into_the_manifest_is_one_clean_error(ca_env, ca_dir: Path, tmp_path: Path,
                                                                    forks) -> None:
    manifest = tmp_path / "fleet.csv"
    text = "kind,names\n" + "".join(f"server,h{i:05d}.example.com\n" for i in range(LINES))
    manifest.write_bytes(text.encode() + b"server,caf\xe9.example.com\n")  # Latin-1, not UTF-8
    proc = run_certkit("issue-batch", str(manifest), "--out-dir", str(tmp_path / "out"), "--jobs", "2",
                       env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "is not UTF-8 text")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert forks == [2]
