"""Getting the CA key from a token: :func:`open_key` (the key a URI names, logged in),
:func:`key_exists`, and :func:`generate_key` (a new key pair, the private half sensitive and
never extractable, checked to be so); :func:`keep_certificate` keeps a CA certificate next to its
key, so that :func:`certificates_for` knows that a key already signs a CA."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from certkit.pkcs11.errors import TokenError, words
from certkit.pkcs11.key import SUPPORTED_KEY_TYPES, TokenKey
from certkit.pkcs11.public import public_from_object
from certkit.pkcs11.session import binding, find_objects, leaves_no_tls_errors, module_path, open_session, transient
from certkit.pkcs11.uri import KeyURI
from certkit.text import Secret, shown

_CURVES = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}


@leaves_no_tls_errors
def open_key(uri: KeyURI | str, module: str | Path | None, pin: Secret | None, *, rsa_pss: bool = False,
             expected=None, named_in: str | None = None) -> TokenKey:
    """The key ``uri`` names, logged in with ``pin``. ``expected`` (the public key of the CA certificate
    the key is for) and ``named_in`` (the file that holds the URI) make the message for a URI that
    names several keys say which one is the CA's, and where to name it."""
    uri = KeyURI.parse(uri) if isinstance(uri, str) else uri
    uri.check_names_a_key()
    return TokenKey(uri, module_path(uri, module, named_in), pin, rsa_pss=rsa_pss, expected=expected,
                    named_in=named_in)


@leaves_no_tls_errors
def key_exists(uri: KeyURI, module: str | Path | None, pin: Secret | None) -> bool:
    """Whether the token holds a private key ``uri`` names."""
    pkcs11 = binding()
    uri.check_names_a_key()
    with open_session(uri, module_path(uri, module), pin) as session:
        return bool(find_objects(session, uri, pkcs11.ObjectClass.PRIVATE_KEY))


@leaves_no_tls_errors
def generate_key(uri: KeyURI | str, module: str | Path | None, pin: Secret | None, key_type: str) -> TokenKey:
    """Generate a ``key_type`` key pair inside the token, the private half sensitive and never
    extractable (it can sign, nothing else: no decryption, unwrapping or derivation)."""
    pkcs11 = binding()
    from pkcs11 import Attribute, KeyType, MechanismFlag

    uri = KeyURI.parse(uri) if isinstance(uri, str) else uri
    uri.check_names_a_key()
    if key_type not in SUPPORTED_KEY_TYPES:
        raise TokenError(f"certkit generates {', '.join(SUPPORTED_KEY_TYPES)} keys in a token, not {key_type}.")
    module = module_path(uri, module)
    session = open_session(uri, module, pin, rw=True)
    token_label = shown(session.token.label)
    try:
        if find_objects(session, uri, pkcs11.ObjectClass.PRIVATE_KEY):
            raise TokenError(f"The token already holds a private {uri.describe()}.")
        key_id = uri.id if uri.id is not None else os.urandom(16)
        label = uri.object if uri.object is not None else key_id.hex()
        _refuse_used(session, module, label, uri.id)
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
            raise TokenError(f"The token '{token_label}' could not generate an {key_type} key: "
                             f"{words(exc)}.") from None
        key = TokenKey(uri, module, pin, session=session, private=private,
                       public_key=public_from_object(public))
        key.made_in = (session.token.label, label, key_id)  # for left_in_token
    except BaseException:
        session.close()
        raise
    found = key.attributes()
    if not found["sensitive"] or found["extractable"] or not found["never_extractable"]:
        raise TokenError(f"The token '{token_label}' made the new key {_kept(found)}; certkit wants a CA key "
                         "that can never leave the token. Remove it (pkcs11-tool --delete-object) and use another "
                         "token.")
    return key


@leaves_no_tls_errors
def certificates_for(key: TokenKey) -> list:
    """The certificates the token holds whose public key is ``key``'s (``cryptography`` objects):
    the CAs that already sign with it (certkit keeps each one it makes: :func:`keep_certificate`;
    others import theirs with pkcs11-tool --write-object --type cert)."""
    pkcs11 = binding()
    from cryptography import x509

    from certkit.keys import public_key_der

    mine = public_key_der(key.public_key())
    with key._lock:
        key._ensure_session()
        objects = _objects(key._session, {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE})
        values = [_attribute(obj, pkcs11.Attribute.VALUE) for obj in objects]
    found = []
    for value in values:
        try:
            certificate = x509.load_der_x509_certificate(bytes(value or b""))
            if public_key_der(certificate.public_key()) == mine:
                found.append(certificate)
        except (TypeError, ValueError):  # not X.509, or a key type cryptography does not read: not this key's
            continue
    return found


