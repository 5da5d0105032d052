"""The PKCS#11 module, the token and a session on it: loading the module once per process (again
in a forked child), finding the one token a URI names, logging in, finding objects; and the
short retries SoftHSM2 needs while another process rewrites its token files (:func:`transient`)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from certkit.paths import absolute
from certkit.pkcs11.errors import TokenAbsent, TokenError, TokenPinIncorrect, TokenPinNotInitialized, words
from certkit.pkcs11.uri import KeyURI
from certkit.text import Secret, secret_bytes, shown


def module_path(uri: KeyURI, module: str | Path | None, named_in: str | None = None) -> str:
    """The PKCS#11 module to load: ``module`` (--pkcs11-module, or an existing CA's, kept in the file
    ``named_in``), else the URI's module-path, else the module its module-name stands for."""
    from certkit.pkcs11.modules import named_module

    named = None if uri.module_path or (module and named_in is not None) else named_module(uri, module)
    path = str(module) if module else uri.module_path or named
    if module and uri.module_path and named_in is None and absolute(uri.module_path) != absolute(str(module)):
        # init-ca: the URI it keeps would name a module other than the one that made the key
        raise TokenError(f"The key URI's module-path names {shown(uri.module_path)}, and --pkcs11-module "
                         f"{shown(str(module))}: they must be the same module; give one of them.")
    if not path:
        how = ("pass --pkcs11-module PATH or add ?module-path=PATH to the URI" if named_in is None else
               f'write its path as "pkcs11_module" in {shown(named_in)}')  # an existing CA's commands take no option
        soft = "/usr/lib/softhsm/libsofthsm2.so"
        hint = f" (SoftHSM's is {soft})" if Path(soft).exists() else ""
        raise TokenError(f"No PKCS#11 module is named for {shown(uri.text)}: {how}{hint}.")
    if not Path(path).is_file():
        field = '"pkcs11_module"' if module else "the key URI's module-path"
        where = "" if named_in is None else (f" (the CA's module, as {field} in {shown(named_in)} says: moved by a "
                                             "package upgrade? Write its new path there)")
        from certkit.vocabulary import file_kind_text

        what = ("is a folder, not a module" if Path(path).is_dir() else  # as it is: a FIFO, /dev/null is no module
                f"is {file_kind_text(path)}" if os.path.lexists(path) else "does not exist")
        raise TokenError(f"The PKCS#11 module {shown(path)} {what}{where}.")
    # In full: the loader looks for a name without a '/' in the library path, not in this folder
    # (where it was found), and certkit-ca.json keeps it for commands run from any folder.
    return absolute(path)


def clear_tls_errors() -> None:
    """Empty this thread's OpenSSL error queue, in the libcrypto Python's ``ssl`` uses. A PKCS#11 module
    built on OpenSSL can leave errors there (SoftHSM2 at each C_Initialize: "[ENGINE: NO_SUCH_ENGINE] no such
    engine"), and OpenSSL reads that queue first when a TLS read has to wait for data: the next read of a
    connection this thread serves failed with the module's stale error, and ``acme serve`` dropped the
    client's keep-alive connection after a finalize that used the token (the client's next request
    answered by a closed connection). Python's ``ssl`` clears the queue when it makes a TLS object."""
    import ssl

    global _CLEARING
    if _CLEARING is None:
        _CLEARING = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _CLEARING.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)


_CLEARING = None


