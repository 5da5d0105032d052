"""What the docs say about other tools is what those tools do.

docs/mtls.md has one table ("What other tools issue") of the extendedKeyUsage
each tool puts on a leaf certificate. Every row marked *run* is checked here
against the tool itself: the command in the row is run in a temporary folder
(mkcert and cfssl are Debian packages, trustme a test extra) and the EKU of
the certificate it wrote must be the one documented, for the version the
table names. Rows for tools not installable here must name the source that
sets the usage.

Every other sentence in README.md and docs/ that names one of these tools is
listed in :data:`PROSE` with the rows it rests on (or a check of its own), so
a new claim cannot slip in unchecked: :func:`test_every_mention_is_a_checked_claim`
fails on any mention not listed. docs/performance.md is left out: its numbers
are measurements, produced by benchmarks/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env, require, run_certkit

TABLE_PAGE = REPO / "docs" / "mtls.md"
TABLE_HEADING = "## What other tools issue"
TOOLS = re.compile(r"\b(mkcert|cfssl|trustme|minica|certstrap|Vault|smallstep|step-ca|step's)\b")
NOT_CLAIMS = {"performance.md": "timings measured by benchmarks/, not statements of what a tool issues",
              "architecture.md": "the shape of other codebases certkit's code follows, not what a tool issues",
              "formats.md": "the fields cfssljson reads from a JSON line: tests/test_fleet_formats.py runs cfssljson"}


def _squash(text: str) -> str:
    return " ".join(text.split())


# --- the table --------------------------------------------------------------------------------
def table_rows() -> list[dict[str, str]]:
    text = TABLE_PAGE.read_text()
    assert TABLE_HEADING in text, f"{TABLE_PAGE.name} lost its section {TABLE_HEADING!r}"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(dict(zip(head, cells, strict=True)))
    return rows


def _command(row: dict[str, str]) -> str:
    """The command(s) in a row: its leading `code` spans, joined by " / "; else the cell's words."""
    cell = row["what you run"]
    spans = re.match(r"`([^`]+)`(?:\s*/\s*`([^`]+)`)?", cell)
    return " / ".join(g for g in spans.groups() if g) if spans else cell


def _ekus(pem: bytes) -> set[str]:
    from cryptography import x509

    from certkit.vocabulary import eku_name

    cert = x509.load_pem_x509_certificate(pem)
    return {eku_name(o) for o in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=True, **kwargs)


def _mkcert(command: str, tmp: Path) -> tuple[str, set[str]]:
    require("mkcert")
    env = dict(os.environ, CAROOT=str(tmp / "caroot"), HOME=str(tmp))  # never the user's CA
    version = _run(["mkcert", "-version"], env=env).stdout.strip().lstrip("v")
    args = command.split()[1:]
    _run(["mkcert", "-cert-file", str(tmp / "leaf.pem"), "-key-file", str(tmp / "leaf-key.pem"), *args],
         env=env, cwd=tmp)
    return version, _ekus((tmp / "leaf.pem").read_bytes())


def _cfssl(command: str, tmp: Path) -> tuple[str, set[str]]:
    require("cfssl")
    require("cfssljson")
    version = re.search(r"Version: (\S+)", _run(["cfssl", "version"]).stdout).group(1)
    (tmp / "ca.json").write_text(json.dumps({"CN": "claims test CA", "key": {"algo": "ecdsa", "size": 256}}))
    (tmp / "leaf.json").write_text(json.dumps({"CN": "localhost", "hosts": ["localhost"],
                                               "key": {"algo": "ecdsa", "size": 256}}))
    ca = _run(["cfssl", "gencert", "-initca", "ca.json"], cwd=tmp).stdout
    _run(["cfssljson", "-bare", "ca"], cwd=tmp, input=ca)
    leaf = _run(command.split(), cwd=tmp).stdout  # exactly as documented: no -config
    _run(["cfssljson", "-bare", "leaf"], cwd=tmp, input=leaf)
    return version, _ekus((tmp / "leaf.pem").read_bytes())


def _trustme(command: str, tmp: Path) -> tuple[str, set[str]]:
    trustme = pytest.importorskip("trustme")
    from importlib.metadata import version

    name = re.fullmatch(r'trustme\.CA\(\)\.issue_cert\("([^"]+)"\)', command).group(1)
    leaf = trustme.CA().issue_cert(name)
    return version("trustme"), _ekus(leaf.cert_chain_pems[0].bytes())


