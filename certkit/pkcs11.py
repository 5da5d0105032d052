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
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from certkit.errors import CABroken, CertkitError
from certkit.text import shown

SUPPORTED_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")
_CURVES = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}
# RFC 7512 path attributes certkit understands (the rest would narrow the search in ways it cannot honour).
_PATH_ATTRIBUTES = ("token", "object", "id", "type", "serial", "manufacturer", "model", "slot-id")
PSS_SALT_LENGTH = 32  # = the SHA-256 digest length, as RFC 4055 recommends


class TokenError(CertkitError):
    """A PKCS#11 token, or a key in it, that cannot be used as asked."""


class TokenPinIncorrect(TokenError):
    """The token refused the PIN (not retried: tokens lock after a few wrong PINs)."""


# --- RFC 7512 URIs --------------------------------------------------------------------
@dataclass(frozen=True)
class KeyURI:
    """A ``pkcs11:`` URI naming a token and a key in it (RFC 7512)."""

    text: str
    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slot_id: int | None = None
    module_path: str | None = None

    @classmethod
    def parse(cls, text: str) -> KeyURI:
        """Parse ``text``; refuse what certkit cannot honour, and any PIN in it (a URI is seen in
        argv and in files: a PIN comes from --pin-file, $CERTKIT_PKCS11_PIN or a prompt)."""
        if not text.startswith("pkcs11:"):
            raise TokenError(f"'{shown(text)}' is not a PKCS#11 URI; write pkcs11:token=LABEL;object=LABEL "
                             "(RFC 7512).")
        body = text[len("pkcs11:"):]
        path, _, query = body.partition("?")
        found: dict[str, Any] = {}
        for part in filter(None, path.split(";")):
            name, eq, value = part.partition("=")
            name = name.lower()
            if not eq or name not in _PATH_ATTRIBUTES:
                raise TokenError(f"The PKCS#11 URI '{shown(text)}' has '{shown(part)}', which certkit does not "
                                 f"understand; it knows: {', '.join(_PATH_ATTRIBUTES)}.")
            if name in found:
                raise TokenError(f"The PKCS#11 URI '{shown(text)}' names {name} twice.")
            found[name] = _decode(value, text)
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            name = name.lower()
            if name in ("pin-value", "pin-source"):
                raise TokenError("A PKCS#11 URI for certkit holds no PIN (command lines and files show it): give the "
                                 "PIN with --pin-file, $CERTKIT_PKCS11_PIN or at the prompt.")
            if name == "module-path":
                found["module-path"] = _decode(value, text)
            elif name != "module-name":
                raise TokenError(f"The PKCS#11 URI '{shown(text)}' has the query attribute '{shown(name)}', which "
                                 "certkit does not understand (it knows module-path).")
        kind = found.get("type")
        if kind is not None and kind.decode(errors="replace") != "private":
            raise TokenError(f"The PKCS#11 URI '{shown(text)}' names a {shown(kind.decode(errors='replace'))} "
                             "object; a CA key URI names a private key (type=private, or no type).")
        text_of = lambda name: found[name].decode("utf-8", errors="replace") if name in found else None  # noqa: E731
        slot = text_of("slot-id")
        if slot is not None and not slot.isdigit():
            raise TokenError(f"The slot-id in '{shown(text)}' is not a number.")
        return cls(text=text, token=text_of("token"), object=text_of("object"), id=found.get("id"),
                   serial=text_of("serial"), manufacturer=text_of("manufacturer"), model=text_of("model"),
                   slot_id=int(slot) if slot is not None else None, module_path=text_of("module-path"))

    def check_names_a_key(self) -> None:
        if self.token is None and self.serial is None and self.slot_id is None:
            raise TokenError(f"The PKCS#11 URI '{shown(self.text)}' names no token; add token=LABEL (or serial=).")
        if self.object is None and self.id is None:
            raise TokenError(f"The PKCS#11 URI '{shown(self.text)}' names no key; add object=LABEL (or id=).")

    def describe(self) -> str:
        key = f"'{self.object}'" if self.object is not None else f"id {self.id.hex()}"
        token = f"'{self.token}'" if self.token is not None else f"serial {self.serial}" if self.serial else \
            f"in slot {self.slot_id}"
        return f"key {shown(key)} in token {shown(token)}"