def leaves_no_tls_errors(call):
    """Decorate a function that talks to the token: whatever the module left on this thread's OpenSSL
    error queue is cleared when it returns or raises (:func:`clear_tls_errors`)."""
    @functools.wraps(call)
    def cleared(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        finally:
            clear_tls_errors()
    return cleared


_INIT_LOCK = threading.Lock()
_INITIALIZED_IN: dict[str, int] = {}  # module path -> pid that initialized it


def binding():
    """python-pkcs11, imported when a token is first used (an optional dependency: certkit[team])."""
    try:
        import pkcs11
    except ImportError:
        raise TokenError("A CA key in a PKCS#11 token needs python-pkcs11: pip install 'certkit[team]'.") from None
    return pkcs11


@leaves_no_tls_errors
def _lib(path: str, *, locked: bool = False):
    """The loaded module, initialized in this process (a forked child initializes it again: PKCS#11
    sessions do not survive fork)."""
    if not locked:
        with _INIT_LOCK:
            return _lib(path, locked=True)
    pkcs11 = binding()
    try:
        lib = pkcs11.lib(path)
    except Exception as exc:  # a file that is no PKCS#11 module, a module that fails to initialize
        raise TokenError(f"The PKCS#11 module {shown(path)} cannot be loaded: {words(exc)}."
                         f"{softhsm_hint(path)}") from None
    pid = _INITIALIZED_IN.get(path)
    if pid is not None and pid != os.getpid():
        lib.reinitialize()
    _INITIALIZED_IN[path] = os.getpid()
    return lib


def softhsm_hint(module: str) -> str:
    """For SoftHSM, where its configuration says its tokens are: a wrong $SOFTHSM2_CONF (a folder, another
    file, none) fails to load the module, or shows no token; "" for any other module. A sentence of its own,
    after the one it follows (which ends in a parenthesis often: the module's own words, the tokens present)."""
    if "softhsm" not in os.path.basename(str(module)).lower():
        return ""
    conf = os.environ.get("SOFTHSM2_CONF")
    if conf:
        return (f" SoftHSM reads its configuration, and the tokendir where its tokens are, from $SOFTHSM2_CONF, here "
                f"{shown(conf)}: is that its configuration file, and its tokendir readable?")
    return (" SoftHSM reads its configuration, and the tokendir where its tokens are, from $SOFTHSM2_CONF, else "
            "/etc/softhsm/softhsm2.conf: is it there, and its tokendir readable?")


@leaves_no_tls_errors
def _reinitialize(module: str) -> None:
    """Finalize and initialize the module again: it reads its tokens afresh (sessions of this
    process are reopened on use)."""
    with _INIT_LOCK:
        _lib(module, locked=True).reinitialize()


@leaves_no_tls_errors
def transient(call, *args, **kwargs):
    """``call`` retried a few times on CKR_GENERAL_ERROR: SoftHSM2
    answers so while another process rewrites the token's files (several processes logging in to
    one token at once); a real failure stays and is reported after about a second."""
    pkcs11 = binding()
    for delay in _RETRY_DELAYS:
        try:
            return call(*args, **kwargs)
        except pkcs11.GeneralError:
            time.sleep(delay)
    return call(*args, **kwargs)


_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4)


@leaves_no_tls_errors
def find_token(uri: KeyURI, module: str):
    """The one token ``uri`` names (no PIN needed); :class:`TokenAbsent` when there is none, or when
    the module keeps failing to list its tokens (SoftHSM2 answers CKR_GENERAL_ERROR about a token
    whose files were deleted, until it is initialized again)."""
    found, seen, near, failure = _look(uri, module)
    for delay in _RETRY_DELAYS:
        if found:
            break
        # Some modules (SoftHSM) list only the tokens there were when they were initialized (a
        # long-running process, a token made since), and none at all if another process was
        # rewriting the token files just then: initialize again and look again, for about a
        # second.
        _reinitialize(module)
        found, seen, near, failure = _look(uri, module)
        if not found:
            time.sleep(delay)
    if not found and failure is not None:
        raise TokenAbsent(f"The PKCS#11 module {shown(module)} cannot list its tokens to find {shown(uri.text)}: "
                          f"{words(failure)}.", cause=words(failure))
    if not found and near:  # the token is there: the URI's serial=, slot-id=... are not what it has now
        raise TokenAbsent(f"No token matching {shown(uri.text)} is present (module {shown(module)}): "
                          f"{'; '.join(near)}. A token initialized again (restored, re-created) has a new serial "
                          "and slot: if it is the one, change those attributes of the key URI (an existing CA's is "
                          "in its certkit-ca.json), else plug in or restore the token the URI names.", present=seen)
    if not found:
        present = ", ".join(f"'{shown(label)}'" for label in seen) or "none"
        raise TokenAbsent(f"No token matching {shown(uri.text)} is present (module {shown(module)}; tokens "
                          f"present: {present}).{softhsm_hint(module)} Plug in or restore the token the URI names (a "
                          "token deleted is restored from its backup), or correct the URI (an existing CA's is in its "
                          "certkit-ca.json).", present=seen)
    if len(found) > 1:
        raise TokenError(_several_tokens(uri, found))
    return found[0]


