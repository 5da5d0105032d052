"""certkit's pytest plugin: a CA, a server certificate and a client certificate as fixtures.

Registered through the ``pytest11`` entry point, so it is there wherever certkit
is installed and nowhere else. Each fixture is built in memory (no CA directory,
no inventory, no passphrase) with certkit's strict purposes: the server
certificate carries serverAuth only, the client certificate clientAuth only.

    def test_mtls(certkit_ca, certkit_server_cert, certkit_client_cert):
        server_ctx = certkit_ca.server_context(certkit_server_cert)   # requires a client of the CA
        client_ctx = certkit_ca.client_context(certkit_client_cert)   # trusts the CA, presents the client
        ...

The CA lives for the whole session (creating one costs a key generation); the
certificates are issued per test, so a test may write or change them freely.
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
def certkit_ca() -> "CA":
    """A root CA for the test session, in memory."""
    from certkit.ca import CA

    return CA.create("certkit pytest CA")


@pytest.fixture
def certkit_server_cert(certkit_ca: "CA") -> "IssuedCert":
    """A server certificate (serverAuth only) for localhost, 127.0.0.1 and ::1."""
    return certkit_ca.issue_server(SERVER_NAMES)


@pytest.fixture
def certkit_client_cert(certkit_ca: "CA") -> "IssuedCert":
    """A client certificate (clientAuth only) whose subject CN is ``pytest client``."""
    return certkit_ca.issue_client(CLIENT_NAME)
