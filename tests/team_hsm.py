"""A real SoftHSM2 for the tests: its own ``SOFTHSM2_CONF`` and token folder per test session.

Each test that wants a token gets a fresh one (``softhsm2-util --init-token
--free``), with its own label, user PIN and SO PIN; the PIN is also written to
a 0600 file for ``--pin-file``. Nothing outside the session's temporary folder
is touched (SoftHSM reads only the configuration ``SOFTHSM2_CONF`` names).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                     "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so")


def module() -> str | None:
    return next((m for m in MODULE_CANDIDATES if Path(m).is_file()), None)


@dataclass
class Token:
    label: str
    pin: str
    so_pin: str
    pin_file: Path
    module: str

    def uri(self, obj: str) -> str:
        return f"pkcs11:token={self.label};object={obj}"

    def tool(self, *args: str, login: bool = True) -> subprocess.CompletedProcess:
        """OpenSC's pkcs11-tool on this token (a second, independent PKCS#11 client)."""
        extra = ["--login", "--pin", self.pin] if login else []
        return subprocess.run(["pkcs11-tool", "--module", self.module, "--token-label", self.label, *extra, *args],
                              capture_output=True, text=True, timeout=120)


    def flags(self) -> str:
        """This token's "token flags" line of pkcs11-tool --list-token-slots, which lists every token of the
        SoftHSM (other tests' tokens too, one with a wrong PIN counted among them)."""
        listed = self.tool("--list-token-slots", login=False).stdout
        part = listed[listed.index(f"token label        : {self.label}\n"):]
        return next(line for line in part.splitlines() if "token flags" in line)

    def init_pin(self) -> None:
        """The security officer sets the user PIN (``pin``), from another process."""
        proc = self.tool("--login", "--login-type", "so", "--so-pin", self.so_pin, "--init-pin", "--new-pin",
                         self.pin, login=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


class SoftHSM:
    """A SoftHSM2 configuration and token folder of its own."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="certkit-softhsm-"))
        from leftover_reaper import watch_over

        watch_over([self.base])  # its tokens (and their PINs' keys) go with this process, however it ends
        (self.base / "tokens").mkdir()
        self.conf = self.base / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.base / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\nslots.removable = false\n")
        self.module = module()
        self._count = 0

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def new_token(self, prefix: str = "ca") -> Token:
        self._count += 1
        label = f"{prefix}-{os.getpid()}-{self._count}"
        pin, so_pin = secrets.token_hex(4), secrets.token_hex(4)
        proc = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                               "--so-pin", so_pin], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **self.env()})
        if proc.returncode != 0:
            raise RuntimeError(f"softhsm2-util --init-token failed: {proc.stdout}{proc.stderr}")
        pin_file = self.base / f"{label}.pin"
        pin_file.write_text(pin + "\n")
        os.chmod(pin_file, 0o600)
        return Token(label, pin, so_pin, pin_file, self.module)

    def new_token_without_user_pin(self, prefix: str = "nopin") -> Token:
        """A token initialized by its security officer with no user PIN set yet (OpenSC's pkcs11-tool
        on SoftHSM's free slot); the PIN it will have is in ``pin``, for :meth:`Token.init_pin`."""
        import re

        self._count += 1
        label = f"{prefix}-{os.getpid()}-{self._count}"
        pin, so_pin = secrets.token_hex(4), secrets.token_hex(4)
        env = {**os.environ, **self.env()}
        slots = subprocess.run(["pkcs11-tool", "--module", self.module, "--list-slots"], capture_output=True,
                               text=True, timeout=60, env=env, check=True).stdout
        free = re.search(r"^Slot \d+ \((0x[0-9a-f]+)\)[^\n]*\n\s+token state:\s+uninitialized", slots, re.M)
        assert free, slots
        subprocess.run(["pkcs11-tool", "--module", self.module, "--slot", str(int(free.group(1), 16)),
                        "--init-token", "--label", label, "--so-pin", so_pin], capture_output=True, text=True,
                       timeout=60, env=env, check=True)
        pin_file = self.base / f"{label}.pin"
        pin_file.write_text(pin + "\n")
        os.chmod(pin_file, 0o600)
        return Token(label, pin, so_pin, pin_file, self.module)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def token_folder(self, token: Token) -> Path:
        """The folder SoftHSM2 keeps ``token`` in (its label is stored padded to 32 bytes in token.object):
        copy it aside, and put it back, to bring back a token that was deleted."""
        padded = token.label.encode().ljust(32)
        found = [folder for folder in (self.base / "tokens").iterdir()
                 if padded in (folder / "token.object").read_bytes()]
        assert len(found) == 1, found
        return found[0]
