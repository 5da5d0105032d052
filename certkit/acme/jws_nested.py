"""The two nested JWS of ACME: the inner JWS of a key change (RFC 8555 7.3.5) and the external
account binding (7.3.4).

Each is read as strictly as the outer JWS (:mod:`certkit.acme.jws`: flattened serialization,
base64url in its one spelling, no ``crit``, no nonce) and checked against the request around it:
the same URL, the account it changes or binds, its current key; an external account binding's MAC
with the enrolled key of the identifier it names (:data:`~certkit.acme.jws.EAB_ALGORITHMS`).
Every failure is a :class:`~certkit.acme.problems.Problem`.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import josepy as jose

from certkit.acme.headers import refuse_unencoded
from certkit.acme.jws import (
    EAB_ALGORITHMS,
    SignedRequest,
    _json_type,
    b64decode,
    loads,
    parse_object,
    read_jwk,
    thumbprint,
    verify,
)
from certkit.acme.problems import Problem
from certkit.acme.urls import same_url
from certkit.text import shown


def verify_key_change(inner_obj: Any, outer: SignedRequest, account_url: str, account_jwk: jose.JWK) -> jose.JWK:
    """The new key of a valid key-change request; ``inner_obj`` is the outer payload (a JWS object)."""
    inner = parse_object(inner_obj, what="The inner JWS of the key change")
    if inner.jwk is None:
        raise Problem("malformed", "The inner JWS of a key change must carry the new key as 'jwk'.")
    if "nonce" in inner.protected:
        raise Problem("malformed", "The inner JWS of a key change must not carry a nonce.")
    if not isinstance(inner.url, str) or not same_url(inner.url, outer.url):
        raise Problem("malformed", "The inner JWS's url differs from the outer JWS's url.")
    verify(inner, inner.jwk)
    body = inner.json_payload()
    if "account" not in body:
        raise Problem("malformed", "The key change's payload must name the account it changes, its URL as 'account'.")
    if not isinstance(body["account"], str):  # said as the type it is, as oldKey's
        raise Problem("malformed", f"The key change's 'account' must be a string (the account URL), not "
                                   f"{_json_type(body['account'])}.")
    if not same_url(body["account"], account_url):
        if body["account"].endswith(account_url[account_url.index("/acme/acct/"):]):  # this one, as reached elsewhere
            raise Problem("malformed", f"The key change names its account by its URL at another address "
                                       f"('{shown(body['account'])}'); give its URL here, '{account_url}'.")
        raise Problem("malformed", "The key change names another account than the one that signed it.")
    old = read_jwk(body.get("oldKey"), "The key change's 'oldKey'")
    if thumbprint(old) != thumbprint(account_jwk):
        raise Problem("malformed", "The key change's oldKey is not the account's current key.")
    return inner.jwk


def eab_kid(binding: Any) -> str | None:
    """The key identifier an external account binding names (None if it names none), after checking
    its shape: a flattened JWS whose members are base64url strings and whose header is an object."""
    if not isinstance(binding, dict) or set(binding) != {"protected", "payload", "signature"}:
        raise Problem("malformed", "The externalAccountBinding must be a flattened JWS: an object with exactly "
                                   "'protected', 'payload' and 'signature'.")
    for name in ("protected", "payload", "signature"):
        b64decode(binding[name], f"The externalAccountBinding's '{name}'")
    not_object = "The externalAccountBinding's protected header is not a JSON object."
    protected = loads(b64decode(binding["protected"], "The externalAccountBinding's 'protected'"),
                      "The externalAccountBinding's protected header", not_object)
    if not isinstance(protected, dict):
        raise Problem("malformed", not_object)
    if "crit" in protected:  # RFC 7515 4.1.11, as for the outer JWS (b64: false among them, RFC 7797)
        raise Problem("malformed", "The externalAccountBinding has a 'crit' header parameter; no extension is "
                                   "understood here.")
    refuse_unencoded(protected, "The externalAccountBinding")
    kid = protected.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Problem("malformed", f"The externalAccountBinding's 'kid' must be a string, not {_json_type(kid)}.")
    return kid


def verify_eab(binding: Any, account_jwk: jose.JWK, url: str, kid: str, key: bytes) -> None:
    """Check an external account binding: MAC over the account key by the enrolled ``kid``'s ``key``."""
    eab_kid(binding)  # its shape
    protected = json.loads(b64decode(binding["protected"], "The externalAccountBinding's 'protected'"))
    signature = b64decode(binding["signature"], "The externalAccountBinding's 'signature'")
    payload = loads(b64decode(binding["payload"], "The externalAccountBinding's 'payload'"),
                    "The externalAccountBinding's payload", "The externalAccountBinding's payload is not JSON.")
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in EAB_ALGORITHMS:
        raise Problem("badSignatureAlgorithm", "The externalAccountBinding must be MACed with "
                      f"{', '.join(EAB_ALGORITHMS)}.", extra={"algorithms": list(EAB_ALGORITHMS)})
    if "nonce" in protected:
        raise Problem("malformed", "The externalAccountBinding must not carry a nonce.")
    if not isinstance(protected.get("url"), str) or not same_url(protected["url"], url):
        raise Problem("malformed", "The externalAccountBinding's url is not the newAccount URL.")
    if protected.get("kid") != kid:
        raise Problem("unauthorized", "The externalAccountBinding names an unknown key identifier.")
    bound = read_jwk(payload, "The externalAccountBinding's payload (the account's JWK)")
    if thumbprint(bound) != thumbprint(account_jwk):
        raise Problem("unauthorized", "The externalAccountBinding binds another key than the account's.")
    from cryptography.hazmat.primitives import hmac as crypto_hmac

    mac = crypto_hmac.HMAC(key, EAB_ALGORITHMS[alg]())
    mac.update(binding["protected"].encode("ascii") + b"." + binding["payload"].encode("ascii"))
    if not hmac.compare_digest(mac.finalize(), signature):
        raise Problem("unauthorized", "The externalAccountBinding's MAC does not verify with the enrolled key.")