def _several_tokens(uri: KeyURI, found: list) -> str:
    """Why ``uri``, which matches several tokens, names none: their serials, and the URIs that name each."""
    serials = [token.serial.decode(errors="replace").strip() for token in found]
    said = f"{len(found)} tokens match {shown(uri.text)} (serials {', '.join(map(shown, serials))})"
    if len(set(serials)) < len(serials):
        return f"{said}; they share a serial, so no URI can name one of them: give one of them another label."
    named = " or ".join("'" + shown(uri.with_serial(serial)) + "'" for serial in serials)
    return f"{said}; add serial= to the key URI to name one: {named}."


def _look(uri: KeyURI, module: str) -> tuple[list, list[str], list[str], Exception | None]:
    """The tokens matching ``uri``, the labels of all, what each token of the URI's label (each token, if it names
    no label: found by serial= or slot-id=) differs in (:func:`_differences`), and the error that kept the module
    from listing them (after :func:`transient`'s retries) if it did."""
    pkcs11 = binding()
    try:
        return (*transient(_matching_tokens, uri, module), None)
    except pkcs11.GeneralError as exc:
        return [], [], [], exc


def _differences(uri: KeyURI, slot, token) -> str | None:
    """What of ``uri`` the token of its label does not match, in words ("its serial is ..., not the
    URI's serial=..."), None if it matches all of it."""
    has = {"serial": (uri.serial, token.serial.decode(errors="replace").strip()),
           "manufacturer": (uri.manufacturer, token.manufacturer_id), "model": (uri.model, token.model),
           "slot-id": (uri.slot_id, slot.slot_id)}
    said = [f"its {name} is {shown(str(value))}, not the URI's {name}={shown(str(wanted))}"
            for name, (wanted, value) in has.items() if wanted is not None and wanted != value]
    return f"the token '{shown(token.label)}' is present, but {', and '.join(said)}" if said else None


def _matching_tokens(uri: KeyURI, module: str) -> tuple[list, list[str], list[str]]:
    pkcs11 = binding()
    lib = _lib(module)
    found, seen, near = [], [], []
    try:
        for slot in lib.get_slots(token_present=True):
            try:
                token = slot.get_token()
            except (pkcs11.TokenNotPresent, pkcs11.TokenNotRecognised):
                continue
            if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                continue
            seen.append(token.label)
            if uri.token is not None and token.label != uri.token:
                continue
            differs = _differences(uri, slot, token)
            if differs is None:
                found.append(token)
            else:  # a token of the URI's label (any token, if it names none) that differs: said with what it has
                near.append(differs)
    except pkcs11.GeneralError:
        raise
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"The PKCS#11 module {shown(module)} cannot list its tokens: {words(exc)}.") from None
    return found, seen, near


@leaves_no_tls_errors
def open_session(uri: KeyURI, module: str, pin: Secret | None, *, rw: bool = False):
    """A session logged in with ``pin`` on the one token ``uri`` names.

    SoftHSM2 reads a token's PINs once, when the module is initialized. If it read them while
    another process was rewriting the token's file (every login rewrites it), it has no user PIN
    for that token and answers CKR_USER_PIN_NOT_INITIALIZED to every login until the module is
    initialized again. So that answer is retried by initializing the module again and finding the
    token again, for about a second; a token that really has no user PIN is then reported."""
    for delay in (*_RETRY_DELAYS, None):
        token = find_token(uri, module)
        try:
            return login(token, pin, rw=rw, module=module)
        except TokenPinNotInitialized:
            if delay is None:
                raise
        _reinitialize(module)
        time.sleep(delay)
    raise AssertionError("unreachable")


