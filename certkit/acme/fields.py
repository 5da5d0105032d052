"""The JSON fields of ACME request payloads, read strictly: a field of the wrong JSON type is
``malformed`` wherever it is sent (a new account or an update of one, an authorization's
deactivation, a revocation), so a client's mistake is named rather than silently taken as absent
(``"status": null``) or as some other value (``"termsOfServiceAgreed": "yes"``).
"""

from __future__ import annotations

import json

from certkit.acme.problems import Problem
from certkit.text import shown

# RFC 5280 CRLReason codes a subscriber may give (7 is unused; certificateHold and
# removeFromCRL are not offered by certkit, whose revocations are final; aACompromise is for
# attribute certificates).
# cACompromise (2) is for a CA certificate, never one ACME issues (Inventory.revoke says so).
REVOCATION_CODES = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged",
                    4: "superseded", 5: "cessationOfOperation", 9: "privilegeWithdrawn"}


def _json(value) -> str:
    return shown(json.dumps(value))


def check_booleans(payload: dict, *names: str) -> None:
    """Each of ``names`` the payload sends is true or false; a ``malformed`` Problem otherwise."""
    for name in names:
        if name in payload and not isinstance(payload[name], bool):
            raise Problem("malformed", f"{name} must be true or false, not {_json(payload[name])}.")


def deactivation(payload: dict, what: str) -> bool:
    """Whether the payload asks to deactivate ``what`` (an account, an authorization): its
    ``status`` is "deactivated"; absent, nothing is asked. Any other value, null included, is
    ``malformed``: the only change a client may make to a status is this one (RFC 8555 7.3.6, 7.5.2)."""
    if "status" not in payload:
        return False
    status = payload["status"]
    if status != "deactivated":
        raise Problem("malformed", f"{what}'s status can only be changed to \"deactivated\", not {_json(status)}.")
    return True


def account_deactivation(payload: dict) -> bool:
    """Whether an account update asks to deactivate the account (RFC 8555 7.3.6). The server "MUST ignore
    any updates to the ... 'status' field (except as required by Section 7.3.6)" (7.3.2): a client that
    sends its account object back (acmez's UpdateAccount: ``"status": "valid"``, ``"orders"`` and all)
    changes its contacts. Any status string but "deactivated" is ignored so; one that is no string (null,
    a number) is ``malformed``, as a field of the wrong type is everywhere."""
    status = payload.get("status")
    if isinstance(status, str) and status != "deactivated":
        return False
    return deactivation(payload, "An account")


def revocation_code(payload: dict) -> int:
    """The revocation reason code the payload gives (0, unspecified, when it gives none): an integer
    (RFC 8555 7.6), else ``malformed``; an integer that is no reason a subscriber may give is
    ``badRevocationReason``."""
    code = payload.get("reason", 0)
    choices = ", ".join(f"{c} ({n})" for c, n in REVOCATION_CODES.items())
    if not isinstance(code, int) or isinstance(code, bool):
        raise Problem("malformed", f"The revocation reason must be an integer (RFC 8555 7.6), not {_json(code)}; "
                                   f"use one of {choices}.")
    if code not in REVOCATION_CODES:
        raise Problem("badRevocationReason", f"Revocation reason {shown(code)} is not accepted; use one of {choices}.")
    return code
