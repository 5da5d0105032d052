"""certkit's pytest plugin: a CA, a server certificate and a client certificate as fixtures.

Registered through the ``pytest11`` entry point, so it is there wherever certkit
is installed and nowhere else. Each fixture is built in memory (no CA directory,
no inventory, no passphrase) with certkit's strict purposes: the server
certificate carries serverAuth only, the client certificate clientAuth only.

    def test_mtls(certkit_ca, certkit_server_cert, certkit_client_cert):
        server_ctx = certkit_ca.server_context(certkit_server_cert)   # requires a client of the CA
        client_ctx = certkit_ca.client_context(certkit_client_cert)   # trusts the CA, presents the client
        ...

The CA's certificate and key are made once per session (creating them costs a
key generation; under ``pytest -n``, once per worker). Each test gets its own
``certkit_ca`` object over them, so what a test changes on it (its warnings,
an inventory attached, a parent replaced) is gone for the next test; the
certificates are issued per test, so a test may write or change them freely.
A fixture of a wider scope uses ``certkit_session_ca``, the one shared object
(leave it unchanged).

The server certificate's one single-label name, ``localhost``, is pkilint's one
ERROR finding (``pkix.invalid_domain_name_syntax``): pkilint checks DNS names
with a web-domain validator that wants a dot, where RFC 5280 asks for RFC 1034's
preferred name syntax, which a single label meets (docs/library.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert

# What a local test server answers to: the names a client types for it.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
CLIENT_NAME = "pytest client"


@pytest.fixture(scope="session")
def certkit_session_ca() -> "CA":
    """The root CA of the test session, in memory: one object for every test, for fixtures of a
    wider scope than a test's. Leave it unchanged; a test changes its own ``certkit_ca``."""
    from certkit.ca import CA

    return CA.create("certkit pytest CA")


@pytest.fixture
def certkit_ca(certkit_session_ca: "CA") -> "CA":
    """The session's root CA, in memory, as an object of this test's own: the same certificate and
    key (immutable) as every test's, nothing else shared."""
    from certkit.ca import CA

    return CA(certkit_session_ca.cert, certkit_session_ca.key, certkit_session_ca.parents)


@pytest.fixture
def certkit_server_cert(certkit_ca: "CA") -> "IssuedCert":
    """A server certificate (serverAuth only) for localhost, 127.0.0.1 and ::1."""
    return certkit_ca.issue_server(SERVER_NAMES)


@pytest.fixture
def certkit_client_cert(certkit_ca: "CA") -> "IssuedCert":
    """A client certificate (clientAuth only) whose subject CN is ``pytest client``."""
    return certkit_ca.issue_client(CLIENT_NAME)
