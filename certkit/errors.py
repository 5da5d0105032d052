"""The exceptions certkit's library raises.

Every failure a user can cause is a :class:`CertkitError` whose message is a
full sentence naming the value or path and the cause; the CLI prints it as
``Error: <message>`` and exits 1. Nothing here imports click.
"""

from __future__ import annotations

import re


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


class NestedTooDeeply(ValueError):
    """JSON whose arrays and objects nest deeper than Python's decoder recurses (a few thousand ``[``):
    damaged or hostile, never certkit's, told as any other damage (``except ValueError``)."""

    msg = "its arrays and objects are nested too deeply to read"

    def __init__(self) -> None:
        super().__init__(self.msg)


def loads_json(data: str | bytes, **kwargs):
    """``json.loads``, but JSON nested too deeply, which makes the decoder raise RecursionError (no
    ValueError), raises :class:`NestedTooDeeply`, a ValueError: every reader of a file, a manifest line or an
    inventory row that says "not JSON" for damage says so for this too, instead of a traceback."""
    import json

    try:
        return json.loads(data, **kwargs)
    except RecursionError:
        raise NestedTooDeeply() from None


# The kinds of cryptography's ASN.1 ParseError, in words.
_ASN1_KINDS = {
    "ShortData": "the data ends too soon (truncated)",
    "ExtraData": "extra data follows its end",
    "UnexpectedTag": "a field is not of the type expected there",
    "InvalidValue": "a field holds an invalid value",
    "InvalidLength": "a length is invalid",
    "InvalidTag": "a field has an invalid type tag",
    "IntegerOverflow": "a number is too large",
    "InvalidSetOrdering": "a set is not in DER order",
    "EncodedDefault": "a field spells out its default value, which DER forbids",
    "OidTooLong": "an object identifier is too long",
    "UnknownDefinedBy": "an algorithm or attribute is unknown",
}
# The fields its location names, in words (the rest are left unsaid).
_ASN1_FIELDS = {
    "tbs_cert": None, "csr_info": None, "version": "the version", "serial": "the serial number",
    "signature_alg": "the signature algorithm", "signature": "the signature", "issuer": "the issuer name",
    "validity": "the validity period", "not_before": "the validity period", "not_after": "the validity period",
    "subject": "the subject name", "spki": "the public key", "raw_extensions": "the extensions",
    "attributes": "the requested attributes",
}


def describe_parse_error(exc: Exception) -> str:
    """One line in plain words saying why parsing failed, for an error message: never a Python
    repr nor the ASN.1 parser's internals (``ParseError { kind: ShortData { needed: 91 } }``)."""
    import re

    from cryptography.x509 import UnsupportedGeneralNameType

    if isinstance(exc, KeyError):
        return "a name uses an unknown string type"
    if isinstance(exc, UnsupportedGeneralNameType):  # valid X.509, which OpenSSL reads: not damage
        return ("it holds an x400Address or ediPartyName name (in its subjectAltName or another name extension), a "
                "form cryptography, which certkit reads certificates with, does not support (openssl x509 -text "
                "shows it)")
    text = str(exc).strip()
    if "ParseError {" in text:
        kind = re.search(r"kind: (\w+)", text)
        said = _ASN1_KINDS.get(kind.group(1) if kind else "", "its encoding is damaged")
        fields = [_ASN1_FIELDS.get(part.rsplit("::", 1)[-1]) for part in re.findall(r'"([\w:]+)"', text)]
        where = next((f for f in reversed(fields) if f), None)
        return f"it is not valid DER: {said}" + (f" (in {where})" if where else "")
    if text.startswith("Unable to load PEM file"):
        return "its PEM text is damaged"
    return text.splitlines()[0].rstrip(".") if text else "it could not be parsed"


def damaged(exc: Exception, what: str = "certificate") -> str:
    """``a damaged certificate``, or, for what is valid X.509 that cryptography does not support, ``a certificate
    certkit cannot read``: the words before :func:`describe_parse_error`'s."""
    from cryptography.x509 import UnsupportedGeneralNameType

    unread = isinstance(exc, UnsupportedGeneralNameType) or getattr(exc, "certkit_unread", None)
    return f"a {what} certkit cannot read" if unread else f"a damaged {what}"


def damage_said(exc: Exception, what: str = "certificate", of=()) -> str:
    """``a damaged certificate: <why>`` (:func:`damaged`, :func:`describe_parse_error`). ``of``: the certificates
    or CSRs (objects or DER) the error may come from, looked at for a name string OpenSSL reads and cryptography
    refuses (:func:`certkit.name_strings.odd_name_string`), which is said instead: no damage."""
    for obj in of:
        if getattr(exc, "certkit_unread", None):
            break
        unread_name(exc, obj)
    return f"{damaged(exc, what)}: {getattr(exc, 'certkit_unread', None) or describe_parse_error(exc)}"


