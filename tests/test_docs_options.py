"""Every option a command takes is on that command's page in docs/ (a synopsis, a table or the prose):
the pages are where people look, and an option only --help knows of is one they never find."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

PAGES = {
    ("acme", "serve"): "acme.md", ("check",): "check.md", ("crl",): "crl.md", ("demo",): "demo.md",
    ("export-p12",): "pkcs12.md", ("init-ca",): "init-ca.md", ("inspect",): "inspect.md",
    ("inventory", "migrate"): "team.md", ("issue-batch",): "issue-batch.md", ("issue-client",): "issue-client.md",
    ("issue-peer",): "issue-peer.md", ("issue-server",): "issue-server.md", ("list",): "list.md",
    ("probe",): "probe.md", ("renew",): "renew.md", ("revoke",): "revoke.md", ("serve",): "serve.md",
    ("sign-csr",): "sign-csr.md", ("verify",): "verify.md", ("trust", "install"): "trust.md",
    ("trust", "status"): "trust.md", ("trust", "uninstall"): "trust.md",
}


def _commands():
    import click

    from certkit.cli import main

    def walk(group, path):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # the command line loads its commands lazily
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                yield from walk(command, (*path, name))
            else:
                yield (*path, name), command

    return dict(walk(main, ()))


def test_every_command_has_a_page() -> None:
    assert set(_commands()) == set(PAGES)


@pytest.mark.parametrize("path", sorted(PAGES), ids=" ".join)
def test_every_option_is_on_the_commands_page(path: tuple[str, ...]) -> None:
    command = _commands()[path]
    text = (REPO / "docs" / PAGES[path]).read_text()
    missing = []
    for param in command.params:
        if getattr(param, "hidden", False):  # for tests only (trust's --platform), not in --help either
            continue
        names = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
        if names and not any(re.search(re.escape(n) + r"(?![a-z0-9-])", text) for n in names):
            missing.append("/".join(names))
    assert not missing, f"docs/{PAGES[path]} never names {', '.join(missing)} of certkit {' '.join(path)}"
