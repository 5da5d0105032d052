"""macOS and Windows: certkit edits no store there (that code could not be tested here);
:func:`manual_steps` gives the exact commands instead, and :func:`platform_name` names the platform."""

from __future__ import annotations

import shlex
import sys

from certkit.text import shown
from certkit.trust.anchor import Anchor
from certkit.trust.java import JAVA_STOREPASS
from certkit.trust.store import TrustError


def manual_steps(anchor: Anchor, action: str, platform: str, pem_path: str) -> list[str]:
    """The commands that ``action`` (install, uninstall, status) takes on ``platform`` (darwin or
    win32), for the root certificate saved at ``pem_path``. certkit prints them; it does not run them."""
    pem = shlex.quote(pem_path) if platform == "darwin" else f'"{pem_path}"'
    java = {
        "install": f"keytool -importcert -cacerts -noprompt -alias {anchor.file_stem} -file {pem} "
                   f"-storepass {JAVA_STOREPASS}",
        "uninstall": f"keytool -delete -cacerts -alias {anchor.file_stem} -storepass {JAVA_STOREPASS}",
        "status": f"keytool -list -cacerts -alias {anchor.file_stem} -storepass {JAVA_STOREPASS}",
    }[action]
    if platform == "darwin":
        keychain = "/Library/Keychains/System.keychain"
        system = {
            "install": [f"sudo security add-trusted-cert -d -r trustRoot -k {keychain} {pem}"],
            "uninstall": [f"sudo security remove-trusted-cert -d {pem}",
                          f"sudo security delete-certificate -Z {anchor.sha1} {keychain}"],
            "status": [f"security find-certificate -a -Z {keychain} | grep {anchor.sha1}",
                       f"security verify-cert -c {pem}"],
        }[action]
    elif platform == "win32":
        system = {
            "install": [f"certutil -user -addstore Root {pem}"],
            "uninstall": [f"certutil -user -delstore Root {anchor.sha1}"],
            "status": [f"certutil -user -verifystore Root {anchor.sha1}"],
        }[action]
    else:
        raise TrustError(f"No manual steps are known for the platform {shown(platform)}.")
    return [*system, java]


def platform_name(platform: str = sys.platform) -> str:
    return {"darwin": "macOS", "win32": "Windows"}.get(platform, platform)
