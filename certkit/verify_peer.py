"""``verify --purpose peer``: a peer certificate (certkit issue-peer) is read by cluster software on both sides, as
the server a member connects to and as the client that connects, so it is checked for both purposes, each with the
same chain, date, name and revocation checks, and its verdict says which purpose failed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.verify import Verdict

PEER = "peer"
SIDES = ("server", "client")


def verify_peer_path(cert_path: str | Path, **given) -> tuple["Verdict", str]:
    """:func:`certkit.verify.verify_path` for both purposes: the verdict of a peer (valid when valid for both)
    and where the trust came from."""
    from certkit.files import reading_once
    from certkit.verify import verify_path

    with reading_once():  # standard input, or a pipe (<(cat cert.pem)), is read once and judged for both sides
        found = {side: verify_path(cert_path, purpose=side, **given) for side in SIDES}
    return both({side: verdict for side, (verdict, _trust) in found.items()}), found["server"][1]


def verify_peer_certificate(leaf, **given) -> "Verdict":
    """:func:`certkit.verify.verify_certificate` for both purposes, as :func:`verify_peer_path`."""
    from certkit.verify import verify_certificate

    return both({side: verify_certificate(leaf, purpose=side, **given) for side in SIDES})


def both(verdicts: dict[str, "Verdict"]) -> "Verdict":
    """One verdict of the two sides' ``verdicts``: valid when both are; a reason both give is said once, one
    side's alone begins with the side it failed ("as a client: ..."); ``purposes`` holds each side's verdict."""
    from dataclasses import replace

    server, client = verdicts["server"], verdicts["client"]
    said = {side: [_as_peer(r) for r in v.reasons] for side, v in verdicts.items()}
    reasons = [r for r in said["server"] if r in said["client"]]
    for side, own in said.items():
        reasons += [f"as a {side}: {r}" for r in own if r not in reasons]
    errors = [f"as a {side}: {v.verifier_error}" for side, v in verdicts.items() if v.verifier_error]
    if server.verifier_error and server.verifier_error == client.verifier_error:  # shared: said once, as a reason
        errors = [server.verifier_error]
    valid = server.valid and client.valid
    return replace(server, valid=valid, purpose=PEER, reasons=reasons, verifier_error="; ".join(errors) or None,
                   chain=server.chain if valid else [],
                   name_ok=None if server.name_ok is None else bool(server.name_ok and client.name_ok),
                   notes=list(dict.fromkeys(server.notes + client.notes)),
                   purposes={side: v.to_dict() for side, v in verdicts.items()})


def _as_peer(reason: str) -> str:
    """A side's reason as a peer's: a revoked leaf is refused by the members on both sides, not by one side's."""
    from certkit.withdrawals import CLIENTS_REFUSE, SERVERS_REFUSE

    return reason.replace(CLIENTS_REFUSE, PEERS_REFUSE).replace(SERVERS_REFUSE, PEERS_REFUSE)


PEERS_REFUSE = "the cluster's members refuse it, as server and as client, once they load the next CRL (certkit crl)"
