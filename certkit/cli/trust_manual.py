"""What ``certkit trust`` prints on macOS and Windows, where it changes no store: the commands to run there.

The platform a command acts for (``--platform``, hidden, or this machine's), the commands
:func:`certkit.trust.manual_steps` writes for it, and the note that closes them.
"""

from __future__ import annotations

import sys

import click

from certkit.cli.common import emit, warn

# What the commands printed for macOS and Windows do, after them: (platform, action) -> the closing note.
_MANUAL_NOTES = {
    ("darwin", "install"): "(the first command adds it for all users; the keytool line is for Java, whose own cacerts "
                           "does not read the keychain)",
    ("darwin", "status"): "(the first command shows whether the System keychain holds it, the second whether macOS "
                          "trusts it; the keytool line checks Java, whose own cacerts does not read the keychain)",
    ("darwin", "uninstall"): "(the first command takes away its trust settings, the second deletes it from the System "
                             "keychain; the keytool line is for Java, whose own cacerts does not read the keychain)",
    ("win32", "install"): "(Windows asks you to confirm the new root; the keytool line is for Java, whose own cacerts "
                          "does not read the Windows store)",
    ("win32", "status"): "(the first command shows whether your Root store holds it; the keytool line checks Java, "
                         "whose own cacerts does not read the Windows store)",
    ("win32", "uninstall"): "(Windows may ask you to confirm the removal; the keytool line is for Java, whose own "
                            "cacerts does not read the Windows store)",
}


def _manual(anchor, action: str, platform: str, as_json: bool, warnings: list[str] | None = None) -> None:
    """Print the commands that do ``action`` on macOS or Windows, where certkit changes no store."""
    from certkit.trust import manual_steps, platform_name

    if anchor is None:
        raise click.ClickException("On this platform certkit prints the commands for one CA: give --ca-dir.")
    if anchor.intermediate is None and anchor.ca_dir is not None:
        pem_path, save = str(anchor.ca_dir / "ca.pem"), None
    else:
        pem_path, save = f"{anchor.name}.pem", anchor.pem.decode()
    commands = manual_steps(anchor, action, platform, pem_path)
    name = platform_name(platform)
    data = {"action": action, "platform": platform, "ran": False, "commands": commands,
            "ca": anchor.summary(), "root_pem": save, "root_pem_file": pem_path, "warnings": warnings or []}
    lines = [f"certkit does not change trust stores on {name}; it ran nothing. "
             f"To {action if action != 'status' else 'check'} the CA \"{anchor.common_name}\" ({anchor.name}) "
             f"there, run:"]
    if save:
        lines.append(f"  (first save the root certificate below as {pem_path})")
    lines += [f"  {c}" for c in commands]
    lines.append(_MANUAL_NOTES[platform, action])
    if save:
        lines.append(save.rstrip())
    emit(as_json, data, "\n".join(lines))
    if not as_json:
        for text in warnings or []:
            warn(text)


def _platform(platform: str | None) -> str:
    return platform or ("linux" if sys.platform.startswith("linux") else sys.platform)
