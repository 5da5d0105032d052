"""What goes wrong with a token, in words: :class:`TokenError`, :class:`TokenPinIncorrect`,
:class:`TokenAbsent` (:class:`TokenGone` when it went away while in use), and
python-pkcs11's exceptions said as a sentence's cause (:func:`words`)."""

from __future__ import annotations

import re

from certkit.errors import CertkitError


class TokenError(CertkitError):
    """A PKCS#11 token, or a key in it, that cannot be used as asked."""


class TokenPinIncorrect(TokenError):
    """The token refused the PIN (not retried: tokens lock after a few wrong PINs); ``remembered``: it refused
    it earlier in this process, and it was not sent again."""

    remembered = False


class TokenAbsent(TokenError):
    """No token matches the URI (``present``: the labels of the tokens there are), or the module
    stopped answering about its tokens (``present`` is None, ``cause`` says what it answered)."""

    def __init__(self, message: str, *, present: list[str] | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.present, self.cause = present, cause


class TokenGone(TokenAbsent):
    """The token holding a key in use went away (deleted, unplugged) or stopped answering after the
    key was opened: mid-batch, or between a command's login and its signing."""


class TokenKeyMissing(TokenError):
    """The token is there but holds no private key the URI names."""


class TokenPublicMissing(TokenError):
    """The token holds the private key but neither a public key object nor a certificate for it (or
    certificates of several keys, none told apart as its own)."""


class TokenPinNotInitialized(TokenError):
    """The token has no user PIN (or, with SoftHSM2, read none while another process rewrote it)."""


# The words of an exception's class name: an acronym with its digits (PKCS11, ID, SO, OS), a
# capitalized word, or digits.
_WORD = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z]|[^A-Za-z0-9]|$)|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")
_SAID = {"PKCS11": "PKCS#11", "Pin": "PIN", "Len": "length", "Param": "parameter", "Params": "parameters"}


def words(exc: Exception) -> str:
    """A PKCS#11 error in words: python-pkcs11's class names say what the token said
    (``PinIncorrect``: "PIN incorrect", ``SlotIDInvalid``: "slot ID invalid", ``PKCS11Error``:
    "PKCS#11 error"), followed by its text when it has one."""
    name = type(exc).__name__
    text = str(exc).strip()
    said = [_SAID.get(word) or (word if word.isupper() or word.isdigit() else word.lower())
            for word in _WORD.findall(name)]
    plain = " ".join(said) or name
    return f"{plain} ({text})" if text and text != name else plain
