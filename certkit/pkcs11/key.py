"""A key in a token as a CA uses it: :class:`TokenKey` (its public half, :meth:`TokenKey.sign`,
:meth:`TokenKey.sign_builder`, the check of every signature against the public key, a session
that survives a fork), and why a URI names no one private key, in words. The public half read
from the token's objects is :mod:`certkit.pkcs11.public`'s."""

from __future__ import annotations

import os
import threading
import time

from certkit.errors import CABroken
from certkit.pkcs11.der import replace_signature, stand_in_key
from certkit.pkcs11.errors import (
    TokenAbsent,
    TokenError,
    TokenGone,
    TokenKeyMissing,
    TokenPinIncorrect,
    TokenPublicMissing,
    words,
)
from certkit.pkcs11.public import _id_of, _public_der, public_key_of
from certkit.pkcs11.session import binding, find_objects, leaves_no_tls_errors, open_session, transient
from certkit.pkcs11.uri import KeyURI
from certkit.text import Secret, secret_bytes, shown

SUPPORTED_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")
PSS_SALT_LENGTH = 32  # = the SHA-256 digest length, as RFC 4055 recommends


class TokenKey:
    """A private key held by a token; signs certificates and CRLs there (see :mod:`certkit.pkcs11`).

    It stands where a ``cryptography`` private key would in a :class:`~certkit.ca.CA`:
    :meth:`public_key` and :meth:`sign_builder` are what the CA uses. Signing is
    serialized (one PKCS#11 session) and survives a fork (``issue-batch --jobs``):
    the child opens its own session.
    """

    def __init__(self, uri: KeyURI, module: str, pin: Secret | None, *, rsa_pss: bool = False,
                 session=None, private=None, public_key=None, expected=None, named_in: str | None = None) -> None:
        self.uri, self.module, self.rsa_pss = uri, module, rsa_pss
        self._pin = None if pin is None else secret_bytes(pin, "The PIN")  # a copy: the caller may wipe its own
        # The public key the caller wants (its CA certificate's), and where the URI is written: when
        # the URI names several keys, the message says which one is that and what to write there.
        self._expected, self._named_in = expected, named_in
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._session, self._private = session, private
        self._public = public_key
        self._unproven = False  # the public half is the CA certificate's, not yet proven by a signature
        self.told_apart = 0  # how many keys the URI names, of which a test signature told the CA's (0: one)
        self.own_id: bytes | None = None  # then the CA key's id, when no other of them has it
        if session is None:
            try:
                self._open()
            except binding().PKCS11Error as exc:  # reading the token's objects failed (after retries)
                raise TokenError(f"The {uri.describe()} cannot be read (module {shown(module)}): "
                                 f"{words(exc)}.") from None
        from certkit.keys import key_type_of

        self.key_type = key_type_of(self._public)
        if self.key_type not in SUPPORTED_KEY_TYPES:
            raise TokenError(f"The {uri.describe()} is an {self.key_type} key; certkit signs through a token with "
                             f"{', '.join(SUPPORTED_KEY_TYPES)}.")

    @leaves_no_tls_errors
    def _open(self) -> None:
        pkcs11 = binding()
        session = open_session(self.uri, self.module, self._pin)
        try:
            keys = find_objects(session, self.uri, pkcs11.ObjectClass.PRIVATE_KEY)
            if not keys:
                raise TokenKeyMissing(_no_private_key(session, self.uri, self.module))
            if len(keys) > 1:
                keys = self._told_by_signature(session, keys)
            self._private = keys[0]
            if self._public is None:
                self._public = self._public_half(session)
        except BaseException:
            session.close()
            raise
        self._session = session
        self._pid = os.getpid()
        if self._unproven:
            self._prove()

    def _told_by_signature(self, session, keys: list) -> list:
        """Of several private keys the URI names that share a label and an id (or have none: no URI, and no
        pkcs11-tool --delete-object, can name one), the one a test signature shows to be the CA certificate's.
        Refused before: the CA was down until someone deleted "the one this CA does not use", which nothing told
        apart (the CA's key is non-extractable: deleting it by mistake loses the CA)."""
        ids = [_id_of(key) for key in keys]
        if self._expected is None or (all(ids) and len(set(ids)) == len(ids)):
            raise TokenError(_several(session, self.uri, keys, self._expected, self._named_in))
        import secrets

        from certkit.keys import key_type_of

        self._session, self._public, self.key_type = session, self._expected, key_type_of(self._expected)
        message, mine = secrets.token_bytes(32), []
        try:
            for key in keys:
                self._private = key
                try:
                    self.verify(self._signature(message), message)
                except (CABroken, TokenError, binding().PKCS11Error):
                    continue
                mine.append(key)
        finally:
            self._session = self._private = None
        if len(mine) != 1:
            raise TokenError(_several(session, self.uri, keys, self._expected, self._named_in))
        self.told_apart = len(keys)  # certkit check warns: the other keys must be removed with care
        own = _id_of(mine[0])
        self.own_id = own if own and ids.count(own) == 1 else None  # an id= then names the CA's key alone
        return mine

    def told_apart_note(self) -> str:
        """certkit check's warning for a URI that names several keys (:attr:`told_apart`), one the CA's."""
        said = f"{shown(self.uri.text)} names {self.told_apart} private keys"
        if self.own_id is None:  # the CA's key shares its id with another, or has none: no URI names it alone
            return (f"{said} that share a label and id; certkit uses the one ca.pem's key verifies (a test "
                    f"signature){NOT_BY_LABEL}.")
        where = f"the key URI in {shown(self._named_in)}" if self._named_in else "the key URI"
        return (f"{said}; certkit uses the one ca.pem's key verifies (a test signature), id {self.own_id.hex()}, "
                f"which no other of them has: add its id to {where}, which then reads "
                f"'{shown(self.uri.with_id(self.own_id))}'; pkcs11-tool --delete-object by the label alone removes "
                "whichever key it finds first: a CA's key deleted is lost (non-extractable).")

    def _public_half(self, session):
        """The key's public half from the token; for a CA whose certificate is known (``expected``), that
        certificate's key when the token keeps no public object (HSMs need not): proven by a signature."""
        try:
            return public_key_of(session, self.uri, self._private)
        except TokenPublicMissing:
            if self._expected is None:
                raise
            self._unproven = True
            return self._expected

    def _prove(self) -> None:
        """Sign a test message and verify it with the CA certificate's key (taken as the public half)."""
        import secrets

        from certkit.keys import key_type_of

        self.key_type = key_type_of(self._public)
        self._unproven = False
        message = secrets.token_bytes(32)
        try:
            self.verify(self.sign(message), message)
        except CABroken:
            raise CABroken(f"The {self.uri.describe()} does not belong to the CA certificate (a test signature "
                           f"does not verify with its key){self._where()}.") from None

    def _where(self) -> str:
        return f"; check the key URI in {shown(self._named_in)}" if self._named_in else ""

    @leaves_no_tls_errors
    def _reopen(self) -> None:
        """Log in again (a forked child; a session the token closed); a token that went away since the
        key was opened (deleted, unplugged, its module failing) is said as such, not as a PKCS#11 error."""
        pkcs11 = binding()
        # A token being deleted can still be listed for a moment after its objects are gone: a key
        # found missing is looked for again before it is said to have been removed.
        for delay in (0.1, 0.3, 0.6, None):
            try:
                return self._open()
            except TokenAbsent as exc:
                raise TokenGone(self._gone(exc.present, exc.cause), present=exc.present, cause=exc.cause) from None
            except pkcs11.PKCS11Error as exc:  # it answered the login, then failed (after retries) to find the key
                raise TokenGone(self._gone(None, words(exc)), cause=words(exc)) from None
            except TokenPinIncorrect as exc:  # the PIN it logged in with before: changed meanwhile?
                if exc.remembered:  # refused before this login: said so already
                    raise
                raise TokenPinIncorrect(
                    f"The token holding the CA key ({shown(self.uri.text)}, module {shown(self.module)}) refused "
                    "the PIN this process logged in with before, when it "
                    "logged in again (the token had closed its session: a restart, a removal, or a new worker "
                    "process): was the token's PIN changed? It is not sent again (tokens lock after a few wrong "
                    "PINs); start this command again with the new PIN.") from None
            except TokenKeyMissing:
                if delay is None:
                    raise TokenKeyMissing(
                        f"The CA key ({shown(self.uri.text)}, module {shown(self.module)}) is no longer in the token "
                        "it was opened in: it was removed while this command used it (pkcs11-tool --list-objects "
                        "--login shows what the token holds).") from None
                time.sleep(delay)

    def _gone(self, present: list[str] | None, cause: str) -> str:
        token = f"'{shown(self.uri.token)}'" if self.uri.token is not None else "named by the URI"
        labels = ", ".join(f"'{shown(label)}'" for label in present or ()) or "none"
        said = f"tokens present now: {labels}" if present is not None else f"the module answers: {cause}"
        return (f"The token {token} holding the CA key ({shown(self.uri.text)}, module {shown(self.module)}) is no "
                f"longer present or stopped answering ({said}); nothing can be signed until it is back.")

    # --- what a CA uses -------------------------------------------------------------
    def public_key(self):
        return self._public

    @property
    def label(self) -> str:
        return f"pkcs11 {self.uri.text}"

    @leaves_no_tls_errors
    def attributes(self) -> dict[str, bool]:
        """What the token says about the private key: sensitive, extractable, never extractable..."""
        pkcs11 = binding()
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

    @leaves_no_tls_errors
    def sign(self, data: bytes) -> bytes:
        """``data`` signed by the token, as X.509 carries it (ECDSA as a DER SEQUENCE of r and s)."""
        pkcs11 = binding()
        with self._lock:
            self._ensure_session()
            for attempt in range(2):
                try:
                    return self._signature(data)
                except (pkcs11.SessionClosed, pkcs11.SessionHandleInvalid, pkcs11.UserNotLoggedIn,
                        pkcs11.DeviceRemoved, pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid,
                        pkcs11.TokenNotPresent, pkcs11.DeviceError, pkcs11.GeneralError) as exc:
                    if attempt:
                        raise TokenError(self._cannot_sign(exc)) from None
                    # The token closed the session (a reset, a timeout) or went away: log in again,
                    # once; a token no longer there is said as such (TokenGone).
                    self._reopen()
                except pkcs11.PKCS11Error as exc:
                    raise TokenError(f"The {self.uri.describe()} cannot sign: {words(exc)}.") from None
        raise AssertionError("unreachable")

    def _signature(self, data: bytes) -> bytes:
        """``data`` signed once by the private key object, in X.509's form (ECDSA: a DER SEQUENCE of r and s)."""
        pkcs11 = binding()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        if not hasattr(self._private, "sign"):  # python-pkcs11 gives it no sign() when CKA_SIGN is false
            raise TokenError(f"The {self.uri.describe()} may not sign: the token marks it so (CKA_SIGN is "
                             "false). Give a key made for signing, or set its CKA_SIGN to true.")
        if self.key_type.startswith("ecdsa"):
            digest = hashes.Hash(self.hash())
            digest.update(data)
            raw = transient(self._private.sign, digest.finalize(), mechanism=pkcs11.Mechanism.ECDSA)
            half = len(raw) // 2
            return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        if self.rsa_pss:
            return transient(self._private.sign, data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS_PSS,
                             mechanism_param=(pkcs11.Mechanism.SHA256, pkcs11.MGF.SHA256, PSS_SALT_LENGTH))
        return transient(self._private.sign, data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)

    def _cannot_sign(self, exc: Exception) -> str:
        """Why the token refused to sign twice: a key that wants the PIN again before each signature
        (CKA_ALWAYS_AUTHENTICATE) says 'user not logged in' to a session that is logged in."""
        pkcs11 = binding()
        if isinstance(exc, pkcs11.UserNotLoggedIn):
            try:
                each_time = bool(self._private[pkcs11.Attribute.ALWAYS_AUTHENTICATE])
            except pkcs11.PKCS11Error:
                each_time = False
            if each_time:
                return (f"The {self.uri.describe()} asks for the PIN again before every signature (its "
                        "CKA_ALWAYS_AUTHENTICATE is true), which certkit does not do: it logs in once per session. "
                        "Use a key made without that attribute.")
        return f"The {self.uri.describe()} cannot sign: {words(exc)}."

    def hash(self):
        from cryptography.hazmat.primitives import hashes

        return hashes.SHA384() if self.key_type == "ecdsa-p384" else hashes.SHA256()

    def sign_builder(self, builder):
        """Sign a certificate, CRL or CSR builder through the token (see :mod:`certkit.pkcs11`)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        padding = self._padding()
        stand_in = builder.sign(stand_in_key(self.key_type.split("-")[0]), self.hash(),
                                **({"rsa_padding": padding} if padding is not None else {}))
        if isinstance(stand_in, x509.Certificate):
            tbs, load = stand_in.tbs_certificate_bytes, x509.load_der_x509_certificate
        elif isinstance(stand_in, x509.CertificateRevocationList):
            tbs, load = stand_in.tbs_certlist_bytes, x509.load_der_x509_crl
        else:
            tbs, load = stand_in.tbs_certrequest_bytes, x509.load_der_x509_csr
        signature = self.sign(tbs)
        self.verify(signature, tbs)
        return load(replace_signature(stand_in.public_bytes(Encoding.DER), tbs, signature))

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
            self._reopen()

    @leaves_no_tls_errors
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


def _no_private_key(session, uri: KeyURI, module: str) -> str:
    """Why the token holds no private key ``uri`` names, in words: the objects of other kinds it holds under that
    name (the CA's public key and certificate outlive a deleted private key), or that it holds none."""
    pkcs11 = binding()
    kinds = ((pkcs11.ObjectClass.PUBLIC_KEY, "public key"), (pkcs11.ObjectClass.CERTIFICATE, "certificate"),
             (pkcs11.ObjectClass.SECRET_KEY, "secret key"), (pkcs11.ObjectClass.DATA, "data object"))
    held = []
    for kind, what in kinds:
        try:
            count = len(find_objects(session, uri, kind))
        except pkcs11.PKCS11Error:
            continue
        held += [f"a {what}" if count == 1 else f"{count} {what}s"] if count else []
    said = f"No private {uri.describe()} (module {shown(module)})"
    if not held:
        return f"{said}; check the URI's object= and id=, e.g. with: pkcs11-tool --list-objects --login."
    listed = ", ".join(held[:-1]) + " and " + held[-1] if len(held) > 1 else held[0]
    cannot = "none of them can" if len(held) > 1 or not held[0].startswith("a ") else "it cannot"
    return (f"{said}: the token holds {listed} under that name, and {cannot} sign. The private key "
            "was deleted, or never was in this token (a public key or certificate copied in): restore it from the "
            "token's backup, or name the right object= and id= (pkcs11-tool --list-objects --login shows them).")

def _several(session, uri: KeyURI, keys: list, expected, named_in: str | None) -> str:
    """Why ``uri``, which names several private ``keys``, names none: their ids, which one's public half
    is ``expected`` (the CA certificate's key, when the caller gave it), and the URI that names it."""
    ids = [_id_of(key) for key in keys]
    said = f"{len(keys)} private keys match {shown(uri.text)} (ids {', '.join(i.hex() or 'none' for i in ids)})"
    if not all(ids) or len(set(ids)) < len(ids):
        return (f"{said}; they share an id (or have none), so no URI names one of them{NOT_BY_LABEL}"
                + ("; none of them is the CA certificate's key (a test signature)." if expected is not None else
                   "; for a new CA, choose an object= label of its own."))
    where = f"the key URI in {shown(named_in)}" if named_in else "the key URI"
    mine = []
    if expected is not None:
        from certkit.keys import public_key_der

        wanted = public_key_der(expected)
        mine = [i for key, i in zip(keys, ids, strict=True) if _public_der(session, uri, key, i) == wanted]
        if not mine:
            return (f"{said}, and none of them is the CA certificate's key: the key this CA was made with is not "
                    "under that URI.")
    if len(mine) != 1:
        named = " or ".join("'" + shown(uri.with_id(i)) + "'" for i in (mine or ids))
        return f"{said}; add id= to {where} to name one: {named}."
    return (f"{said}; id {mine[0].hex()} is the CA certificate's key: add its id to {where}, which then reads "
            f"'{shown(uri.with_id(mine[0]))}'.")


# Said wherever a URI names several keys no label or id tells apart: removing one by them loses either.
NOT_BY_LABEL = (", and pkcs11-tool --delete-object by that label or id removes whichever it finds first: a CA's key "
                 "deleted is lost (non-extractable)")
