"""RFC 7512 ``pkcs11:`` URIs: :class:`KeyURI` parses one, refuses what certkit cannot honour
(unknown attributes, a PIN in the URI, an object that is not a private key) and says which key
in which token it names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from certkit.pkcs11.errors import TokenError
from certkit.text import is_digits, shown

# RFC 7512 path attributes certkit understands (the rest would narrow the search in ways it cannot honour).
_PATH_ATTRIBUTES = ("token", "object", "id", "type", "serial", "manufacturer", "model", "slot-id")
_QUERY_ATTRIBUTES = ("module-path", "module-name")
# RFC 7512 puts these in the query; written in the path, or with another case, they still hold a PIN.
_PIN_ATTRIBUTES = ("pin-value", "pin-source")
# A PIN attribute anywhere in the text, even in one that is no pkcs11: URI (a typo in the scheme):
# looked for first, so that no message below ever repeats it.
_PIN = re.compile(r"(?:^|[:;?&])\s*pin-(?:value|source)\s*(?:=|[;?&]|$)", re.IGNORECASE)
_NO_PIN = ("A PKCS#11 URI for certkit holds no PIN (command lines and files show it): give the PIN with "
           "--pin-file, $CERTKIT_PKCS11_PIN or at the prompt.")



def stored_uri_problem(text: str, path: object) -> str | None:
    """Why the key URI ``text`` that the file ``path`` (an existing CA's certkit-ca.json) holds is refused, naming
    that file; None if it names a key. A PIN in it (pin-value= or pin-source=, however spelled) is said to be
    exposed, the file being public (copied to every issuing host); no message repeats it, nor the value of an
    attribute certkit does not know (:meth:`KeyURI.parse`)."""
    if _PIN.search(text):
        return (f"The key URI in {shown(path)} holds a PIN (pin-value= or pin-source=); certkit never keeps a PIN in "
                "a file, and this one is public (copied to every issuing host): whoever could read it has the "
                "token's PIN. Remove it from that URI, change the token's user PIN, and give it with --pin-file, "
                "--passphrase-file, $CERTKIT_PKCS11_PIN or at the prompt.")
    try:
        KeyURI.parse(text).check_names_a_key()
    except TokenError as exc:  # its own words after the file's (a parenthesis after theirs would follow one of theirs)
        said = str(exc)
        return f"Fix the key URI in {shown(path)}: {said[:1].lower()}{said[1:]}"
    return None


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
    module_name: str | None = None  # RFC 7512's name of a module (p11-kit's), used without a module-path

    @classmethod
    def parse(cls, text: str) -> KeyURI:
        """Parse ``text``; refuse what certkit cannot honour, and any PIN in it (a URI is seen in
        argv and in files: a PIN comes from --pin-file, $CERTKIT_PKCS11_PIN or a prompt).

        A message quotes the URI only once every attribute in it is known and none is a PIN: a
        PIN, in the path or the query, is refused without repeating it, and an unknown attribute
        (a secret by another name, for all certkit knows) is named without its value."""
        if _PIN.search(text):
            raise TokenError(_NO_PIN)
        if not text.startswith("pkcs11:"):
            raise TokenError(f"'{shown(text)}' is not a PKCS#11 URI; write pkcs11:token=LABEL;object=LABEL "
                             "(RFC 7512).")
        body = text[len("pkcs11:"):]
        path, _, query = body.partition("?")
        path_parts = [part.partition("=") for part in path.split(";") if part]
        query_parts = [part.partition("=") for part in query.split("&") if part]
        for number, (name, eq, _value) in enumerate(path_parts, 1):
            if name.lower() in _PIN_ATTRIBUTES:
                raise TokenError(_NO_PIN)
            if not eq:
                raise TokenError(f"Attribute {number} of the PKCS#11 URI's path has no '='; write NAME=VALUE "
                                 f"(certkit knows: {', '.join(_PATH_ATTRIBUTES)}).")
            if name.lower() not in _PATH_ATTRIBUTES:
                raise TokenError(f"The PKCS#11 URI has the attribute '{shown(name)}', which certkit does not "
                                 f"understand; it knows: {', '.join(_PATH_ATTRIBUTES)}.")
        for name, _eq, _value in query_parts:
            if name.lower() in _PIN_ATTRIBUTES:
                raise TokenError(_NO_PIN)
            if name.lower() not in _QUERY_ATTRIBUTES:
                raise TokenError(f"The PKCS#11 URI has the query attribute '{shown(name)}', which certkit does not "
                                 "understand (it knows module-path and module-name).")
        # Every attribute is known and none is secret: the messages below may quote the URI.
        found: dict[str, Any] = {}
        for name, _eq, value in path_parts:
            name = name.lower()
            if name in found:
                raise TokenError(f"The PKCS#11 URI '{shown(text)}' names {name} twice.")
            if not value:  # an unset shell variable (object=$LABEL): it would name a key with no label
                raise TokenError(f"The PKCS#11 URI '{shown(text)}' gives {name} an empty value; give the "
                                 "token's, key's or id's value, or leave the attribute out.")
            found[name] = _decode(value, text)
        for name, _eq, value in query_parts:
            if name.lower() in _QUERY_ATTRIBUTES:
                found[name.lower()] = _decode(value, text)
        kind = found.get("type")
        if kind is not None and kind.decode(errors="replace") != "private":
            raise TokenError(f"The PKCS#11 URI '{shown(text)}' names a {shown(kind.decode(errors='replace'))} "
                             "object; a CA key URI names a private key (type=private, or no type).")
        text_of = lambda name: found[name].decode("utf-8", errors="replace") if name in found else None  # noqa: E731
        slot = text_of("slot-id")
        if slot is not None and not is_digits(slot):
            raise TokenError(f"The slot-id in '{shown(text)}' is not a number.")
        return cls(text=text, token=text_of("token"), object=text_of("object"), id=found.get("id"),
                   serial=text_of("serial"), manufacturer=text_of("manufacturer"), model=text_of("model"),
                   slot_id=int(slot) if slot is not None else None, module_path=text_of("module-path"),
                   module_name=text_of("module-name"))

    def check_names_a_key(self) -> None:
        if self.token is None and self.serial is None and self.slot_id is None:
            raise TokenError(f"The PKCS#11 URI '{shown(self.text)}' names no token; add token=LABEL (or serial=).")
        if self.object is None and self.id is None:
            raise TokenError(f"The PKCS#11 URI '{shown(self.text)}' names no key; add object=LABEL (or id=).")

    def with_object(self, label: str) -> str:
        """This URI's text naming the object ``label`` (%-escaped) in place of its key (its object= and
        id= dropped), the rest as written: the URI of a new key beside it."""
        from urllib.parse import quote

        path, sep, query = self.text[len("pkcs11:"):].partition("?")
        kept = [part for part in path.split(";") if part and part.partition("=")[0].lower() not in ("object", "id")]
        return "pkcs11:" + ";".join([*kept, "object=" + quote(label, safe="")]) + sep + query

    def with_id(self, key_id: bytes) -> str:
        """This URI's text naming also the id ``key_id`` (every byte %-escaped, as p11tool writes it; an
        id= it had is replaced), the rest as written: the URI of one of several keys under one label."""
        return self._with("id", "".join(f"%{byte:02x}" for byte in key_id))

    def with_serial(self, serial: str) -> str:
        """This URI's text naming also the token serial ``serial``: one of several tokens of one label."""
        from urllib.parse import quote

        return self._with("serial", quote(serial, safe=""))

    def _with(self, name: str, encoded: str) -> str:
        path, sep, query = self.text[len("pkcs11:"):].partition("?")
        kept = [part for part in path.split(";") if part and part.partition("=")[0].lower() != name]
        return "pkcs11:" + ";".join([*kept, f"{name}={encoded}"]) + sep + query

    def describe(self) -> str:
        key = f"'{self.object}'" if self.object is not None else f"id {self.id.hex()}"
        token = f"'{self.token}'" if self.token is not None else f"serial {self.serial}" if self.serial else \
            f"in slot {self.slot_id}"
        return f"key {shown(key)} in token {shown(token)}"


_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a '%' not followed by two hex digits (RFC 3986 pct-encoded)


def _decode(value: str, text: str) -> bytes:
    """A value's bytes: %-escapes decoded, and a '%' that starts no escape refused (RFC 7512 allows
    none; unquote_to_bytes would keep it as a literal '%')."""
    if _PCT.search(value):
        raise TokenError(f"The PKCS#11 URI '{shown(text)}' has a bad %-escape: a '%' must be followed by two "
                         "hex digits (write %25 for a '%').")
    return unquote_to_bytes(value)
