"""The keys init-ca signs with, asked for only once everything else was checked: the new CA key's
passphrase (a short one warned about), the key kept in a PKCS#11 token (found there, or generated; one that
already signs a CA only with --reuse-key), and the parent CA of an intermediate, unlocked with its
passphrase or its token's PIN (:mod:`certkit.cli.ca` has the command)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from certkit.cli.common import read_secret, warn
from certkit.constants import ENV_PARENT_PASSPHRASE, ENV_PASSPHRASE
from certkit.errors import CertkitError

# Below this, a stolen encrypted CA key falls to an offline guess too easily (scrypt or not).
MIN_PASSPHRASE = 12



def _new_passphrase(store, no_passphrase: bool, passphrase_file: Path | None) -> bytes | None:
    """The new CA key's passphrase (asked twice on a terminal; a short one is warned about), or None
    with --no-passphrase (warned about too)."""
    if no_passphrase:
        if passphrase_file:
            raise click.UsageError("--no-passphrase and --passphrase-file contradict each other.")
        return None  # warned about once the key is written: _create_and_report
    passphrase = read_secret(passphrase_file, ENV_PASSPHRASE, "New CA key passphrase", confirm=True)
    if passphrase is None:
        raise click.ClickException(
            "The CA key needs a passphrase: set $CERTKIT_CA_PASSPHRASE, pass --passphrase-file, "
            "run on a terminal to be asked, or pass --no-passphrase."
        )
    if len(passphrase) < MIN_PASSPHRASE:
        warn(f"the passphrase has {len(passphrase)} characters; anyone who copies {store.key_path} can try "
             f"passphrases offline, so use at least {MIN_PASSPHRASE} (a few random words).")
    return passphrase


def _load_parent(parent_ca_dir: Path | None, parent_passphrase_file: Path | None, names: tuple = (None,) * 4,
                 own_token=None):
    """The parent CA, unlocked with its passphrase (or its token's PIN); None for a root. ``names``
    (--name, --org, --org-unit, --country): an intermediate named as a CA above it is refused first.
    A parent's token PIN comes from $CERTKIT_PARENT_CA_PASSPHRASE, else $CERTKIT_PKCS11_PIN unless that is
    the PIN of another token, the new CA's own (``own_token``, its key URI): a wrong PIN counts towards
    the lock of the parent's token."""
    if parent_ca_dir is None:
        return None
    from certkit.ca import CA
    from certkit.ca_names import ca_subject, refuse_namesake
    from certkit.cli.common import key_secret
    from certkit.constants import ENV_PKCS11_PIN
    from certkit.errors import InvalidName, PassphraseRequired
    from certkit.store import CADirectory
    from certkit.text import shown

    parent_store = CADirectory(parent_ca_dir)
    token = False
    try:
        # A parent that may not sign CAs is refused before its passphrase is asked for.
        parent_cert, grandparents = parent_store.load_certificates()
        CA(parent_cert, None, grandparents).check_can_sign_ca()
        refuse_namesake(ca_subject(*names, intermediate=True), [parent_cert, *grandparents])
        token = key_secret(parent_store)[0] == ENV_PKCS11_PIN
        env, prompt = (_parent_pin_variable(parent_store, own_token), "PIN of the token holding the parent CA key") \
            if token else (ENV_PARENT_PASSPHRASE, "Parent CA key passphrase")
        return parent_store.load(lambda: read_secret(parent_passphrase_file, env, prompt, pin=token))
    except InvalidName as exc:  # the intermediate's name, not the parent, is at fault
        raise click.ClickException(str(exc)) from None
    except PassphraseRequired as exc:
        raise click.ClickException(f"{exc} Set $CERTKIT_PARENT_CA_PASSPHRASE or pass --parent-passphrase-file.") \
            from None
    except CertkitError as exc:
        from certkit.cli.secrets_input import refused_pin_hint, wrong_secret_hint
        from certkit.errors import WrongPassphrase

        pin = refused_pin_hint(exc, parent_passphrase_file, lambda: _parent_pin_variable(parent_store, own_token))
        hint = wrong_secret_hint(parent_passphrase_file) if isinstance(exc, WrongPassphrase) else pin
        raise click.ClickException(f"The parent CA in {shown(parent_ca_dir)} cannot be used: {exc}{hint}") from None


def _parent_pin_variable(parent_store, own_token) -> str:
    """Where the PIN of the parent's token comes from (see :func:`_load_parent`)."""
    from certkit.constants import ENV_PKCS11_PIN
    from certkit.pkcs11.uri import KeyURI

    if ENV_PARENT_PASSPHRASE in os.environ or own_token is None:
        return ENV_PARENT_PASSPHRASE if ENV_PARENT_PASSPHRASE in os.environ else ENV_PKCS11_PIN
    parent = KeyURI.parse(parent_store.key_uri)
    same = (parent.token, parent.serial) == (own_token.token, own_token.serial)
    return ENV_PKCS11_PIN if same else ENV_PARENT_PASSPHRASE


def _token_key(key_uri, pkcs11_module, pin_file, key_type, no_passphrase, passphrase_file, parent_ca_dir,
               parent_passphrase_file, reuse_key: bool = False):
    """The CA key in a PKCS#11 token (generated there unless it exists; one that already signs a
    CA only with ``reuse_key``) and the parent CA, PIN and passphrases asked for only after
    everything else was checked."""
    from certkit import pkcs11
    from certkit.constants import ENV_PKCS11_PIN

    if key_uri is None:
        raise click.UsageError("--pkcs11-module, --pin-file and --reuse-key go with --key-uri (the key in the token).")
    if no_passphrase or passphrase_file is not None:
        raise click.UsageError("--passphrase-file and --no-passphrase are for a key file; a key in a token is "
                               "protected by the token's PIN (--pin-file, $CERTKIT_PKCS11_PIN or a prompt).")
    uri = pkcs11.KeyURI.parse(key_uri)
    uri.check_names_a_key()
    if key_type is not None and key_type not in pkcs11.SUPPORTED_KEY_TYPES:
        raise click.UsageError(f"A key in a token is one of {', '.join(pkcs11.SUPPORTED_KEY_TYPES)}, not {key_type}.")
    module = pkcs11.module_path(uri, pkcs11_module)
    pkcs11.find_token(uri, module)  # present? (no PIN needed yet)
    parent = _load_parent(parent_ca_dir, parent_passphrase_file, own_token=uri)
    pin = read_secret(pin_file, ENV_PKCS11_PIN, f"PIN of token '{uri.token or uri.serial}'")
    if pin is None:
        raise click.ClickException("The token's PIN is needed: pass --pin-file, set $CERTKIT_PKCS11_PIN, or run on a "
                                   "terminal to be asked.")
    try:
        exists = pkcs11.key_exists(uri, module, pin)  # the PIN's first use
    except pkcs11.TokenPinIncorrect as exc:  # said with where it came from (a stale $CERTKIT_PKCS11_PIN?)
        from certkit.cli.secrets_input import refused_pin_hint

        raise pkcs11.TokenPinIncorrect(f"{exc}{refused_pin_hint(exc, pin_file, ENV_PKCS11_PIN)}") from None
    if exists:
        key = pkcs11.open_key(uri, module, pin)
        key.generated = False
        if key_type is not None and key.key_type != key_type:
            raise click.ClickException(f"The token's {uri.describe()} is an {key.key_type} key, not {key_type}; "
                                       "leave out --key-type to use it, or name another object to generate one.")
        _refuse_a_key_in_use(key, reuse_key)
    elif reuse_key:
        raise click.ClickException(f"--reuse-key: the token holds no private {uri.describe()}; leave out "
                                   "--reuse-key to generate one there.")
    else:
        key = pkcs11.generate_key(uri, module, pin, key_type or "ecdsa-p256")
        key.generated = True
    return key, parent


def _refuse_a_key_in_use(key, reuse_key: bool) -> None:
    """A token key that already signs a CA (its certificate is in the token) is not taken for another
    one without --reuse-key: the two CAs' certificates and CRLs would be indistinguishable to peers
    (one CA's revocations unknown to the other's inventory)."""
    from certkit.pkcs11.provision import certificates_for
    from certkit.text import shown

    if not (used := certificates_for(key)):
        return
    names = ", ".join(f"'{shown(c.subject.rfc4514_string())}'" for c in used[:3]) + (", ..." if len(used) > 3 else "")
    that, them, theirs, held = ("that CA", "the CA", "that CA's", "its certificate is") if len(used) == 1 else \
        ("those CAs", f"{len(used)} CAs:", "those CAs'", "their certificates are")
    if reuse_key:
        warn(f"the {key.uri.describe()} already signs {them} {names}: the new CA shares that key, and peers cannot "
             f"tell its certificates and CRLs from {theirs}, yet its inventory starts empty. None of {theirs} "
             "revocations carry over: this CA's CRLs leave them out and number from 1 again, and certkit verify "
             f"with this CA directory accepts the certificates {that} revoked (docs/team.md).")
        return
    suggested = key.uri.with_object(f"{key.uri.object or 'ca'}-2")
    raise click.ClickException(
        f"The token's {key.uri.describe()} already signs {them} {names} ({held} in the token): a second CA on that "
        f"key would issue certificates and CRLs peers cannot tell from {theirs}. Name another object for a new key "
        f"(e.g. --key-uri '{shown(suggested)}'), or pass --reuse-key if a new certificate for this same key is what "
        "you want.")
