"""The CA that certkit puts into trust stores: :class:`Anchor`, and :func:`describe_scope`.

An :class:`Anchor` is the root certificate of a CA directory (for an
intermediate CA, the root above it) and the names certkit gives its copies,
all derived from its SHA-256 fingerprint: ``certkit-<first 16 hex digits>``
(plus the CA's name for people). Because the name is the fingerprint,
installing twice finds the first copy, uninstalling removes exactly certkit's
copies, and an older (rotated) certkit CA is recognised by its name.
:func:`describe_scope` says in words what a CA's name constraints let it vouch for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constraints import no_names  # no third-party imports: cheap
from certkit.text import shown
from certkit.vocabulary import iso

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class Anchor:
    """The root certificate certkit puts into trust stores, with the names of its copies."""

    cert: "x509.Certificate"
    ca_dir: Path | None = None
    key_path: Path | None = None
    key_encrypted: bool | None = None  # None: no key file in the CA directory
    intermediate: str | None = None  # the CA directory's own CN when it holds an intermediate
    # The CA directory's own certificate when it is an intermediate: what signs, so its dates matter as
    # much as the root's, and a store that trusts it by hand trusts what it signs.
    intermediate_cert: "x509.Certificate | None" = None

    @classmethod
    def from_ca_dir(cls, path: str | Path | None) -> "Anchor":
        """The root of the CA in ``path`` (for an intermediate CA, the last of its parents); no key needed."""
        from certkit.key_encryption import is_encrypted
        from certkit.store import CADirectory

        store = CADirectory(path)
        cert, parents = store.load_certificates()
        encrypted = None
        if store.key_path.is_file():
            try:
                encrypted = is_encrypted(store.key_path.read_bytes()[:4096])
            except OSError:
                encrypted = None
        return cls(parents[-1] if parents else cert, store.path.resolve(), store.key_path.resolve(), encrypted,
                   _common_name(cert) if parents else None, cert if parents else None)

    @property
    def fingerprint(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def intermediate_fingerprint(self) -> str | None:
        from cryptography.hazmat.primitives import hashes

        return self.intermediate_cert.fingerprint(hashes.SHA256()).hex() if self.intermediate_cert else None

    @property
    def pem_path(self) -> Path | None:
        """A file of the CA directory that holds the root alone, by absolute path, for a command a user runs
        (``certutil -A -i``, which reads the first certificate of a file): a root's ca.pem, an intermediate's
        parents.pem when the root is all it holds (as certkit writes it); None otherwise."""
        from certkit.trust.tools import pem_fingerprints

        if self.ca_dir is None:
            return None
        path = self.ca_dir / ("parents.pem" if self.intermediate_cert is not None else "ca.pem")
        try:
            return path if pem_fingerprints(path.read_bytes()) == [self.fingerprint] else None
        except OSError:
            return None

    def by_hand(self, command: list[str]) -> str:
        """``command`` (whose last argument names the file it reads the root from), completed with the file of
        the CA directory that holds the root alone (:attr:`pem_path`), or with ROOT.pem and what it must hold:
        for a user to run where certkit does not (a store whose password certkit does not ask for)."""
        import shlex

        if (path := self.pem_path) is not None:
            return shlex.join([*command, str(path)])
        where = f", the last certificate of {self.ca_dir / 'parents.pem'}" if self.ca_dir else ""
        return (f"{shlex.join(command)} ROOT.pem, where ROOT.pem holds the root \"{shown(self.common_name)}\" alone "
                f"(SHA-256 {self.fingerprint}{where})")

    @property
    def sha1(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA1()).hex().upper()  # what macOS and Windows tools match on

    @property
    def name(self) -> str:
        """``certkit-<first 16 hex digits of the SHA-256 fingerprint>``: how certkit finds its copies."""
        return f"certkit-{self.fingerprint[:16]}"

    @property
    def common_name(self) -> str:
        return _common_name(self.cert)

    @property
    def file_stem(self) -> str:
        """File name (without suffix) and Java alias: the certkit name and the CA's name made safe."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.common_name.lower()).strip("-")[:40].strip("-")
        return f"{self.name}-{slug}" if slug else self.name

    @property
    def nickname(self) -> str:
        """The NSS nickname: the certkit name and the CA's name (":" would name a token)."""
        cn = "".join(ch if ch.isprintable() and ch != ":" else "?" for ch in self.common_name)[:64]
        return f"{self.name} {cn}".strip()

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.cert.public_bytes(Encoding.PEM)

    @property
    def public_key_sha256(self) -> str:
        """SHA-256 of the root's public key: another certificate of that key and subject is this CA to a client."""
        from certkit.trust.tools import key_id

        return key_id(self.cert)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def constraints(self):
        from cryptography import x509

        try:
            return self.cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return None

    @property
    def limits_dns(self) -> bool:
        """True when the root's name constraints limit the DNS names it may vouch for.

        A root without them (or one limited to IP ranges only, or to a public suffix such as com)
        can vouch for any website, or anyone's under that suffix: that is what ``trust install`` asks
        about.
        """
        return bool(self.permitted_dns) and not self.public_suffixes

    @property
    def wide_ips(self) -> list[str]:
        """The IP ranges it may vouch for that limit nothing that matters: public ranges (not private, ULA,
        link-local) wider than a /16 (IPv4) or a /32 (IPv6), larger than any one organisation's, such as
        0.0.0.0/0; or "any IP address" when its constraints name no IP range at all (another tool's CA limited
        to DNS names: certkit's exclude every address). Empty without name constraints (then :attr:`limits_dns`
        is what matters)."""
        from cryptography import x509

        nc = self.constraints
        if nc is None:
            return []
        permitted = [c.value for c in nc.permitted_subtrees or [] if isinstance(c, x509.IPAddress)]
        if not permitted:
            excluded = {str(c.value) for c in nc.excluded_subtrees or [] if isinstance(c, x509.IPAddress)}
            return [] if {"0.0.0.0/0", "::/0"} <= excluded else ["any IP address"]
        return [str(n) for n in permitted if n.prefixlen < (16 if n.version == 4 else 32) and _holds_public(n)]

    @property
    def limited(self) -> bool:
        """Whether its name constraints limit both the DNS names and the IP addresses it may vouch for to what
        someone could own: else ``trust install`` asks first."""
        return self.limits_dns and not self.wide_ips

    @property
    def permitted_dns(self) -> list[str]:
        from cryptography import x509

        nc = self.constraints
        return [c.value for c in (nc.permitted_subtrees or []) if isinstance(c, x509.DNSName)] if nc else []

    @property
    def public_suffixes(self) -> list[str]:
        """The permitted DNS subtrees that are public suffixes (com, co.uk): they limit nothing that
        matters, as every website under them belongs to someone else."""
        from certkit.names_dns import public_suffix_scope

        return [d for d in self.permitted_dns if not no_names(d) and public_suffix_scope(d)]

    def scope(self) -> str:
        """What a client trusting this root would accept it for, in words."""
        return describe_scope(self.constraints)

    def java_scope(self) -> str | None:
        """What the root may sign to Java programs, when that is not :meth:`scope`: Java (JSSE) takes a trust
        store's certificate as a trust anchor without its name constraints (RFC 5280 leaves a trust anchor's
        to the verifier; OpenSSL, GnuTLS, NSS and Node apply them), so a root's own limit nothing there. None
        for a root without name constraints."""
        if self.constraints is None:
            return None
        return "any DNS name and any IP address (Java ignores the name constraints of a trusted root)"

    def java_note(self, kind: str, *, intermediate_trusted: bool = False) -> str | None:
        """The note of a store Java reads (``kind`` "java", or "system", which Debian's ca-certificates-java and
        Fedora's java/cacerts copy into Java's store) that trusts this constrained root, or (``intermediate_trusted``)
        the CA directory's constrained intermediate by hand; None otherwise."""
        if kind not in ("java", "system"):
            return None
        who = "Java programs" if kind == "java" else \
            "Java programs that take their trust from this store (Debian's ca-certificates-java, Fedora's java/cacerts)"
        if intermediate_trusted and self.intermediate_cert is not None and _constrained(self.intermediate_cert):
            # Trusted itself, the intermediate is a trust anchor to Java, which drops an anchor's constraints: what
            # its key signs is not kept inside them (a JSSE client accepts a name outside them), whatever the root.
            return (f"{who} take the intermediate \"{self.intermediate}\", trusted here by hand, as a trust anchor and "
                    "ignore its name constraints: to them its key may sign any name (trust the root instead, and take "
                    "that entry out with the store's own tool)")
        if self.java_scope() is None:
            return None
        below = (f"; what the intermediate \"{self.intermediate}\" signs stays inside its own constraints, which "
                 "Java applies" if self.intermediate_cert is not None and _constrained(self.intermediate_cert)
                 else "; to limit what Java accepts, issue from a constrained intermediate (docs/two-tier-pki.md)")
        return f"{who} ignore the name constraints of a trusted root: to them the root's key may sign any name{below}"

    def reach(self) -> str:
        """:meth:`scope` without the kinds of names it may not vouch for ("IP addresses in 127.0.0.0/8", not
        "no DNS names; IP addresses in 127.0.0.0/8"): what its key could impersonate."""
        return " and ".join(part for part in self.scope().split("; ") if not part.startswith("no ")) or "nothing"

    def summary(self) -> dict:
        return {"subject": self.cert.subject.rfc4514_string(), "common_name": self.common_name,
                "name": self.name, "fingerprint_sha256": self.fingerprint,
                "not_before": iso(self.not_before), "not_after": iso(self.not_after), "may_sign": self.scope(),
                "may_sign_java": self.java_scope() or self.scope(),
                "name_constraints": self.constraints is not None, "limits_dns": self.limits_dns,
                "limits_ips": self.constraints is not None and not self.wide_ips,
                "ca_dir": str(self.ca_dir) if self.ca_dir else None, "key_encrypted": self.key_encrypted,
                # whose key key_encrypted describes: the CA directory's own (an intermediate's, below this root)
                "key_of": self.intermediate if self.intermediate is not None else self.common_name,
                "intermediate": self.intermediate,
                "intermediate_fingerprint_sha256": self.intermediate_fingerprint,
                "intermediate_not_before": iso(self.intermediate_cert.not_valid_before_utc)
                if self.intermediate_cert else None,
                "intermediate_not_after": iso(self.intermediate_cert.not_valid_after_utc)
                if self.intermediate_cert else None}