@leaves_no_tls_errors
def keep_certificate(key: TokenKey, certificate) -> None:
    """Store ``certificate`` (the CA certificate just made with ``key``) in the token as a public
    certificate object with the key's label and id, as HSM tools do: the record that the key signs a
    CA, which the next ``init-ca`` naming the key finds (:func:`certificates_for`). Raises
    :class:`TokenError` when the token does not take it."""
    pkcs11 = binding()
    from cryptography.hazmat.primitives.serialization import Encoding

    _token, label, key_id = _label_and_id(key)
    template = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE, pkcs11.Attribute.TOKEN: True,
                pkcs11.Attribute.PRIVATE: False, pkcs11.Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                pkcs11.Attribute.LABEL: label or key_id.hex(), pkcs11.Attribute.ID: key_id,
                pkcs11.Attribute.SUBJECT: certificate.subject.public_bytes(),
                pkcs11.Attribute.VALUE: certificate.public_bytes(Encoding.DER)}
    session = open_session(key.uri, key.module, key._pin, rw=True)
    try:
        transient(session.create_object, template)
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"The token '{shown(session.token.label)}' did not store the CA certificate next to the "
                         f"key: {words(exc)}.") from None
    finally:
        session.close()


def _label_and_id(key: TokenKey) -> tuple[str, str, bytes]:
    """The token's label, and the label and id a certificate kept next to ``key`` takes (the key's own)."""
    pkcs11 = binding()
    with key._lock:
        key._ensure_session()
        label = key.uri.object if key.uri.object is not None else _attribute(key._private, pkcs11.Attribute.LABEL)
        key_id = bytes(_attribute(key._private, pkcs11.Attribute.ID) or b"")
        return key._session.token.label, label or key_id.hex(), key_id


@leaves_no_tls_errors
def unrecorded(key: TokenKey, certificate, cert_path: Path) -> str | None:
    """When the token keeps no copy of ``certificate`` (its CA's, in ``cert_path``) next to ``key``: what that
    lets happen and the commands that keep it there (as :func:`keep_certificate` would); None when it does, or
    when the token cannot list its objects (said by whoever uses the key)."""
    import shlex

    try:
        if certificate in certificates_for(key):
            return None
        token, label, key_id = _label_and_id(key)
    except (TokenError, binding().PKCS11Error):
        return None
    der = "ca.der"  # in the folder the commands are run from (never the CA directory: it holds nothing else)
    return (f"the token keeps no copy of {cert_path.name} next to the key (a CA made by an init-ca stopped before "
            "it kept it, or through the library): another init-ca naming the key would make a second CA on it "
            f"without a word. Keep it there: openssl x509 -in {shlex.quote(str(cert_path))} -outform DER -out {der} "
            f"&& pkcs11-tool --module {shlex.quote(key.module)} --token-label {shlex.quote(token)} --login "
            f"--write-object {der} --type cert --label {shlex.quote(label)}"
            + (f" --id {key_id.hex()}" if key_id else ""))


@contextmanager
@leaves_no_tls_errors
def recorded_in_token(key: TokenKey, certificate, placed: Callable[[], bool], said: Callable[[str], None]):
    """Keep ``certificate`` (a new CA's) in the token (:func:`keep_certificate`) BEFORE the block places its CA
    directory, so that an init-ca stopped in between (killed, the machine down) leaves the record that the key
    signs a CA, never a CA the token knows nothing of (the next init-ca naming the key would make a second CA
    on it, unwarned). The block failing before its directory is ``placed()`` takes the record out again. A
    token that does not take it is ``said`` (a warning); the CA is made all the same."""
    try:
        keep_certificate(key, certificate)
        kept = True
    except TokenError as exc:
        said(f"{exc} Another init-ca naming this key would not know that it signs this CA.")
        kept = False
    try:
        yield
    except BaseException:
        try:
            there = placed()
        except OSError:
            there = True  # cannot be told: the record stays (the safe side: a new CA on the key is refused)
        if kept and not there:
            _forget_certificate(key, certificate)
        raise


