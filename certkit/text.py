"""Text for people: every string that came from outside is shown with its control characters escaped.

A common name, a SAN entry, a manifest field or a file name may hold ``ESC``
sequences that retitle or clear a terminal, bidi controls that reorder what is
read, or newlines that forge an extra line of output. :func:`shown` escapes
all of them (C0, DEL, C1, Unicode format and separator characters but the
plain space) for use inside a message; :func:`terminal_safe` is the last net
for whole blocks of output, keeping only the newlines and tabs certkit itself
lays out with. No third-party imports: the command line uses this at start-up.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (a path's, kept by surrogateescape): that byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# What every message writes in place of a secret (a URL's password or user information, a secret parameter's value):
# libpq's mark for them, and never "...", which certkit's messages write where they cut a long value short.
HIDDEN = "***"


def shown(text: object) -> str:
    """``text`` fit to quote in one line: every non-printable character escaped as ``\\xNN``/``\\uNNNN``.

    Printable is Python's definition: letters, marks, numbers, punctuation,
    symbols and the ASCII space; so control characters (C0, DEL, C1), format
    characters (bidi controls, zero-width joiners), line and paragraph
    separators and non-ASCII spaces are all escaped.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


# Why a secret given as a str is refused when it holds a byte that did not decode (see is_utf8).
NOT_UTF8_SECRET = ("is a str that is not UTF-8 text (a byte that did not decode, as os.environ gives for Latin-1, "
                   "or a lone surrogate); pass it as bytes (os.environb) instead")


# What the library takes as a secret (a CA key's passphrase, a token's PIN, a PKCS#12 password), everywhere.
Secret = bytes | bytearray | memoryview | str


def quoted(text: object) -> str:
    """``text`` between double quotes, as a log line quotes it: a ``"`` or ``\\`` in it escaped with a backslash
    (as Apache and nginx log them), so that the quotes end where it ends, then :func:`shown`."""
    return '"' + shown(str(text).replace("\\", "\\\\").replace('"', '\\"')) + '"'


def received(text: str, *, quote: bool = True) -> str:
    """What an HTTP client sent (a request line, which Python's http.server decodes as Latin-1), as a log line
    shows it: every byte past ASCII as ``\\xhh``, as nginx and Apache log it (``/é`` sent in UTF-8 is
    ``/\\xc3\\xa9``, never the ``/Ã©`` of its Latin-1 reading); with ``quote``, between double quotes with a
    ``"`` or ``\\`` in it escaped, as :func:`quoted` writes them."""
    if quote:
        text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    text = shown(str(text).encode("latin-1", "backslashreplace").decode("ascii", "backslashreplace"))
    return f'"{text}"' if quote else text


def secret_bytes(secret: Secret, what: str, expected: str = "bytes or a str") -> bytes:
    """``secret`` as bytes, by the one rule every library function that takes a secret keeps: bytes, a
    bytearray or memoryview (copied), or a str taken as UTF-8 (one that is not UTF-8 text is refused in
    words); anything else is a WrongType naming its type alone (``what must be expected``), never its value."""
    if isinstance(secret, bytes):
        return secret
    if isinstance(secret, (bytearray, memoryview)):
        return bytes(secret)
    if isinstance(secret, str):
        if not is_utf8(secret):
            from certkit.errors import InvalidArgument

            raise InvalidArgument(f"{what} {NOT_UTF8_SECRET}.")
        return secret.encode("utf-8")
    from certkit.vocabulary import wrong_type

    raise wrong_type(what, expected, secret, secret=True)


def is_utf8(text: str) -> bool:
    """Whether ``text`` is UTF-8 text: no byte that did not decode (kept by surrogateescape, as the paths,
    arguments and environment variables Python reads are)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def terminal_safe(text: str) -> str:
    """A block of output with everything escaped but the newlines and tabs that lay it out."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else _escape(ch) for ch in text)


