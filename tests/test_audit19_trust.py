"""The nineteenth round's trust findings, each as a class, against real JDKs (keytool, a JSSE client whose trust store
is the JDK's default cacerts), never the machine's own stores:

1. A store changed by another program between certkit's read and its write. ``trust install|uninstall --java`` copied
   the JDK's cacerts, had keytool change the copy, and put the copy in place whole; a change another program made
   to cacerts meanwhile (keytool run by hand, Debian's ca-certificates-java hook run by apt, a configuration tool:
   none takes certkit's turn) was undone in silence: a CA it added was gone again (Java programs refused its
   servers), one it deleted (a compromised CA taken out) was trusted again, and certkit said "added"/"removed".
   certkit now puts its copy in place only if cacerts still holds what it copied; otherwise it makes its change
   again on a new copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from test_trust import _ca, _java_get, java_client, pki, server, untrusted  # noqa: F401

from certkit.trust import Anchor

from conftest import certkit_env, require
from trust_helpers import keytool_listing, private_java_home


# --- 1: a store changed by another program between certkit's read and its write ----------------------------------
def _paused_trust(action: str, ca: Path, env: dict[str, str], marker: Path) -> subprocess.Popen:
    """``certkit trust ACTION --java`` stopped with its changed copy of cacerts beside it, not yet in place."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "trust", action, "--java", "--ca-dir", ca],
                            env={**env, "CERTKIT_TEST_PAUSE_AT": "staged", "CERTKIT_TEST_PAUSE_FILE": str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "certkit did not reach its pause within 120 s"
        time.sleep(0.05)
    return proc


def _let_go(proc: subprocess.Popen, marker: Path) -> tuple[str, str, int]:
    """Let the paused certkit go on; (its output, how many times it paused again: each time it had made its change
    on a new copy of cacerts, found the first one stale)."""
    marker.unlink()
    again, deadline = 0, time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            again += 1
            marker.unlink()
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return out, err, again


def test_a_java_keystore_changed_by_another_program_meanwhile_keeps_that_change(
        pki, server: int, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    keytool = str(java_home / "bin/keytool")
    url = f"https://localhost:{server}/"
    ca = _ca(tmp_path, "Dev CA", "--permit-dns", "home.arpa")
    stem = Anchor.from_ca_dir(ca).file_stem
    home, marker = tmp_path / "home", tmp_path / "paused"
    home.mkdir()
    env = certkit_env(HOME=str(home), JAVA_HOME=str(java_home),
                      PATH=f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert untrusted(_java_get(java_home, java_client, url).stdout)

    # install: an administrator adds the company's CA (the one the test server's chain leads to) by hand meanwhile
    proc = _paused_trust("install", ca, env, marker)
    try:
        subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "company-ca", "-file", pki.root / "ca.pem",
                        "-keystore", cacerts, "-storepass", "changeit"], check=True, capture_output=True, timeout=120)
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    out, err, again = _let_go(proc, marker)
    assert proc.returncode == 0 and "added    java" in out and again == 1, (out + err, again)
    assert {"company-ca", stem} <= keytool_listing(cacerts, keytool).keys()
    got = _java_get(java_home, java_client, url)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # the company's CA is still trusted

    # uninstall: the company's CA is taken out by hand (its key leaked) meanwhile
    proc = _paused_trust("uninstall", ca, env, marker)
    try:
        subprocess.run([keytool, "-delete", "-alias", "company-ca", "-keystore", cacerts, "-storepass", "changeit"],
                       check=True, capture_output=True, timeout=120)
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    out, err, again = _let_go(proc, marker)
    assert proc.returncode == 0 and "removed  java" in out and again == 1, (out + err, again)
    assert not {"company-ca", stem} & keytool_listing(cacerts, keytool).keys()
    assert untrusted(_java_get(java_home, java_client, url).stdout)  # not trusted again behind the user's back
    assert not [p for p in cacerts.parent.iterdir() if p.name != "cacerts"]  # no copy left beside it
