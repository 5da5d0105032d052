"""The one adapter between the ACME server and certkit's issuing.

:func:`issue_for_order` is the only call that signs for an ACME order, and
:func:`issue_listener_certificate` the only one that signs the server's own
TLS certificate; everything an order needs checked (the CSR's signature and
key, its names against the order, the policy) is checked before, by
:func:`check_csr`. Both go through certkit's one issuing pipeline
(:mod:`certkit.issuing`): only the key and the names are taken from the CSR, as
``sign-csr`` does; the row is recorded ``pending``, the certificate is stored
in the ACME order row, and only then is the row marked valid. A server killed
in between leaves an order that the next server to start on this host settles
as invalid and a row that the next command settles as abandoned; an order that
was settled while its certificate was being issued (``store`` finds it no
longer processing) gets no certificate, and the row is abandoned at once:
never a valid certificate that nobody can fetch. The reverse holds too: a row
left pending by a server killed after ``store`` is settled valid, since its
order holds the certificate (:func:`certkit.acme.state_finalize.delivered_serials`),
never abandoned while a client can fetch it.

A refusal or failure before anything was delivered is a :class:`NothingIssued`
(the order goes back to ``ready``): a busy or unreachable inventory (503 with
``Retry-After``) and a key the pipeline refuses (``badCSR``: one revoked for
keyCompromise meanwhile). Once ``store`` succeeded the certificate is
delivered, whatever happens to the marking after it (:attr:`IssuedChain.unmarked`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.acme.problems import RETRY_LATER, Problem
from certkit.errors import CertkitError, InvalidCSR, InventoryError, NameNotPermitted, acme_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography import x509

    from certkit.acme.policy import Policy
    from certkit.ca import CA, IssuedCert
    from certkit.csr import CSRRequest

# Certificates are issued with the server profile: serverAuth only, as issue-server issues them.
KIND = "server"


@dataclass
class IssuedChain:
    serial: str  # the inventory serial (uppercase hex)
    cert: "x509.Certificate"
    chain_pem: str  # the leaf and its intermediates, not the root: what a server sends
    # Delivered (its order holds it) but its inventory row could not be marked valid yet (the
    # inventory was locked): still pending, to be marked by the server's next round.
    unmarked: bool = False


class NothingIssued(Problem):
    """A finalize refused, or failed, before its certificate was recorded or delivered: the order
    goes back to ``ready``, so the client may finalize it again (with a new key, or after Retry-After)."""


def check_csr(ca: "CA", policy: "Policy", csr_der: bytes, identifiers: list[dict]) -> "CSRRequest":
    """The parsed CSR if it may be signed for an order of ``identifiers``; a ``badCSR`` (or
    ``rejectedIdentifier``) Problem otherwise. Nothing is signed here."""
    from certkit.acme.policy import same_names
    from certkit.csr import load_csr
    from certkit.csr_plan import plan

    if b"-----BEGIN" in csr_der[:200]:
        raise Problem("badCSR", "The CSR is PEM text; ACME sends the CSR's DER bytes, base64url-encoded "
                                "(RFC 8555 7.4).")
    try:
        request = load_csr(csr_der, source="the CSR")
        identities, _cn, dropped = plan(request, KIND)
    except InvalidCSR as exc:
        raise Problem("badCSR", acme_text(exc)) from None
    refused = [entry.split(" (", 1)[0] for entry in dropped if entry.startswith("subjectAltName ")]
    refused += beyond_server_auth(request)
    if refused:
        raise Problem("badCSR", f"The CSR asks for {', '.join(refused)}, which is not allowed: ACME issues "
                                "end-entity serverAuth certificates naming the order's identifiers (DNS names and "
                                "IP addresses) only.")
    if not same_names(identities, identifiers):
        asked = ", ".join(sorted(f"{i.kind}:{i.value}" for i in identities))
        ordered = ", ".join(sorted(f"{i['type']}:{i['value']}" for i in identifiers))
        raise Problem("badCSR", f"The CSR names {asked}, but the order is for {ordered}; "
                                "the names (common name and subjectAltName) must be exactly the order's.")
    # The order's names passed the policy when it was placed; check again, the CA may have changed.
    policy.check_identifiers(ca, identifiers)
    try:
        ca.check_permitted(identities)
    except NameNotPermitted as exc:
        raise Problem("rejectedIdentifier", acme_text(exc)) from None
    check_key(ca, request.public_key)
    return request


def _weighed() -> tuple:
    """The extensions a CSR may mark critical: those :func:`beyond_server_auth` weighs."""
    from cryptography import x509

    return (x509.SubjectAlternativeName, x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage,
            x509.TLSFeature)


def beyond_server_auth(request: "CSRRequest") -> list[str]:
    """What the CSR asks for, beyond its names, that a serverAuth certificate cannot carry, in words (empty when
    nothing): CA powers (CA:TRUE, keyCertSign, cRLSign), an extendedKeyUsage without serverAuth, OCSP
    must-staple (this CA runs no OCSP responder), an email identity in the subject, and any other critical
    extension (one it would drop). What certbot, lego, Caddy and acme.sh send passes: a keyUsage of end-entity bits,
    and an extendedKeyUsage of serverAuth (acme.sh asks serverAuth, clientAuth) get the server profile's; an
    extendedKeyUsage naming another purpose too (codeSigning, emailProtection, OCSPSigning...) is refused."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit.csr import describe_extension
    from certkit.vocabulary import oid_name

    refused, server_auth = [], {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    passing = server_auth | {ExtendedKeyUsageOID.CLIENT_AUTH}  # acme.sh's; any other purpose is refused, not dropped
    for ext in request.csr.extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            refused.append(describe_extension(ext))
        elif isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            refused.append(f"{describe_extension(ext)} (CA powers)")
        elif isinstance(value, x509.ExtendedKeyUsage) and not set(value) & server_auth:
            refused.append(f"{describe_extension(ext)} (no serverAuth)")
        elif isinstance(value, x509.ExtendedKeyUsage) and (other := [oid for oid in value if oid not in passing]):
            refused.append(f"{describe_extension(ext)} ({', '.join(oid_name(oid) for oid in other)}: not a "
                           "serverAuth certificate's purpose)")
        elif isinstance(value, x509.TLSFeature):
            features = ", ".join(feature.name for feature in value)
            refused.append(f"TLS feature {features} (OCSP must-staple; this CA runs no OCSP responder)")
        elif ext.critical and not isinstance(value, _weighed()):  # an extension this CA does not grant
            refused.append(f"the critical extension {describe_extension(ext)} (one not granted here)")
    emails = request.csr.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    refused += ["a subject emailAddress (an email identity)"] if emails else []
    return refused


def check_key(ca: "CA", public_key) -> None:
    """A ``badCSR`` Problem for a key the issuing pipeline would refuse (``CA.check_request`` runs the
    same checks, after the key policy that :func:`certkit.csr.load_csr` applies): one revoked for
    keyCompromise, a CA's key of the chain, an intermediate's this CA signed. Said before the order
    is taken into processing, so that a new key can be sent at once."""
    from certkit.keys import refuse_chain_key, refuse_reused_key

    try:
        refuse_chain_key(public_key, [ca.cert, *ca.parents, *ca.signed_cas])
        refuse_reused_key(ca.inventory, public_key, for_ca=False)
    except InventoryError:
        raise  # the database, not the key: 503
    except CertkitError as exc:
        raise Problem("badCSR", f"The CSR's key is refused: {exc}") from None


def lifetime(ca: "CA", days: int | None) -> int | None:
    """``days``, unless that would pass the CA's expiry: then None, which the server profile caps
    at the CA's expiry (issue-server refuses instead; a server running for months should not)."""
    if days is not None and dt.datetime.now(dt.UTC) + dt.timedelta(days=days) > ca.cert.not_valid_after_utc:
        return None
    return days


def issue_for_order(ca: "CA", request: "CSRRequest", days: int | None, *, order_id: str,
                    store: "Callable[[IssuedChain], None]", renews: str | None = None,
                    undelivered: list[str] | None = None) -> IssuedChain:
    """Sign ``request`` (checked by :func:`check_csr`) as a server certificate; ``store`` puts it in
    the order ``order_id`` while its inventory row is pending, and the row is valid once stored.
    ``renews``: the certificate it is recorded as renewing; one revoked or renewed meanwhile (the
    inventory refuses the record) is not, and the certificate is issued as a first one.
    ``undelivered`` gets the serial of each certificate recorded but not stored: the pipeline
    abandons its row, unless the database refuses that too (full, locked), and then the row stays
    pending for as long as this process lives; the caller settles it once the database takes it
    (:meth:`certkit.acme.finalize.Finalizer.settle`)."""
    from dataclasses import replace

    from certkit.errors import AlreadyRevoked, CannotRenew, UnknownCertificate
    from certkit.issuing import Target, csr_request

    target = Target()
    target.sink, target.replacing = "acme", renews  # replacing: no other successor of it is refused
    planned = csr_request(request, KIND, days=lifetime(ca, days))
    stored: list[IssuedChain] = []
    undelivered = [] if undelivered is None else undelivered
    try:
        try:
            _deliver(ca, replace(planned, renewed_from=renews), target, store, stored, undelivered)
        except (AlreadyRevoked, CannotRenew, UnknownCertificate):  # only the record of ``renews`` says these
            if renews is None or stored:
                raise
            _deliver(ca, planned, target, store, stored, undelivered)
    except Problem:
        raise  # from store: the order was settled meanwhile, and the certificate abandoned
    except CertkitError as exc:
        if stored:  # its order holds it: delivered, only the row's marking failed (it stays pending)
            stored[0].unmarked = True
            return stored[0]
        raise _refusal(ca, request, exc) from None
    return stored[0]


def _deliver(ca: "CA", planned, target, store: "Callable[[IssuedChain], None]", stored: list[IssuedChain],
             undelivered: list[str]) -> None:
    """Issue ``planned`` through the pipeline and ``store`` it while its row is pending; ``stored`` gets it,
    ``undelivered`` its serial if ``store`` failed (its row is then abandoned, if the database lets it)."""
    from certkit.issuing import begin

    with begin(ca, planned, target) as issued:
        chain = IssuedChain(issued.serial_hex, issued.cert, issued.fullchain_pem.decode("ascii"))
        try:
            store(chain)
        except BaseException:
            undelivered.append(issued.serial_hex)
            raise
        stored.append(chain)


def _refusal(ca: "CA", request: "CSRRequest", exc: CertkitError) -> Problem:
    """What the client is told when the pipeline failed before anything was delivered. An ACME client is anyone
    on the network: the database's, the token's and the CA's own words (the inventory URL with its host, port,
    role and database, the token's label and module, the CA's files) go to the server's log only (``logged``)."""
    if isinstance(exc, InventoryError):  # locked, full, unreachable: nothing was recorded
        return NothingIssued("serverInternal", "The certificate was not issued, the server's database is "
                                               "unavailable. The order is ready again: finalize it again later.",
                             status=503, headers={"Retry-After": RETRY_LATER},
                             logged=f"the server's database is unavailable: {exc}")
    from certkit.pkcs11.errors import TokenError

    if isinstance(exc, TokenError):  # the CA key's token: gone, restarting, refusing the PIN; never the order's fault
        return NothingIssued("serverInternal", "The certificate was not issued, the CA's key cannot sign now. The "
                                               "order is ready again: finalize it again later.", status=503,
                             headers={"Retry-After": RETRY_LATER}, logged=f"the CA's key cannot sign now: {exc}")
    if isinstance(exc, NameNotPermitted):  # the CA's name constraints changed since the order
        return Problem("rejectedIdentifier", acme_text(exc))
    try:
        check_key(ca, request.public_key)  # refused since check_csr (revoked for keyCompromise meanwhile)?
    except Problem as problem:
        return NothingIssued(problem.kind, problem.detail)
    except CertkitError:
        pass
    return Problem("serverInternal", "The certificate could not be issued (the server's log says why).",
                   logged=f"the certificate could not be issued: {exc}")


def issue_listener_certificate(ca: "CA", names: list[str], days: int,
                               load: "Callable[[IssuedCert], None]") -> "IssuedCert":
    """The ACME server's own TLS certificate (with its key), recorded like any other: valid once
    ``load`` has put it into the server's TLS context."""
    from certkit.issuing import begin, server_request

    with begin(ca, server_request(names, days=lifetime(ca, days))) as issued:
        load(issued)
    return issued
