"""A PostgreSQL inventory's URL: never a secret in it, nor in a message that names it.

What an inventory URL may hold (:func:`check_url`; :func:`check_stored_url` for one written into
certkit-ca.json) and how a message shows one (:func:`shown_url`: every secret's value hidden).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from certkit.errors import InventoryError
from certkit.paths import absolute
from certkit.text import HIDDEN, shown

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(text: str) -> bool:
    return str(text).startswith(SCHEMES)


# libpq's connection parameters that hold a secret: those PQconndefaults() marks "*" (shown as
# stars: password, sslpassword, oauth_client_secret) and the SCRAM keys it hides as debug options
# (a ClientKey logs in as well as the password it was derived from). A path to a secret (passfile,
# sslkey, a service file) is not one: the file is where the secret belongs, and libpq checks its mode.
SECRET_PARAMETERS = ("password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key")


def secrets_in(url: str) -> list[str]:
    """The secret connection parameters ``url`` sets (:data:`SECRET_PARAMETERS`, in that order),
    wherever libpq (or a generic URL parser) would find them: a password in the user part, or a
    query parameter, whatever its case and %-escapes (libpq decodes the names), given once or twice."""
    found = {name for name, _value in _secret_spans(url)}
    return [name for name in SECRET_PARAMETERS if name in found]


def shown_url(url: object) -> str:
    """``url`` fit to print in a message: :func:`certkit.text.shown`, with the value of every
    secret parameter (a password in the user part, ``sslpassword=``...) replaced by ``***``;
    every message that names an inventory URL goes through this, wherever the URL came from."""
    return shown(hide_secrets(str(url)))


def hide_secrets(text: str) -> str:
    """``text`` with the value of every secret parameter replaced by ``***`` (not escaped for printing:
    an inventory's location, kept to be printed, whatever was taken for it)."""
    merged: list[list[int]] = []
    for start, end in sorted(span for _name, span in _secret_spans(text) if span is not None):
        if merged and start <= merged[-1][1]:  # overlapping (a value holding ';password=...'): one span
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):  # from the end: the earlier spans stay where they are
        text = text[:start] + HIDDEN + text[end:]
    return text


def _secret_spans(url: str) -> list[tuple[str, tuple[int, int] | None]]:
    """Each secret parameter in ``url``: its name and where its value is ((start, end), or None for
    a name without a value). Read more widely than libpq reads anything, never more narrowly, in any
    spelling a message may carry (``jdbc:postgresql://``, ``postgresql//``, a keyword/value string):
    the user part runs from the first ``scheme:/`` or ``//`` to the last '@' before the query (libpq
    takes it to the first '@' before any '/', a generic parser to the last before a '/', '?' or '#');
    a parameter is a name (%-escapes decoded, any case) after the start, a blank, '?', '&' or ';',
    and its value runs to the next '&' in a URL (a ';' or '?' inside it is masked with it), to the
    next blank (or its closing quote) in keyword/value text."""
    from urllib.parse import unquote

    authority = re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*:/+", url) or re.search(r"//+", url)
    found: list[tuple[str, tuple[int, int] | None]] = []
    if authority:
        start = authority.end()
        question, slash = url.find("?", start), url.find("/", start)
        # The user part: up to the last '@' before the first '/' (libpq: a '?' may be part of it), or before
        # the first '?' (a password may hold a '/'), whichever reaches further: masked whole either way.
        at = url.rfind("@", start, max(len(url) if question < 0 else question, len(url) if slash < 0 else slash))
        colon = url.find(":", start, at) if at >= 0 else -1
        if colon >= 0:
            found.append(("password", (colon + 1, at)))
    value = r"[^&]*" if authority else r"'(?:[^'\\]|\\.)*'?|\S*"
    for match in re.finditer(rf"(?=(?:^|(?<=[\s?&;]))([^=\s?&;]+)(?:\s*=\s*({value}))?)", url):
        name = unquote(match.group(1), errors="replace").strip().lower()
        if name in SECRET_PARAMETERS and (match.group(2) is not None or authority):
            found.append((name, match.span(2) if match.group(2) is not None else None))
    return found


