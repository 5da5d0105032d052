"""serve's page when the server could not read its own certificate back (``ServerFacts.certificate`` None):
the server card's time and purpose lines say so. serve_page.py defined ``_UNREAD`` twice, the second (the client
card's paragraph on an inventory that cannot be read) replacing the first, so those two lines showed that whole
paragraph ("The handshake accepted this certificate ...; restore the inventory from a backup") inside a list item
of the server's own certificate."""

from __future__ import annotations

from certkit.serve_page import ServerFacts, Visit, render_page


def _server_card(page: str) -> str:
    return page[page.index('id="server-card"'):page.index('id="client-card"')]


def test_a_server_certificate_not_read_back_is_said_so_on_its_own_card():
    card = _server_card(render_page(Visit(None, [], True), ServerFacts(None, "certkit test root"), "localhost"))
    not_known = " (not known here: this server could not read its certificate back)"
    assert f"<li>valid now, not expired{not_known}</li>" in card, card
    assert f"<li>its extendedKeyUsage includes <code>serverAuth</code>{not_known}</li>" in card, card
    assert "The handshake accepted this certificate" not in card and "restore the inventory" not in card, card
