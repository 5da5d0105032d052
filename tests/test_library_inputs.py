"""The library API takes what people pass it, or says at once what it expected (audit of the library API,
findings 1, 4, 6, 7 and 8).

- Every parameter that takes several names (issue_server's and issue_peer's names, issue_client's emails,
  uris and dns_names, sign_csr's extra_names, CA.create's permitted_dns and permitted_ips) reads its value
  one way (names.name_list): a list, tuple or generator of str, or one str taken as one name, as trustme's
  issue_cert("localhost") does. It once split "localhost" into DNS:l, DNS:o, DNS:c... and signed that.
  An ipaddress object stands for its text; bytes, None and other items are a TypeError naming them.
- Every key= (issue_server, issue_client, issue_peer, renew, CA.create) is held to the key policy CSRs
  get: no RSA under 2048 bits, no DSA, no curve but P-256/384/521, no X25519/X448 (they cannot sign). A key
  of the issuing CA or of a CA above it is refused: the leaf's privkey.pem would be the CA's key.
- CA.leaf_validity returns its own answer: a CA shared by threads once gave a certificate another
  thread's lifetime.
- Wrong types are refused where they enter, in words, not deep inside (AttributeError, OverflowError);
  where the meaning is plain the natural value is taken (an int serial, a PEM str, an IssuedCert to renew).
- Messages say what is wrong: days="30" is not a str-typed 30 days "out of range", 42 is not "an empty
  name", a start after the CA expires is said as such.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
import threading
import time
from collections import Counter

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID

from certkit import CA, CADirectory
from certkit.errors import CertkitError, InvalidLifetime, InvalidName
from certkit.issuing import Request
from certkit.keys import generate_key
from certkit.names import Identity
from certkit.profiles import PROFILES

from conftest import PASSPHRASE

LATE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("Inputs CA")


def _csr(key=None, cn: str = "csr.example") -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                                cn)]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


CSR = _csr()


def _san(issued) -> list[str]:
    return [str(i) for i in issued.identities]


def _permitted(ca: CA, kind) -> list[str]:
    return [str(gn.value) for nc in ca.constraints() for gn in nc.permitted_subtrees or [] if isinstance(gn, kind)]


# --- finding 1: one rule for every parameter that takes several names ------------------------------------------
# parameter: (what its TypeError calls it, how to call it, two names, what each becomes)
NAME_PARAMETERS = {
    "issue_server": ("names", lambda ca, v: _san(ca.issue_server(v)), ("localhost", "127.0.0.1"),
                     ("DNS:localhost", "IP:127.0.0.1")),
    "issue_peer": ("names", lambda ca, v: _san(ca.issue_peer(v)), ("etcd", "etcd-1.lan"),
                   ("DNS:etcd", "DNS:etcd-1.lan")),
    "issue_client emails": ("emails", lambda ca, v: _san(ca.issue_client("alice", emails=v)),
                            ("alice@example.com", "a@example.org"), ("email:alice@example.com", "email:a@example.org")),
    "issue_client uris": ("uris", lambda ca, v: _san(ca.issue_client("alice", uris=v)),
                          ("spiffe://example.org/a", "urn:example:b"),
                          ("URI:spiffe://example.org/a", "URI:urn:example:b")),
    "issue_client dns_names": ("dns_names", lambda ca, v: _san(ca.issue_client("alice", dns_names=v)),
                               ("a.example", "b.example"), ("DNS:a.example", "DNS:b.example")),
    "sign_csr extra_names": ("extra_names", lambda ca, v: _san(ca.sign_csr(CSR, "server", extra_names=v))[1:],
                             ("api", "api.example"), ("DNS:api", "DNS:api.example")),
    "CA.create permitted_dns": ("permitted_dns", lambda ca, v: _permitted(CA.create("C", permitted_dns=v),
                                                                          x509.DNSName), ("lan", "example.com"),
                                ("lan", "example.com")),
    "CA.create permitted_ips": ("permitted_ips", lambda ca, v: _permitted(CA.create("C", permitted_ips=v),
                                                                          x509.IPAddress),
                                ("10.0.0.0/8", "fd00::/8"), ("10.0.0.0/8", "fd00::/8")),
}


@pytest.mark.parametrize("parameter", NAME_PARAMETERS)
def test_a_str_is_one_name_and_any_iterable_of_str_is_names(ca: CA, parameter: str) -> None:
    _what, call, (one, two), (first, second) = NAME_PARAMETERS[parameter]
    assert call(ca, one) == [first]  # once [l, o, c, a, l, h, o, s, t]
    assert call(ca, [one, two]) == [first, second]
    assert call(ca, (one, two)) == [first, second]
    assert call(ca, (n for n in (one, two))) == [first, second]


@pytest.mark.parametrize("parameter", NAME_PARAMETERS)
@pytest.mark.parametrize("bad, shown", [(b"localhost", "bytes b'localhost'"), (None, "None"), ([123], "int 123"),
                                        ([b"localhost"], "bytes b'localhost'"), (["ok.example", None], "None"),
                                        (5, "int 5")],
                         ids=["bytes", "None", "[int]", "[bytes]", "[str, None]", "int"])
def test_what_is_not_names_is_a_type_error_naming_it(ca: CA, parameter: str, bad, shown: str) -> None:
    what, call, _names, _expected = NAME_PARAMETERS[parameter]
    with pytest.raises(TypeError, match=f"^{what} must be .*, got {shown}$".replace("(", r"\(")):
        call(ca, bad)


def test_ipaddress_objects_stand_for_their_text(ca: CA) -> None:
    assert _san(ca.issue_server(ipaddress.ip_address("127.0.0.1"))) == ["IP:127.0.0.1"]
    assert _san(ca.issue_server(["localhost", ipaddress.ip_address("::1")])) == ["DNS:localhost", "IP:::1"]
    assert _san(ca.issue_peer([ipaddress.IPv4Address("10.0.0.1")])) == ["IP:10.0.0.1"]
    network = ipaddress.ip_network("10.0.0.0/8")
    assert _permitted(CA.create("C", permitted_ips=network), x509.IPAddress) == ["10.0.0.0/8"]
    assert _permitted(CA.create("C", permitted_ips=[network]), x509.IPAddress) == ["10.0.0.0/8"]
    # Not a name of that kind: refused by the parser of that kind, not as "empty".
    with pytest.raises(InvalidName, match="not a valid email"):
        ca.issue_client("alice", emails=[ipaddress.ip_address("10.0.0.1")])


def test_a_one_str_server_name_is_also_the_subject(ca: CA) -> None:
    issued = ca.issue_server("localhost")
    assert issued.cert.subject.rfc4514_string() == "CN=localhost"
    assert [str(gn.value) for gn in issued.cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value] == ["localhost"]


# --- finding 4: key= gets the key policy CSRs get, and never a CA's key ----------------------------------------
WEAK_KEYS = {
    "rsa-1024": lambda: rsa.generate_private_key(65537, 1024),
    "dsa-2048": lambda: dsa.generate_private_key(2048),
    "secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "x25519": x25519.X25519PrivateKey.generate,
    "x448": x448.X448PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
}


def _signed_before_the_policy(ca: CA, key) -> x509.Certificate:
    """A certificate with ``key`` as a certkit without the policy signed it (to renew it now)."""
    return ca.sign(Request("server", (Identity("dns", "old.example"),), "old.example", key=key)).cert


KEY_ENTRIES = {
    "issue_server": lambda ca, key: ca.issue_server(["k.example"], key=key),
    "issue_peer": lambda ca, key: ca.issue_peer(["k.example"], key=key),
    "issue_client": lambda ca, key: ca.issue_client("k", key=key),
    "renew key=": lambda ca, key: ca.renew(_signed_before_the_policy(ca, key), key=key),
    "renew (key kept)": lambda ca, key: ca.renew(_signed_before_the_policy(ca, key)),
    "CA.create": lambda ca, key: CA.create("weak", key=key),
    "CA.create parent=": lambda ca, key: CA.create("weak", key=key, parent=ca),
}


@pytest.mark.parametrize("entry", KEY_ENTRIES)
@pytest.mark.parametrize("weak", WEAK_KEYS)
def test_weak_or_non_signing_keys_are_refused(ca: CA, entry: str, weak: str) -> None:
    key = WEAK_KEYS[weak]()
    with pytest.raises(CertkitError, match=f"{weak.replace('secp256k1', 'ecdsa-secp256k1')} key, which certkit "
                                           "does not sign: use RSA of at least 2048 bits"):
        KEY_ENTRIES[entry](ca, key)


@pytest.fixture(scope="module")
def chain() -> tuple[CA, CA]:
    root = CA.create("Root")
    return root, CA.create("Inter", parent=root)


CA_KEY_ATTEMPTS = {
    "issue_server, its own key": lambda root, inter: root.issue_server(["x.example"], key=root.key),
    "issue_peer, its own key": lambda root, inter: inter.issue_peer(["x.example"], key=inter.key),
    "issue_client, the parent's key": lambda root, inter: inter.issue_client("x", key=root.key),
    "renew, key kept": lambda root, inter: inter.renew(_signed_before_the_policy(inter, inter.key)),
    "renew key=": lambda root, inter: root.renew(_signed_before_the_policy(root, root.key), key=root.key),
    "sign_csr": lambda root, inter: inter.sign_csr(_csr(root.key), "server"),
    "CA.create, the parent's key": lambda root, inter: CA.create("Copy", parent=root, key=root.key),
}


@pytest.mark.parametrize("attempt", CA_KEY_ATTEMPTS)
def test_the_key_of_a_ca_is_never_a_certificate_key(chain: tuple[CA, CA], attempt: str) -> None:
    with pytest.raises(CertkitError, match="^The key to certify is the key of the CA '(Root|Inter)'; a certificate "
                                           "needs a key of its own"):
        CA_KEY_ATTEMPTS[attempt](*chain)  # once issued: the bundle's privkey.pem was the CA's key
    # Keys of the policy's kinds that are nobody else's are certified.
    key = {"issue_server": rsa.generate_private_key(65537, 2048), "issue_peer": ec.generate_private_key(ec.SECP384R1()),
           "issue_client": ed25519.Ed25519PrivateKey.generate()}.get(attempt.split(",")[0])
    if key is not None:
        assert chain[1].issue_server(["x.example"], key=key).private_key is key


@pytest.mark.parametrize("entry", [e for e in KEY_ENTRIES if e != "renew (key kept)"])
@pytest.mark.parametrize("bad", ["x", b"-----BEGIN PRIVATE KEY-----", "public key"])
def test_what_is_not_a_private_key_is_a_type_error(ca: CA, entry: str, bad) -> None:
    if bad == "public key":
        bad = ec.generate_private_key(ec.SECP256R1()).public_key()
    call = KEY_ENTRIES[entry]
    if entry == "renew key=":
        def call(ca, key):
            return ca.renew(ca.issue_server(["r.example"]).cert, key=key)
    with pytest.raises(TypeError, match=r"^key must be a private key \(cryptography's rsa, ec or ed25519\), got "):
        call(ca, bad)


# --- finding 6: a CA shared by threads gives each certificate its own lifetime ---------------------------------
def test_threads_never_get_each_others_lifetime_with_forced_switches() -> None:
    """The audit's reproduction: every line of CA.leaf_validity yields to the other thread."""
    ca, key, wrong = CA.create("Race"), generate_key("ecdsa-p256"), []

    def tracer(frame, event, arg):
        if frame.f_code.co_name == "leaf_validity" and frame.f_code.co_filename.endswith("ca.py"):
            def local(frame, event, arg):
                if event == "line":
                    time.sleep(0.0005)
                return local
            return local
        return None

    def run(issue, kind: str, want: int) -> None:
        sys.settrace(tracer)
        try:
            for _ in range(100):
                cert = issue().cert
                days = round((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400)
                if days != want:
                    wrong.append((kind, days))
        finally:
            sys.settrace(None)

    threads = [threading.Thread(target=run, args=(lambda: ca.issue_server(["s.example"], key=key), "server", 200)),
               threading.Thread(target=run, args=(lambda: ca.issue_client("alice", key=key, days=30), "client", 30))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(wrong) == Counter()  # once {('client', 200): 28, ('server', 30): 12}


def test_leaf_validity_returns_its_own_answer_when_another_thread_stores_one_meanwhile() -> None:
    """The same race without threads: another answer is stored right after this one (as a thread switch
    at that moment would), and this call must still return its own."""
    base = CA.create("Race")
    stored: list = []

    class Interrupted(CA):
        @property
        def _validity(self):
            return self.__dict__.get("validity")

        @_validity.setter
        def _validity(self, value):
            self.__dict__["validity"] = value
            if value is not None and not stored:
                stored.append(value)
                self.leaf_validity(PROFILES["client"], 30, None, [])  # "the other thread"

    ca = Interrupted(base.cert, base.key)
    not_before, not_after = ca.leaf_validity(PROFILES["server"], None, None, notes := [])
    assert round((not_after - not_before).total_seconds() / 86400) == 200 and notes == []


# --- finding 7: wrong types are refused at the API, in words -----------------------------------------------------
WRONG_TYPES = {
    "key_type=5": (lambda ca: ca.issue_server(["a.example"], key_type=5), TypeError,
                   "^key_type must be a str, one of ecdsa-p256, .*, got int 5$"),
    "key='x'": (lambda ca: ca.issue_server(["a.example"], key="x"), TypeError, "^key must be a private key"),
    "CA.create parent='ca'": (lambda ca: CA.create("x", parent="ca"), TypeError, "^parent must be a CA, got str 'ca'$"),
    "CA.create key='k'": (lambda ca: CA.create("x", key="k"), TypeError,
                          r"^key must be a private key .*got str \(not shown: it may be a secret\)$"),
    "CA.create(5)": (lambda ca: CA.create(5), TypeError, "^The common name must be a str, got int 5$"),
    "CA.create organization=5": (lambda ca: CA.create("x", organization=5), TypeError,
                                 "^The organization must be a str, got int 5$"),
    "CA.create country=49": (lambda ca: CA.create("x", country=49), TypeError, "^country must be a str"),
    "server_context(None)": (lambda ca: ca.server_context(None), TypeError, "^cert must be an IssuedCert .*got None$"),
    "client_context('cert')": (lambda ca: ca.client_context("cert"), TypeError,
                               "^cert must be an IssuedCert .*got str 'cert'$"),
    "configure_trust(None)": (lambda ca: ca.configure_trust(None), TypeError, "^ctx must be an ssl.SSLContext"),
    "renew('x')": (lambda ca: ca.renew("x"), TypeError, "must be an x509.Certificate or an IssuedCert, got str 'x'$"),
    "kind_of('x')": (lambda ca: ca.kind_of("x"), TypeError, "must be an x509.Certificate"),
    "not_before naive": (lambda ca: ca.issue_server(["a.example"], not_before=dt.datetime(2027, 1, 1)),
                         InvalidLifetime, r"^not_before must be timezone-aware \(datetime.now\(datetime.UTC\)\)"),
    "not_before str": (lambda ca: ca.issue_server(["a.example"], not_before="2026-01-01"), TypeError,
                       "^not_before must be a datetime, got str '2026-01-01'$"),
    "CA.create not_before naive": (lambda ca: CA.create("x", not_before=dt.datetime(2020, 1, 1)), InvalidLifetime,
                                   "^not_before must be timezone-aware"),
    "issue_client not_before date": (lambda ca: ca.issue_client("a", not_before=dt.date(2026, 1, 1)), TypeError,
                                     "^not_before must be a datetime, got date"),
    "issue_server(None)": (lambda ca: ca.issue_server(None), TypeError, "^names must be a str or a list of str"),
    "sign_csr(42)": (lambda ca: ca.sign_csr(42, "server"), TypeError, "^The CSR must be PEM or DER bytes"),
}


@pytest.mark.parametrize("call", WRONG_TYPES)
def test_wrong_types_are_refused_where_they_enter(ca: CA, call: str) -> None:
    run, error, message = WRONG_TYPES[call]
    with pytest.raises(error, match=message):
        run(ca)


def test_a_pem_str_or_a_csr_object_is_a_csr(ca: CA) -> None:
    assert _san(ca.sign_csr(CSR.decode("ascii"), "server")) == ["DNS:csr.example"]
    assert _san(ca.sign_csr(x509.load_pem_x509_csr(CSR), "server", extra_names="api")) == ["DNS:csr.example",
                                                                                          "DNS:api"]


def test_an_issued_cert_is_renewed_with_its_key(ca: CA) -> None:
    old = ca.issue_server(["renew.example"])
    new = ca.renew(old)
    assert new.private_key is old.private_key and _san(new) == ["DNS:renew.example"]
    assert ca.renew(old, rekey=True).private_key is not old.private_key


@pytest.fixture
def directory_ca(ca_dir) -> CA:
    return CADirectory(ca_dir).load(PASSPHRASE.encode())


def test_revoke_takes_the_serial_as_an_int_or_as_people_copy_it(directory_ca: CA) -> None:
    ca = directory_ca
    by_int, lower, colons = (ca.issue_server([f"{n}.example"]) for n in ("int", "lower", "colons"))
    assert ca.revoke(by_int.cert.serial_number)["serial"] == by_int.serial_hex  # once OverflowError from SQLite
    assert ca.revoke(lower.serial_hex.lower())["serial"] == lower.serial_hex  # once "No certificate with serial"
    text = colons.serial_hex.lower()
    assert ca.revoke(":".join(text[i:i + 2] for i in range(0, len(text), 2)))["serial"] == colons.serial_hex
    assert {r["serial"] for r in ca.inventory.query(status="revoked")} == {by_int.serial_hex, lower.serial_hex,
                                                                           colons.serial_hex}
    for bad, error, message in ((None, TypeError, "^serial must be a str of hex digits or an int, got None$"),
                                ("zz-top", CertkitError, "'zz-top' is not a serial number"),
                                (0, CertkitError, "0 is not a serial number")):
        with pytest.raises(error, match=message):
            ca.revoke(bad)
    with pytest.raises(InvalidLifetime, match="^when must be timezone-aware"):
        ca.revoke(ca.issue_server(["when.example"]).serial_hex, when=dt.datetime(2026, 1, 1))


# --- finding 8: messages that say what is wrong -----------------------------------------------------------------
def test_days_of_the_wrong_type_say_so(ca: CA) -> None:
    for days, shown in (("30", "str '30'"), (30.0, "float 30.0"), (True, "bool True")):
        with pytest.raises(TypeError, match=rf"^days must be an int \(a number of days\), got {shown}$"):
            ca.issue_server(["a.example"], days=days)  # once "30 days is not possible; give 1 to 36500"
    with pytest.raises(TypeError, match="^days must be an int"):
        CA.create("x", days="30")


def test_a_name_that_is_not_a_str_is_not_called_empty(ca: CA) -> None:
    for bad, shown in ((123, "int 123"), (b"localhost", "bytes b'localhost'")):
        with pytest.raises(TypeError, match=f"^names must be str, got {shown}$"):  # once "An empty name"
            ca.issue_server([bad])
    with pytest.raises(TypeError, match="^A client certificate's name must be a str, got int 42$"):
        ca.issue_client(42)  # once "needs a non-empty name"
    with pytest.raises(InvalidName, match="needs a non-empty name"):
        ca.issue_client(" ")


def test_a_start_after_the_ca_expires_is_said_as_such(ca: CA) -> None:
    expected = (r"^The requested validity starts on 2100-01-01 00:00:00 UTC, after (the|the parent) CA 'Inputs CA' "
                r"expires \(20")
    for call in (lambda: ca.issue_server(["a.example"], not_before=LATE),  # once "ends ... before the CA became valid"
                 lambda: ca.issue_server(["a.example"], not_before=LATE, days=30),  # once "can live at most 0 days"
                 lambda: ca.issue_client("a", not_before=LATE.astimezone(dt.timezone(dt.timedelta(hours=2)))),
                 lambda: CA.create("late", parent=ca, days=30, not_before=LATE)):
        with pytest.raises(InvalidLifetime, match=expected):
            call()


def test_an_empty_ca_name_is_refused_as_a_blank_one() -> None:
    for name in ("", " "):
        with pytest.raises(InvalidName, match="is blank; a common name needs at least one visible character"):
            CA.create(name)  # "" once became "certkit CA user@host"
    assert CA.create().common_name.startswith("certkit CA ")  # no name given: the default


def test_unlock_takes_a_str_passphrase(ca_dir) -> None:
    ca = CADirectory(ca_dir).open()
    with pytest.raises(TypeError, match="^The passphrase must be bytes, a str or a callable returning one, got int"):
        ca.unlock(42)
    ca.unlock(PASSPHRASE)  # once "cannot be read: argument 'password': Cannot convert..."
    assert ca.issue_server(["unlocked.example"]).serial_hex
    other = CADirectory(ca_dir).open()
    other.unlock(lambda: PASSPHRASE)
    assert other.key is not None


def test_a_ca_directory_that_is_a_file_is_said_to_be_one(tmp_path) -> None:
    (tmp_path / "file").write_text("not a CA\n")
    with pytest.raises(CertkitError, match="file: it is a file, not a folder"):  # once "the folder does not exist"
        CADirectory(tmp_path / "file").open()
    with pytest.raises(CertkitError, match="the folder does not exist"):
        CADirectory(tmp_path / "missing").open()
