"""What ``certkit inspect`` says of the extensions that have no line of their own in a certificate
(certificatePolicies, policyConstraints, inhibitAnyPolicy, authorityInfoAccess, cRLDistributionPoints, and
extensions certkit does not know, by OID with their critical flag), and of a CSR's attributes and
requested extensions: named as ``openssl x509 -text`` and ``openssl req -text`` name them.

A challengePassword is named, never printed: it is a secret (SCEP's one-time password), as a key is.
"""

from __future__ import annotations

from certkit.vocabulary import colons, eku_name, general_name_text, key_usage_names

# The names ``openssl x509 -text`` gives the extensions (and ``openssl req -text`` the attributes).
OPENSSL_NAMES = {
    "2.5.29.19": "X509v3 Basic Constraints", "2.5.29.15": "X509v3 Key Usage",
    "2.5.29.37": "X509v3 Extended Key Usage", "2.5.29.17": "X509v3 Subject Alternative Name",
    "2.5.29.32": "X509v3 Certificate Policies", "2.5.29.36": "X509v3 Policy Constraints",
    "2.5.29.54": "X509v3 Inhibit Any Policy", "1.3.6.1.5.5.7.1.1": "Authority Information Access",
    "2.5.29.31": "X509v3 CRL Distribution Points", "2.5.29.30": "X509v3 Name Constraints",
    "2.5.29.14": "X509v3 Subject Key Identifier", "2.5.29.35": "X509v3 Authority Key Identifier",
    "1.3.6.1.5.5.7.1.24": "TLS Feature", "2.16.840.1.113730.1.1": "Netscape Cert Type",
    "2.5.29.18": "X509v3 Issuer Alternative Name", "2.5.29.33": "X509v3 Policy Mappings",
    "2.16.840.1.113730.1.13": "Netscape Comment", "1.3.6.1.4.1.11129.2.4.2": "CT Precertificate SCTs",
    "1.3.6.1.4.1.11129.2.4.3": "CT Precertificate Poison", "1.3.6.1.5.5.7.48.1.5": "OCSP No Check",
    "2.5.29.46": "X509v3 Freshest CRL", "1.3.6.1.5.5.7.1.11": "Subject Information Access",
    "2.5.29.9": "X509v3 Subject Directory Attributes", "1.3.6.1.5.5.7.1.14": "Proxy Certificate Information",
    "1.3.6.1.5.5.7.1.7": "IP Address Blocks (RFC 3779)", "1.3.6.1.5.5.7.1.8": "AS Identifiers (RFC 3779)",
    "1.3.6.1.5.5.7.1.3": "qcStatements", "2.5.29.16": "X509v3 Private Key Usage Period",
}
# On inspect's lines of their own (the key identifiers, on every certificate certkit issues, are not shown).
_SHOWN = {"2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", "2.5.29.30", "1.3.6.1.5.5.7.1.24",
          "2.16.840.1.113730.1.1", "2.5.29.32", "2.5.29.36", "2.5.29.54", "1.3.6.1.5.5.7.1.1", "2.5.29.31",
          "2.5.29.14", "2.5.29.35"}
ATTRIBUTE_NAMES = {"1.2.840.113549.1.9.7": "challengePassword", "1.2.840.113549.1.9.2": "unstructuredName",
                   "1.2.840.113549.1.9.8": "unstructuredAddress"}
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_ANY_POLICY = "2.5.29.32.0"


def _ext(extensions, cls):
    from cryptography import x509

    try:
        return extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _policies(value) -> list[dict]:
    from cryptography import x509

    out = []
    for info in value:
        cps, notices = [], []
        for q in info.policy_qualifiers or []:
            if isinstance(q, str):
                cps.append(q)
            elif isinstance(q, x509.UserNotice):
                ref = q.notice_reference
                notices.append("; ".join(
                    ([f"Organization: {ref.organization}, Number: {', '.join(map(str, ref.notice_numbers))}"]
                     if ref else []) + ([f"Explicit Text: {q.explicit_text}"] if q.explicit_text else [])))
        oid = info.policy_identifier.dotted_string
        out.append({"policy": oid, "any_policy": oid == _ANY_POLICY, "cps": cps, "user_notices": notices})
    return out


def _policy_text(entry: dict) -> str:
    words = [f"CPS: {c}" for c in entry["cps"]] + [f"User Notice: {n}" for n in entry["user_notices"]]
    name = "X509v3 Any Policy" if entry["any_policy"] else entry["policy"]
    return f"Policy: {name}" + (f" ({', '.join(words)})" if words else "")