def _decode(value: str, text: str) -> bytes:
    try:
        return unquote_to_bytes(value)
    except ValueError:
        raise TokenError(f"The PKCS#11 URI '{shown(text)}' has a bad %-escape.") from None


# --- the module and the token ---------------------------------------------------------
def module_path(uri: KeyURI, module: str | Path | None) -> str:
    """The PKCS#11 module to load: ``module`` (--pkcs11-module), else the URI's module-path."""
    path = str(module) if module else uri.module_path
    if not path:
        hint = " (SoftHSM's is /usr/lib/softhsm/libsofthsm2.so)" if Path(
            "/usr/lib/softhsm/libsofthsm2.so").exists() else ""
        raise TokenError(f"No PKCS#11 module is named for {shown(uri.text)}: pass --pkcs11-module PATH or add "
                         f"?module-path=PATH to the URI{hint}.")
    if not Path(path).is_file():
        raise TokenError(f"The PKCS#11 module {shown(path)} does not exist.")
    return path


_INIT_LOCK = threading.Lock()
_INITIALIZED_IN: dict[str, int] = {}  # module path -> pid that initialized it


def _binding():
    try:
        import pkcs11
    except ImportError:
        raise TokenError("A CA key in a PKCS#11 token needs python-pkcs11: pip install 'certkit[team]'.") from None
    return pkcs11


def _lib(path: str, *, locked: bool = False):
    """The loaded module, initialized in this process (a forked child initializes it again: PKCS#11
    sessions do not survive fork)."""
    if not locked:
        with _INIT_LOCK:
            return _lib(path, locked=True)
    pkcs11 = _binding()
    try:
        lib = pkcs11.lib(path)
    except Exception as exc:  # a file that is no PKCS#11 module, a module that fails to initialize
        raise TokenError(f"The PKCS#11 module {shown(path)} cannot be loaded: {_words(exc)}.") from None
    pid = _INITIALIZED_IN.get(path)
    if pid is not None and pid != os.getpid():
        lib.reinitialize()
    _INITIALIZED_IN[path] = os.getpid()
    return lib


def _transient(call, *args, also=(), **kwargs):
    """``call`` retried a few times on CKR_GENERAL_ERROR (and the errors in ``also``): SoftHSM2
    answers so while another process rewrites the token's files (several processes logging in to
    one token at once: it says CKR_USER_PIN_NOT_INITIALIZED then, too); a real failure stays and
    is reported after about a second."""
    pkcs11 = _binding()
    for delay in _RETRY_DELAYS:
        try:
            return call(*args, **kwargs)
        except (pkcs11.GeneralError, *also):
            time.sleep(delay)
    return call(*args, **kwargs)


_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4)


def find_token(uri: KeyURI, module: str):
    """The one token ``uri`` names (no PIN needed)."""
    found, seen = _transient(_matching_tokens, uri, module)
    for delay in _RETRY_DELAYS:
        if found:
            break
        # Some modules (SoftHSM) list only the tokens there were when they were initialized (a
        # long-running process, a token made since), and none at all if another process was
        # rewriting the token files just then: initialize again and look again, for about a
        # second (sessions of this process are reopened on use).
        with _INIT_LOCK:
            _lib(module, locked=True).reinitialize()
        found, seen = _transient(_matching_tokens, uri, module)
        if not found:
            time.sleep(delay)
    if not found:
        present = ", ".join(f"'{shown(label)}'" for label in seen) or "none"
        raise TokenError(f"No token matching {shown(uri.text)} is present (module {shown(module)}; tokens "
                         f"present: {present}).")
    if len(found) > 1:
        raise TokenError(f"{len(found)} tokens match {shown(uri.text)}; add serial= to the URI to name one.")
    return found[0]


