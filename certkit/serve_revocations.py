"""What the inventories of serve's client CA (and of the intermediate CAs it records) say of a client chain
the handshake accepted (:class:`InventoryRevocations`, read at every connection), and the banner's and answers'
words for whose revocations are checked, or why they are not."""

from __future__ import annotations

from dataclasses import dataclass, field

from certkit.signatures import signed_by
from certkit.vocabulary import serial_hex


@dataclass(frozen=True)
class InventoryVerdict:
    """What the serving CA's inventory says of one client chain: facts the page and the log state."""

    ca: str  # the CA whose inventory was read, by name
    under: bool  # the chain leads to that CA; else it is another --client-ca's, whose inventory is not read
    held: list[str] = field(default_factory=list)  # the chain's certificates the inventory holds, by name
    problems: list[str] = field(default_factory=list)  # why it refuses the chain: revoked, never delivered, unread
    unrecorded: bool = False  # the leaf names the CA as its issuer, but the inventory has no record of it
    leaf_held: bool = False  # the inventory holds the client's certificate itself (else only CAs above it)
    leaf_below: bool = False  # the inventory of the intermediate that issued it holds it, found through this one
    unread: str | None = None  # why the inventory could not be read: the chain is refused, nothing is recorded


class InventoryRevocations:
    """Whether a client chain the handshake accepted was withdrawn since: every certificate of it (the
    leaf and the intermediates sent) that the inventory of the serving CA holds, read at every
    connection, so a ``certkit revoke`` counts at once, without a CRL or a restart; a revoked
    intermediate refuses every certificate under it, as a CRL for each CA does. The same check as
    ``certkit verify`` (:func:`certkit.verify.inventory_problems`). A row that cannot be read refuses the
    certificate: the server does not let in what it cannot check."""

    def __init__(self, store, ca_cert) -> None:
        from certkit.pkcs12 import common_name

        self.store, self.ca_cert, self.ca_name = store, ca_cert, ca_cert.subject.public_bytes()
        self.name = common_name(ca_cert) or ca_cert.subject.rfc4514_string()
        self.others: list[str] = []  # the other client CAs (--client-ca with several), whose revocations are not read
        self.trusted: list = []  # the intermediate CAs the default mode's handshake trusts too (serve's start)

    def check(self, chain: list) -> InventoryVerdict:
        """``chain``: the client's certificates (``cryptography``), leaf first, as verified or as sent."""
        from certkit.pkcs12 import common_name
        from certkit.tlscheck import reason_of
        from certkit.withdrawals import inventory_problems

        leaf = chain[0]
        if not any(c == self.ca_cert or c.issuer.public_bytes() == self.ca_name for c in chain):
            return InventoryVerdict(self.name, under=False)
        unread: list[str] = []
        found: list[bool] = []  # the leaf's record: in this inventory, or an intermediate's it records
        try:
            inventory = self.store.inventory
            held = [c for c in chain if c != self.ca_cert and _holds(inventory, c)]
            unrecorded = leaf.issuer.public_bytes() == self.ca_name and not _holds(inventory, leaf)
            problems = inventory_problems(self.store.path, [c for c in chain if c != self.ca_cert], unread=unread,
                                          leaf_found=found)
        except Exception as exc:  # CertkitError, a database gone: refused, never a traceback in the thread
            unread.append(reason_of(exc))
            held, unrecorded, problems = [], False, []
        if unread:
            problems.append(f"its revocation status cannot be read ({unread[0]})")
        if unrecorded:
            problems.insert(0, f"it is not a certificate {self.name} recorded: the CA's inventory has no record of "
                            "it (signed by the CA key outside certkit, or the inventory was restored from an "
                            "older backup)")
        return InventoryVerdict(self.name, True, [common_name(c) or c.subject.rfc4514_string() for c in held],
                                problems, unrecorded, leaf in held, bool(found) and leaf not in held,
                                unread[0] if unread else None)


    def _cas(self, where: str = "", args: tuple = ()) -> list[tuple[dict, object]]:
        """The intermediate CAs this CA's inventory records (rows of kind ca), with their certificates; none when
        it cannot be read (the connection's own check then says so)."""
        try:
            inventory = self.store.inventory
            rows = inventory.rows("WHERE kind = ?" + where, ("ca", *args))
            return [(row, inventory.certificate(row["serial"])) for row in rows]
        except Exception:  # noqa: BLE001 (a damaged inventory: nothing is claimed from it)
            return []

    def intermediates(self) -> list[tuple[str, str]]:
        """The intermediate CAs this CA's inventory records as valid, whose own inventories serve reads through
        it (the folder recorded for each): their names and inventories, for the banner and --json."""
        from certkit.pkcs12 import common_name
        from certkit.store import CADirectory

        found = []
        for row, cert in self._cas(" AND status = ?", ("valid",)):
            if row.get("folder"):
                where = CADirectory(row["folder"]).inventory_location
                found.append((common_name(cert) or cert.subject.rfc4514_string(), str(where)))
        return found

    def valid_intermediates(self) -> list:
        """The certificates of the intermediate CAs this CA's inventory records as valid now."""
        return [cert for _row, cert in self._cas(" AND status = ?", ("valid",))]

    def records(self, cert) -> bool:
        """Whether this CA's inventory records ``cert`` as an intermediate CA it signed (in any status)."""
        return any(found == cert for _row, found in self._cas())

    def withdrawn_issuer(self, chain: list) -> str | None:
        """Why a client chain (leaf first) that stops at a CA the client did not send is dead, when this CA's
        inventory records that CA as an intermediate it signed and then withdrew (revoked, never delivered):
        "issued by CN=..., an intermediate CA of this CA ...: the issuing CA ... was revoked on ...". None
        otherwise (another CA's, or one of its valid intermediates: the usual words say that)."""
        from certkit.verify_names import cn_text

        top = chain[-1]
        issuer = next((cert for row, cert in self._cas(" AND status != ?", ("valid",))
                       if cert.subject == top.issuer and signed_by(top, cert)), None)
        if issuer is None:
            return None
        problems = self.check([*chain, issuer]).problems
        problem = next((p for p in problems if p.startswith("the issuing CA")), problems[0] if problems else None)
        if problem is None:
            return None
        return (f"issued by {cn_text(issuer.subject)}, an intermediate CA of this CA ({cn_text(self.ca_cert.subject)}, "
                f"whose inventory records it): {problem}")