def unread_name(exc: Exception, obj) -> Exception:
    """``exc``, marked with why ``obj`` (a certificate or CSR, or its DER) cannot be read when a name of it holds
    a string OpenSSL reads and cryptography refuses."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.name_strings import odd_name_string

    try:
        der = obj if isinstance(obj, bytes) else obj.public_bytes(Encoding.DER)
    except Exception:  # noqa: BLE001 - nothing more to say than the parser did
        return exc
    if (said := odd_name_string(der)) is not None:
        exc.certkit_unread = said
    return exc


def unreadable_certificate(cert) -> Exception | None:
    """What stops certkit from reading ``cert``'s names and extensions (parsed when first read): the
    exception, or None when they can be read."""
    try:
        cert.subject, cert.issuer, list(cert.extensions)  # noqa: B018 (read to be parsed)
    except parse_errors() as exc:
        return unread_name(exc, cert)
    return None


class CertkitError(Exception):
    """Base class: an operational error with a message fit for a user (a line of thousands of characters, a
    long value echoed, is cut to its start and end: :func:`certkit.text.cut_long_lines`)."""

    def __init__(self, *args) -> None:
        if args and isinstance(args[0], str) and len(args[0]) > 1000:  # text.MESSAGE_LINE_LIMIT, without importing it
            from certkit.text import cut_long_lines

            args = (cut_long_lines(args[0]), *args[1:])
        super().__init__(*args)


def cli_worded(error: CertkitError, library: str, cli: str, acme: str | None = None) -> CertkitError:
    """``error``, whose message gives its fix in the library's words (``library``: a call, a parameter),
    told to say ``cli`` instead on the command line (``cli_words``, which
    :func:`certkit.cli.failures.cli_message` swaps in), and ``acme`` to an ACME client (``acme_words``, which
    :func:`acme_text` swaps in), where the request met the same rule (an order's identifier, a CSR)."""
    error.cli_words = (library, cli)
    if acme is not None:
        error.acme_words = (library, acme)
    return error


def cli_text(exc: BaseException) -> str:
    """``str(exc)`` as the command line says it: the library's words of its advice (``cli_words``)
    replaced, for a message the command line builds from it (a batch line's reason, --name: ...)."""
    words = getattr(exc, "cli_words", None)
    return str(exc).replace(*words) if words else str(exc)


def acme_text(exc: BaseException) -> str:
    """``str(exc)`` as the ACME server tells it to a client: the advice in an ACME client's words
    (``acme_words``), which can neither call the library nor run a command; else as the command line says it."""
    words = getattr(exc, "acme_words", None)
    return str(exc).replace(*words) if words else cli_text(exc)


class InvalidName(CertkitError, ValueError):
    """A DNS name, IP address, email or URI that cannot go in a certificate."""


class InvalidArgument(CertkitError, ValueError):
    """A library argument outside its choices: a certificate kind, a key type, a client-certificate mode."""


class WrongType(InvalidArgument, TypeError):
    """A library argument of the wrong type (a str where a bool goes, a path that is an int): a
    ``TypeError`` as Python's own are, naming the argument and what it takes, and a certkit error too."""


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


class UnreadableFile(CertkitError):
    """A file the file system refuses to read (an I/O error, no permission): ``errno`` says which. Not a
    damaged file, and, but for ENOENT (gone meanwhile), not a file moved or deleted by hand."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class InputTooLarge(CertkitError):
    """A file or line larger than anything certkit reads could legitimately be."""


class UnsafeSecretFile(CertkitError):
    """A passphrase, password or PIN file that other users can read."""


class UnknownSchema(CertkitError):
    """An inventory whose schema version is missing or unreadable (a partial restore): said with
    its location by :meth:`certkit.inventory.Inventory.version`."""


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
    """SIGTERM or SIGHUP (``signum``), raised where the process is (like KeyboardInterrupt for
    SIGINT), so what it was doing is settled before it exits; see :func:`raise_terminated`."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_terminated(signum, frame) -> None:
    """A SIGTERM (or SIGHUP) handler: ``signal.signal(signal.SIGTERM, raise_terminated)``."""
    raise Terminated(signum)


def stop_signals() -> tuple:
    """The signals that stop certkit as SIGTERM does: SIGTERM, and SIGHUP (the terminal or the ssh
    session went away) unless it is ignored (``nohup``), which it then stays."""
    import signal

    ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    return (signal.SIGTERM,) if ignored else (signal.SIGTERM, signal.SIGHUP)


def handle_stop_signals(handler) -> dict:
    """Install ``handler`` for :func:`stop_signals`; return the previous handlers, for
    :func:`restore_signals`."""
    import signal

    return {signum: signal.signal(signum, handler) for signum in stop_signals()}


def restore_signals(previous: dict) -> None:
    import signal

    for signum, handler in previous.items():
        signal.signal(signum, handler)


_ADVICE = re.compile(r"(?:[;.,]\s*(?:then\s+)?try again|[;.]\s*nothing (?:was changed|was issued or written|of that "
                     r"transaction was committed)).*$", re.IGNORECASE | re.DOTALL)


def without_advice(exc: BaseException | str) -> str:
    """``exc``'s message without its closing advice ("try again", "nothing was changed", "nothing was issued or
    written"), for a failure that came once something was written (a batch's, a bulk renewal's earlier bundles):
    what follows it says what was done and what to do instead."""
    text = _ADVICE.sub("", str(exc).rstrip())
    return text if text.endswith(".") else text + "."


class ModesNotKept(OSError):
    """A file certkit just made cannot get its mode: the file system keeps none of its own (vfat and exFAT give every
    file the mount's mode, and refuse chmod or, under ``quiet``, ignore it; so does an SMB mount without Unix
    extensions). Never a private key in a file others may read: the write fails, saying so."""

    def __init__(self, wanted: int, got: int | None) -> None:
        import errno

        said = f"its files get mode {got:04o}" if got is not None else "chmod fails there"
        made = "made private (mode 0600, as certkit writes keys)" if not wanted & 0o077 else f"given mode {wanted:04o}"
        super().__init__(errno.EPERM, f"the file system there keeps no file modes of its own ({said}; a vfat, exFAT "
                                      f"or SMB mount?), so the files certkit writes could not be {made}; write them "
                                      "to a Linux file system and copy them over")
