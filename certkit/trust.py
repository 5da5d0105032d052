"""Trust stores: put a certkit root CA where clients look for trust anchors, report on it, take it out.

What ``certkit trust`` does, without click:

- :class:`Anchor`: the root certificate of a CA directory (for an intermediate CA,
  the root above it) and the names certkit gives its copies, all derived from
  its SHA-256 fingerprint: ``certkit-<first 16 hex digits>`` (plus the CA's
  name for people). Because the name is the fingerprint, installing twice
  finds the first copy, uninstalling removes exactly certkit's copies, and an
  older (rotated) certkit CA is recognised by its name.
- The stores, each changed only through its own tool:
  :class:`SystemStore` (Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE: an anchor
  file and the distribution's refresh command), :class:`NSSStore` (one NSS
  database: Chromium's ``~/.pki/nssdb``, a Firefox or Thunderbird profile;
  ``certutil``) and :class:`JavaStore` (a JDK's ``cacerts``; ``keytool``).
- :func:`find_stores` lists the stores of this machine and user, and those
  skipped with the reason; :func:`install`, :func:`uninstall` and
  :func:`status` give one :class:`StoreResult` per store; :func:`warnings`
  says what is risky about what is trusted.
- :func:`manual_steps`: on macOS and Windows certkit edits no store (that
  code could not be tested here); it gives the exact commands instead.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

KINDS = ("system", "nss", "java")
OS_RELEASE = Path("/etc/os-release")
EXPIRY_WARNING_DAYS = 30
TOOL_TIMEOUT = 180  # seconds; Debian's refresh runs a JVM to update Java's copy of the store
# The JDK's documented default password of cacerts, the same on every installation: it
# guards the file's integrity check, not a secret of the user.
JAVA_STOREPASS = "changeit"
NSS_TRUST = "C,,"  # a trusted issuer of TLS server certificates; nothing for e-mail or code signing
# sbin is not on every user's PATH, but the refresh tools live there.
_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
_CERTKIT_NAME = re.compile(r"certkit-([0-9a-f]{16})(?![0-9a-f])")
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
NSS_PACKAGES = ("libnss3-tools (Debian/Ubuntu), nss-tools (Fedora/RHEL), nss (Arch) "
                "or mozilla-nss-tools (openSUSE)")


class TrustError(CertkitError):
    """A trust store could not be read or changed."""


class UnsupportedSystem(TrustError):
    """A system whose trust store certkit does not know how to change."""


# --- the CA to trust ----------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """The root certificate certkit puts into trust stores, with the names of its copies."""

    cert: "x509.Certificate"
    ca_dir: Path | None = None
    key_path: Path | None = None
    key_encrypted: bool | None = None  # None: no key file in the CA directory
    intermediate: str | None = None  # the CA directory's own CN when it holds an intermediate

    @classmethod
    def from_ca_dir(cls, path: str | Path | None) -> "Anchor":
        """The root of the CA in ``path`` (for an intermediate CA, the last of its parents); no key needed."""
        from certkit.keys import is_encrypted
        from certkit.store import CADirectory

        store = CADirectory(path)
        cert, parents = store.load_certificates()
        encrypted = None
        if store.key_path.is_file():
            try:
                encrypted = is_encrypted(store.key_path.read_bytes()[:4096])
            except OSError:
                encrypted = None
        return cls(parents[-1] if parents else cert, store.path.resolve(), store.key_path.resolve(), encrypted,
                   _common_name(cert) if parents else None)

    @property
    def fingerprint(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def sha1(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA1()).hex().upper()  # what macOS and Windows tools match on

    @property
    def name(self) -> str:
        """``certkit-<first 16 hex digits of the SHA-256 fingerprint>``: how certkit finds its copies."""
        return f"certkit-{self.fingerprint[:16]}"

    @property
    def common_name(self) -> str:
        return _common_name(self.cert)

    @property
    def file_stem(self) -> str:
        """File name (without suffix) and Java alias: the certkit name and the CA's name made safe."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.common_name.lower()).strip("-")[:40].strip("-")
        return f"{self.name}-{slug}" if slug else self.name

    @property
    def nickname(self) -> str:
        """The NSS nickname: the certkit name and the CA's name (":" would name a token)."""
        cn = "".join(ch if ch.isprintable() and ch != ":" else "?" for ch in self.common_name)[:64]
        return f"{self.name} {cn}".strip()

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.cert.public_bytes(Encoding.PEM)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def constraints(self):
        from cryptography import x509

        try:
            return self.cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return None

    @property
    def limits_dns(self) -> bool:
        """True when the root's name constraints limit the DNS names it may vouch for.

        A root without them (or one limited to IP ranges only) can vouch for any
        website: that is what ``trust install`` asks about.
        """
        from cryptography import x509

        nc = self.constraints
        return nc is not None and any(isinstance(c, x509.DNSName) for c in nc.permitted_subtrees or [])

    def scope(self) -> str:
        """What a client trusting this root would accept it for, in words."""
        return describe_scope(self.constraints)

    def summary(self) -> dict:
        return {"subject": self.cert.subject.rfc4514_string(), "common_name": self.common_name,
                "name": self.name, "fingerprint_sha256": self.fingerprint,
                "not_after": self.not_after.isoformat(), "may_sign": self.scope(),
                "name_constraints": self.constraints is not None, "limits_dns": self.limits_dns,
                "ca_dir": str(self.ca_dir) if self.ca_dir else None, "key_encrypted": self.key_encrypted,
                "intermediate": self.intermediate}