# The PINs a token refused in this process (and its forked children), by module, token and a salted digest
# of the PIN (never the PIN itself), with the time: never sent to that token again (tokens lock after a few
# wrong PINs), even by a long-running server that logs in again after the token closed its session.
_REFUSED: dict[tuple[str, str, bytes, bytes], str] = {}
_SALT = os.urandom(16)
# ... nor by another process of this process's family (issue-batch's forked workers, which each log in again when
# the token closed their sessions: after a PIN change, each sent the old PIN, N wrong PINs where a token locks after
# a few): refusals are also kept in memory shared with the children forked after the first login, and the family
# logs in one process at a time (a POSIX lock on that memory's file, released if its holder dies).
_SLOT, _SLOTS = 64, 64  # a slot: the digest of a refusal's key (32 bytes), then when (UTC text)
_family: tuple[int, object] | None = None
_LOGIN_LOCK = threading.Lock()  # the threads of one process (a POSIX lock does not tell them apart)


def _refusal_key(module: str, token, text: str) -> tuple[str, str, bytes, bytes]:
    return (module, str(token.label), bytes(token.serial or b""), hashlib.sha256(_SALT + text.encode()).digest())


def _family_memory() -> tuple[int, object]:
    """The file descriptor and mapping shared with forked children (-1 and None where memfd is not available)."""
    global _family
    if _family is None:
        import mmap

        try:
            fd = os.memfd_create("certkit-refused-pins")
            os.ftruncate(fd, _SLOT * _SLOTS)
            _family = (fd, mmap.mmap(fd, _SLOT * _SLOTS))
        except (AttributeError, OSError):
            _family = (-1, None)
    return _family


@contextmanager
def _one_login_at_a_time():
    import fcntl

    fd, _memory = _family_memory()
    with _LOGIN_LOCK:
        if fd >= 0:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fd >= 0:
                fcntl.lockf(fd, fcntl.LOCK_UN)


def _refused_at(key: tuple) -> str | None:
    """When the token refused this PIN, in this process or its family; None if it never did."""
    if key in _REFUSED:
        return _REFUSED[key]
    _fd, memory = _family_memory()
    digest = hashlib.sha256(repr(key).encode()).digest()
    for start in range(0, _SLOT * _SLOTS if memory is not None else 0, _SLOT):
        if memory[start:start + 32] == digest:
            return memory[start + 32:start + _SLOT].rstrip(b"\0").decode()
    return None


def _remember_refusal(key: tuple) -> None:
    _REFUSED[key] = when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    _fd, memory = _family_memory()
    empty = bytes(32)
    for start in range(0, _SLOT * _SLOTS if memory is not None else 0, _SLOT):
        if memory[start:start + 32] == empty:
            memory[start:start + _SLOT] = (hashlib.sha256(repr(key).encode()).digest()
                                           + when.encode().ljust(_SLOT - 32, b"\0"))
            return


def login(token, pin: Secret | None, *, rw: bool = False, module: str = ""):
    """A session on ``token`` logged in with ``pin``; a PIN it refused in this process (or its family) is not sent
    again."""
    if pin is None:
        raise TokenError(f"The token '{shown(token.label)}' needs its PIN: give --pin-file, $CERTKIT_PKCS11_PIN "
                         "or run on a terminal to be asked.")
    try:
        text = secret_bytes(pin, "The PIN").decode("utf-8")
    except UnicodeDecodeError:
        raise TokenPinIncorrect(f"The PIN given for the token '{shown(token.label)}' is not UTF-8 text; PKCS#11 PINs "
                                "are, so it was not sent.") from None
    key = _refusal_key(module, token, text)
    with _one_login_at_a_time():
        when = _refused_at(key)
        if when is not None:
            error = TokenPinIncorrect(f"The token '{shown(token.label)}' refused this PIN at {when}, earlier in "
                                      "this process (or another worker of this command), so it is not sent again "
                                      "(tokens lock after a few wrong PINs): if the token's PIN was changed since "
                                      "this process started, start it again with the new PIN.")
            error.remembered = True
            raise error
        try:
            return _login(token, text, rw)
        except TokenPinIncorrect:
            _remember_refusal(key)
            raise


