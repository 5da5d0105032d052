"""ACME contacts with %-escapes, against a running ``certkit acme serve`` (real JWS requests): a mailto: URL's
address is %-decoded (RFC 6068) before it is judged, so ``mailto:a%40b@acme.test`` (which a mail server reads as
``a@b@acme.test``) is ``invalidContact``, where it was taken as it was; an escape that is fine is stored decoded."""

from __future__ import annotations

import pytest

from acme_client import AcmeError, Client
from acme_helpers import serving


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme-contacts"), ("c1.acme.test",))


@pytest.mark.parametrize("contact, said", [
    ("mailto:a%40b@acme.test", "its %-escapes decoded: 'a@b@acme.test'"),
    ("mailto:ops%20team@acme.test", "its %-escapes decoded: 'ops team@acme.test'"),
    ("mailto:ops@acme.test%3Fsubject=hi", "its %-escapes decoded: 'ops@acme.test?subject=hi'"),
    ("mailto:ops%zz@acme.test", "a '%' that starts no %-escape"),
    ("mailto:ops%4@acme.test", "a '%' that starts no %-escape"),
    ("mailto:ops%ff@acme.test", "not UTF-8"),
])
def test_a_contact_whose_decoded_address_is_not_one_is_refused(setup, contact, said) -> None:
    for where in ("newAccount", "update"):
        with pytest.raises(AcmeError) as refused:
            if where == "newAccount":
                Client(setup.server.directory, setup.root).register(contact=[contact])
            else:
                client = Client(setup.server.directory, setup.root)
                assert client.register(contact=["mailto:ops@acme.test"]).status_code == 201
                client.post(client.kid, {"contact": [contact]})
        assert refused.value.type == "invalidContact", (where, refused.value.problem)
        assert said in refused.value.problem["detail"], refused.value.problem


def test_an_escaped_address_that_is_one_is_stored_decoded(setup) -> None:
    c = Client(setup.server.directory, setup.root)
    created = c.register(contact=["mailto:ops%2Bacme@acme.test", "mailto:ops+acme@acme.test", "mailto:dev@acme.test"])
    assert created.status_code == 201, created.text
    assert created.json()["contact"] == ["mailto:ops+acme@acme.test", "mailto:dev@acme.test"]  # one address, once
    assert c.get(c.kid)["contact"] == ["mailto:ops+acme@acme.test", "mailto:dev@acme.test"]