from certkit.constraints import NO_DNS  # noqa: E402 (no third-party imports: cheap)


def describe_scope(nc) -> str:
    """Name constraints in words: which DNS names and IP addresses a CA may vouch for."""
    import ipaddress

    from cryptography import x509

    if nc is None:
        return "any DNS name and any IP address (no name constraints)"
    permitted, excluded = nc.permitted_subtrees or [], nc.excluded_subtrees or []
    dns = [c.value for c in permitted if isinstance(c, x509.DNSName)]
    dns_out = [c.value for c in excluded if isinstance(c, x509.DNSName)]
    ips = [str(c.value) for c in permitted if isinstance(c, x509.IPAddress)]
    ips_out = [c.value for c in excluded if isinstance(c, x509.IPAddress)]
    if dns == [NO_DNS]:
        dns_text = "no DNS names"
    elif dns:
        dns_text = "DNS names under " + ", ".join(dns)
    else:
        dns_text = "any DNS name" + (" except under " + ", ".join(dns_out) if dns_out else "")
    everything = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}
    if ips:
        ip_text = "IP addresses in " + ", ".join(ips)
    elif everything <= set(ips_out):
        ip_text = "no IP addresses"
    else:
        ip_text = "any IP address" + (" except " + ", ".join(map(str, ips_out)) if ips_out else "")
    return f"{dns_text}; {ip_text}"


def _common_name(cert) -> str:
    from certkit.vocabulary import common_name

    return common_name(cert.subject) or cert.subject.rfc4514_string()


# --- what a store holds -------------------------------------------------------------
@dataclass
class Found:
    """A certificate in a store: certkit's copy of a CA (``ours``), or the current CA under another name."""

    name: str  # the file, NSS nickname or Java alias
    fingerprint: str  # SHA-256, hex
    subject: str = ""
    not_after: dt.datetime | None = None
    ours: bool = True
    via: str | None = None  # a certkit copy that another store put here (and takes away again)

    def to_dict(self) -> dict:
        return {"name": self.name, "fingerprint_sha256": self.fingerprint, "subject": self.subject,
                "not_after": self.not_after.isoformat() if self.not_after else None, "via": self.via}


@dataclass
class StoreState:
    """What one store holds of certkit's: this CA's copy, older certkit CAs, other copies of this CA."""

    current: Found | None = None
    older: list[Found] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # this CA, under names certkit did not give
    pending: str | None = None  # certkit's copy is there but not yet in effect (and why)

    def certkit_entries(self) -> list[Found]:
        """What certkit put into this store itself, hence may take out."""
        return [e for e in ([self.current] if self.current else []) + self.older if e.via is None]


@dataclass
class StoreResult:
    """The outcome for one store: ``added``, ``unchanged``, ``removed``, ``absent``, ``trusted``,
    ``not trusted``, ``incomplete``, ``skipped`` or ``failed``; with the reason when skipped or failed."""

    kind: str
    label: str
    location: str
    outcome: str
    reason: str | None = None
    code: str | None = None  # why skipped: needs-root, not-writable, missing, unsupported, no-tool, password
    state: StoreState | None = None
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_root: bool = False  # skipped, but root could do it

    def to_dict(self) -> dict:
        state = self.state
        return {
            "kind": self.kind, "label": self.label, "location": self.location, "outcome": self.outcome,
            "reason": self.reason, "code": self.code,
            "current": state.current.name if state and state.current else None,
            "older": [f.to_dict() for f in state.older] if state else [],
            "elsewhere": list(state.elsewhere) if state else [],
            "pending": state.pending if state else None,
            "removed": self.removed, "notes": self.notes,
        }


class Store:
    """One trust store. Subclasses read it (:meth:`state`) and change it (:meth:`add`, :meth:`remove`)."""

    kind = ""
    label = ""
    location = ""
    notes: list[str] = []
    holds_copies = True  # whether the store can hold the same certificate twice, under two names

    def blocked(self) -> tuple[str, str] | None:
        """Why this user cannot change the store, as (code, reason), or None."""
        return None

    def state(self, anchor: Anchor | None) -> StoreState:
        raise NotImplementedError

    def add(self, anchor: Anchor) -> None:
        raise NotImplementedError

    def remove(self, entries: Sequence[Found]) -> None:
        raise NotImplementedError

    def skipped(self, code: str, reason: str, *, needs_root: bool = False) -> StoreResult:
        return StoreResult(self.kind, self.label, self.location, "skipped", reason, code, needs_root=needs_root)


# --- running the stores' own tools --------------------------------------------------
def _tool_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    base["LC_ALL"] = "C"  # messages certkit reads, in English
    return base


