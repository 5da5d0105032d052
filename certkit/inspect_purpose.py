"""What a certificate is usable for, in plain words (``certkit inspect``'s "Usable for" line): the TLS usages its
extendedKeyUsage, keyUsage and Netscape certificate type leave, the names it proves, what a CA's
extendedKeyUsage does to the certificates it issues; and its kind as the inventory names it."""

from __future__ import annotations


def _shown(entry: dict) -> str:
    return f"{entry['value']} ({entry['unicode']})" if "unicode" in entry else entry["value"]


# Said by inspect about a certificate that carries both TLS usages: which sides may present it,
# and why certkit makes that the one exception (certkit issue-peer, docs/peers.md).
EITHER_SIDE = (
    "it may be presented by either side of a connection: by a server to its clients, and by a client "
    "to a server that asks for a certificate. That is certkit's one exception: every other certificate "
    "gets one purpose, so that whoever holds a server's key cannot log in as a client, nor a client's key "
    "pose as a server. Both usages are only for cluster members that are server and client to each other "
    "and cannot take two certificates (certkit issue-peer)."
)


def leaf_kind(*, is_ca: bool, eku: list[str] | None) -> str:
    """``ca``, ``server``, ``client`` or ``peer`` (both TLS usages), as the inventory names them;
    ``other`` for a leaf whose extendedKeyUsage is missing or holds anything else."""
    if is_ca:
        return "ca"
    usages = set(eku or ())
    if not usages or len(usages) != len(eku) or not usages <= {"serverAuth", "clientAuth"}:
        return "other"
    if len(usages) == 2:
        return "peer"
    return "server" if "serverAuth" in usages else "client"


# The keyUsage bits OpenSSL asks of a TLS server's and a TLS client's certificate, when it has keyUsage at all.
# The keyUsage bits a TLS handshake can use, one of which an end-entity certificate that has a keyUsage
# must assert (OpenSSL's purpose check; certkit verify applies the same rule).
SERVER_KEY_USAGES = ("digitalSignature", "keyEncipherment", "keyAgreement")
CLIENT_KEY_USAGES = ("digitalSignature", "keyAgreement")


def usable_for(*, is_ca: bool, eku: list[str] | None, sans: list[dict], subject_cn: str | None,
               path_length: int | None = None, key_usage: list[str] | None = None,
               ns_types: list[str] | None = None) -> str:
    """The plain-words purpose: what a verifier will accept this certificate for."""
    if is_ca:
        limit = " (path length 0: end-entity certificates only)" if path_length == 0 else ""
        return f"issuing certificates (CA){limit}{_ca_eku_text(eku)}"
    ruled_out = [p for p in ("server", "client") if ns_types is not None and p not in ns_types]
    if ruled_out:
        kept = [u for u in (eku if eku is not None else ["serverAuth", "clientAuth"])
                if u not in [f"{side}Auth" for side in ruled_out]]
        said = usable_for(is_ca=False, eku=kept, sans=sans, subject_cn=subject_cn, key_usage=key_usage)
        return (f"{said}; its Netscape certificate type (nsCertType: {', '.join(ns_types) or 'empty'}) rules out "
                f"TLS {' and '.join(ruled_out)} authentication, which OpenSSL-based peers (Python's ssl among "
                "them) then refuse (\"unsuitable certificate purpose\")")
    if key_usage is not None and "keyCertSign" in key_usage and any(u in key_usage for u in SERVER_KEY_USAGES):
        said = usable_for(is_ca=False, eku=eku, sans=sans, subject_cn=subject_cn,
                          key_usage=[u for u in key_usage if u != "keyCertSign"])
        return (f"{said}; beware: its keyUsage asserts keyCertSign, which only a CA may: Python 3.13's default context "
                "and cryptography-based verifiers (certkit verify) refuse it; OpenSSL's default, GnuTLS, Java, Node "
                "and Go accept it")
    if key_usage is not None and not any(u in key_usage for u in SERVER_KEY_USAGES):
        return (f"nothing TLS can use: its keyUsage ({', '.join(key_usage) or 'empty'}) has none of "
                "digitalSignature, keyEncipherment or keyAgreement, which a TLS handshake needs")
    if key_usage is not None and not any(u in key_usage for u in CLIENT_KEY_USAGES) and eku is not None:
        # keyEncipherment alone: a server may use it (RSA key exchange), a client has nothing to sign with
        eku = [u for u in eku if u != "clientAuth"]
    names = ", ".join(_shown(e) for e in sans if e["type"] in ("DNS", "IP"))
    ids = ", ".join(_shown(e) for e in sans if e["type"] in ("email", "URI", "DNS", "IP"))
    client_id = (f"CN={subject_cn}" if subject_cn else "") + (f"; {ids}" if ids and subject_cn else ids)
    purposes = []
    if eku is None:
        return ("TLS server and client authentication and more (no extendedKeyUsage restricts it; "
                "certkit never issues such certificates)")
    if "serverAuth" in eku:
        purposes.append("TLS server authentication" + (f" ({names})" if names else " (but it names no host)"))
    if "clientAuth" in eku:
        purposes.append("TLS client authentication" + (f" ({client_id})" if client_id else ""))
    # anyExtendedKeyUsage does not stand in for serverAuth or clientAuth: OpenSSL and certkit verify
    # refuse a certificate whose extendedKeyUsage lacks the one TLS asks for.
    any_eku = ("anyExtendedKeyUsage (which OpenSSL and certkit verify do not take for TLS server or client "
               "authentication)")
    others = [any_eku if u == "anyExtendedKeyUsage" else u for u in eku if u not in ("serverAuth", "clientAuth")]
    if not purposes and others == [any_eku]:
        return f"nothing TLS can use: its extendedKeyUsage holds only {any_eku}"
    purposes += others
    return " and ".join(purposes) if purposes else "nothing TLS can use"


def _ca_eku_text(eku: list[str] | None) -> str:
    """What a CA's extendedKeyUsage does to the TLS certificates it issues: OpenSSL's purpose check refuses a
    server (client) certificate under a CA whose extendedKeyUsage lacks serverAuth (clientAuth);
    anyExtendedKeyUsage does not stand in for them. Empty without the extension, which restricts nothing."""
    if eku is None:
        return ""
    refused = [side for side, usage in (("server", "serverAuth"), ("client", "clientAuth")) if usage not in eku]
    if not refused:
        return ""
    return (f"; OpenSSL-based peers (Python's ssl among them) refuse the TLS {' and '.join(refused)} certificates "
            f"it issues: its extendedKeyUsage ({', '.join(eku)}) has no "
            f"{' nor '.join(u + 'Auth' for u in refused)}"
            + (" (anyExtendedKeyUsage does not stand in for it)" if "anyExtendedKeyUsage" in eku else ""))
