"""An internationalized DNS name refused in words: a character that shows nothing (but a joiner where a script
needs one), the capital sharp s (which clients convert two ways), and what IDNA2008 refuses, said as the label at
fault and what is wrong with it, not in the idna package's words."""

from __future__ import annotations

import re

from certkit.errors import InvalidName
from certkit.names import _show
from certkit.text import unseen


def refuse_capital_sharp_s(original: str) -> None:
    """Refuse a host name holding U+1E9E (ẞ, the capital sharp s): UTS 46 maps it to ß since Unicode 15.1 (the
    idna package certkit converts with: FAẞ.DE is faß.de, xn--fa-hia.de), but curl (libidn2), Node's URL (ICU, as
    Chrome), Python's ssl and Java (IDNA2003) map it to 'ss' and connect to fass.de: the certificate would name
    another host than the one they dial. Either lower-case spelling says which one is meant."""
    lower = original.strip().replace("\u1e9e", "\u00df").lower()
    ss = original.strip().replace("\u1e9e", "ss").lower()
    raise InvalidName(f"'{_show(original)}' holds the capital sharp s (ẞ), which clients convert two ways: curl, Node "
                      f"(ICU, as Chrome), Python's ssl and Java read it as 'ss' and connect to {_show(ss)}, while "
                      f"newer IDNA tables (Unicode 15.1, as certkit's) read it as ß ({_show(lower)}); give the name "
                      f"as clients are given it, '{_show(ss)}' or '{_show(lower)}'.")


# ZWNJ and ZWJ: IDNA2008 allows them where a script needs one (RFC 5892's CONTEXTJ rules: after a virama, a ZWNJ
# also between Arabic letters) and judges each; kept at their place (as a letter) for the positions of the others.
_JOINERS = {0x200C: "j", 0x200D: "j"}


def refuse_invisible(original: str) -> None:
    """Refuse a DNS name that holds a character that shows nothing, naming it by code point and name: UTS 46
    drops some (ZERO WIDTH SPACE, SOFT HYPHEN), so the certificate would name another host than the one given,
    and the others hide in a name that reads as another."""
    if (bad := unseen(original.strip().translate(_JOINERS), invisible_too=True)) is not None:
        raise InvalidName(f"'{_show(original)}' is not a valid DNS name: it contains {bad}.")


def misplaced_joiner(original: str) -> InvalidName:
    """The refusal of a name with a joiner IDNA2008 does not allow where it is, as :func:`refuse_invisible` says it."""
    return InvalidName(f"'{_show(original)}' is not a valid DNS name: it contains "
                       f"{unseen(original.strip(), invisible_too=True)}, which IDNA2008 allows only where a script "
                       "needs one (after a virama; a ZWNJ also between Arabic letters).")


def idna_refusal(original: str, name: str, exc: Exception) -> InvalidName:
    """The refusal of a name IDNA2008 refuses, in certkit's words, not the idna package's ("Codepoint U+0080 at
    position 1 of '\\x80' not allowed", "Invalid A-label"): the label at fault, and what is wrong with it."""
    import unicodedata

    import idna

    # A joiner where IDNA2008 allows none (in idna 3.13's words or 3.20's): said as every invisible character is
    if "joiner" in str(exc).lower() and ("\u200c" in name or "\u200d" in name):
        return misplaced_joiner(original)
    label = next((part for part in name.split(".") if part and not _idna_label_ok(idna, part)), name)
    point = re.search(r"U\+([0-9A-F]{4,6})", str(exc))
    ch = chr(int(point[1], 16)) if point else ""
    held = f"U+{point[1]} ({unicodedata.name(ch, '') or 'a control character'})" if point else ""
    if label.lower().startswith("xn--"):
        try:
            decoded = label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            why = "is not the Punycode form (an A-label) of any label"
        else:
            why = (f"decodes to '{_show(decoded)}', all ASCII: an xn-- label is the Punycode form of a label with "
                   "characters beyond ASCII" if decoded.isascii() else f"is the A-label of '{_show(decoded)}', which "
                   + (f"holds {held}, a character no domain name may hold (IDNA2008)" if held else
                      "is no valid internationalized label (IDNA2008, RFC 5891)")
                   + "; an xn-- label must be the exact A-label of a valid one")
    elif held:
        why = f"holds {held}, a character IDNA2008 does not allow in a domain name"
    elif isinstance(exc, idna.IDNABidiError):
        why = "mixes right-to-left and left-to-right characters as the bidi rule of IDNA2008 (RFC 5893) forbids"
    else:
        why = "is not a valid internationalized label (IDNA2008, RFC 5891)"
    return InvalidName(f"'{_show(original)}' is not a valid internationalized domain name: label '{_show(label)}' "
                       f"{why}.")


def _idna_label_ok(idna, label: str) -> bool:
    try:
        idna.decode(idna.encode(label, uts46=True, std3_rules=True))
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True
