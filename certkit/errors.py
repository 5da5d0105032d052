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
    """Output files exist and replacing them was not asked for; ``count`` of them, which could be
    replaced if asked (``replaceable``)."""

    def __init__(self, message: str, *, replaceable: bool = True, count: int = 1) -> None:
        super().__init__(message)
        self.replaceable, self.count = replaceable, count


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


class InventoryError(CertkitError):
    """The inventory database cannot be used: missing, damaged, locked, read-only, disk full."""


class DamagedRow(InventoryError):
    """One inventory row that cannot be read (a bad date, bad JSON, bad DER)."""

    def __init__(self, serial: str, reason: str) -> None:
        self.serial, self.reason = serial, reason
        super().__init__(f"The inventory row of certificate {serial} is damaged ({reason}); "
                         "'certkit check' lists every damaged row. Restore the inventory from a backup.")


class PendingCertificate(CertkitError):
    """A certificate whose issuing is still in progress (its bundle not yet written)."""


class Terminated(BaseException):
    """SIGTERM, raised where the process is (like KeyboardInterrupt for SIGINT), so what it was
    doing is settled before it exits; see :func:`raise_terminated`."""


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: ``signal.signal(signal.SIGTERM, raise_terminated)``."""
    raise Terminated