def _matching_tokens(uri: KeyURI, module: str) -> tuple[list, list[str]]:
    pkcs11 = _binding()
    lib = _lib(module)
    found, seen = [], []
    try:
        for slot in lib.get_slots(token_present=True):
            try:
                token = slot.get_token()
            except (pkcs11.TokenNotPresent, pkcs11.TokenNotRecognised):
                continue
            if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                continue
            seen.append(token.label)
            if uri.token is not None and token.label != uri.token:
                continue
            if uri.serial is not None and token.serial.decode(errors="replace").strip() != uri.serial:
                continue
            if uri.manufacturer is not None and token.manufacturer_id != uri.manufacturer:
                continue
            if uri.model is not None and token.model != uri.model:
                continue
            if uri.slot_id is not None and slot.slot_id != uri.slot_id:
                continue
            found.append(token)
    except pkcs11.GeneralError:
        raise
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"The PKCS#11 module {shown(module)} cannot list its tokens: {_words(exc)}.") from None
    return found, seen


def _login(token, pin: bytes | None, *, rw: bool = False):
    pkcs11 = _binding()
    if pin is None:
        raise TokenError(f"The token '{shown(token.label)}' needs its PIN: give --pin-file, $CERTKIT_PKCS11_PIN "
                         "or run on a terminal to be asked.")
    try:
        text = pin.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenPinIncorrect("The PIN is not UTF-8 text; PKCS#11 PINs are.") from None
    try:
        return _transient(token.open, rw=rw, user_pin=text, also=(pkcs11.UserPinNotInitialized,))
    except pkcs11.UserAlreadyLoggedIn:  # another key of this process opened the token: login is per process
        return _transient(token.open, rw=rw)
    except pkcs11.PinIncorrect:
        raise TokenPinIncorrect(f"The token '{shown(token.label)}' refused the PIN (tokens lock after a few "
                                "wrong PINs; certkit does not retry).") from None
    except pkcs11.PinLocked:
        raise TokenError(f"The PIN of token '{shown(token.label)}' is locked after too many wrong PINs; its "
                         "security officer (SO PIN) can unlock it.") from None
    except (pkcs11.PinLenRange, pkcs11.PinInvalid) as exc:
        raise TokenPinIncorrect(f"The token '{shown(token.label)}' refused the PIN ({_words(exc)}).") from None
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"Cannot open a session on token '{shown(token.label)}': {_words(exc)}.") from None