def _run(argv: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None,
         timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a store's tool detached from any terminal (it must never sit waiting at a prompt)."""
    try:
        return subprocess.run(list(argv), input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=_tool_env(env), start_new_session=True)
    except FileNotFoundError:
        raise TrustError(f"{argv[0]} is not installed.") from None
    except subprocess.TimeoutExpired:
        raise TrustError(f"{shlex.join(argv[:3])} did not finish within {timeout:.0f} s.") from None


def _failure(proc: subprocess.CompletedProcess, what: str) -> TrustError:
    text = (proc.stderr or b"").decode(errors="replace") + (proc.stdout or b"").decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = "; ".join(lines[-3:]) if lines else "no message"
    return TrustError(f"{what} failed (exit status {proc.returncode}): {shown(detail)}")


def _which(tool: str, env: Mapping[str, str] | None = None, *, sbin: bool = False) -> str | None:
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    return shutil.which(tool, path=path + os.pathsep + _SBIN if sbin else path)


def _pem_fingerprints(data: bytes) -> list[str]:
    """SHA-256 fingerprints of every PEM certificate in ``data``, without parsing the certificates."""
    import hashlib

    found = []
    for block in _PEM_BLOCK.findall(data):
        try:
            found.append(hashlib.sha256(base64.b64decode(b"".join(block.split()), validate=True)).hexdigest())
        except (binascii.Error, ValueError):
            continue
    return found


def _pem_blocks(data: bytes) -> list[bytes]:
    """Each PEM certificate in ``data``, as its own block."""
    return [m.group(0) for m in _PEM_BLOCK.finditer(data) if _pem_fingerprints(m.group(0))]


def _describe_pem(name: str, data: bytes, *, ours: bool = True) -> Found:
    from cryptography import x509

    fingerprints = _pem_fingerprints(data)
    if not fingerprints:
        return Found(name, "", "(no certificate in it)", None, ours)
    try:
        cert = x509.load_pem_x509_certificate(data)
        return Found(name, fingerprints[0], cert.subject.rfc4514_string(), cert.not_valid_after_utc, ours)
    except ValueError:
        return Found(name, fingerprints[0], "(unreadable certificate)", None, ours)


def _sort_found(anchor: Anchor | None, entries: Iterable[Found], state: StoreState) -> StoreState:
    for entry in entries:
        if anchor is not None and entry.fingerprint == anchor.fingerprint:
            if entry.ours and entry.via is None and state.current is None:
                state.current = entry
            else:
                state.elsewhere.append(entry.name)
        elif entry.ours:
            state.older.append(entry)
    return state


# --- the system store ---------------------------------------------------------------
@dataclass(frozen=True)
class SystemLayout:
    """Where a distribution keeps locally added trust anchors and how it rebuilds its bundle."""

    family: str
    anchors: Path
    suffix: str
    refresh_added: tuple[str, ...]
    refresh_removed: tuple[str, ...]
    bundle: Path
    package: str  # what provides the refresh tool
    links: Path | None = None  # Debian: the folder of links the hooks are told about
    hooks: Path | None = None  # Debian: programs told "+/etc/ssl/certs/X.pem" or "-..." on stdin


LAYOUTS = {
    # Debian's README.Debian: a removed local certificate needs --fresh, or its links stay behind.
    # But --fresh tells the hooks nothing of the removal, so Java's copy (ca-certificates-java's
    # debian:X.pem) would stay: certkit runs --fresh without hooks and tells them itself.
    "debian": SystemLayout("Debian/Ubuntu", Path("/usr/local/share/ca-certificates"), ".crt",
                           ("update-ca-certificates",), ("update-ca-certificates", "--fresh"),
                           Path("/etc/ssl/certs/ca-certificates.crt"), "ca-certificates",
                           Path("/etc/ssl/certs"), Path("/etc/ca-certificates/update.d")),
    "fedora": SystemLayout("Fedora/RHEL", Path("/etc/pki/ca-trust/source/anchors"), ".pem",
                           ("update-ca-trust", "extract"), ("update-ca-trust", "extract"),
                           Path("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), "ca-certificates"),
    # Arch and openSUSE: p11-kit's anchor directory, then the distribution's refresh (which runs p11-kit's
    # `trust extract`). Only Debian's layout runs in certkit's tests (this machine and CI are Debian);
    # the others follow each distribution's documented procedure for a local CA.
    "arch": SystemLayout("Arch Linux", Path("/etc/ca-certificates/trust-source/anchors"), ".crt",
                         ("update-ca-trust",), ("update-ca-trust",),
                         Path("/etc/ssl/certs/ca-certificates.crt"), "ca-certificates-utils"),
    "suse": SystemLayout("openSUSE/SLES", Path("/etc/pki/trust/anchors"), ".pem",
                         ("update-ca-certificates",), ("update-ca-certificates",),
                         Path("/etc/ssl/ca-bundle.pem"), "ca-certificates"),
}
_FAMILIES = {"debian": "debian", "ubuntu": "debian", "fedora": "fedora", "rhel": "fedora", "centos": "fedora",
             "arch": "arch", "suse": "suse", "opensuse": "suse", "sles": "suse"}


def read_os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    """The KEY=value pairs of os-release(5)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(raw)
            except ValueError:
                parts = [raw]
            values[key.strip()] = " ".join(parts)
    return values


def detect_system_layout(os_release: Path = OS_RELEASE, env: Mapping[str, str] | None = None) -> SystemLayout:
    """The layout of this distribution, from os-release (ID, then ID_LIKE) and the tools present."""
    info = read_os_release(os_release)
    words = [info.get("ID", ""), *info.get("ID_LIKE", "").split()]
    family = next((_FAMILIES.get(w) or ("suse" if w.startswith("opensuse") else None) for w in words
                   if _FAMILIES.get(w) or w.startswith("opensuse")), None)
    name = info.get("PRETTY_NAME") or info.get("ID") or f"unknown ({os_release} is missing)"
    if family is None:
        raise UnsupportedSystem(
            f"certkit does not know how to change the system trust store of {shown(name)}: it knows Debian/Ubuntu, "
            "Fedora/RHEL, Arch Linux and openSUSE (and distributions whose os-release ID_LIKE names them). "
            "Add the CA by hand with your distribution's tool, or use --nss / --java.")
    layout = LAYOUTS[family]
    if _which(layout.refresh_added[0], env, sbin=True) is None:
        raise UnsupportedSystem(f"{shown(name)} is {layout.family}-like, but {layout.refresh_added[0]} is not "
                                f"installed (package {layout.package}).")
    return layout


class SystemStore(Store):
    """The distribution's store, which OpenSSL, GnuTLS, curl, Python, Go and most programs read."""

    kind = "system"

    def __init__(self, layout: SystemLayout, env: Mapping[str, str] | None = None) -> None:
        self.layout = layout
        self.env = env
        self.label = f"{layout.family} system store"
        self.location = str(layout.anchors)
        self.notes = []

    def blocked(self) -> tuple[str, str] | None:
        if os.geteuid() != 0:
            return "needs-root", f"changing the system trust store ({self.layout.anchors}) needs root"
        return None

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.layout.anchors.iterdir()
                          if _CERTKIT_NAME.match(p.name) and p.suffix == self.layout.suffix)
        except OSError:
            return []

    def _bundle(self) -> set[str]:
        try:
            return set(_pem_fingerprints(self.layout.bundle.read_bytes()))
        except OSError:
            return set()

    def state(self, anchor: Anchor | None) -> StoreState:
        entries = []
        for path in self._files():
            try:
                entries.append(_describe_pem(path.name, path.read_bytes()))
            except OSError as exc:
                entries.append(Found(path.name, "", f"(unreadable: {exc.strerror})"))
        state = _sort_found(anchor, entries, StoreState())
        if anchor is not None:
            in_bundle = anchor.fingerprint in self._bundle()
            if state.current and not in_bundle:
                state.pending = f"not yet in {self.layout.bundle}: run {shlex.join(self.layout.refresh_added)}"
            elif not state.current and in_bundle:
                state.elsewhere.append(f"{self.layout.bundle} (added by other means)")
        return state

    def _refresh(self, argv: tuple[str, ...]) -> None:
        tool = _which(argv[0], self.env, sbin=True) or argv[0]
        proc = _run([tool, *argv[1:]], env=self.env)
        if proc.returncode != 0:
            raise _failure(proc, shlex.join(argv))
        # update-ca-certificates reports a failed hook (Java's copy not updated) as "E: ..." yet exits 0.
        for line in (proc.stdout + proc.stderr).decode(errors="replace").splitlines():
            if line.startswith(("E: ", "W: ")):
                self.notes.append(f"{argv[0]}: {shown(line)}")

    def add(self, anchor: Anchor) -> None:
        path = self.layout.anchors / f"{anchor.file_stem}{self.layout.suffix}"
        state = self.state(anchor)
        created = False
        if state.current is None:
            self.layout.anchors.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write_atomically(path, anchor.pem, 0o644)
            created = True
        try:
            self._refresh(self.layout.refresh_added)
        except TrustError:
            if created:  # leave the store as it was
                path.unlink(missing_ok=True)
                try:
                    self._refresh(self.layout.refresh_removed)
                except TrustError:
                    pass
            raise
        if anchor.fingerprint not in self._bundle():
            raise TrustError(f"{shlex.join(self.layout.refresh_added)} ran, but {self.layout.bundle} does not "
                             f"hold the CA; check {path}.")

    def remove(self, entries: Sequence[Found]) -> None:
        for entry in entries:
            (self.layout.anchors / entry.name).unlink(missing_ok=True)
        if self.layout.hooks is None or self.layout.links is None:
            self._refresh(self.layout.refresh_removed)
            return
        before = self._links()
        with tempfile.TemporaryDirectory(prefix="certkit-no-hooks-") as no_hooks:
            self._refresh((*self.layout.refresh_removed, "--hooksdir", no_hooks))
        after = self._links()
        changes = "".join([f"+{self.layout.links / n}\n" for n in sorted(after - before)]
                          + [f"-{self.layout.links / n}\n" for n in sorted(before - after)])
        if changes:
            self._run_hooks(changes.encode())

    def _links(self) -> set[str]:
        assert self.layout.links is not None
        try:
            return {p.name for p in self.layout.links.iterdir() if p.is_symlink() and p.name.endswith(".pem")}
        except OSError:
            return set()

    def _run_hooks(self, changes: bytes) -> None:
        """Tell each hook (as run-parts would pick them) which links came and went, as update-ca-certificates
        does after a change it noticed itself."""
        assert self.layout.hooks is not None
        try:
            hooks = sorted(p for p in self.layout.hooks.iterdir()
                           if re.fullmatch(r"[A-Za-z0-9_-]+", p.name) and p.is_file() and os.access(p, os.X_OK))
        except OSError:
            return
        for hook in hooks:
            proc = _run([str(hook)], input=changes, env=self.env)
            if proc.returncode != 0:
                raise _failure(proc, f"the hook {hook}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- NSS: Chromium, Firefox, Thunderbird --------------------------------------------
class NSSStore(Store):
    """One NSS database (``sql:`` format), changed with ``certutil`` from the NSS tools."""

    kind = "nss"
    holds_copies = False

    def __init__(self, label: str, directory: Path, certutil: str, *, create: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        self.label = label
        self.directory = directory
        self.location = str(directory)
        self.certutil = certutil
        self.create = create  # a missing database is created, as Chromium would create it
        self.env = env
        self.notes = []

    @property
    def db(self) -> str:
        return f"sql:{self.directory}"

    def exists(self) -> bool:
        return (self.directory / "cert9.db").is_file()

    def _certutil(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return _run([self.certutil, *args, "-d", self.db], input=input, env=self.env, timeout=60)

    def blocked(self) -> tuple[str, str] | None:
        if not self.exists():
            nearest = next((p for p in [self.directory, *self.directory.parents] if p.exists()), Path("/"))
            if not os.access(nearest, os.W_OK):
                return "not-writable", f"{nearest} is not writable by this user"
            return None
        for path in [self.directory, *(self.directory / n for n in ("cert9.db", "key4.db"))]:
            if path.exists() and not os.access(path, os.W_OK):
                return "not-writable", f"{path} is not writable by this user"
        # A database with a password (Firefox's Primary Password) needs it to change trust; an empty
        # password file makes certutil say so instead of asking.
        proc = self._certutil("-K", "-f", os.devnull)
        if b"SEC_ERROR_BAD_PASSWORD" in proc.stderr or b"could not authenticate" in proc.stderr:
            return "password", (
                "the database is protected by a password (Firefox's Primary Password, for example) and certkit "
                f"does not ask for it; add the CA yourself: certutil -A -d {shlex.quote(self.db)} -t {NSS_TRUST} "
                "-n NAME -i ca.pem")
        return None

    def listing(self) -> list[tuple[str, str]]:
        """(nickname, trust flags) of every certificate in the database."""
        if not self.exists():
            return []
        proc = self._certutil("-L")
        if proc.returncode != 0:
            raise _failure(proc, f"certutil -L -d {self.db}")
        rows = []
        lines = proc.stdout.decode(errors="replace").splitlines()
        for line in lines:
            match = re.match(r"^(?P<nick>.*\S)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$", line)
            if match and match["nick"] != "SSL,S/MIME,JAR/XPI":
                rows.append((match["nick"], match["trust"]))
        return rows

    def _export(self, nickname: str) -> bytes:
        proc = self._certutil("-L", "-n", nickname, "-a")
        return proc.stdout if proc.returncode == 0 else b""

    def state(self, anchor: Anchor | None) -> StoreState:
        # certutil -L -n NICK -a prints every certificate with the subject of NICK's, in no order one can
        # rely on; and a rotated CA usually keeps its subject. So a certkit nickname is matched to the
        # certificate whose fingerprint it carries, and another nickname to one no certkit name claims.
        rows = [(nick, trust, _pem_blocks(self._export(nick))) for nick, trust in self.listing()]
        claimed: set[str] = set()
        chosen: dict[str, bytes] = {}
        for nick, _trust, blocks in rows:
            if match := _CERTKIT_NAME.match(nick):
                block = next((b for b in blocks if _pem_fingerprints(b)[0].startswith(match[1])), b"")
                chosen[nick] = block
                claimed.update(_pem_fingerprints(block))
        entries = []
        for nick, trust, blocks in rows:
            ours = nick in chosen
            if not ours:
                free = [b for b in blocks if _pem_fingerprints(b)[0] not in claimed]
                chosen[nick] = (free or blocks or [b""])[0]
            if ours or "C" in trust.split(",")[0]:
                entries.append(_describe_pem(nick, chosen[nick], ours=ours))
        return _sort_found(anchor, entries, StoreState())

    def add(self, anchor: Anchor) -> None:
        if not self.exists():
            if not self.create:
                raise TrustError(f"There is no NSS database in {self.directory}.")
            nearest = next(p for p in [self.directory, *self.directory.parents] if p.exists())
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            proc = self._certutil("-N", "--empty-password")
            if proc.returncode != 0:
                raise _failure(proc, f"certutil -N -d {self.db} --empty-password")
            _give_to_owner_of(nearest, self.directory)
            self.notes.append(f"created the NSS database {self.directory} (empty password, as Chromium does)")
        proc = self._certutil("-A", "-n", anchor.nickname, "-t", NSS_TRUST, "-f", os.devnull, input=anchor.pem)
        if proc.returncode != 0:
            # certutil may have stored the certificate before failing to set its trust: take it out.
            self._certutil("-D", "-n", anchor.nickname)
            raise _failure(proc, f"certutil -A -d {self.db}")

    def remove(self, entries: Sequence[Found]) -> None:
        for entry in entries:
            proc = self._certutil("-D", "-n", entry.name)
            if proc.returncode != 0:
                raise _failure(proc, f"certutil -D -d {self.db} -n {shlex.quote(entry.name)}")


def _give_to_owner_of(existing: Path, created: Path) -> None:
    """Root creating a database in someone's home leaves it theirs, or their browser could not write it."""
    owner = existing.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return
    for path in [*(p for p in created.parents if existing in p.parents), created, *created.iterdir()]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _profiles(base: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every profile that ``base/profiles.ini`` lists."""
    import configparser

    ini = base / "profiles.ini"
    if not ini.is_file():
        return []
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return []
    found = []
    for section in parser.sections():
        if not section.startswith("Profile") or not parser.has_option(section, "Path"):
            continue
        raw = parser.get(section, "Path")
        relative = parser.get(section, "IsRelative", fallback="1").strip() != "0"
        found.append((parser.get(section, "Name", fallback=raw), base / raw if relative else Path(raw)))
    return found


# (program, folder holding profiles.ini, relative to HOME)
_PROFILE_ROOTS = (
    ("Firefox", ".mozilla/firefox"),
    ("Firefox (snap)", "snap/firefox/common/.mozilla/firefox"),
    ("Firefox (flatpak)", ".var/app/org.mozilla.firefox/.mozilla/firefox"),
    ("Thunderbird", ".thunderbird"),
    ("Thunderbird (snap)", "snap/thunderbird/common/.thunderbird"),
    ("Thunderbird (flatpak)", ".var/app/org.mozilla.Thunderbird/.thunderbird"),
)
# Chromium-family browsers on Linux read the user's NSS database ~/.pki/nssdb.
_CHROMIUM_DBS = (
    ("Chromium/Chrome", ".pki/nssdb"),
    ("Chromium (snap)", "snap/chromium/current/.pki/nssdb"),
    ("Chromium (flatpak)", ".var/app/org.chromium.Chromium/.pki/nssdb"),
)
_CHROMIUM_PROGRAMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "brave-browser",
                      "microsoft-edge", "vivaldi")


def _nss_stores(home: Path, env: Mapping[str, str]) -> tuple[list[Store], list[StoreResult]]:
    certutil = _which("certutil", env)
    if certutil is None:
        return [], [StoreResult("nss", "NSS (Chromium, Firefox, Thunderbird)", str(home), "skipped",
                                f"certutil is not installed: install {NSS_PACKAGES}", "no-tool")]
    stores: list[Store] = []
    skipped: list[StoreResult] = []
    for i, (label, rel) in enumerate(_CHROMIUM_DBS):
        directory = home / rel
        store = NSSStore(label, directory, certutil, create=i == 0, env=env)
        if store.exists():
            stores.append(store)
        elif i == 0 and any(_which(p, env) for p in _CHROMIUM_PROGRAMS):
            stores.append(store)  # Chromium is installed and would create it: create it now
        elif i == 0:
            skipped.append(StoreResult("nss", label, str(directory), "skipped",
                                       "no NSS database here, and no Chromium-family browser to read one", "missing"))
    for program, rel in _PROFILE_ROOTS:
        for name, folder in _profiles(home / rel):
            label = f"{program} profile {shown(name)}"
            store = NSSStore(label, folder, certutil, env=env)
            if store.exists():
                stores.append(store)
            elif not folder.is_dir():
                skipped.append(StoreResult("nss", label, str(folder), "skipped",
                                           "listed in profiles.ini, but the folder is missing", "missing"))
            elif (folder / "cert8.db").exists():
                skipped.append(StoreResult("nss", label, str(folder), "skipped",
                                           "an old-format database (cert8.db); start the program once to upgrade "
                                           "it to cert9.db", "missing"))
            else:
                skipped.append(StoreResult("nss", label, str(folder), "skipped",
                                           f"no certificate database yet; start {program.split()[0]} once with "
                                           "this profile", "missing"))
    return stores, skipped


# --- Java -----------------------------------------------------------------------------
class JavaStore(Store):
    """A JDK's ``cacerts`` keystore, changed with that JDK's ``keytool``."""

    kind = "java"

    def __init__(self, home: Path, found_by: str, cacerts: Path, keytool: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.cacerts = cacerts
        self.path = cacerts.resolve()
        self.keytool = keytool
        self.env = env
        self.label = f"Java ({found_by})"
        self.location = str(self.path)
        self.notes = []
        if cacerts.is_symlink():
            # Debian's JDKs link cacerts to /etc/ssl/certs/java/cacerts, which ca-certificates-java keeps
            # in step with the system store. certkit edits the file the link names and leaves the link.
            self.notes.append(f"{cacerts} is a link to {self.path}, shared by every JDK that links it; "
                              "certkit edits that file and leaves the link in place")

    def blocked(self) -> tuple[str, str] | None:
        if not os.access(self.path, os.W_OK):
            return "not-writable", f"{self.path} is not writable by this user"
        return None

    def _keytool(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        # A keytool run is a few hundred milliseconds of work: the C1 compiler alone and the serial
        # collector halve its start-up. English messages, whatever the locale.
        return _run([str(self.keytool), "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Duser.language=en",
                     "-J-Duser.country=US", *args,
                     "-keystore", str(self.path), "-storepass", JAVA_STOREPASS], input=input, env=self.env)

    def state(self, anchor: Anchor | None) -> StoreState:
        proc = self._keytool("-list", "-rfc")
        if proc.returncode != 0:
            raise _failure(proc, f"keytool -list -keystore {self.path}")
        entries = []
        for chunk in proc.stdout.split(b"Alias name: ")[1:]:
            alias = chunk.split(b"\n", 1)[0].strip().decode(errors="replace")
            ours = _CERTKIT_NAME.match(alias) is not None
            # debian:certkit-....pem is the system store's copy (ca-certificates-java): reported, and
            # removed by uninstalling from the system store, which tells Java's hook.
            mirrored = alias.startswith("debian:") and _CERTKIT_NAME.match(alias, len("debian:")) is not None
            if ours or mirrored or (anchor is not None and anchor.fingerprint in _pem_fingerprints(chunk)):
                found = _describe_pem(alias, chunk, ours=ours or mirrored)
                found.via = "the system store (Debian's ca-certificates-java)" if mirrored else None
                entries.append(found)
        return _sort_found(anchor, entries, StoreState())

    def add(self, anchor: Anchor) -> None:
        proc = self._keytool("-importcert", "-noprompt", "-alias", anchor.file_stem, input=anchor.pem)
        if proc.returncode != 0:
            raise _failure(proc, f"keytool -importcert -keystore {self.path}")

    def remove(self, entries: Sequence[Found]) -> None:
        for entry in entries:
            proc = self._keytool("-delete", "-alias", entry.name)
            if proc.returncode != 0:
                raise _failure(proc, f"keytool -delete -alias {entry.name} -keystore {self.path}")


def _java_stores(env: Mapping[str, str]) -> tuple[list[Store], list[StoreResult]]:
    homes: list[tuple[Path, str]] = []
    if env.get("JAVA_HOME"):
        homes.append((Path(env["JAVA_HOME"]), f"JAVA_HOME {env['JAVA_HOME']}"))
    java = _which("java", env)
    if java:
        home = Path(java).resolve().parent.parent
        homes.append((home, f"java on PATH: {home}"))
    if not homes:
        return [], [StoreResult("java", "Java", "", "skipped",
                                "no Java found: JAVA_HOME is not set and there is no java on PATH", "missing")]
    stores: list[Store] = []
    skipped: list[StoreResult] = []
    seen: set[Path] = set()
    for home, found_by in homes:
        cacerts = next((c for c in (home / "lib/security/cacerts", home / "jre/lib/security/cacerts")
                        if c.exists()), None)
        keytool = next((k for k in (home / "bin/keytool", home / "jre/bin/keytool") if k.is_file()), None)
        if cacerts is None or keytool is None:
            what = "lib/security/cacerts" if cacerts is None else "bin/keytool"
            skipped.append(StoreResult("java", f"Java ({found_by})", str(home), "skipped",
                                       f"{home} has no {what}", "missing"))
            continue
        if cacerts.resolve() in seen:
            continue
        seen.add(cacerts.resolve())
        stores.append(JavaStore(home, found_by, cacerts, keytool, env))
    return stores, skipped


# --- finding the stores, and acting on them -----------------------------------------
def find_stores(kinds: Iterable[str] = KINDS, *, env: Mapping[str, str] | None = None,
                os_release: Path = OS_RELEASE) -> tuple[list[Store], list[StoreResult]]:
    """The stores of ``kinds`` on this Linux machine for this user (HOME and PATH from ``env``),
    and those skipped with the reason (a missing tool, an unknown distribution...)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("HOME") or Path.home())
    stores: list[Store] = []
    skipped: list[StoreResult] = []
    kinds = list(kinds)
    if "system" in kinds:
        try:
            stores.append(SystemStore(detect_system_layout(os_release, env), env))
        except UnsupportedSystem as exc:
            skipped.append(StoreResult("system", "system store", "", "skipped", str(exc), "unsupported"))
    if "nss" in kinds:
        found, missing = _nss_stores(home, env)
        stores += found
        skipped += missing
    if "java" in kinds:
        found, missing = _java_stores(env)
        stores += found
        skipped += missing
    return stores, skipped


def _check(store: Store) -> StoreResult | None:
    blocked = store.blocked()
    if blocked is None:
        return None
    code, reason = blocked
    return store.skipped(code, reason, needs_root=os.geteuid() != 0 and store.kind != "nss")


def install(anchor: Anchor, stores: Iterable[Store]) -> list[StoreResult]:
    """Add ``anchor`` to each store that lacks it; a store that has it is left untouched."""
    results = []
    for store in stores:
        if (skip := _check(store)) is not None:
            results.append(skip)
            continue
        try:
            before = store.state(anchor)
            if before.current is not None and before.pending is None:
                results.append(StoreResult(store.kind, store.label, store.location, "unchanged", state=before,
                                           notes=list(store.notes)))
                continue
            if before.current is None and before.elsewhere and not store.holds_copies:
                # NSS keeps a certificate once, under its first nickname: certkit cannot add its own copy,
                # and leaves (and will never remove) the one someone else added.
                results.append(StoreResult(store.kind, store.label, store.location, "unchanged", state=before,
                                           notes=[*store.notes, "already trusted under a name certkit did not "
                                                  "give; certkit leaves that entry alone"]))
                continue
            store.add(anchor)
            after = store.state(anchor)
            if after.current is None or after.pending:
                raise TrustError(f"the CA is not in {store.location} after adding it")
            results.append(StoreResult(store.kind, store.label, store.location, "added", state=after,
                                       notes=list(store.notes)))
        except (TrustError, OSError) as exc:
            results.append(StoreResult(store.kind, store.label, store.location, "failed", _reason(exc),
                                       notes=list(store.notes)))
    return results


def uninstall(anchor: Anchor | None, stores: Iterable[Store], *, every_certkit_ca: bool = False
              ) -> list[StoreResult]:
    """Remove certkit's copy of ``anchor`` from each store (and, with ``every_certkit_ca``, every
    certificate certkit named: older, rotated CAs). Nothing certkit did not name is touched."""
    if anchor is None and not every_certkit_ca:
        raise TrustError("Nothing to remove: no CA was given.")
    results = []
    for store in stores:
        if (skip := _check(store)) is not None:
            results.append(skip)
            continue
        try:
            before = store.state(anchor)
            targets = before.certkit_entries() if every_certkit_ca else [e for e in [before.current] if e]
            if not targets:
                results.append(StoreResult(store.kind, store.label, store.location, "absent", state=before,
                                           notes=list(store.notes)))
                continue
            store.remove(targets)
            after = store.state(anchor)
            left = {e.name for e in after.certkit_entries()} & {e.name for e in targets}
            if left:
                raise TrustError(f"{', '.join(sorted(left))} still in {store.location} after removing it")
            results.append(StoreResult(store.kind, store.label, store.location, "removed", state=after,
                                       removed=[e.name for e in targets], notes=list(store.notes)))
        except (TrustError, OSError) as exc:
            results.append(StoreResult(store.kind, store.label, store.location, "failed", _reason(exc),
                                       notes=list(store.notes)))
    return results


def status(anchor: Anchor | None, stores: Iterable[Store]) -> list[StoreResult]:
    """What each store holds of certkit's; changes nothing."""
    results = []
    for store in stores:
        try:
            state = store.state(anchor)
        except (TrustError, OSError) as exc:
            results.append(StoreResult(store.kind, store.label, store.location, "failed", _reason(exc)))
            continue
        if anchor is None:  # no CA to ask about: what certkit CAs the store trusts
            outcome = "certkit CAs" if state.older else "none"
        else:
            outcome = "incomplete" if state.pending else "trusted" if state.current else "not trusted"
        results.append(StoreResult(store.kind, store.label, store.location, outcome, state.pending, state=state,
                                   notes=list(store.notes)))
    return results


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, TrustError):
        where = f" ({shown(exc.filename)})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def warnings(anchor: Anchor | None, results: Sequence[StoreResult], *,
             now: dt.datetime | None = None) -> list[str]:
    """What is risky about the certkit CAs these results show trusted: an unencrypted key, an
    expired or expiring CA, older certkit CAs still trusted."""
    now = now or dt.datetime.now(dt.UTC)
    found: list[str] = []
    trusted_here = [r for r in results if r.state is not None and r.state.current is not None]
    if anchor is not None and trusted_here:
        where = ", ".join(sorted({r.kind for r in trusted_here}))
        if anchor.key_encrypted is False:
            found.append(f"the key of the trusted CA \"{shown(anchor.common_name)}\" ({anchor.key_path}) is not "
                         f"encrypted: whoever copies it can impersonate {anchor.scope()} to this machine's "
                         f"clients ({where}). Keep it encrypted, or take the CA out: certkit trust uninstall")
        found += _expiry(f"the trusted CA \"{shown(anchor.common_name)}\"", anchor.not_after, now)
    older: dict[str, tuple[Found, set[str]]] = {}
    for result in results:
        for entry in result.state.older if result.state else []:
            older.setdefault(entry.fingerprint, (entry, set()))[1].add(f"{result.kind}: {result.location}")
    for entry, places in older.values():
        what = "an older certkit CA is still trusted" if anchor is not None else "a certkit CA is trusted"
        found.append(f"{what}: {shown(entry.subject)} ({shown(entry.name)}) in {'; '.join(sorted(places))}. "
                     "Remove it with: certkit trust uninstall --every-certkit-ca")
        if entry.not_after is not None:
            found += _expiry(f"the older certkit CA {shown(entry.subject)}", entry.not_after, now)
    return found


def _expiry(what: str, not_after: dt.datetime, now: dt.datetime) -> list[str]:
    if not_after <= now:
        return [f"{what} expired on {not_after:%Y-%m-%d}; nothing it signed is accepted any more."]
    if not_after - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return [f"{what} expires on {not_after:%Y-%m-%d}, in {(not_after - now).days} days."]
    return []


# --- macOS and Windows: the commands, never run -------------------------------------
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
