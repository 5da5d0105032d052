"""A CA key that stays in a PKCS#11 token (an HSM, a smart card, SoftHSM), named by an RFC 7512 URI.

``init-ca --key-uri 'pkcs11:token=ca;object=root'`` generates the key inside
the token as sensitive and non-extractable (or uses a key already there); the
CA directory then holds only that URI (``certkit-ca.json``), never key
material. Every signature the CA makes (certificates, CRLs) is made by the
token; everything else (building certificates, verifying) stays in
``cryptography``.

``cryptography``'s builders sign only with a key they hold, so a
:class:`TokenKey` signs a builder in three steps (:meth:`TokenKey.sign_builder`):
the builder is signed once with a throw-away stand-in key of the same
algorithm, which gives the to-be-signed bytes (TBS) and the signature
algorithm exactly as ``cryptography`` encodes them; the token signs the TBS;
the stand-in's signature is replaced by the token's, and the result is
verified with the token key's public half before it is returned.

Key types: EC P-256 (ECDSA with SHA-256) and P-384 (SHA-384), RSA with
PKCS#1 v1.5 or PSS (SHA-256, MGF1-SHA-256, 32-byte salt). The token binding is
python-pkcs11 (``pip install 'certkit[team]'``). The PIN comes from the caller
(a ``--pin-file``, ``$CERTKIT_PKCS11_PIN`` or a prompt: the command line's
job), never from a URI.

The package, from the bottom up: :mod:`~certkit.pkcs11.errors` (the exceptions,
PKCS#11 errors in words), :mod:`~certkit.pkcs11.uri` (RFC 7512 URIs),
:mod:`~certkit.pkcs11.session` (the module, the token, logging in, retries),
:mod:`~certkit.pkcs11.der` (the stand-in key and the signature splice),
:mod:`~certkit.pkcs11.key` (:class:`TokenKey`), :mod:`~certkit.pkcs11.provision`
(opening, finding or generating the CA key). Everything public is importable
from here.
"""

from certkit.pkcs11.errors import TokenAbsent, TokenError, TokenGone, TokenPinIncorrect
from certkit.pkcs11.key import PSS_SALT_LENGTH, SUPPORTED_KEY_TYPES, TokenKey
from certkit.pkcs11.provision import generate_key, key_exists, open_key
from certkit.pkcs11.session import find_token, module_path, pin_state
from certkit.pkcs11.uri import KeyURI

__all__ = [
    "PSS_SALT_LENGTH",
    "SUPPORTED_KEY_TYPES",
    "KeyURI",
    "TokenAbsent",
    "TokenError",
    "TokenGone",
    "TokenKey",
    "TokenPinIncorrect",
    "find_token",
    "generate_key",
    "key_exists",
    "module_path",
    "open_key",
    "pin_state",
]