def _certkit(command: str, tmp: Path) -> tuple[str, set[str]]:
    from certkit import __version__

    env = certkit_env(CERTKIT_CA_DIR=str(tmp / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "claims test CA", env=env, check=True)
    found = []
    for one in command.split(" / "):
        args = one.split()[1:]
        run_certkit(*args, env=env, cwd=tmp, check=True)
        found.append(", ".join(sorted(_ekus((tmp / args[1] / "cert.pem").read_bytes()))))
    return __version__, found


RUNNERS = {"mkcert": _mkcert, "cfssl": _cfssl, "trustme": _trustme, "certkit": _certkit}


def _rows_run() -> list[dict[str, str]]:
    return [r for r in table_rows() if r["checked"].startswith("run") or r["tool"] == "certkit"]


@pytest.mark.parametrize("row", _rows_run(), ids=lambda r: _command(r))
def test_table_row_matches_the_tool(row: dict[str, str], tmp_path: Path):
    tool = row["tool"].split()[0]
    assert tool in RUNNERS, f"no way to run {row['tool']!r} here: add a runner, or cite the source instead"
    version, actual = RUNNERS[tool](_command(row), tmp_path)
    documented = row["extendedKeyUsage of the leaf"]
    if tool == "certkit":
        assert actual == [p.strip() for p in documented.split("/")], (row, actual)
        return
    assert actual == {u.strip() for u in documented.split(",")}, f"{row['tool']}: `{_command(row)}` gives {actual}"
    said = re.search(r"\d+(\.\d+)+", row["tool"]).group(0)
    assert version == said or version.startswith(said + "."), \
        f"the table speaks of {row['tool']}, but {version} is installed: check again and update the row"


def test_rows_not_run_cite_their_source():
    for row in table_rows():
        if row["checked"].startswith("run") or row["tool"] == "certkit":
            continue
        assert row["checked"].startswith("source: "), row
        # owner/repo and a file in it, so a reader can look
        assert re.search(r"[\w-]+/[\w.-]+ `[\w/.-]+\.go`", row["checked"]), row


def test_the_table_says_what_the_issue_found():
    """The facts this work started from, in the table: mkcert's server certificates are serverAuth
    only, mkcert -client certificates for a host have both; cfssl, trustme and step give both."""
    by_command = {_command(r): r["extendedKeyUsage of the leaf"] for r in table_rows()}
    assert by_command["mkcert localhost"] == "serverAuth"
    assert set(by_command["mkcert -client alice.example"].split(", ")) == {"clientAuth", "serverAuth"}
    tools = {r["tool"].split()[0]: r["extendedKeyUsage of the leaf"] for r in table_rows()}
    for tool in ("cfssl", "trustme", "step-ca", "minica", "Vault", "certstrap"):
        assert {"serverAuth", "clientAuth"} <= set(tools[tool].split(", ")), tool


# --- the sentences ---------------------------------------------------------------------------------
def _mkcert_per_user_dir(tmp: Path) -> None:
    """init-ca.md: certkit keeps its CA in a per-user data directory 'as mkcert does'."""
    require("mkcert")
    env = {k: v for k, v in os.environ.items() if k not in ("CAROOT", "XDG_DATA_HOME")} | {"HOME": str(tmp)}
    assert _run(["mkcert", "-CAROOT"], env=env).stdout.strip() == str(tmp / ".local" / "share" / "mkcert")


# (page, sentence as written, table commands/tools it rests on, or a check of its own)
PROSE = [
    ("README.md",
     "Many tools blur it: cfssl's default signing profile, trustme, minica, certstrap, step's default leaf "
     "template and Vault's default role put both on every certificate; mkcert gives a server certificate "
     "`serverAuth` only, but its `-client` certificates for a host name carry both",
     ["cfssl", "trustme", "minica", "certstrap", "step-ca", "Vault", "mkcert localhost",
      "mkcert -client alice.example"]),
    ("docs/mtls.md",
     "A certificate with both usages (what cfssl's default profile, trustme and `mkcert -client` issue; see "
     "[below](#what-other-tools-issue)) would have been let in as a client",
     ["cfssl", "trustme", "mkcert -client alice.example"]),
    ("docs/init-ca.md", "so `certkit issue-server` works from any folder, as mkcert does.", _mkcert_per_user_dir),
    ("docs/library.md",
     "enough to give a test suite real certificates, as trustme does, but with certkit's strict purposes: a server "
     "certificate carries `serverAuth` only, a client certificate `clientAuth` only",
     ["trustme"]),
]


@pytest.mark.parametrize("page, sentence, rests_on", PROSE, ids=[p[0] for p in PROSE])
def test_sentence_rests_on_checked_facts(page: str, sentence: str, rests_on, tmp_path: Path):
    assert _squash(sentence) in _squash((REPO / page).read_text()), f"{page} no longer says: {sentence}"
    if callable(rests_on):
        rests_on(tmp_path)
        return
    rows = table_rows()
    known = {_command(r) for r in rows} | {r["tool"].split()[0] for r in rows}
    assert set(rests_on) <= known, set(rests_on) - known
    both = {"serverAuth", "clientAuth"}
    for key in rests_on:
        row = next(r for r in rows if key in (_command(r), r["tool"].split()[0]))
        usages = {u.strip() for u in row["extendedKeyUsage of the leaf"].split(",")}
        # The sentences say "both" of every tool but mkcert's plain server certificate.
        assert (usages == {"serverAuth"}) if key == "mkcert localhost" else both <= usages, (key, usages)


def test_every_mention_is_a_checked_claim():
    """Any sentence naming one of these tools is in the table's section or in PROSE."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    stray = []
    for page in pages:
        if page.name in NOT_CLAIMS:
            continue
        # A package list names tools to install, it claims nothing about what they issue.
        text = re.sub(r"`apt-get install [^`]*`", "", page.read_text())
        if page == TABLE_PAGE:
            head, _, rest = text.partition(TABLE_HEADING)
            text = head + "\n## " + rest.split("\n## ", 1)[1] if "\n## " in rest else head
        for sentence in PROSE:
            if REPO / sentence[0] == page:
                text = _squash(text).replace(_squash(sentence[1]), "")
        for match in TOOLS.finditer(text):
            stray.append(f"{page.relative_to(REPO)}: ...{text[max(0, match.start() - 60):match.end() + 60]}...")
    assert not stray, "claims about other tools that no test checks:\n" + "\n".join(stray)
