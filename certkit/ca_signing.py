"""How a CA is made and how it signs: the work behind :meth:`certkit.ca.CA.create` (a root, or an
intermediate its parent signs and records), :meth:`CA.check_request` (everything about a request that can
be checked without the key: kind, names against the chain's name constraints, a key given against the key
policy and the chain's CA keys, a client's common name, the lifetime) and :meth:`CA.sign` (the leaf built
and signed with a fresh serial, and the notes it carries: keys and names some peers refuse).

Each method of :class:`~certkit.ca.CA` keeps its signature and docstring, and calls its function here;
the serial is drawn by :func:`certkit.ca._random_serial` and the lifetime decided by
:meth:`CA.leaf_validity`, both on the CA's side.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from certkit import constraints as _constraints
from certkit.ca_checks import check_directory, check_still_home, intermediate_limits
from certkit.ca_names import ca_subject, refuse_namesake
from certkit.ca_saving import record_signed_ca
from certkit.constants import LEAF_KINDS
from certkit.constraints_parsing import parse_permitted
from certkit.errors import CertkitError, InvalidArgument
from certkit.issued import IssuedCert
from certkit.key_choice import P521_PEER_NOTE, ca_key_type, ed25519_note_of, generate_any
from certkit.keys import P521_NOTE, generate_key, key_policy_problem, refuse_chain_key, refuse_reused_key
from certkit.profiles import PROFILES, build_certificate, leaf_subject, validity
from certkit.san_identities import long_first_name_note, python_idna_note, wildcard_peer_note
from certkit.testhooks import pause_at
from certkit.text import shown
from certkit.validity import check_days
from certkit.vocabulary import common_name, wrong_type

if TYPE_CHECKING:
    from certkit.ca import CA, IPRange
    from certkit.issuing import Request


def create_ca(cls: type[CA], common_name: str | None, *, organization: str | None, organizational_unit: str | None,
              country: str | None, key_type: str | None, days: int | None, permitted_dns: Iterable[str],
              permitted_ips: IPRange | Iterable[IPRange], parent: CA | None, not_before: dt.datetime | None, key,
              directory: str | Path | None) -> CA:
    """A root CA, or an intermediate signed by ``parent`` (:meth:`certkit.ca.CA.create`)."""
    from certkit import ca as _ca

    if parent is not None and not isinstance(parent, _ca.CA):
        raise wrong_type("parent", "a CA", parent)
    if parent is not None:
        check_still_home(parent)  # a parent whose directory now holds another CA signs nothing
    directory = check_directory(directory, parent)
    key_type = ca_key_type(key, key_type)
    if key is not None and parent is not None:
        refuse_chain_key(key.public_key(), [parent.cert, *parent.parents])
        refuse_reused_key(parent.inventory, key.public_key(), for_ca=True)
    profile = PROFILES["intermediate-ca" if parent else "root-ca"]
    subject = ca_subject(common_name, organization, organizational_unit, country, intermediate=parent is not None)
    if parent is not None:
        refuse_namesake(subject, [parent.cert, *parent.parents], library=True)
        not_before, not_after, nc = intermediate_limits(parent, days, permitted_dns, permitted_ips, not_before)
    else:
        dns, ips = parse_permitted(permitted_dns, permitted_ips)
        days = days if days is not None else profile.default_days
        check_days(days)
        not_before, not_after = validity(days, start=not_before)
        nc = _constraints.build(dns, ips)
    key = key if key is not None else generate_key(key_type)
    cert = build_certificate(
        profile, subject=subject, public_key=key.public_key(),
        issuer_name=parent.cert.subject if parent else subject,
        issuer_key=parent.signing_key() if parent else key, issuer_ski=parent.ski if parent else None,
        serial=_ca._random_serial(), not_before=not_before, not_after=not_after, constraints=nc,
        path_length=0 if parent is not None else None,
    )
    ca = cls(cert, key, [parent.cert, *parent.parents] if parent else [])
    if parent is not None:
        parent.signed_cas = [*parent.signed_cas, cert]
    pause_at("signed")
    record_signed_ca(parent, ca, directory)
    return ca


def check_request(ca: CA, request: Request) -> list[str]:
    """What :meth:`certkit.ca.CA.check_request` checks, without the key; returns notes."""
    if request.kind not in LEAF_KINDS:
        raise InvalidArgument(f"Unknown certificate kind '{shown(request.kind)}'; choose one of: "
                           f"{', '.join(LEAF_KINDS)}.")
    found, notes = ca._chain_constraints, []
    # A renewal keeps a URI certified before that only OpenSSL reads outside the constraints (sign() notes it).
    _constraints.check(found, request.identities, ca.common_name, [] if request.renewed_from else None)
    if request.key is not None or request.public_key is not None:  # a key not generated here
        public_key = request.public_key if request.public_key is not None else request.key.public_key()
        problem = key_policy_problem(public_key)
        if problem:
            hint = " (renew it with a new key: --rekey, or rekey=True)" if request.renewed_from else ""
            raise CertkitError(f"The key to certify is {problem}{hint}.")
        # Above it, and below it: the CAs it signed (recorded, or signed in this process).
        refuse_chain_key(public_key, [ca.cert, *ca.parents, *ca.signed_cas])
        refuse_reused_key(ca.inventory, public_key, for_ca=False)
    if request.kind == "client" or request.subject is not None:  # a server's CN is one of its names, or none
        cn = request.common_name if request.subject is None else common_name(request.subject)
        _constraints.check_client_common_name(found, cn, request.identities, ca.common_name,
                                               from_csr=request.csr is not None, kind=request.kind)
    ca.leaf_validity(PROFILES[request.kind], request.days, request.not_before, notes, request.default_days)
    return notes


def sign(ca: CA, request: Request) -> IssuedCert:
    """``request`` signed by ``ca`` with a fresh serial (:meth:`certkit.ca.CA.sign`); nothing is recorded."""
    from certkit import ca as _ca

    profile = PROFILES[request.kind]
    notes: list[str] = list(request.notes)
    if request.renewed_from:  # what a renewal carries that OpenSSL reads outside the constraints
        _constraints.check(ca._chain_constraints, request.identities, ca.common_name, notes)
    not_before, not_after = ca.leaf_validity(profile, request.days, request.not_before, notes,
                                               request.default_days)
    key, public_key = request.key, request.public_key
    if public_key is None:
        key = key if key is not None else generate_any(request.key_type)
        public_key = key.public_key()
    if (note := ed25519_note_of(public_key, ca._ed25519_chain, request.kind)) is not None:
        notes.append(note)
    if request.kind != "client" and getattr(getattr(public_key, "curve", None), "name", "") == "secp521r1":
        notes.append(P521_PEER_NOTE if request.kind == "peer" else P521_NOTE)
    if request.kind == "peer" and request.subject is None and (note := long_first_name_note(request.common_name)):
        notes.append(note)
    if request.kind == "peer" and (note := wildcard_peer_note(request.identities)):
        notes.append(note)
    notes += [n for i in request.identities if i.display and i.kind == "dns"  # faß.de: Python reads fass.de
              and (n := python_idna_note(i.display, i.value))]
    subject = request.subject if request.subject is not None else leaf_subject(_leaf_cn(ca, request))
    cert = build_certificate(
        profile, subject=subject, public_key=public_key, issuer_name=ca.cert.subject,
        issuer_key=ca.signing_key(), issuer_ski=ca.ski, serial=_ca._random_serial(),
        not_before=not_before, not_after=not_after, identities=request.identities,
    )
    issued = IssuedCert(profile.name, cert, key, ca.intermediates, ca.root, list(request.identities), notes,
                        subject=subject)
    issued.ca_directories = ca.directories  # write() never lands in them, whatever force says
    if request.csr is not None:
        from certkit.csr import compare_extensions

        granted, dropped = compare_extensions(request.csr, cert)
        issued.granted, issued.dropped = granted, dropped + list(request.dropped)
    return issued


def _leaf_cn(ca: CA, request: Request) -> str | None:
    """The subject CN: as asked, but never an IP address under DNS name constraints (OpenSSL would
    check it as a host name there and reject the certificate; the SAN carries the address)."""
    cn = request.common_name
    if cn is not None and request.kind != "client" and all(i.kind == "ip" for i in request.identities):
        from cryptography import x509

        if any(isinstance(c, x509.DNSName) for nc in ca.constraints() for c in nc.permitted_subtrees or []):
            return None
    return cn
