"""A JDK's ``cacerts`` keystore, changed with that JDK's ``keytool``: :class:`JavaStore`.

:func:`~certkit.trust.java_homes.java_stores` finds the JDKs of ``$JAVA_HOME`` and of the ``java`` on PATH.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from certkit.trust.anchor import Anchor
from certkit.trust.store import Found, Store, StoreState, TrustError, sort_found
from certkit.trust.tools import (
    CERTKIT_NAME,
    carries_fingerprint,
    describe_pem,
    mount_point_advice,
    pem_fingerprints,
    run_tool,
    succeeded,
    tool_failure,
)

# The JDK's documented default password of cacerts, the same on every installation: it
# guards the file's integrity check, not a secret of the user.
JAVA_STOREPASS = "changeit"
# How many times a change is made again on a new copy when another program changed the keystore meanwhile.
_ATTEMPTS = 5
_P7_DATA = bytes.fromhex("06092a864886f70d010701")  # DER of the OID id-data: a PKCS#12 part in the clear


class JavaStore(Store):
    """A JDK's ``cacerts`` keystore, changed with that JDK's ``keytool``."""

    kind = "java"
    java_reads = True

    def __init__(self, home: Path, found_by: str, cacerts: Path, keytool: Path,
                 env: Mapping[str, str] | None = None, *, unread: Path | None = None) -> None:
        self.home = home
        self.cacerts = cacerts
        self.path = cacerts.resolve()
        self.keytool = keytool
        self.env = env
        self.label = f"Java ({found_by})"
        self.location = str(self.path)
        self.notes = []
        self.aliases = []
        self.default_password: bool | None = None  # whether cacerts opens with JAVA_STOREPASS (known once listed)
        self.sealed = 0  # how many parts of it (a PKCS#12 keystore) are encrypted with its password (known once listed)
        self._listed: dict[str, bytes] | None = None  # its aliases, until certkit changes it
        # The jssecacerts that Java programs of this JDK read instead of this cacerts (None: they read this file).
        self.unread_for = unread
        if cacerts.name == "jssecacerts":
            self.notes.append(f"Java programs of this JDK read {cacerts}, not its cacerts, while that file exists "
                              "(Java's rule for a program not given javax.net.ssl.trustStore): certkit changes it")
        if cacerts.is_symlink():
            # Debian's JDKs link cacerts to /etc/ssl/certs/java/cacerts, which ca-certificates-java keeps
            # in step with the system store. certkit edits the file the link names and leaves the link.
            self.notes.append(f"{cacerts} is a link to {self.path}, shared by every JDK that links it; "
                              "certkit edits that file and leaves the link in place")

    @property
    def tool(self) -> str:
        """This JDK's keytool by its full path, for a command a user runs: the ``keytool`` of the PATH (under sudo, its
        secure_path) may be another JDK's, which may not read this keystore, or none at all."""
        return os.path.abspath(self.keytool)

    def unread(self) -> str | None:
        """Why no Java program reads this keystore (a cacerts whose JDK reads its jssecacerts instead), or None."""
        if self.unread_for is None:
            return None
        return (f"Java programs of this JDK do not read it while {self.unread_for} exists: they read that file "
                "instead, where certkit adds the CA")

    def blocked(self, anchor: Anchor | None = None, *, removing: bool = False) -> tuple[str, str] | None:
        if not removing and (unread := self.unread()) is not None:
            return "unread", unread
        if not os.access(self.path, os.W_OK):
            return "not-writable", f"{self.path} is not writable by this user"
        try:
            self._aliases()
        except TrustError:
            return None  # the command reads it again, and reports why it cannot
        if self.default_password is not False:
            return None
        if self.sealed:  # what it holds cannot be told: certkit's copy may be there or not
            return "password", self.unknown(anchor, "-importcert" if not removing else "-delete")
        # keytool changes it only with its password, which certkit does not ask for: the commands that do it
        if not removing and anchor is not None and not self.needs_adding(self.state(anchor)):
            return None  # installed already: nothing to change
        if not removing and anchor is not None:
            how = "add the CA yourself: " + anchor.by_hand(
                [self.tool, "-importcert", "-alias", anchor.file_stem, "-keystore", str(self.path), "-file"])
        elif commands := [self.removal(e) for e in self.state(anchor).certkit_entries()]:
            how = f"take certkit's entries out yourself: {' && '.join(commands)}"
        else:
            return None  # nothing of certkit's to take out
        return "password", (f"{self.path} is protected by a password other than the JDK's default "
                            f"({JAVA_STOREPASS}), which certkit does not ask for (keytool does); {how}")

    def _keytool(self, *args: str, input: bytes | None = None, keystore: Path | None = None,
                 storepass: str | None = JAVA_STOREPASS) -> subprocess.CompletedProcess:
        # A keytool run is a few hundred milliseconds of work: the C1 compiler alone and the serial
        # collector halve its start-up. English messages, whatever the locale. Without a storepass, keytool's
        # prompt reads nothing (no terminal): it reads the keystore without checking its integrity.
        return run_tool([str(self.keytool), "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Duser.language=en",
                         "-J-Duser.country=US", *args, "-keystore", str(keystore or self.path),
                         *(["-storepass", storepass] if storepass is not None else [])], input=input, env=self.env)

    def _change(self, steps: Sequence[tuple[tuple[str, ...], bytes | None, str]]) -> None:
        """Each keytool step (arguments, input, what it is called in a failure) on a copy of the keystore, which
        then replaces it whole. keytool rewrites a keystore in place (truncated, then written): stopped in
        between (Ctrl-C, a time limit, the OOM killer, a power cut), it would leave every Java program on the
        machine without trust anchors. A folder this user cannot write leaves no choice but keytool's own way."""
        import fcntl

        from certkit.atomic import fsync_dir, sweep_stale, temporary_name, unlink_quietly
        from certkit.testhooks import pause_at

        folder = self.path.parent
        lock = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        copy = folder / temporary_name(self.path.name)
        try:
            # Another certkit changing this keystore (each on its copy, put in place whole) would put its copy over
            # this one's change: they take turns, each copying what the last one put in place.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.access(folder, os.W_OK | os.X_OK):
                for args, data, what in steps:
                    succeeded(self._keytool(*args, input=data), what)
                return
            sweep_stale(folder, self.path.name)  # what a killed certkit left
            for _attempt in range(_ATTEMPTS):
                copied = self._staged(steps, copy)
                pause_at("staged")
                # Another program takes no turn (keytool run by hand, ca-certificates-java's hook, a configuration
                # tool): had it changed the keystore since it was copied, the copy put in place would undo that
                # change (an entry it added gone, one it deleted trusted again). Then the steps start again.
                if self.path.read_bytes() == copied:
                    _replace(copy, self.path)
                    fsync_dir(folder)
                    return
                unlink_quietly(copy)
            raise TrustError(f"{self.path} was changed by another program each time certkit had changed a copy of it "
                             f"({_ATTEMPTS} times); it was left as that program made it: run again once it is done")
        finally:
            unlink_quietly(copy)
            os.close(lock)  # the turn of the next one
            self._listed = None

    def _staged(self, steps: Sequence[tuple[tuple[str, ...], bytes | None, str]], copy: Path) -> bytes:
        """``steps`` done on ``copy``, a new copy of the keystore beside it; what the keystore held when copied."""
        from certkit.atomic import write_new_file

        was = self.path.stat()
        copied = self.path.read_bytes()
        write_new_file(copy, copied, was.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(copy, was.st_uid, was.st_gid)
        for args, data, what in steps:
            if (proc := self._keytool(*args, input=data, keystore=copy)).returncode != 0:
                raise TrustError(f"{tool_failure(proc, what)}; {self.path} was left as it was")
        with open(copy, "rb") as f:
            os.fsync(f.fileno())
        return copied

    def _aliases(self) -> dict[str, bytes]:
        """Every alias of the keystore, with its certificate as ``keytool -list -rfc`` prints it. A keystore whose
        password is not the JDK's default is read without one, as Java programs read it (a JKS keystore)."""
        if self._listed is None:
            proc = self._keytool("-list", "-rfc")
            wrong = b"password was incorrect" in proc.stdout + proc.stderr
            self.default_password = proc.returncode == 0 or not wrong
            if not self.default_password:
                proc = self._keytool("-list", "-rfc", storepass=None)
                note = (f"its password is not the JDK's default ({JAVA_STOREPASS}): certkit reads it without one, as "
                        "Java programs do, and does not change it")
                self.notes += [note] if note not in self.notes else []
            succeeded(proc, f"keytool -list -keystore {self.path}")
            self._listed = {chunk.split(b"\n", 1)[0].strip().decode(errors="replace"): chunk
                            for chunk in proc.stdout.split(b"Alias name: ")[1:]}
            try:
                self.sealed = encrypted_parts(self.path.read_bytes())
            except OSError:
                self.sealed = 0
            note = ("its certificates are encrypted with its password (a PKCS#12 keystore, as keytool -importkeystore "
                    "makes one): Java programs read them only when given that password (-Djavax.net.ssl."
                    f"trustStorePassword={JAVA_STOREPASS}); one not given it trusts no CA of this store")
            self.notes += [note] if self.sealed and self.default_password and note not in self.notes else []
        return self._listed

    def unknown(self, anchor: Anchor | None, action: str = "-list") -> str | None:
        """Why what this keystore holds cannot be told, with the keytool command that does ``action`` (-list,
        -importcert, -delete) yourself: a PKCS#12 keystore whose certificates are encrypted with a password that is
        not the JDK's default, which certkit does not ask for. Without it keytool lists none of them, and Java
        programs not given it read none (JKS keeps certificates in the clear: read without the password, it is
        read whole). None when it can be read."""
        self._aliases()
        if not self.sealed or self.default_password is not False:
            return None
        alias = anchor.file_stem if anchor is not None else "ALIAS"
        command = [self.tool, action, *(["-alias", alias] if anchor is not None or action != "-list" else [])]
        if action == "-importcert" and anchor is not None:
            how = "add the CA yourself: " + anchor.by_hand([*command, "-keystore", str(self.path), "-file"])
        else:
            what = {"-list": "check it yourself", "-delete": "take certkit's copy out yourself"}.get(action, action)
            how = f"{what}: {shlex.join([*command, '-keystore', str(self.path)])}"
            how += "" if anchor is not None else " (certkit's entries are the aliases certkit-...)"
        return (f"{self.path} is a PKCS#12 keystore whose certificates are encrypted with its password, which is not "
                f"the JDK's default ({JAVA_STOREPASS}) and which certkit does not ask for (keytool does): without it, "
                "certkit cannot tell what it holds (nor can a Java program not given it, as "
                f"javax.net.ssl.trustStorePassword); {how}")

    def state(self, anchor: Anchor | None) -> StoreState:
        # A certkit alias carries its certificate's fingerprint: one of that form holding another certificate is
        # not certkit's doing, and is never counted (nor removed) as certkit's.
        wanted = {anchor.fingerprint, anchor.intermediate_fingerprint} - {None} if anchor is not None else set()
        same = (anchor.public_key_sha256, anchor.subject) if anchor is not None else None
        entries = []
        for alias, chunk in self._aliases().items():
            # debian:certkit-....pem is the system store's copy (ca-certificates-java): reported, and
            # removed by uninstalling from the system store, which tells Java's hook.
            mirrored = alias.startswith("debian:") and CERTKIT_NAME.match(alias, len("debian:")) is not None
            named = mirrored or CERTKIT_NAME.match(alias) is not None
            ours = named and carries_fingerprint(alias, pem_fingerprints(chunk))
            if named and not ours:
                self.note_misnamed(describe_pem(alias, chunk, ours=False))
            held = describe_pem(alias, chunk, ours=ours) if anchor is not None or ours else None
            # this CA (or its intermediate) by fingerprint, or another certificate of its name and key
            if ours or (held and (wanted & {held.fingerprint} or (held.key, held.subject) == same)):
                found = held or describe_pem(alias, chunk, ours=ours)
                found.via = "the system store (Debian's ca-certificates-java)" if mirrored and ours else None
                entries.append(found)
        return sort_found(anchor, entries, StoreState())

    def add(self, anchor: Anchor) -> None:
        held = self._aliases().get(anchor.file_stem)
        if held is not None and anchor.fingerprint not in pem_fingerprints(held):
            raise TrustError(f"the alias {anchor.file_stem} in {self.path} holds another certificate, not this CA: "
                             "certkit does not change an entry it did not add. Rename or delete that entry "
                             f"({self.removal(Found(anchor.file_stem, ''))}) and run again")
        try:
            self._change([(("-importcert", "-noprompt", "-alias", anchor.file_stem), anchor.pem,
                            f"keytool -importcert -keystore {self.path}")])
        except TrustError:
            if anchor.fingerprint not in pem_fingerprints(self._aliases().get(anchor.file_stem, b"")):
                raise  # else another certkit, taking its turn first, added it: done
        self._running_programs()

    def removal(self, entry: Found) -> str | None:
        argv = [self.tool, "-delete", "-alias", entry.name, "-keystore", str(self.path)]
        argv += ["-storepass", JAVA_STOREPASS] if self.default_password is not False else []  # else keytool asks
        return shlex.join((["sudo"] if not os.access(self.path, os.W_OK) else []) + argv)

    def remove(self, entries: Sequence[Found]) -> None:
        self._change([(("-delete", "-alias", entry.name), None,
                        f"keytool -delete -alias {entry.name} -keystore {self.path}") for entry in entries])
        self._running_programs()

    def _running_programs(self) -> None:
        """Note that a Java program running now keeps the trust it read (a JVM reads cacerts once, at its first TLS
        connection, and holds no file certkit could find it by): restarted, it reads the change."""
        note = ("Java programs running now keep the trust they read from it (once, at their first TLS connection): "
                "restart them to see this change")
        if note not in self.notes:
            self.notes.append(note)


def encrypted_parts(keystore: bytes) -> int:
    """How many parts (each a set of certificates) of a PKCS#12 keystore are encrypted with its password, which
    keytool and Java skip when reading it without (``-storepass``, javax.net.ssl.trustStorePassword); 0 for a
    keystore of another type (JKS keeps its certificates in the clear) or one all in the clear (a password-less
    PKCS#12 keystore, the cacerts of JDK 18 and later). RFC 7292: PFX { version, authSafe ContentInfo { id-data,
    [0] OCTET STRING { SEQUENCE OF ContentInfo } } }, each part id-data (in the clear) or id-encryptedData."""
    from certkit.key_encryption import _der_read

    try:
        _, pfx = _der_read(keystore, 0x30)
        end, _version = _der_read(pfx, 0x02)
        _, auth_safe = _der_read(pfx[end:], 0x30)
        if not auth_safe.startswith(_P7_DATA):
            return 0
        _, wrapped = _der_read(auth_safe[len(_P7_DATA):], 0xA0)
        _, octets = _der_read(wrapped, 0x04)
        _, parts = _der_read(octets, 0x30)
    except ValueError:
        return 0
    count = 0
    while parts:
        try:
            end, part = _der_read(parts, 0x30)
        except ValueError:
            break
        count += not part.startswith(_P7_DATA)
        parts = parts[end:]
    return count


def _replace(copy: Path, keystore: Path) -> None:
    """``copy`` put in the place of ``keystore``; a keystore that is a mount point (a container's cacerts mounted on its
    own), which no rename replaces, is said to be one, with what to do, rather than "Device or resource busy"."""
    import errno

    try:
        os.replace(copy, keystore)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise TrustError(mount_point_advice(keystore)) from None
        raise
