"""The exceptions certkit's library raises.

Every failure a user can cause is a :class:`CertkitError` whose message is a
full sentence naming the value or path and the cause; the CLI prints it as
``Error: <message>`` and exits 1. Nothing here imports click.
"""

from __future__ import annotations


def parse_errors() -> tuple[type[Exception], ...]:
    """What ``cryptography`` raises for damaged certificates, CSRs and keys, often only when
    a field is first read: ValueError (a malformed extension or name), KeyError (a name
    attribute with an unknown string type), TypeError (an attribute of the wrong ASN.1 type),
    UnsupportedAlgorithm (a damaged key algorithm or
    curve), InvalidVersion (a damaged version field), DuplicateExtension and
    UnsupportedGeneralNameType. Found by fuzzing (tests/fuzz_corpus)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.x509 import DuplicateExtension, InvalidVersion, UnsupportedGeneralNameType

    return (ValueError, KeyError, TypeError, UnsupportedAlgorithm, InvalidVersion, DuplicateExtension,
            UnsupportedGeneralNameType)


def describe_parse_error(exc: Exception) -> str:
    """One line saying why parsing failed, for an error message."""
    if isinstance(exc, KeyError):
        return "a name uses an unknown string type"
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


class CertkitError(Exception):
    """Base class: an operational error with a message fit for a user."""


class InvalidName(CertkitError, ValueError):
    """A DNS name, IP address, email or URI that cannot go in a certificate."""


class InvalidLifetime(CertkitError, ValueError):
    """A requested lifetime that the profile or the issuing CA does not allow."""


class CANotFound(CertkitError):
    """No CA exists at the given directory."""


class CAExists(CertkitError):
    """A CA already exists where a new one would be created."""


class CABroken(CertkitError):
    """The CA directory exists but is unusable (damaged, mismatched, wrong passphrase)."""


class WrongPassphrase(CABroken):
    """The passphrase does not decrypt the CA key."""


class PassphraseRequired(CertkitError):
    """The CA key is encrypted and no passphrase was supplied."""


class OutputExists(CertkitError):
    """An output file exists and replacing it was not asked for."""


class UnsafeOutputPath(CertkitError):
    """An output path that would escape the chosen folder or write through a link."""


class NameNotPermitted(CertkitError):
    """A name outside the issuing CA's name constraints."""


class InvalidCSR(CertkitError, ValueError):
    """A certificate signing request that cannot be read, is tampered with, or asks for what cannot be given."""


class UnknownCertificate(CertkitError, LookupError):
    """A serial, name or folder that names no certificate of this CA."""


class AlreadyRevoked(CertkitError):
    """A certificate that is already revoked (revoking again, renewing it)."""


class CannotRenew(CertkitError):
    """A certificate that cannot be renewed as asked (a CA, superseded, no folder to write)."""


class InputTooLarge(CertkitError):
    """A file or line larger than anything certkit reads could legitimately be."""


class UnsafeSecretFile(CertkitError):
    """A passphrase, password or PIN file that other users can read."""