def _forget_certificate(key: TokenKey, certificate) -> None:
    """Remove the certificate objects holding ``certificate`` from the token (a CA that was not made)."""
    pkcs11 = binding()
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        with open_session(key.uri, key.module, key._pin, rw=True) as session:
            for obj in _objects(session, {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE,
                                          pkcs11.Attribute.VALUE: certificate.public_bytes(Encoding.DER)}):
                transient(obj.destroy)
    except (TokenError, pkcs11.PKCS11Error):
        pass  # the record stays: a new CA on the key is refused, and --reuse-key takes it


_KINDS = {"PRIVATE_KEY": ("private key", "privkey"), "PUBLIC_KEY": ("public key", "pubkey"),
          "SECRET_KEY": ("secret key", "secrkey")}


def _refuse_used(session, module: str, label: str, key_id: bytes | None) -> None:
    """Refuse to generate a pair under a label (or an id) that a key object already has: a leftover
    public key labelled so would be a second public half for the URI, and the CA could never find its
    own (the half of an earlier pair whose private key was deleted, for instance)."""
    import shlex

    pkcs11 = binding()
    used = []
    for name, (kind, tool_type) in _KINDS.items():
        wanted = [{pkcs11.Attribute.LABEL: label}] + ([{pkcs11.Attribute.ID: key_id}] if key_id is not None else [])
        for attrs in wanted:
            for obj in _objects(session, {pkcs11.Attribute.CLASS: pkcs11.ObjectClass[name], **attrs}):
                found = (kind, tool_type, _attribute(obj, pkcs11.Attribute.LABEL) or "",
                         bytes(_attribute(obj, pkcs11.Attribute.ID) or b""))
                if found not in used:
                    used.append(found)
    if not used:
        return
    token = shown(session.token.label)
    named = "; ".join(f"a {kind} labelled '{shown(obj_label)}', " + (f"id {obj_id.hex()}" if obj_id else "no id")
                      for kind, _, obj_label, obj_id in used)
    tool = f"pkcs11-tool --module {shlex.quote(shown(module))} --token-label {shlex.quote(token)} --login"
    commands = "; ".join(f"{tool} --delete-object --type {tool_type} --label {shlex.quote(shown(obj_label))}"
                         + (f" --id {obj_id.hex()}" if obj_id else "") for _, tool_type, obj_label, obj_id in used)
    what = "it" if len(used) == 1 else f"these {len(used)} objects"
    raise TokenError(f"The token '{token}' already holds {named}: certkit generates a key pair only under a "
                     f"label and id no key object has (else the URI would name two public halves). Name another "
                     f"object= in the URI, or remove {what} with: {commands}")


def _objects(session, attrs: dict) -> list:
    return transient(lambda: list(session.get_objects(attrs)))


def _attribute(obj, attribute):
    try:
        return obj[attribute]
    except binding().PKCS11Error:
        return None


@leaves_no_tls_errors
def left_in_token(key: TokenKey) -> str:
    """What to say when a command fails after :func:`generate_key` made ``key``: the pair stays in
    the token (certkit deletes no key), where it is, and the two ways on."""
    import shlex

    made_in = getattr(key, "made_in", None)
    if made_in is None:
        return (f"The {key.uri.describe()} was generated for this CA and stays there: init-ca with the same "
                "--key-uri uses it, or remove it with pkcs11-tool --delete-object.")
    token, label, key_id = made_in
    return (f"The key pair generated for this CA stays in token '{shown(token)}' (label '{shown(label)}', id "
            f"{key_id.hex()}): init-ca with the same --key-uri uses it, or remove it with: pkcs11-tool --module "
            f"{shlex.quote(shown(key.module))} --token-label {shlex.quote(shown(token))} --login --delete-object "
            f"--type privkey --id {key_id.hex()} (and again with --type pubkey).")


def _kept(attributes: dict[str, bool]) -> str:
    return ", ".join(name.replace("_", " ") if value else "not " + name.replace("_", " ")
                     for name, value in attributes.items() if name in ("sensitive", "extractable", "never_extractable"))


def exposures(attributes: dict[str, bool]) -> list[str]:
    """What the summary says of a token key's two attributes that keep it in the token, each as it is
    (a key may be non-extractable yet not sensitive: its value can still be read, as check says)."""
    said = []
    if not attributes["sensitive"]:
        said.append("NOT SENSITIVE: its value can be read out of the token")
    if attributes["extractable"]:
        said.append("EXTRACTABLE: it can be copied out of the token")
    return said or ["non-extractable"]
