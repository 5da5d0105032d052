"""Audit spec7, findings 2 and 4: what the pages say about output and options is what certkit does.

- docs/inspect.md "JSON" lists the keys of a certificate's, a CSR's and a CRL's item (and of a
  revoked entry and a private key): each list is read from the page and compared with real
  ``certkit inspect --json`` output, key for key and in order.
- Every page's synopsis block (the plain fenced block whose lines start ``certkit CMD``) names every
  option ``certkit CMD --help`` lists, and none it lacks (renew.md had left four out).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_docs_options import PAGES, _commands

from conftest import REPO, run_certkit
from docs_runner import without_asides

INSPECT_PAGE = REPO / "docs" / "inspect.md"


def _ticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def documented_item_keys() -> dict[str, list[str]]:
    """The keys inspect.md's JSON section gives each kind of item, from its bullets
    ``- a certificate's (`type` `certificate`): `file`, ...``, in the page's order."""
    section = INSPECT_PAGE.read_text().split("\n## JSON\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for bullet in re.findall(r"^- a (?:certificate|CSR|CRL)'s .*?(?=^- |^\n)", section, re.M | re.S):
        kind = _ticked(bullet.split(")", 1)[0])[1]  # the item's `type`, in the bullet's first aside
        found[kind] = _ticked(without_asides(bullet).split(":", 1)[1])
    return found


def _aside_after(text: str, key: str) -> str:
    """The parenthesized aside that follows `key` in ``text``."""
    return text.split(f"`{key}` (", 1)[1].split(")", 1)[0]


@pytest.fixture
def materials(tmp_path: Path, ca_dir: Path, ca_env: dict[str, str]) -> dict[str, Path]:
    """A server certificate (with its key), a CSR and a CRL that lists one revoked certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    run_certkit("issue-server", "gone.test", "--out", tmp_path / "gone", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "gone", "--reason", "superseded", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-9")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("device-9.test")]), critical=False)
           .sign(key, hashes.SHA256()))
    (tmp_path / "d9.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return {"certificate": tmp_path / "web", "csr": tmp_path / "d9.csr", "crl": tmp_path / "crl.pem"}


def _inspect(path: Path, env: dict[str, str]) -> dict:
    proc = run_certkit("inspect", path, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_inspect_page_lists_each_items_keys() -> None:
    assert set(documented_item_keys()) == {"certificate", "csr", "crl"}


@pytest.mark.parametrize("kind", ["certificate", "csr", "crl"])
def test_inspect_json_items_have_the_documented_keys(kind: str, materials: dict[str, Path],
                                                     ca_env: dict[str, str]) -> None:
    report = _inspect(materials[kind], ca_env)
    assert list(report) == ["source", "items", "private_keys", "unreadable"]  # audit x5098/badinput8 #7
    item = next(i for i in report["items"] if i["type"] == kind)
    assert list(item) == documented_item_keys()[kind], f"docs/inspect.md's keys of a {kind} item"


def test_inspect_json_nested_keys_are_documented(materials: dict[str, Path], ca_env: dict[str, str]) -> None:
    """A CRL's revoked entries and the private keys have the keys the page gives them."""
    section = INSPECT_PAGE.read_text().split("\n## JSON\n", 1)[1]
    crl = _inspect(materials["crl"], ca_env)["items"][0]
    assert crl["revoked"] and list(crl["revoked"][0]) == _ticked(_aside_after(section, "revoked"))
    keys = _inspect(materials["certificate"], ca_env)["private_keys"]
    documented = _ticked(without_asides(section.split("Each of `private_keys` has", 1)[1].split("\n\n")[0]))
    assert keys and list(keys[0]) == documented


# --- synopses ---------------------------------------------------------------------------------------
def _synopsis_options(path: tuple[str, ...]) -> set[str] | None:
    """The options the page's synopsis block names on its ``certkit CMD`` lines (and their
    continuation lines); None for a page without a synopsis of CMD."""
    text = (REPO / "docs" / PAGES[path]).read_text()
    prefix = "certkit " + " ".join(path)
    for block in re.findall(r"^```\n(.*?)^```", text, re.S | re.M):
        lines = block.splitlines()
        if not any(line == prefix or line.startswith(prefix + " ") for line in lines):
            continue
        options, current = set(), False
        for line in lines:
            if line.startswith("certkit "):
                current = line == prefix or line.startswith(prefix + " ")
            if current:
                options |= set(re.findall(r"--[a-z0-9][a-z0-9-]*", line))
        return options
    return None


SYNOPSES = [path for path in sorted(PAGES) if _synopsis_options(path) is not None]


def test_the_pages_with_a_synopsis() -> None:
    """The pages that have one (a page that gains one is checked as well; renew.md must keep its)."""
    assert ("renew",) in SYNOPSES and len(SYNOPSES) >= 9, SYNOPSES


@pytest.mark.parametrize("path", SYNOPSES, ids=" ".join)
def test_synopsis_names_every_option_of_help(path: tuple[str, ...]) -> None:
    shown = _synopsis_options(path)
    command = _commands()[path]
    missing, known = [], set()
    for param in command.params:
        names = {o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")} - {"--help"}
        known |= names
        if names and not getattr(param, "hidden", False) and not names & shown:
            missing.append("/".join(sorted(names)))
    page = f"docs/{PAGES[path]}"
    assert not missing, f"{page}'s synopsis leaves out {', '.join(missing)} of certkit {' '.join(path)}"
    assert shown <= known, f"{page}'s synopsis names {', '.join(sorted(shown - known))}, which --help lacks"
