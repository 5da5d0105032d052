"""Identity parsing: what may be named in a certificate, and the sentence for what may not."""

from __future__ import annotations

import pytest

from certkit.errors import InvalidName, UnsafeOutputPath
from certkit.names import (
    client_identities,
    parse_attribute,
    parse_common_name,
    parse_email,
    parse_host,
    parse_hosts,
    parse_uri,
    safe_folder_name,
)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("localhost", "dns", "localhost"),
        ("Example.COM.", "dns", "example.com"),
        ("*.example.com", "dns", "*.example.com"),
        ("bücher.example", "dns", "xn--bcher-kva.example"),
        ("faß.de", "dns", "xn--fa-hia.de"),  # IDNA2008 keeps ß; IDNA2003 would map it to "ss"
        ("xn--bcher-kva.example", "dns", "xn--bcher-kva.example"),
        ("127.0.0.1", "ip", "127.0.0.1"),
        ("::1", "ip", "::1"),
        ("2001:DB8::A", "ip", "2001:db8::a"),
        ("sub-1.a.example", "dns", "sub-1.a.example"),
    ],
)
def test_accepted_hosts(text: str, kind: str, value: str) -> None:
    ident = parse_host(text)
    assert (ident.kind, ident.value) == (kind, value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*.com", "top-level"),
        ("*.co.uk", "public suffix"),
        ("*.github.io", "public suffix"),
        ("foo.*.example.com", "left-most label"),
        ("f*.example.com", "left-most label"),
        ("*.*.example.com", "left-most label"),
        ("a..b", "empty label"),
        ("-x.example", "hyphen"),
        ("x-.example", "hyphen"),
        ("under_score.example", "'_'"),
        ("999.1.1.1", "larger than 255"),
        ("01.1.1.1", "leading zero"),
        ("1.2.3", "4"),
        ("fe80::1%eth0", "zone"),
        ("::g", "not a valid IPv6"),
        ("../x", "not a valid DNS name"),
        ("a" * 64 + ".example", "63"),
        ("xn--zz.example", "internationalized"),
        ("exa mple.com", "only letters, digits"),
        ("", "empty"),
    ],
)
def test_refused_hosts(text: str, reason: str) -> None:
    with pytest.raises(InvalidName) as info:
        parse_host(text)
    message = str(info.value)
    assert reason.lower() in message.lower()
    if text:
        assert text[:20] in message  # the message names the bad value


def test_long_names_are_bounded() -> None:
    label = "a" * 63
    ok = ".".join([label] * 3) + ".example"  # 200 characters
    assert parse_host(ok).value == ok
    with pytest.raises(InvalidName, match="253"):
        parse_host(".".join([label] * 4) + ".example")


def test_hosts_are_deduplicated_in_order() -> None:
    assert [i.value for i in parse_hosts(["B.example", "a.example", "b.example."])] == ["b.example", "a.example"]
    with pytest.raises(InvalidName, match="at least one"):
        parse_hosts([])


def test_a_certificate_carries_at_most_250_names() -> None:
    names = [f"h{i}.example" for i in range(250)]
    assert len(parse_hosts(names + names)) == 250  # a duplicate is no second name
    with pytest.raises(InvalidName, match="251 names are too many for one certificate, which may carry at most 250"):
        parse_hosts([*names, "10.0.0.1"])
    with pytest.raises(InvalidName, match="251 names are too many"):
        client_identities("bob@example.com", emails=[f"b{i}@example.com" for i in range(150)],
                          uris=[f"urn:b:{i}" for i in range(100)])