def _holds(inventory, cert) -> bool:
    from cryptography.hazmat.primitives import hashes

    row = inventory.get(serial_hex(cert.serial_number))
    return row is not None and row["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()


def revocation_line(revocations, ca_name: str) -> str:
    """Whose revocations are checked: the CA directory's CA's, and its intermediates' (their inventories are
    found through the folders its inventory records), read at each connection."""
    if revocations is None:
        return "  revocation is not checked (--client-ca is not the CA directory's CA)"
    others, name = revocations.others, revocations.name
    now = ", ".join(f"\"{who}\" in {where}" for who, where in revocations.intermediates()) or "none"
    return (f"  revoked ones are refused: what \"{name}\" issued (client certificates, intermediate CAs) "
            "is looked up in its inventory at each connection, and what its intermediate CAs issued in theirs, "
            f"found through the folders its inventory records (now: {now}); revocations other CAs record are not read"
            + (f" (so \"{', '.join(others)}\"'s are not checked)" if others else "")
            # serve's own rule (serve.InventoryRevocations): a server given the CA's CRL lets these in.
            + f"\n  so are client certificates \"{name}\" signed that its inventory has no record of (signed with "
            "its key outside certkit, or the inventory restored from an older backup): serve's own rule, which "
            "real servers (nginx, OpenSSL) do not apply")
