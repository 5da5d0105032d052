"""Which manifest lines a batch into standard output wrote, said when it stops. The chunks reach the stream in the
manifest's order (:mod:`certkit.batch.in_turn`), so they are the first lines; a manifest's comments and blank lines
between them are no gap."""

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