def describe_scope(nc) -> str:
    """Name constraints in words: which DNS names and IP addresses a CA may vouch for."""
    import ipaddress

    from cryptography import x509

    if nc is None:
        return "any DNS name and any IP address (no name constraints)"
    permitted, excluded = nc.permitted_subtrees or [], nc.excluded_subtrees or []
    dns = [c.value for c in permitted if isinstance(c, x509.DNSName)]
    dns_out = [c.value for c in excluded if isinstance(c, x509.DNSName)]
    ips = [str(c.value) for c in permitted if isinstance(c, x509.IPAddress)]
    ips_out = [c.value for c in excluded if isinstance(c, x509.IPAddress)]
    if dns and all(no_names(d) for d in dns):  # the placeholder, of this version (invalid.invalid) or before
        dns_text = "no DNS names"
    elif dns:
        dns_text = "DNS names under " + ", ".join(dns)
    else:
        dns_text = "any DNS name" + (" except under " + ", ".join(dns_out) if dns_out else "")
    everything = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}
    if ips:
        ip_text = "IP addresses in " + ", ".join(ips)
    elif everything <= set(ips_out):
        ip_text = "no IP addresses"
    else:
        ip_text = "any IP address" + (" except " + ", ".join(map(str, ips_out)) if ips_out else "")
    return f"{dns_text}; {ip_text}"


def _constrained(cert) -> bool:
    from cryptography import x509

    try:
        cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    return True


def _common_name(cert) -> str:
    from certkit.vocabulary import common_name

    return common_name(cert.subject) or cert.subject.rfc4514_string()


# The address blocks that hold no one's public servers (RFC 6890's registries: not globally reachable, or
# no host's): private, shared (RFC 6598, CGNAT and Tailscale's 100.64.0.0/10), loopback, link-local,
# documentation, benchmarking, reserved, multicast; ULA and the like for IPv6.
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4", "::/127", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "ff00::/8"))


def _holds_public(network) -> bool:
    """Whether ``network`` holds addresses of other people's servers: it lies inside none of the
    blocks that are no one's public addresses."""
    return not any(network.version == block.version and network.subnet_of(block) for block in _NOT_PUBLIC)