def check_url(url: str) -> str:
    """``url`` if it can name an inventory: a PostgreSQL URL without a secret in it (a password,
    the client key's passphrase...: :data:`SECRET_PARAMETERS`)."""
    if not is_postgres_url(url):
        raise InventoryError(f"'{shown_url(url)}' is not a PostgreSQL URL; write postgresql://USER@HOST[:PORT]/DATABASE.")
    found = secrets_in(url)  # before anything else: an error message never repeats a secret
    if found:
        raise InventoryError(_refusal(found))
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InventoryError(f"The inventory URL cannot be read: {exc}.") from None
    if "," not in parts.netloc:  # libpq's host1:port1,host2:port2 is not urlsplit's to judge
        try:
            parts.port  # noqa: B018 (parses it: a bad port raises ValueError)
        except ValueError as exc:
            raise InventoryError(f"The inventory URL '{shown_url(url)}' cannot be read: {exc}.") from None
    why = unsafe_in(url)
    if why:
        raise InventoryError(f"The inventory URL {why}")
    _check_defaults(url)
    return url


# libpq's connection parameters certkit refuses in an inventory URL, whatever their value (or with the value given),
# and what libpq would do with them: each undoes what the URL's other parameters are there for.
UNSAFE_PARAMETERS = {
    "sslkeylogfile": (None, "libpq (18 and later) would write the TLS session keys of every connection to that file, "
                            "and whoever reads it, with a capture of the traffic, reads all the inventory's traffic"),
    "gssdelegation": ("1", "libpq would hand this user's Kerberos credentials to the server, which could then act as "
                           "this user elsewhere"),
}
# libpq's URL spellings of a parameter under another name (JDBC's ssl=true is sslmode=require).
_ALIASES = {"ssl": ("sslmode", {"true": "require"})}


def _query_parameters(url: str) -> list[tuple[str, str, str]]:
    """The query parameters of ``url`` as libpq reads them, in order: (the name libpq takes it for, its value so
    taken, the parameter as written, decoded); names matched in any case (libpq refuses other cases anyway)."""
    from urllib.parse import unquote

    found = []
    for piece in urlsplit(url).query.split("&"):
        name, _, value = piece.partition("=")
        name, value = unquote(name, errors="replace").strip().lower(), unquote(value, errors="replace")
        if name:
            alias, values = _ALIASES.get(name, (name, {}))
            found.append((alias, values.get(value, value), f"{name}={value}"))
    return found


def unsafe_in(url: str) -> str | None:
    """Why libpq must not be handed ``url``, as the rest of a sentence after "The inventory URL" (naming the
    parameter, never a secret: call it once :func:`secrets_in` found none), or None: a parameter of
    :data:`UNSAFE_PARAMETERS`; one given twice with two values (libpq takes the last, a reader the first it sees:
    sslmode=verify-full&sslmode=disable, or &ssl=true, connects without checking the server); a verifying sslmode
    with gssencmode=require (GSSAPI encryption instead of TLS: the server's certificate is never checked)."""
    params = _query_parameters(url)
    for name, value, written in params:
        if name in UNSAFE_PARAMETERS and UNSAFE_PARAMETERS[name][0] in (None, value):
            return (f"names {shown(written)}: {UNSAFE_PARAMETERS[name][1]}. certkit refuses it: remove it "
                    "from the URL.")
    for name, _value, _written in params:
        given = [(v, w) for n, v, w in params if n == name]
        if len({v for v, _w in given}) > 1:
            said = ", then ".join(shown(w) if w.startswith(f"{name}=") else f"{shown(w)} (read as {name}={v})"
                                  for v, w in given)
            times = "twice" if len(given) == 2 else f"{len(given)} times"
            return (f"gives {name} {times} ({said}): libpq takes the last, which is not what a reader "
                    f"sees first. Give {name} once: remove the others from the URL.")
    last = {name: value for name, value, _written in params}
    if last.get("sslmode", "").startswith("verify-") and last.get("gssencmode") == "require":
        return (f"asks for sslmode={last['sslmode']} and gssencmode=require: libpq then encrypts with GSSAPI "
                "instead of TLS and never checks the server's certificate. Remove one of them from the URL.")
    return None


