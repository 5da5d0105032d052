"""What goes wrong with a token, in words: :class:`TokenError`, :class:`TokenPinIncorrect`, and
python-pkcs11's exceptions said as a sentence's cause (:func:`words`)."""

from __future__ import annotations

from certkit.errors import CertkitError


class TokenError(CertkitError):
    """A PKCS#11 token, or a key in it, that cannot be used as asked."""


class TokenPinIncorrect(TokenError):
    """The token refused the PIN (not retried: tokens lock after a few wrong PINs)."""


class TokenPinNotInitialized(TokenError):
    """The token has no user PIN (or, with SoftHSM2, read none while another process rewrote it)."""


def words(exc: Exception) -> str:
    """A PKCS#11 error in words: python-pkcs11's class names say what the token said."""
    import re

    name = type(exc).__name__
    text = str(exc).strip()
    plain = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return f"{plain} ({text})" if text and text != name else plain
