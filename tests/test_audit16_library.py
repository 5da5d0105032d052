"""Audit round sixteen, the library as trustme's users use it (docs/library.md).

1. ``from certkit import CA`` (the import docs/library.md and the package docstring teach) gave mypy
   and pyright ``Any``: the lazy module ``__getattr__`` had no annotation, so ``py.typed`` checked nothing
   through it. ``CA.create("x").issue_server(5)`` passed ``mypy --strict``. The package now names its
   classes for type checkers (without importing them at run time), so mypy sees the real signatures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# --- finding 1: the documented import is typed ----------------------------------------------------------
def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    (tmp_path / "user.py").write_text(textwrap.dedent(source))
    # certkit is read from this checkout (an editable install is a path hook mypy cannot follow); its own
    # code is not what is checked here, the user's script is.
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n[mypy-certkit.*]\nignore_errors = True\n")
    env = dict(os.environ, MYPYPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
                           "--cache-dir", os.devnull, "--show-error-codes", "user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_documented_import_is_checked_by_mypy(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, """
        import ssl

        from certkit import CA, CADirectory, CertkitError, IssuedCert

        reveal_type(CA)
        ca = CA.create("Test CA")
        server: IssuedCert = ca.issue_server(["localhost", "127.0.0.1"])
        context: ssl.SSLContext = ca.server_context(server)
        reveal_type(server.private_key_pem)
        reveal_type(CADirectory("ca").open())
        reveal_type(CertkitError("x"))
        ca.issue_server(5)
        wrong: str = ca.client_context()
    """)
    out = checked.stdout
    assert 'Revealed type is "def (cert:' in out and "-> certkit.ca.CA" in out, out
    assert 'Revealed type is "bytes | None"' in out, out
    assert 'Revealed type is "certkit.ca.CA"' in out, out
    assert 'Revealed type is "certkit.errors.CertkitError"' in out, out
    assert 'Argument 1 to "issue_server" of "CA" has incompatible type "int"' in out, out
    assert 'expression has type "SSLContext", variable has type "str"' in out, out
    assert "Found 2 errors in 1 file" in out, out


def test_importing_certkit_stays_lazy() -> None:
    import certkit

    assert set(certkit.__all__) == {"__version__", *certkit._LAZY}
    started = subprocess.run([sys.executable, "-c", "import sys, certkit; print(sorted(m for m in sys.modules "
                              "if m.startswith(('certkit.', 'cryptography'))))"],
                             capture_output=True, text=True, timeout=120, check=True)
    assert started.stdout.strip() == "[]", started.stdout
