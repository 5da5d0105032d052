"""RFC 3779's IP address and AS number resources (ipAddrBlocks, autonomousSysIds) along a chain, read as OpenSSL
reads them: whatever their criticality, the leaf's resources must lie within every issuer's, up to the trust
anchor (X509v3_addr_validate_path, X509v3_asid_validate_path, run by every X509_verify_cert).

cryptography parses neither extension and its verifier ignores them when they are not critical, so a leaf
naming 10.0.0.0/8 under a root that names none was VALID, while OpenSSL (so Python's ssl, curl, nginx and Node)
refuses it: "RFC 3779 resource not subset of parent's resources". The walk below is OpenSSL's: it starts only
when the leaf carries the extension; ``inherit`` takes the issuer's resources; a certificate without the
extension passes only inherited ones; the trust anchor may not inherit.
"""

from __future__ import annotations

IP_ADDR_BLOCKS, AS_IDS = "1.3.6.1.5.5.7.1.7", "1.3.6.1.5.5.7.1.8"
INHERIT = None  # a resource set given as "inherit" (the issuer's)


def _items(data: bytes) -> list[tuple[int, bytes]]:
    """The DER elements (tag, contents) that follow one another in ``data``."""
    found, i = [], 0
    while i < len(data):
        tag, size = data[i], data[i + 1]
        i += 2
        if size & 0x80:
            count = size & 0x7F
            size, i = int.from_bytes(data[i:i + count], "big"), i + count
        found.append((tag, data[i:i + size]))
        i += size
    return found


def _bits(value: bytes, octets: int, ones: bool) -> int:
    """A BIT STRING's address as a number of ``octets`` octets, its missing bits 0 (a minimum) or 1 (a maximum)."""
    unused, data = value[0], value[1:]
    known = 8 * len(data) - unused
    number = int.from_bytes(data.ljust(octets, b"\0")[:octets], "big") >> (8 * octets - known) << (8 * octets - known)
    return number | ((1 << (8 * octets - known)) - 1) if ones else number


def _address_ranges(choice: tuple[int, bytes], octets: int) -> list[tuple[int, int]] | None:
    tag, value = choice
    if tag == 0x05:
        return INHERIT
    ranges = []
    for kind, entry in _items(value):
        low, high = (entry, entry) if kind == 0x03 else (_items(entry)[0][1], _items(entry)[1][1])
        ranges.append((_bits(low, octets, False), _bits(high, octets, True)))
    return ranges


def ip_resources(cert) -> dict[bytes, list[tuple[int, int]] | None] | None:
    """A certificate's ipAddrBlocks: {addressFamily: ranges or INHERIT}; None without the extension."""
    raw = _raw(cert, IP_ADDR_BLOCKS)
    if raw is None:
        return None
    families = {}
    for _, family in _items(_items(raw)[0][1]):
        (_, afi), choice = _items(family)[:2]
        families[afi] = _address_ranges(choice, 4 if afi[:2] == b"\0\1" else 16)
    return families


def as_resources(cert) -> dict[int, list[tuple[int, int]] | None] | None:
    """A certificate's autonomousSysIds: {0: asnum, 1: rdi} (ranges or INHERIT), absent parts left out; None
    without the extension."""
    raw = _raw(cert, AS_IDS)
    if raw is None:
        return None
    parts = {}
    for tag, explicit in _items(_items(raw)[0][1]):
        kind, value = _items(explicit)[0]
        ranges = []
        for item_tag, item in ([] if kind == 0x05 else _items(value)):
            pair = [item] if item_tag == 0x02 else [v for _, v in _items(item)]
            ranges.append((int.from_bytes(pair[0], "big"), int.from_bytes(pair[-1], "big")))
        parts[tag & 0x1F] = INHERIT if kind == 0x05 else ranges
    return parts


def _raw(cert, oid: str) -> bytes | None:
    for ext in cert.extensions:
        if ext.oid.dotted_string == oid:
            return ext.value.value  # an UnrecognizedExtension: cryptography parses neither
    return None


def _within(parent: list[tuple[int, int]], child: list[tuple[int, int]]) -> bool:
    return all(any(low <= c_low and c_high <= high for low, high in parent) for c_low, c_high in child)


def _unnested(path: list, read, anchor_any: bool) -> object | None:
    """The first certificate above the leaf whose resources (``read``: ip_resources or as_resources) do not hold
    the leaf's, as OpenSSL walks them; None when they nest (or the leaf has none). The trust anchor may not inherit
    what the leaf names (``anchor_any``: anything at all, as OpenSSL checks AS numbers)."""
    child = read(path[0])
    if child is None:
        return None
    for cert in path[1:]:
        parent = read(cert)
        for key, ranges in list(child.items()):
            given = parent.get(key, False) if parent is not None else False
            if given is False:  # the issuer has no such resources: only an inherited set passes
                if ranges is not INHERIT:
                    return cert
            elif given is not INHERIT:
                if ranges is not INHERIT and not _within(given, ranges):
                    return cert
                child[key] = given
    anchor = read(path[-1]) or {}
    if any(ranges is INHERIT and (anchor_any or key in child) for key, ranges in anchor.items()):
        return path[-1]
    return None


def resources_problem(path: list) -> str | None:
    """Why OpenSSL refuses the chain ``path`` (leaf first, trust anchor last) for its RFC 3779 resources, or None."""
    from certkit.verify_names import cn_text

    for read, what in ((ip_resources, "IP address blocks (RFC 3779 ipAddrBlocks)"),
                       (as_resources, "AS numbers (RFC 3779 autonomousSysIds)")):
        try:
            cert = _unnested(path, read, read is as_resources)
        except (IndexError, ValueError):
            return (f"its {what} extension is not DER certkit can read; OpenSSL refuses a chain whose resources it "
                    "cannot check (openssl x509 -text shows them)")
        if cert is not None:
            return (f"its {what} are not within those of {cn_text(cert.subject)}, which OpenSSL (so Python's ssl, "
                    "curl, nginx and Node) refuses whether the extension is critical or not (\"RFC 3779 resource "
                    "not subset of parent's resources\"): every issuer up to the trust anchor must hold the leaf's "
                    "resources, and the trust anchor may not inherit them")
    return None