def service_of(url: str) -> tuple[str, str, dict[str, str]] | None:
    """The service ``url`` names (its service=, else $PGSERVICE), the file that defines it and its parameters, as
    libpq finds them: in $PGSERVICEFILE (else ~/.pg_service.conf), else in $PGSYSCONFDIR/pg_service.conf; None when
    no service is named or no file here defines it (libpq says so when it connects)."""
    names = [value for name, value, _written in _query_parameters(url) if name == "service"]
    service = names[-1] if names else os.environ.get("PGSERVICE")
    if not service:
        return None
    files = [os.environ.get("PGSERVICEFILE") or os.path.expanduser("~/.pg_service.conf")]
    if os.environ.get("PGSYSCONFDIR"):
        files.append(os.path.join(os.environ["PGSYSCONFDIR"], "pg_service.conf"))
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read(1 << 20).splitlines()
        except (OSError, ValueError):
            continue
        found, params = False, {}
        for line in (line.strip() for line in lines):
            if line.startswith("["):
                if found:
                    break
                found = line[1:].rstrip("]").strip() == service
            elif found and "=" in line and not line.startswith("#"):
                name, _, value = line.partition("=")
                params.setdefault(name.strip().lower(), value.strip())  # libpq keeps a service's first setting
        if found:
            return service, path, params
    return None


# The variables libpq takes a setting of unsafe_in's from where neither the URL nor its service sets it.
_ENVIRONMENT = {"sslmode": "PGSSLMODE", "gssencmode": "PGGSSENCMODE", "gssdelegation": "PGGSSDELEGATION"}


def _check_defaults(url: str) -> None:
    """Refuse, naming what to fix, what libpq would add to ``url`` that :func:`unsafe_in` refuses in a URL (a
    sslkeylogfile=, a verifying sslmode undone...): first a service's settings (:func:`service_of`), then the
    variables of :data:`_ENVIRONMENT`, each applied by libpq where nothing before it sets the parameter."""
    from urllib.parse import quote

    given = {name for name, _value, _written in _query_parameters(url)}
    layers = []
    if (found := service_of(url)) is not None:
        service, path, params = found
        added = {k: v for k, v in params.items() if k not in given and k not in SECRET_PARAMETERS}  # a secret's place
        place = f"the service '{shown(service)}' in {shown(path)}"
        layers.append((place, place, added))
        given |= set(added)
    added = {name: os.environ[var] for name, var in _ENVIRONMENT.items() if name not in given and os.environ.get(var)}
    if added:
        said = " and ".join(f"${_ENVIRONMENT[name]}={shown(value)}" for name, value in added.items())
        unset = " ".join(f"${_ENVIRONMENT[name]}" for name in added)
        layers.append((f"the environment's {said}", f"the environment (unset {unset})", added))
    pieces = [urlsplit(url).query]
    for place, where, params in layers:
        pieces += [f"{quote(name)}={quote(value)}" for name, value in params.items()]
        why = unsafe_in("postgresql://host/db?" + "&".join(filter(None, pieces)))
        if why:
            raise InventoryError(f"The inventory URL, with {place}, {why.replace(' from the URL', f' from {where}')}")