def _distribution_points(value) -> list[str]:
    out = []
    for point in value:
        out += [general_name_text(gn) for gn in point.full_name or []]
        if point.relative_name is not None:
            out.append(f"Relative Name: {point.relative_name.rfc4514_string()}")
        out += [f"CRL Issuer: {general_name_text(gn)}" for gn in point.crl_issuer or []]
    return out


def extension_facts(extensions) -> dict:
    """The JSON keys of a certificate's ``extensions`` (policies, AIA, CRLDP, unknown ones); None when absent."""
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID as Aia

    pol, pc = _ext(extensions, x509.CertificatePolicies), _ext(extensions, x509.PolicyConstraints)
    iap, aia = _ext(extensions, x509.InhibitAnyPolicy), _ext(extensions, x509.AuthorityInformationAccess)
    cdp = _ext(extensions, x509.CRLDistributionPoints)
    access = (lambda method: [general_name_text(d.access_location) for d in aia.value
                              if d.access_method == method]) if aia else None
    return {
        "certificate_policies": {"policies": _policies(pol.value), "critical": pol.critical} if pol else None,
        "policy_constraints": {"require_explicit_policy": pc.value.require_explicit_policy,
                               "inhibit_policy_mapping": pc.value.inhibit_policy_mapping,
                               "critical": pc.critical} if pc else None,
        "inhibit_any_policy": {"skip_certs": iap.value.skip_certs, "critical": iap.critical} if iap else None,
        "authority_info_access": {"ocsp": access(Aia.OCSP), "ca_issuers": access(Aia.CA_ISSUERS),
                                  "critical": aia.critical} if aia else None,
        "crl_distribution_points": {"points": _distribution_points(cdp.value), "critical": cdp.critical}
        if cdp else None,
        "unknown_extensions": [{"oid": e.oid.dotted_string, "critical": e.critical, "value_hex": e.value.value.hex()}
                               for e in extensions if _unknown(e)],
        "other_extensions": [{"oid": e.oid.dotted_string, "name": OPENSSL_NAMES.get(e.oid.dotted_string) or
                              e.oid._name, "critical": e.critical} for e in extensions
                             if e.oid.dotted_string not in _SHOWN and not _unknown(e)],
    }


def _unknown(ext) -> bool:
    """An extension neither cryptography nor certkit names (a private one): shown by OID, critical flag and value."""
    from cryptography import x509

    return isinstance(ext.value, x509.UnrecognizedExtension) and ext.oid.dotted_string not in OPENSSL_NAMES


def _critical(fact: dict) -> str:
    return ", critical" if fact["critical"] else ""


def extension_lines(item: dict) -> list[str]:
    """The text lines of :func:`extension_facts`, each ``label  value`` as inspect's other lines."""
    lines = []
    if pol := item.get("certificate_policies"):
        lines.append(f"policies      {'; '.join(_policy_text(p) for p in pol['policies'])}{_critical(pol)}")
    if pc := item.get("policy_constraints"):
        said = [f"{label}:{pc[key]}" for label, key in (("Require Explicit Policy", "require_explicit_policy"),
                                                        ("Inhibit Policy Mapping", "inhibit_policy_mapping"))
                if pc[key] is not None]
        lines.append(f"policy constr {', '.join(said)}{_critical(pc)} (X509v3 Policy Constraints)")
    if iap := item.get("inhibit_any_policy"):
        lines.append(f"inhibit any   {iap['skip_certs']}{_critical(iap)} (X509v3 Inhibit Any Policy)")
    if aia := item.get("authority_info_access"):
        said = [f"OCSP - {u}" for u in aia["ocsp"]] + [f"CA Issuers - {u}" for u in aia["ca_issuers"]]
        lines.append(f"AIA           {', '.join(said) or '(no OCSP or CA Issuers entry)'}{_critical(aia)}")
    if cdp := item.get("crl_distribution_points"):
        lines.append(f"CRL dist.     {', '.join(cdp['points']) or '(no name)'}{_critical(cdp)}")
    lines += [f"extension     {e['name']} ({e['oid']}){', critical' if e['critical'] else ''}"
              for e in item.get("other_extensions") or []]
    for ext in item.get("unknown_extensions") or []:
        shown = ext["value_hex"][:48] + ("..." if len(ext["value_hex"]) > 48 else "")
        lines.append(f"extension     {ext['oid']}{', critical' if ext['critical'] else ''} "
                     f"(unknown to certkit; value {shown or '(empty)'})")
    return ["  " + line for line in lines]


