"""DNS names as a certificate names them: each label checked (letters, digits and hyphens), an internationalized
name converted to its A-labels (IDNA2008 with UTS 46; refused in words by :mod:`certkit.names_idna`), a wildcard
only as the whole left-most label and never directly over a public suffix, and whether a name-constraint domain
is one (the public suffix list, special-use names aside)."""

from __future__ import annotations

import re
from functools import cache

from certkit.errors import InvalidName
from certkit.names import Identity, _ends_in_a_number, _show

_LDH_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# RFC 1035: 255 octets on the wire, i.e. 253 characters in dotted text form.
MAX_DNS_NAME = 253
# A label separator as browsers read a host (UTS 46 maps the ideographic, fullwidth and halfwidth full stops to '.').
_FULL_STOPS = (".", "\u3002", "\uff0e", "\uff61")


def parse_dns_name(text: str, *, allow_wildcard: bool = True) -> Identity:
    """Parse a DNS name into its A-label form, checking every label."""
    original = text
    name = text.strip()
    if name.endswith(_FULL_STOPS):  # the absolute form names the same host; UTS 46 maps the other stops to '.'
        name = name[:-1]
    wildcard = False
    if name.startswith("*."):
        if not allow_wildcard:
            raise InvalidName(f"'{_show(original)}': a wildcard is not allowed here.")
        wildcard, name = True, name[2:]
    if "*" in name:
        raise InvalidName(f"'{_show(original)}' is not a valid wildcard: '*' may only be the whole left-most "
                          "label, as in *.example.com.")
    if not name:
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: it is empty.")
    ascii_name = _to_a_labels(original, name)
    labels = ascii_name.split(".")
    for label in labels:
        _check_label(original, label)
    if _ends_in_a_number(ascii_name):
        from certkit.names_notation import url_ipv4

        read = url_ipv4(ascii_name)  # as curl and browsers read the host: no name, an address
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: its last label is a number"
                          + (f", so curl and browsers read it as the IPv4 address {read}." if read else "."))
    full = ("*." if wildcard else "") + ascii_name
    if len(full) > MAX_DNS_NAME:
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: it is {len(full)} characters long, "
                          f"the limit is {MAX_DNS_NAME}.")
    if wildcard:
        _check_wildcard_base(original, ascii_name)
    display = original.strip().rstrip("".join(_FULL_STOPS)).lower()
    return Identity("dns", full, display if display != full else None)


def _to_a_labels(original: str, name: str) -> str:
    if name.isascii():
        name = name.lower()
        if not any(label.startswith("xn--") for label in name.split(".")):
            return name
    # Imported only for names that need it: most names are plain ASCII, and a batch or
    # a one-shot issuance should not pay for loading the IDNA tables.
    import idna  # IDNA2008 (RFC 5891) with UTS #46 mapping, not Python's IDNA2003 codec

    from certkit.names_idna import idna_refusal, refuse_capital_sharp_s, refuse_invisible
    from certkit.names_notation import refuse_other_digits

    refuse_invisible(original)  # before UTS 46 drops some, certifying another name than the one given
    refuse_other_digits(original.strip())  # an address in another script's digits, where a name is asked for too
    if "\u1e9e" in name:  # the capital sharp s, which clients convert two ways
        refuse_capital_sharp_s(original)
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True).decode("ascii")
        idna.decode(ascii_name)  # proves existing xn-- labels are valid A-labels
    except idna.IDNAError as exc:  # in certkit's words, not the idna package's
        raise idna_refusal(original, name, exc) from None
    except UnicodeError:
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: a label is empty or too long.") from None
    return ascii_name


def _check_label(original: str, label: str) -> None:
    if not label:
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: it has an empty label.")
    if len(label) > 63:
        raise InvalidName(
            f"'{_show(original)}' is not a valid DNS name: label '{_show(label[:20])}...' is longer "
            "than 63 characters."
        )
    if _LDH_LABEL.match(label):
        return
    if label.startswith("-") or label.endswith("-"):
        reason = f"label '{_show(label)}' starts or ends with a hyphen"
    elif "_" in label:
        reason = f"label '{_show(label)}' contains '_', which is not allowed in a host name"
    else:
        bad = next(ch for ch in label if not (ch.isalnum() or ch == "-"))
        reason = f"label '{_show(label)}' contains {bad!r}; only letters, digits and '-' are allowed"
    raise InvalidName(f"'{_show(original)}' is not a valid DNS name: {reason}.")


def _check_wildcard_base(original: str, base: str) -> None:
    if "." not in base:
        raise InvalidName(
            f"'{_show(original)}' is not allowed: a wildcard directly over the top-level "
            f"label '{_show(base)}' would match every host under it."
        )
    if _psl().is_public(base):
        raise InvalidName(
            f"'{_show(original)}' is not allowed: '{_show(base)}' is a public suffix, so the wildcard "
            "would cover domains that belong to others."
        )


# Special-use names (RFC 6761, RFC 8375 home.arpa, RFC 9476 .alt, ICANN's .internal): nobody's website is under
# them, so a CA limited to one of them cannot impersonate one, whatever the public suffix list says of home.arpa.
SPECIAL_USE = ("home.arpa", "local", "localhost", "test", "example", "invalid", "internal", "alt", "onion")


def public_suffix_scope(domain: str) -> bool:
    """Whether a name-constraint ``domain`` is a public suffix (com, co.uk, github.io: domains that belong
    to others), so that a CA limited to it may still vouch for other people's websites. Unknown TLDs
    (lan, corp) and special-use names are not."""
    domain = domain.strip(".").lower()
    if not domain or any(domain == s or domain.endswith("." + s) for s in SPECIAL_USE):
        return not domain
    return bool(_psl(accept_unknown=False).is_public(domain))


@cache  # the list takes ~20 ms to load: one of each kind per process, when first needed
def _psl(accept_unknown: bool = True):
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_unknown=accept_unknown)