# Standard streams that were closed when certkit started (``>&-``): see certkit.entry.
CLOSED_STREAMS: set[str] = set()


def stdout_closed(what: str) -> str | None:
    """The refusal for a command whose ``what`` goes to standard output, if it was closed at start."""
    if "stdout" not in CLOSED_STREAMS:
        return None
    return f"Standard output is closed, so {what} would go nowhere; write to a file with --out FILE."


def discard_stdout() -> None:
    """Point standard output's file descriptor at /dev/null once writing to it has failed: what is
    still in its buffer then goes nowhere when the interpreter flushes it at exit, instead of failing
    again there with Python's "Exception ignored ... BrokenPipeError" (or OSError) on standard error."""
    import os
    import sys

    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture), or closed
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


# The errors standard output's writes raised, when watch_stdout() put the watcher in place.
STDOUT_FAILURES: list[OSError] = []


def watch_stdout() -> None:
    """Put standard output behind a writer that notes each OSError its writes raise, so that an error
    that names no file can be told to be standard output's (a full disk, a reader that left) wherever
    it surfaces. The same descriptor, encoding and line buffering as before; a character the encoding cannot
    write (a certificate's CN with an emoji, under a Latin-1 locale) is written escaped (``\\U0001f512``),
    as Python writes it to stderr, never a traceback in the midst of a report."""
    import io
    import sys

    class Watched(io.FileIO):
        def write(self, data):
            try:
                return super().write(data)
            except OSError as exc:
                STDOUT_FAILURES.append(exc)
                raise

    old = sys.stdout
    errors = "backslashreplace" if getattr(old, "errors", None) == "strict" else getattr(old, "errors", None)
    try:
        raw = Watched(old.fileno(), "w", closefd=False)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        return
    old.flush()
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=old.encoding, errors=errors,
                                  line_buffering=old.line_buffering)


def unnamed_os_error(exc: OSError) -> str | None:
    """What an OSError that names no file was about, when that can be told: standard output that
    failed (a full disk, a reader that left: see :func:`watch_stdout`), or a current folder that no
    longer exists. ``None`` otherwise."""
    import errno
    import os

    if exc.filename is not None:
        return None
    if exc.errno == errno.ENOENT:
        try:
            os.getcwd()
        except FileNotFoundError:
            return ("The current folder no longer exists (it was removed or renamed); change to an existing "
                    "folder and run the command again.")
        return None
    if not any(exc is failed for failed in STDOUT_FAILURES):
        return None
    discard_stdout()
    if isinstance(exc, BrokenPipeError):
        return "The reader of standard output closed it (a broken pipe) before everything was written."
    return f"Cannot write to standard output: {os_error_words(exc) or exc.strerror or exc}."