# libpq's connection parameters that name a file or folder: relative, each is looked for in the folder
# the command runs in (libpq expands no '~' in them either).
PATH_PARAMETERS = ("passfile", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslcrldir")


def check_stored_url(url: str) -> str:
    """``url`` (:func:`check_url`) if it can be written into certkit-ca.json: no relative path in it,
    which every command run from another folder (cron, a timer, another host's copy) would look for
    elsewhere, and not find or find another file; a database of its own (:func:`_check_database`)."""
    from urllib.parse import parse_qsl

    check_url(url)
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in PATH_PARAMETERS and value and not value.startswith("/") \
                and not (name == "sslrootcert" and value == "system"):
            full = os.path.expanduser(value) if value.startswith("~") else absolute(value)
            raise InventoryError(f"The inventory URL names {name}={shown(value)}, a relative path, which libpq "
                                 "looks for in the folder each command runs in (and expands no '~' in): "
                                 f"certkit-ca.json is read from any folder, so write it in full: {name}={shown(full)}.")
    _check_database(url)
    return url


# The databases every PostgreSQL server has and no application's tables belong in, and why: libpq's tools connect to
# postgres by default (psql -l, createdb, pg_dumpall), any role may connect to it, and CREATE DATABASE copies template1.
SHARED_DATABASES = {
    "postgres": "the server's maintenance database, which psql, createdb and other tools connect to by default and "
                "any role may connect to: the inventory would sit among whatever else is put there, and go with it",
    "template1": "the template every new database on that server is copied from: the inventory's tables would "
                 "appear in each database created after it",
    "template0": "the server's pristine template, which takes no connections",
}


def _check_database(url: str) -> None:
    """Refuse a URL to be stored that names one of :data:`SHARED_DATABASES`, or no database at all (libpq then takes
    $PGDATABASE, else the user's name: whatever each host that runs a command has), unless a service file names it."""
    from urllib.parse import unquote

    params = _query_parameters(url)
    given = [value for name, value, _written in params if name == "dbname"]
    database = given[-1] if given else unquote(urlsplit(url).path.lstrip("/"), errors="replace")
    create = ("create a database for it (createdb -O USER ca, or CREATE DATABASE ca OWNER USER) and name it: "
              "postgresql://USER@HOST[:PORT]/ca; nothing was changed.")
    if database in SHARED_DATABASES:
        raise InventoryError(f"The inventory URL names the database '{shown(database)}', {SHARED_DATABASES[database]}; "
                             + create)
    if not database and not any(name == "service" for name, _value, _written in params):
        raise InventoryError("The inventory URL names no database: libpq would take $PGDATABASE, else the user's "
                             "name, whatever each host that runs a command has set; " + create)


def _refusal(found: list[str]) -> str:
    """Why a URL holding the secret parameters ``found`` is refused, and where each secret goes
    instead (their names only: never a value)."""
    if found == ["password"]:
        return ("The inventory URL holds a password; certkit never stores one (nor takes it from the command "
                "line). Remove it from the URL and put it in ~/.pgpass (or $PGPASSFILE), $PGPASSWORD or a "
                "service file, or let certkit ask for it on a terminal.")
    what = {"password": "a password", "sslpassword": "sslpassword (the passphrase of the client key)"}
    advice = {
        "password": "put the password in ~/.pgpass (or $PGPASSFILE), $PGPASSWORD or a service file, or let "
                    "certkit ask for it on a terminal",
        "sslpassword": "keep the client key unencrypted and readable by its owner only (chmod 600: libpq refuses "
                       "a key others can read) at ~/.postgresql/postgresql.key, $PGSSLKEY or sslkey=PATH, or put "
                       "sslpassword in a service file (~/.pg_service.conf, mode 600) and name it with "
                       "?service=NAME",
    }
    others = [name for name in found if name not in advice]
    names = [what.get(name, name) for name in found]
    steps = [advice[name] for name in found if name in advice]
    if others:
        steps.append(f"put {' and '.join(others)} in a service file (~/.pg_service.conf, mode 600) and name it "
                     "with ?service=NAME")
    return (f"The inventory URL holds {' and '.join(names)}; certkit never stores a secret (nor takes one from "
            f"the command line). Remove {'it' if len(found) == 1 else 'them'} from the URL: "
            + "; ".join(steps) + ".")
