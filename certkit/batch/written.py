"""Which manifest lines a batch into standard output wrote, said when it stops: with ``--jobs 2`` and more, the
chunks reach the stream in the order they are finished, not the manifest's, so "the lines after the last written"
is no answer."""

from __future__ import annotations


def written_lines(chunks: list[list[int]], issued: int) -> str | None:
    """The manifest lines of the chunks written (each ``[first line, last line, certificates issued]``) as ranges,
    ``2-501, 1002-1501``; None when they do not account for every certificate ``issued`` (one stopped midway)."""
    if not chunks or sum(count for _first, _last, count in chunks) != issued:
        return None
    ranges: list[list[int]] = []
    for first, last, _count in sorted(chunks):
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], last)
        else:
            ranges.append([first, last])
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)