def os_error_words(exc: OSError) -> str | None:
    """Why a write failed, in words, for the failures a user can act on: "the disk is full" rather than "No space
    left on device", and the file size limit (ulimit -f) by its value rather than "File too large"; None for others."""
    import errno

    if exc.errno == errno.EFBIG:
        return too_large_words()
    return {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only"}.get(exc.errno)


def file_size_limit() -> int | None:
    """The largest file this process may write (RLIMIT_FSIZE: ``ulimit -f``, systemd's LimitFSIZE=), in bytes;
    None when there is no limit."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def too_large_words() -> str:
    """Why a file could not grow (EFBIG): this process's file size limit, named with its value, if it has one."""
    limit = file_size_limit()
    if limit is None:
        return "the file would be larger than the file system allows"
    return (f"the file would grow past this process's file size limit of {limit:,} bytes (ulimit -f, or LimitFSIZE= "
            "of a systemd unit); raise it")


def _columns_of(ch: str) -> int:
    import unicodedata

    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: wide (CJK, emoji) characters two, marks none."""
    return len(text) if text.isascii() else sum(_columns_of(ch) for ch in text)


def fit_columns(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns, its last one an ellipsis when cut."""
    if columns(text) <= width:
        return text
    room, kept = max(width - 1, 1), []
    for ch in text:
        room -= _columns_of(ch)
        if room < 0:
            break
        kept.append(ch)
    return "".join(kept) + "…"


def wrap_columns(text: str, width: int) -> str:
    """``text`` broken between words into lines of at most ``width`` columns (as ``textwrap.fill``, but counting
    columns: a wide character takes two); only a word longer than a whole line is cut (:func:`fit_columns`)."""
    lines: list[str] = []
    for word in text.split(" "):
        if not lines:
            lines.append(word)
        elif columns(lines[-1]) + 1 + columns(word) <= width:
            lines[-1] += " " + word
        elif word:  # a run of spaces where a line breaks is dropped, as textwrap drops it
            lines.append(word)
    return "\n".join(fit_columns(line.rstrip(" "), width) for line in lines)


def pad_columns(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns (``str.ljust`` counts characters)."""
    return text + " " * max(width - columns(text), 0)


def is_digits(text: str) -> bool:
    """Whether ``text`` is the digits 0 to 9 alone (``str.isdigit`` also takes '²' and '٣', which int()
    refuses or reads as another script's digits)."""
    return text.isascii() and text.isdigit()


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is a whole number as people write one: a sign, then the digits 0 to 9 alone (int()
    also reads other scripts' digits, '٣٠', and digits grouped with underscores, '1_0')."""
    import re

    return re.fullmatch(r"[ \t]*[+-]?[0-9]+[ \t]*", text) is not None  # blanks and tabs only: no NBSP, no U+2028


BYTE_ORDER_MARK = "\ufeff".encode()  # U+FEFF in UTF-8: EF BB BF
BOM_PROBLEM = ("starts with a byte-order mark (U+FEFF, which Windows Notepad writes), which no prompt could type and "
               "OpenSSL's -passin file: would take as part of the secret; remove it (an editor saves a file without "
               "one as 'UTF-8', not 'UTF-8 with BOM')")


def line_breaks(secret: bytes, what: str) -> str:
    """What the line breaks of ``secret`` (``what``: "a secret", "a PIN") are, in words after "holds": a lone
    carriage return (a Windows line end whose newline was lost, or a terminal's Enter) is no second line."""
    if b"\n" not in secret:
        return (f"{what} that ends in a carriage return (\\r)" if secret.rstrip(b"\r") and b"\r" not in
                secret.rstrip(b"\r") else f"{what} with a carriage return (\\r) in it")
    return f"{what} of several lines (a blank line after it?)"


def new_secret_problem(secret: bytes) -> str | None:
    """Why ``secret``, a new passphrase or password (a CA key's, a bundle.p12's), is one no prompt could give
    again, in words to follow "The file F" or "$VARIABLE"; None when it is fine. Several lines (a blank line
    after it), a byte-order mark, a NUL byte (OpenSSL, Java and cryptography end a password there), white space
    alone, more than a secret file holds, or not UTF-8: the command line and the library refuse the same."""
    if b"\n" in secret or b"\r" in secret:
        return (f"holds {line_breaks(secret, 'a secret')}; a passphrase or password is one line (no prompt could "
                "give the rest; a file's one trailing newline is ignored)")
    if secret.startswith(BYTE_ORDER_MARK):
        return BOM_PROBLEM
    if b"\0" in secret:
        return ("holds a NUL byte, which no prompt could type and OpenSSL, Java and other C tools take as the end of "
                "the secret; choose one without")
    if not secret.strip():
        return "holds a secret of white space only"
    from certkit.constants import MAX_SECRET_FILE_BYTES

    if len(secret) > MAX_SECRET_FILE_BYTES:
        return ("holds a secret longer than 4 KiB, which no secret file (what --passphrase-file and a renewal timer "
                "read) could give again; choose a shorter one")
    try:
        secret.decode("utf-8")
    except UnicodeDecodeError:
        return "holds a secret that is not UTF-8 text, which a prompt could not take again; choose one in UTF-8"
    return None


def cut_long_words(text: str, limit: int = 500) -> str:
    """``text`` with every run of more than ``limit`` characters without a blank (a value or path the user
    gave, echoed in a message) cut to its start and its end (a path's file name) and its length: an error
    stays one readable line. The length is the value's: quotes or brackets around it and the punctuation
    after it (``"...".``, ``...:``) are kept out of the cut and out of the count."""
    import re

    def cut(match) -> str:
        word = match.group()
        value = word.lstrip(_OPENING)
        opening = word[:len(word) - len(value)]
        closed = value.rstrip(_PUNCTUATION)
        punctuation = value[len(closed):]
        value = closed.rstrip(_CLOSING)
        closing = closed[len(value):]
        if len(value) <= limit:  # a short value: the word stays whole, unless what surrounds it is long
            if len(word) - len(value) <= 10:
                return word
            opening, value, closing, punctuation = "", word, "", ""
        return f"{opening}{value[:100]}...{value[-100:]}{closing} ({len(value)} characters){punctuation}"

    return re.sub(rf"\S{{{limit + 1},}}", cut, text)


_OPENING, _CLOSING, _PUNCTUATION = "\"'([{<", "\"')]}>", ".,:;!?"


MESSAGE_LINE_LIMIT = 1000  # characters of one line of an error message: a value of thousands, echoed, is cut


def cut_long_lines(text: str, limit: int = MESSAGE_LINE_LIMIT) -> str:
    """``text`` with its long words cut (:func:`cut_long_words`), then each line still over ``limit`` characters
    (a long value with blanks in it, echoed) cut to its start, where what is wrong is said, and its end, where
    what to do is: a message stays readable, whatever it quotes."""
    head, tail = limit * 3 // 5 - 20, limit * 2 // 5 - 20  # and the mark between, of at most 40: no line over limit
    lines = cut_long_words(text).split("\n")
    return "\n".join(line if len(line) <= limit else
                     f"{line[:head]} ... ({len(line) - head - tail} characters cut) ... {line[-tail:]}"
                     for line in lines)


# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters that show nothing. UTS 46
# drops some from a DNS name (ZERO WIDTH SPACE, SOFT HYPHEN, WORD JOINER), so the name certified would not be the
# one given; others (ZERO WIDTH JOINER, the direction marks) hide in a name that looks like another.
_INVISIBLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
              (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
              (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
# The names of the control characters people meet (unicodedata has none for the C0 and C1 controls).
_CONTROL_NAMES = {0x00: "NULL", 0x07: "BELL", 0x08: "BACKSPACE", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED",
                  0x0B: "LINE TABULATION", 0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE",
                  0x7F: "DELETE", 0x85: "NEXT LINE"}


def is_invisible(ch: str) -> bool:
    """Whether ``ch`` is a character that shows nothing (Unicode's Default_Ignorable_Code_Point)."""
    return any(low <= ord(ch) <= high for low, high in _INVISIBLE)


def unseen(text: str, *, invisible_too: bool = False) -> str | None:
    """The first character of ``text`` that cannot be printed (or, with ``invisible_too``, that shows nothing,
    such as U+034F or a variation selector), in the words of every refusal of a name:
    ``control characters (U+001B ESCAPE at position 5)``, ``an invisible character (U+200D ZERO WIDTH JOINER
    at position 2)``; else None."""
    import unicodedata

    for position, ch in enumerate(text, 1):
        if ch.isprintable() and not (invisible_too and is_invisible(ch)):
            continue
        category = unicodedata.category(ch)
        name = unicodedata.name(ch, _CONTROL_NAMES.get(ord(ch), ""))
        what = ("control characters" if category == "Cc" else "an invisible character"
                if category == "Cf" or is_invisible(ch) else "a character that cannot be printed")
        return f"{what} (U+{ord(ch):04X}{' ' + name if name else ''} at position {position})"
    return None