def test_email_and_uri() -> None:
    assert parse_email("alice@Bücher.example").value == "alice@xn--bcher-kva.example"
    for bad in ["alice", "@example.com", "alice@", "al ice@example.com", "älice@example.com", "a@-b.example"]:
        with pytest.raises(InvalidName):
            parse_email(bad)
    assert parse_uri("spiffe://example.org/ns/prod/sa/billing").value == "spiffe://example.org/ns/prod/sa/billing"
    assert parse_uri("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66").kind == "uri"
    assert parse_uri("https://[2001:db8::1]:8443/a?b#c").value == "https://[2001:db8::1]:8443/a?b#c"
    for bad in ["not a uri", "relative/path", "spiffe://Example.org/x", "spiffe://example.org/x?q=1", "http://ü.example",
                "http://[::1", "http://x:99999/", "http://x:-1/", "http://[::1]x/", "http://:80/", "http://x/a^b",
                "http://x/%4", "http://x/`", "http://x/a]"]:
        with pytest.raises(InvalidName, match="is not a valid"):
            parse_uri(bad)


def test_client_identities() -> None:
    assert client_identities("alice") == []  # the CA then puts the subject DN in the SAN
    assert [str(i) for i in client_identities("bob@example.com", uris=["spiffe://example.org/bob"])] == [
        "email:bob@example.com", "URI:spiffe://example.org/bob"]
    for bad in ["", " alice", "x" * 65, "tab\there"]:
        with pytest.raises(InvalidName):
            client_identities(bad)


@pytest.mark.parametrize("text", ["日" * 22, "é" * 33, "\U0001f512" * 17, "a" * 63 + "é", "Zoë " * 15 + "Zoë"])
def test_subject_attributes_are_measured_in_utf8_bytes(text: str) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    assert len(text) <= 64 < len(text.encode())
    with pytest.raises(ValueError, match="length must be"):  # what cryptography would raise while signing
        x509.NameAttribute(NameOID.COMMON_NAME, text)
    for field, check in (("common name", parse_common_name), ("organization", lambda t: parse_attribute(
            t, "organization", "--org")), ("organizational unit", lambda t: parse_attribute(
            t, "organizational unit", "--org-unit"))):
        with pytest.raises(InvalidName, match=f"is {len(text.encode())} bytes in UTF-8") as info:
            check(text)
        assert "may hold at most 64 bytes" in str(info.value) and field in str(info.value)


def test_a_leaf_subject_never_holds_more_than_64_bytes() -> None:
    from certkit.profiles import leaf_subject

    assert len(leaf_subject("é" * 32)) == 1
    assert len(leaf_subject("é" * 33)) == 0  # the SAN carries the name alone, as for a long DNS name
    assert len(leaf_subject("a" * 65)) == 0


@pytest.mark.parametrize(("name", "folder"), [
    ("*.example.com", "_wildcard.example.com"), ("::1", "__1"), ("Alice Smith", "Alice_Smith"),
    ("bob@example.com", "bob@example.com")])
def test_safe_folder_names(name: str, folder: str) -> None:
    assert safe_folder_name(name) == folder


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "a\\b"])
def test_unsafe_folder_names(name: str) -> None:
    with pytest.raises(UnsafeOutputPath, match="choose the output folder yourself"):
        safe_folder_name(name)


@pytest.mark.parametrize("domain", ["b", "localhost", "internal"])
def test_a_mailbox_domain_of_one_label_is_refused_as_pkilint_refuses_it(tmp_path, domain: str) -> None:
    """pkilint calls an rfc822Name with a one-label domain invalid syntax (an ERROR): certkit refuses it,
    and a client certificate for a two-label domain lints clean."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit import CA

    from conftest import pkilint_errors

    with pytest.raises(InvalidName, match="its domain needs two labels at least"):
        parse_email(f"a@{domain}")
    ca = CA.create("Mail CA")
    with pytest.raises(InvalidName, match="its domain needs two labels at least"):
        ca.issue_client("alice", emails=[f"alice@{domain}"])
    issued = ca.issue_client("alice", emails=[f"alice@{domain}.example"])
    (tmp_path / "cert.pem").write_bytes(issued.cert.public_bytes(Encoding.PEM))
    assert pkilint_errors(tmp_path / "cert.pem") == ""