def _requested_value(ext) -> str:
    """One requested extension's value in words, as inspect says a certificate's."""
    from cryptography import x509

    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        return f"CA:{'TRUE' if value.ca else 'FALSE'}" + (f", pathlen {value.path_length}"
                                                          if value.path_length is not None else "")
    if isinstance(value, x509.KeyUsage):
        return ", ".join(key_usage_names(value)) or "(none)"
    if isinstance(value, x509.ExtendedKeyUsage):
        return ", ".join(eku_name(oid) for oid in value) or "(none)"
    if isinstance(value, x509.SubjectAlternativeName):
        return ", ".join(general_name_text(gn) for gn in value) or "(none)"
    if isinstance(value, x509.UnrecognizedExtension):
        return f"unknown to certkit; value {value.value.hex()[:48] or '(empty)'}"
    if isinstance(value, (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier)):  # keytool -certreq asks one
        digest = value.digest if isinstance(value, x509.SubjectKeyIdentifier) else value.key_identifier
        return colons(digest.hex()) if digest else "(no key identifier)"
    from cryptography import x509

    alone = x509.Extensions([x509.Extension(ext.oid, False, value)])  # its critical flag is said beside it
    lines = extension_lines({**extension_facts(alone), "unknown_extensions": [], "other_extensions": []})
    return lines[0][16:] if lines else "(see openssl req -text)"


def csr_facts(csr) -> dict:
    """A CSR's ``attributes`` (each ``name``, ``oid``, ``value``; a challengePassword's value is null: named,
    not shown) and ``requested_extensions`` (each ``name``, ``oid``, ``critical``, ``value`` in words)."""
    attributes = []
    for oid, values in _attributes(csr.tbs_certrequest_bytes):
        if oid == _EXTENSION_REQUEST:  # its extensions are the requested ones, below
            continue
        name = ATTRIBUTE_NAMES.get(oid, oid)
        attributes.append({"name": name, "oid": oid, "value": None if name == "challengePassword" else
                           ", ".join(values)})
    requested = [{"name": OPENSSL_NAMES.get(e.oid.dotted_string, e.oid.dotted_string), "oid": e.oid.dotted_string,
                  "critical": e.critical, "value": _requested_value(e)} for e in csr.extensions]
    return {"attributes": attributes, "requested_extensions": requested}


def csr_lines(item: dict) -> list[str]:
    """The text lines of :func:`csr_facts`."""
    lines = [f"  attribute     {a['name']}: " + (a["value"] if a["value"] is not None else
                                                 "(set; not shown here, as it is a secret: openssl req -text shows it)")
             for a in item.get("attributes") or []]
    lines += [f"  requested     {e['name']}{': critical' if e['critical'] else ''}: {e['value']}"
              for e in item.get("requested_extensions") or []]
    return lines


# --- a CSR's attributes, read from its DER: cryptography refuses a multi-valued one, which openssl req -text shows
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x12: "ascii", 0x1A: "ascii", 0x14: "latin-1",
            0x1E: "utf-16-be"}


def _attributes(tbs: bytes) -> list[tuple[str, list[str]]]:
    """(dotted OID, its values in words) of each attribute of a CSR's CertificationRequestInfo (RFC 2986)."""
    from certkit.material_kinds import der_elements

    fields = der_elements(_content(tbs), sequences=False) or []
    tagged = next((f for f in fields if f[0] == 0xA0), None)  # attributes [0]
    out = []
    for attribute in der_elements(_content(tagged), sequences=False) or [] if tagged else []:
        parts = der_elements(_content(attribute), sequences=False) or []
        if len(parts) == 2:  # type, SET of values
            out.append((_oid(_content(parts[0])), [_value(v) for v in der_elements(_content(parts[1]),
                                                                                   sequences=False) or []]))
    return out


def _content(element: bytes) -> bytes:
    size = element[1]
    return element[2 + (size & 0x7F if size & 0x80 else 0):]


def _oid(body: bytes) -> str:
    if not body:
        return "(none)"
    arcs, value = [*divmod(body[0], 40)] if body[0] < 80 else [2, body[0] - 80], 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def _value(element: bytes) -> str:
    """A DirectoryString's text (as openssl req -text shows it), else ``#`` and the DER in hex (RFC 4514's way)."""
    if element[0] in _STRINGS:
        return _content(element).decode(_STRINGS[element[0]], "replace")
    return "#" + element.hex()
