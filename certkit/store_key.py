"""The CA key of a CA directory: ca-key.pem read (its mode judged, refused when damaged, decrypted)
or the key a PKCS#11 token holds opened with its PIN, and either checked against the CA
certificate; once a CA key is in memory, the process writes no core file."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from certkit.constants import MAX_CERT_FILE_BYTES
from certkit.errors import CABroken, CertkitError, PassphraseRequired
from certkit.files import read_limited
from certkit.keys import is_encrypted, key_damage, load_private_key, public_key_der
from certkit.text import shown
from certkit.vocabulary import absent_text

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.store import CADirectory, Passphrase


def no_core_dumps() -> None:
    """Keep the decrypted CA key out of core files (and away from same-user debuggers): no core
    limit, and not dumpable (Linux prctl). Called once a CA key is in memory."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
        except (OSError, AttributeError):
            pass


def _secret_bytes(secret, what: str = "passphrase") -> bytes | None:
    """A passphrase or PIN as the library may be given it (:func:`certkit.text.secret_bytes`), or None."""
    if secret is None:
        return None
    from certkit.text import secret_bytes

    return secret_bytes(secret, f"The {what}", "bytes, a str or a callable returning one")


def load_ca_key(directory: "CADirectory", cert: "x509.Certificate",
                passphrase: "Passphrase" = None) -> tuple[object, list[str]]:
    """:meth:`certkit.store.CADirectory.load_key`: the CA's private key, checked against ``cert``, and
    warnings about its file; a token's key (``passphrase`` is then its PIN) for a token CA."""
    if directory.key_uri is not None:
        return _load_token_key(directory, cert, passphrase), []
    if not directory.key_path.is_file():
        raise CABroken(f"The CA key {(k := directory.key_path)} {absent_text(k)}; nothing can be issued without it.")
    try:
        data = read_limited(directory.key_path, MAX_CERT_FILE_BYTES, what="CA key")
    except CertkitError as exc:
        raise CABroken(str(exc)) from None
    warnings = _key_mode_warnings(directory, data)
    damage = key_damage(data)
    if damage is not None:  # said before any passphrase is asked: none opens a truncated key
        raise CABroken(f"The CA key {directory.key_path} is damaged: {damage}. Restore it from a backup; nothing "
                       "can be issued without it.")
    secret = None
    if is_encrypted(data):
        secret = _secret_bytes(passphrase() if callable(passphrase) else passphrase)
        if secret is None:
            raise PassphraseRequired(
                f"The CA key {directory.key_path} is encrypted and no passphrase was given."
            )
    # trusted=True skips RSA's ~40 ms consistency check: the key is ours, and the
    # comparison with the certificate below catches a swapped or damaged key.
    key = load_private_key(data, secret, source=f"CA key {directory.key_path}", trusted=True)
    no_core_dumps()
    if public_key_der(key.public_key()) != public_key_der(cert.public_key()):
        raise CABroken(f"The CA key {directory.key_path} does not belong to the CA certificate "
                       f"{directory.cert_path}; restore the matching pair from a backup.")
    return key, warnings


def _load_token_key(directory: "CADirectory", cert: "x509.Certificate", pin: "Passphrase"):
    from certkit.pkcs11 import open_key

    secret = _secret_bytes(pin() if callable(pin) else pin, "PIN")
    if secret is None:
        raise PassphraseRequired(f"The CA key is in a PKCS#11 token ({shown(directory.key_uri)}) and no PIN was "
                                 "given.")
    key = open_key(directory.key_uri, directory.config.get("pkcs11_module"), secret,
                   expected=cert.public_key(), named_in=str(directory.config_path))
    no_core_dumps()  # the PIN stays in memory (a forked batch worker logs in again)
    if public_key_der(key.public_key()) != public_key_der(cert.public_key()):
        key.close()
        raise CABroken(f"The token key {shown(directory.key_uri)} does not belong to the CA certificate "
                       f"{directory.cert_path}; check the URI in {directory.config_path.name}.")
    return key


def _key_mode_warnings(directory: "CADirectory", data: bytes) -> list[str]:
    """Refuse an unencrypted CA key that others can read; warn for an encrypted one (ssh's rule)."""
    key_mode = directory.key_path.stat().st_mode & 0o777
    if not key_mode & 0o077:
        return []
    if not is_encrypted(data):
        raise CABroken(
            f"The CA key {directory.key_path} is not encrypted and has mode {key_mode:04o}: others can read "
            f"it and issue certificates your machines trust. Run: chmod 600 {directory.key_path} "
            "(and consider the key compromised if others could log in here)."
        )
    return [f"the CA key {directory.key_path} has mode {key_mode:04o}; others can read it (it is encrypted). "
            f"Run: chmod 600 {directory.key_path}"]