def _forget_login_lock() -> None:
    global _LOGIN_LOCK
    _LOGIN_LOCK = threading.Lock()  # another thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_login_lock)


def _login(token, text: str, rw: bool):
    """A session on ``token`` logged in with the PIN ``text``; each refusal said in words."""
    pkcs11 = binding()
    try:
        return transient(token.open, rw=rw, user_pin=text)
    except pkcs11.UserPinNotInitialized:
        raise TokenPinNotInitialized(f"The token '{shown(token.label)}' has no user PIN set; its security officer "
                                     "sets one (e.g. softhsm2-util --init-pin or pkcs11-tool --init-pin).") from None
    except pkcs11.UserAlreadyLoggedIn:  # another key of this process opened the token: login is per process
        return transient(token.open, rw=rw)
    except pkcs11.PinIncorrect:  # a blank around it (a PIN file's "1234 ") was sent as part of it: said so
        blank = (" The PIN sent began or ended with white space, which went to the token as part of it: remove it "
                 "if it is no part of the PIN.") if text != text.strip() else ""
        raise TokenPinIncorrect(f"The token '{shown(token.label)}' refused the PIN (tokens lock after a few "
                                f"wrong PINs; certkit does not retry).{blank}") from None
    except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.SlotIDInvalid, pkcs11.GeneralError) as exc:
        raise TokenAbsent(f"The token '{shown(token.label)}' is no longer present or stopped answering: "
                          f"{words(exc)}.", cause=words(exc)) from None
    except pkcs11.PinLocked:
        raise TokenError(f"The PIN of token '{shown(token.label)}' is locked after too many wrong PINs; its "
                         "security officer (SO PIN) can unlock it.") from None
    except (pkcs11.PinLenRange, pkcs11.PinInvalid) as exc:
        raise TokenPinIncorrect(f"The token '{shown(token.label)}' refused the PIN ({words(exc)}).") from None
    except pkcs11.PKCS11Error as exc:
        raise TokenError(f"Cannot open a session on token '{shown(token.label)}': {words(exc)}.") from None


@leaves_no_tls_errors
def pin_state(token) -> tuple[str, str] | None:
    """What the token's flags say of its user PIN, as a level (error, warning) and words, or None when all is
    well: locked (nothing signs until the security officer unlocks it), one wrong PIN from being locked, or
    refused at least once since the last right PIN (a host or program still using an old PIN?)."""
    flag = binding().TokenFlag
    if token.flags & flag.USER_PIN_LOCKED:
        return "error", (f"'{shown(token.label)}' has its user PIN locked (too many wrong PINs, CKF_USER_PIN_LOCKED): "
                         "nothing can be signed until its security officer unlocks it with the SO PIN.")
    if token.flags & (flag.USER_PIN_FINAL_TRY | flag.USER_PIN_COUNT_LOW):
        said = ("one more wrong user PIN locks it (CKF_USER_PIN_FINAL_TRY)" if token.flags & flag.USER_PIN_FINAL_TRY
                else "it refused a wrong user PIN since the last right one (CKF_USER_PIN_COUNT_LOW)")
        return "warning", (f"'{shown(token.label)}' says {said}: is a host or program still using an old PIN? "
                           "Tokens lock after a few wrong PINs.")
    return None


def find_objects(session, uri: KeyURI, object_class):
    pkcs11 = binding()
    attrs = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        attrs[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[pkcs11.Attribute.ID] = uri.id
    return transient(lambda: list(session.get_objects(attrs)))