def _find(session, uri: KeyURI, object_class):
    pkcs11 = _binding()
    attrs = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        attrs[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[pkcs11.Attribute.ID] = uri.id
    return _transient(lambda: list(session.get_objects(attrs)))


# --- a key in a token -----------------------------------------------------------------
class TokenKey:
    """A private key held by a token; signs certificates and CRLs there (see the module docstring).

    It stands where a ``cryptography`` private key would in a :class:`~certkit.ca.CA`:
    :meth:`public_key` and :meth:`sign_builder` are what the CA uses. Signing is
    serialized (one PKCS#11 session) and survives a fork (``issue-batch --jobs``):
    the child opens its own session.
    """

    def __init__(self, uri: KeyURI, module: str, pin: bytes | None, *, rsa_pss: bool = False,
                 session=None, private=None, public_key=None) -> None:
        self.uri, self.module, self.rsa_pss = uri, module, rsa_pss
        self._pin = pin
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._session, self._private = session, private
        self._public = public_key
        if session is None:
            self._open()
        from certkit.keys import key_type_of

        self.key_type = key_type_of(self._public)
        if self.key_type not in SUPPORTED_KEY_TYPES:
            raise TokenError(f"The {uri.describe()} is a {self.key_type} key; certkit signs through a token with "
                             f"{', '.join(SUPPORTED_KEY_TYPES)}.")

    def _open(self) -> None:
        pkcs11 = _binding()
        token = find_token(self.uri, self.module)
        session = _login(token, self._pin)
        try:
            keys = _find(session, self.uri, pkcs11.ObjectClass.PRIVATE_KEY)
            if not keys:
                raise TokenError(f"No private {self.uri.describe()} (module {shown(self.module)}); check the "
                                 "URI's object= and id=, e.g. with: pkcs11-tool --list-objects --login.")
            if len(keys) > 1:
                raise TokenError(f"{len(keys)} private keys match {shown(self.uri.text)}; add id= to name one.")
            self._private = keys[0]
            if self._public is None:
                self._public = _public_key_of(session, self.uri, self._private)
        except BaseException:
            session.close()
            raise
        self._session = session
        self._pid = os.getpid()

    # --- what a CA uses -------------------------------------------------------------
    def public_key(self):
        return self._public

    @property
    def label(self) -> str:
        return f"pkcs11 {self.uri.text}"

    def attributes(self) -> dict[str, bool]:
        """What the token says about the private key: sensitive, extractable, never extractable..."""
        pkcs11 = _binding()
        names = {"sensitive": pkcs11.Attribute.SENSITIVE, "extractable": pkcs11.Attribute.EXTRACTABLE,
                 "always_sensitive": pkcs11.Attribute.ALWAYS_SENSITIVE,
                 "never_extractable": pkcs11.Attribute.NEVER_EXTRACTABLE, "local": pkcs11.Attribute.LOCAL,
                 "private": pkcs11.Attribute.PRIVATE, "token": pkcs11.Attribute.TOKEN}
        with self._lock:
            self._ensure_session()
            out = {}
            for name, attribute in names.items():
                try:
                    out[name] = bool(self._private[attribute])
                except pkcs11.PKCS11Error:
                    out[name] = False
            return out

    def sign(self, data: bytes) -> bytes:
        """``data`` signed by the token, as X.509 carries it (ECDSA as a DER SEQUENCE of r and s)."""
        pkcs11 = _binding()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        with self._lock:
            self._ensure_session()
            for attempt in range(2):
                try:
                    if self.key_type.startswith("ecdsa"):
                        digest = hashes.Hash(self.hash())
                        digest.update(data)
                        raw = _transient(self._private.sign, digest.finalize(), mechanism=pkcs11.Mechanism.ECDSA)
                        half = len(raw) // 2
                        return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                                    int.from_bytes(raw[half:], "big"))
                    if self.rsa_pss:
                        return _transient(self._private.sign, data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS_PSS,
                                          mechanism_param=(pkcs11.Mechanism.SHA256, pkcs11.MGF.SHA256,
                                                           PSS_SALT_LENGTH))
                    return _transient(self._private.sign, data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)
                except (pkcs11.SessionClosed, pkcs11.SessionHandleInvalid, pkcs11.UserNotLoggedIn,
                        pkcs11.DeviceRemoved, pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid) as exc:
                    if attempt:
                        raise TokenError(f"The {self.uri.describe()} cannot sign: {_words(exc)}.") from None
                    self._open()  # the token closed the session (a reset, a timeout): log in again, once
                except pkcs11.PKCS11Error as exc:
                    raise TokenError(f"The {self.uri.describe()} cannot sign: {_words(exc)}.") from None
        raise AssertionError("unreachable")

    def hash(self):
        from cryptography.hazmat.primitives import hashes

        return hashes.SHA384() if self.key_type == "ecdsa-p384" else hashes.SHA256()

    def sign_builder(self, builder):
        """Sign a certificate, CRL or CSR builder through the token (see the module docstring)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        padding = self._padding()
        stand_in = builder.sign(_stand_in(self.key_type.split("-")[0]), self.hash(),
                                **({"rsa_padding": padding} if padding is not None else {}))
        if isinstance(stand_in, x509.Certificate):
            tbs, load = stand_in.tbs_certificate_bytes, x509.load_der_x509_certificate
        elif isinstance(stand_in, x509.CertificateRevocationList):
            tbs, load = stand_in.tbs_certlist_bytes, x509.load_der_x509_crl
        else:
            tbs, load = stand_in.tbs_certrequest_bytes, x509.load_der_x509_csr
        signature = self.sign(tbs)
        self.verify(signature, tbs)
        return load(_replace_signature(stand_in.public_bytes(Encoding.DER), tbs, signature))

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check a signature of the token's with its public key (``cryptography``): a token that
        signed with another key than the one it names fails here, not in a relying party."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            if self.key_type.startswith("ecdsa"):
                self._public.verify(signature, data, ec.ECDSA(self.hash()))
            else:
                from cryptography.hazmat.primitives.asymmetric import padding

                self._public.verify(signature, data, self._padding() or padding.PKCS1v15(), self.hash())
        except InvalidSignature:
            raise CABroken(f"The {self.uri.describe()} made a signature its own public key does not verify; the "
                           "token's public and private objects do not belong together.") from None

    def _padding(self):
        if not self.key_type.startswith("rsa") or not self.rsa_pss:
            return None
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)

    def _ensure_session(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's session is not ours
            self._session = self._private = None
            self._open()

    def close(self) -> None:
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                try:
                    self._session.close()
                except Exception:
                    pass
            self._session = self._private = None

    def __repr__(self) -> str:
        return f"<TokenKey {self.key_type} {self.uri.text}>"


def open_key(uri: KeyURI | str, module: str | Path | None, pin: bytes | None, *, rsa_pss: bool = False) -> TokenKey:
    """The key ``uri`` names, logged in with ``pin``."""
    uri = KeyURI.parse(uri) if isinstance(uri, str) else uri
    uri.check_names_a_key()
    return TokenKey(uri, module_path(uri, module), pin, rsa_pss=rsa_pss)


def key_exists(uri: KeyURI, module: str | Path | None, pin: bytes | None) -> bool:
    """Whether the token holds a private key ``uri`` names."""
    pkcs11 = _binding()
    uri.check_names_a_key()
    token = find_token(uri, module_path(uri, module))
    with _login(token, pin) as session:
        return bool(_find(session, uri, pkcs11.ObjectClass.PRIVATE_KEY))


def generate_key(uri: KeyURI | str, module: str | Path | None, pin: bytes | None, key_type: str) -> TokenKey:
    """Generate a ``key_type`` key pair inside the token, the private half sensitive and never
    extractable (it can sign, nothing else: no decryption, unwrapping or derivation)."""
    pkcs11 = _binding()
    from pkcs11 import Attribute, KeyType, MechanismFlag

    uri = KeyURI.parse(uri) if isinstance(uri, str) else uri
    uri.check_names_a_key()
    if key_type not in SUPPORTED_KEY_TYPES:
        raise TokenError(f"certkit generates {', '.join(SUPPORTED_KEY_TYPES)} keys in a token, not {key_type}.")
    module = module_path(uri, module)
    token = find_token(uri, module)
    session = _login(token, pin, rw=True)
    try:
        if _find(session, uri, pkcs11.ObjectClass.PRIVATE_KEY):
            raise TokenError(f"The token already holds a private {uri.describe()}.")
        key_id = uri.id if uri.id is not None else os.urandom(16)
        label = uri.object if uri.object is not None else key_id.hex()
        private_template = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.DECRYPT: False,
                            Attribute.UNWRAP: False, Attribute.DERIVE: False}
        public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.ENCRYPT: False,
                           Attribute.WRAP: False}
        common = dict(id=key_id, label=label, store=True, capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                      private_template=private_template, public_template=public_template)
        try:
            if key_type in _CURVES:
                from pkcs11.util.ec import encode_named_curve_parameters

                params = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type])}, local=True)
                public, private = params.generate_keypair(**common)
            else:
                public_template[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
                public, private = session.generate_keypair(KeyType.RSA, int(key_type.split("-")[1]), **common)
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"The token '{shown(token.label)}' could not generate a {key_type} key: "
                             f"{_words(exc)}.") from None
        key = TokenKey(uri, module, pin, session=session, private=private,
                       public_key=_public_from_object(public))
    except BaseException:
        session.close()
        raise
    found = key.attributes()
    if not found["sensitive"] or found["extractable"] or not found["never_extractable"]:
        raise TokenError(f"The token '{shown(token.label)}' made the new key {_kept(found)}; certkit wants a CA key "
                         "that can never leave the token. Remove it (pkcs11-tool --delete-object) and use another "
                         "token.")
    return key


def _kept(attributes: dict[str, bool]) -> str:
    return ", ".join(name.replace("_", " ") if value else "not " + name.replace("_", " ")
                     for name, value in attributes.items() if name in ("sensitive", "extractable", "never_extractable"))


def _public_key_of(session, uri: KeyURI, private):
    """The public half of a key in a token: its public key object, else (RSA) the private object's
    modulus and exponent, else a certificate object with the same label or id."""
    pkcs11 = _binding()
    from cryptography import x509

    publics = _find(session, uri, pkcs11.ObjectClass.PUBLIC_KEY)
    if len(publics) == 1:
        return _public_from_object(publics[0])
    if private.key_type == pkcs11.KeyType.RSA:
        return _public_from_object(private)
    certificates = _find(session, uri, pkcs11.ObjectClass.CERTIFICATE)
    if len(certificates) == 1:
        return x509.load_der_x509_certificate(certificates[0][pkcs11.Attribute.VALUE]).public_key()
    raise TokenError(f"The token holds the private {uri.describe()} but no public key object for it (nor a "
                     "certificate); certkit needs its public half to build the CA certificate.")


def _public_from_object(obj):
    """A ``cryptography`` public key from a token's public (or RSA private) key object."""
    pkcs11 = _binding()
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    if obj.key_type == pkcs11.KeyType.RSA:
        n = int.from_bytes(obj[pkcs11.Attribute.MODULUS], "big")
        e = int.from_bytes(obj[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if obj.key_type == pkcs11.KeyType.EC:
        from pkcs11.util.ec import encode_ec_public_key

        return load_der_public_key(encode_ec_public_key(obj))
    raise TokenError(f"The token key is of type {obj.key_type.name}; certkit signs with EC and RSA keys.")


@cache
def _stand_in(algorithm: str):
    """A throw-away key of ``algorithm`` (ecdsa or rsa) whose only use is to let ``cryptography``
    encode a TBS; its signature is replaced (the curve or size does not appear in the TBS)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _replace_signature(der: bytes, tbs: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` with the token's signature
    in place of the stand-in's (X.509 certificates, CRLs and CSRs share this shape)."""
    outer_header = _header_length(der, 0)
    if der[outer_header:outer_header + len(tbs)] != tbs:
        raise CertkitError("internal error: the signed structure does not start with its TBS")
    start = outer_header + len(tbs)
    algorithm_end = start + _header_length(der, start) + _body_length(der, start)
    body = tbs + der[start:algorithm_end] + _tlv(0x03, b"\x00" + signature)
    return _tlv(0x30, body)


def _header_length(der: bytes, at: int) -> int:
    first = der[at + 1]
    return 2 + (first & 0x7F if first & 0x80 else 0)


def _body_length(der: bytes, at: int) -> int:
    first = der[at + 1]
    if not first & 0x80:
        return first
    count = first & 0x7F
    return int.from_bytes(der[at + 2:at + 2 + count], "big")


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def _words(exc: Exception) -> str:
    """A PKCS#11 error in words: python-pkcs11's class names say what the token said."""
    import re

    name = type(exc).__name__
    text = str(exc).strip()
    plain = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return f"{plain} ({text})" if text and text != name else plain
