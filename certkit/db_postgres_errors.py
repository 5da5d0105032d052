"""What a PostgreSQL inventory's failures mean, in words (:meth:`certkit.db_postgres.PostgresDatabase.error`):
libpq's and the server's errors, by SQLSTATE or by libpq's text, each as one sentence that names the
database (never a secret: :func:`certkit.db_url.shown_url`) and says what to do. Also the password file
libpq ignores for its mode, named rather than left to libpq's WARNING line on standard error.
"""

from __future__ import annotations

import os
import re
import stat
from typing import TYPE_CHECKING

from certkit.db_url import shown_url
from certkit.errors import InventoryError

if TYPE_CHECKING:
    from certkit.db_postgres import PostgresDatabase


def describe(db: "PostgresDatabase", exc: Exception | None, *, typed: bool = False) -> InventoryError:
    """``exc`` in words, naming the database: what failed, not just that something did (``typed``:
    the password was typed at certkit's prompt, not found by libpq)."""
    where = shown_url(db.url)
    text = _first_line(exc) if exc is not None else "no password was given"
    lowered = text.lower()
    state = getattr(exc, "sqlstate", None) or ""
    named = _named_passfile(db.url)
    if exc is None or wants_password(exc):
        message = _no_password(where, getattr(db, "ignored_passfile", None), named)
    elif "password authentication failed" in lowered or state == "28P01":
        message = f"The inventory {where} refused the password {_password_refused(text, typed, named, db.url)}"
    elif state.startswith("28") or "authentication" in lowered:
        message = f"The inventory {where} refused the connection: {text}."
    elif "does not exist" in lowered and "database" in lowered:
        message = (f"The inventory {where} cannot be opened: {text}; for a new CA, create it first (CREATE "
                   "DATABASE); for a CA that used it, check the URL, or restore it from a backup (a new, empty "
                   "database holds none of its certificates).")
    elif state in ("42P01", "42703"):
        message = f"The inventory {where} lacks part of its schema ({text}); restore it from a backup."
    elif state == "23505" and "pg_" in text:  # a system catalog's key: two CREATEs of the same table at once
        message = (f"The database {where} refused to create the same table as another process at the same moment "
                   f"({text}); nothing was changed.")
    elif state == "23505":
        message = (f"The inventory {where} refused a duplicate ({text}): another certkit process recorded "
                   "the same key at the same moment. Nothing was changed; try again.")
    elif state in ("40001", "40P01"):
        message = (f"The inventory {where} stopped a transaction that conflicted with another certkit "
                   f"process ({text}). Nothing was changed; try again.")
    elif state == "55P03" or "lock timeout" in lowered:  # the sessions that can hold the lock, named
        from certkit.db_postgres_locks import holders

        message = f"The inventory {where} stayed locked for {db.busy_timeout:g} s {holders(db)}."
    elif state == "25006":
        message = f"The inventory {where} is read-only (a read-only transaction or standby); nothing was changed."
    elif (said := _database_setting(where, text, state)) is not None:
        message = said
    elif state == "53100":
        message = f"The inventory {where} cannot be written: the database server's disk is full."
    elif state == "42501":
        message = f"The inventory {where} may not be used by this database user: {text}; {_grant(text, db.url)}"
    elif state == "57014":
        message = (f"The inventory {where} timed out: {text} (the server's statement_timeout for this role or "
                   "database, or a cancel request); nothing of that transaction was committed, try again.")
    elif state in ("57P01", "57P02", "57P05") or "server closed the connection" in lowered:
        message = (f"The inventory {where} closed the connection during this command ({text}: a restart, "
                   "or an idle timeout); try again once the server is back.")
    elif re.search(r"invalid (connection option|\S+ value|value for|uri query parameter)", lowered):
        message = f"The inventory URL {where} is not valid: {text}; fix the parameter in it."
    elif (said := _connecting(db.url, where, text, state, exc)) is not None:
        message = said
    else:
        message = f"The inventory {where} cannot be used: {text}."
    error = InventoryError(message)
    # read-only (a standby, a read-only role), no privilege to write, or a full disk: it may still be read
    error.cannot_write = state in ("25006", "42501", "53100")
    return error


def _database_setting(where: str, text: str, state: str) -> str | None:
    """A failure that a setting of the database, the role or the URL makes, in words; else None."""
    if state == "3F000":  # "no schema has been selected to create in": a search_path of schemas that do not exist
        return (f"The inventory {where} cannot be created: {text} (the search_path, of the role, the database, "
                "options= in the URL or $PGOPTIONS, names no schema that exists); create that schema, or fix the "
                "search_path.")
    if state == "22P05":  # a name the database's encoding (LATIN1, WIN1252...) has no character for
        return (f"The inventory {where} cannot store this text: {text}; this command's change was rolled "
                "back. Copy the inventory (pg_dump, pg_restore) into a database created with ENCODING 'UTF8', "
                "then name that database's URL in certkit-ca.json.")
    if state == "25P03" or "idle-in-transaction timeout" in text:
        return (f"The inventory {where} ended this command's transaction: {text} (the server's "
                "idle_in_transaction_session_timeout, longer than 10 minutes here: was this process stopped?); "
                "nothing of that transaction was committed, try again.")
    return None


def _connecting(url: str, where: str, text: str, state: str, exc: Exception | None) -> str | None:
    """What failed on the way to the database, in words: the server's answer to a new connection, this host's
    own settings and files (a service, a TLS file), the server's certificate, the network; else None."""
    lowered = text.lower()
    connecting = not state and _is_connection_error(exc)
    if connecting and (answer := _server_answer(lowered)) is not None:
        return f"The inventory {where} {answer.format(text=text, **_demands(url))}"
    if connecting and re.search(r'definition of service|service file ".*" not found', lowered):
        return (f"The inventory {where} names a service that cannot be found on this host ({text}); define it in "
                "~/.pg_service.conf (or in the file $PGSERVICEFILE names, which must exist), or fix service= in the "
                "URL.")
    if connecting and (local := _local_tls_file(text)) is not None:
        return (f"The inventory {where} cannot be used from this host: a TLS file that libpq reads here is not "
                f"usable ({text}); fix {local} (or the URL's sslrootcert=, sslcert=, sslkey= or sslcrl= that names "
                "it), then try again.")
    if "certificate" in lowered and (state.startswith("08") or _is_connection_error(exc)):
        return (f"The inventory {where} was reached, but its TLS certificate was not accepted: {text}; give the CA "
                "of the server's certificate with sslrootcert=PATH (or ~/.postgresql/root.crt), use the host name "
                f"that certificate names{_crl_named(url)}, or choose another sslmode.")
    if connecting and "timeout expired" in lowered:  # no answer in time: a network cut, or a server that accepted
        from certkit.db_postgres import CONNECT_TIMEOUT_S  # the connection and never answered (hung, stopped)

        return (f"The inventory {where} did not answer within {CONNECT_TIMEOUT_S} s ({text}): the server is down, hung "
                "or overloaded, or the network to it drops packets; check it (pg_isready -h HOST -p PORT), then try "
                "again.")
    if state.startswith(("08", "57")) or _is_connection_error(exc):
        return f"The inventory {where} cannot be reached: {text}."
    return None


# The settings a refusal can come from, and the variable libpq takes each from when the URL does not set it.
_DEMANDS = {"sslmode": "PGSSLMODE", "gssencmode": "PGGSSENCMODE", "channel_binding": "PGCHANNELBINDING",
            "target_session_attrs": "PGTARGETSESSIONATTRS"}


def _demands(url: str) -> dict[str, str]:
    """Where each of :data:`_DEMANDS` comes from, in words, in libpq's order: "the URL's sslmode=require", the
    service's, "$PGSSLMODE=require" (libpq's variable), else libpq's default. A message said "the URL's" of a
    setting only $PGCHANNELBINDING made, sending one to look for it in a URL without it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:
        params = {}
    said = {}
    for keyword, variable in _DEMANDS.items():
        service = params.get("service") or os.environ.get("PGSERVICE")
        if params.get(keyword):
            said[keyword] = f"the URL's {keyword}={params[keyword]}"
        elif service:  # libpq reads the service's settings before its variables
            also = f", else ${variable}={os.environ[variable]}" if os.environ.get(variable) else ""
            said[keyword] = f"the {keyword} of the service {service}{also}"
        elif os.environ.get(variable):
            said[keyword] = f"${variable}={os.environ[variable]}"
        else:
            said[keyword] = f"libpq's {keyword}"
    return said


def hidden_inventory(url: str, tx) -> bool:
    """Refuse, in words, an inventory whose tables are in a schema of the search_path this role has no USAGE on:
    PostgreSQL leaves such a schema out of name lookup, and the inventory was said to be missing ("holds no certkit
    inventory (its tables are missing) ... or restore it from a backup"), of a database that holds it."""
    found = tx.execute(
        "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE c.relname = "
        "'certificates' AND c.relkind IN ('r', 'p') AND NOT has_schema_privilege(n.oid, 'USAGE') AND n.nspname = "
        "ANY (SELECT replace(btrim(part, ' \"'), '$user', current_user) FROM unnest(string_to_array("
        "current_setting('search_path'), ',')) AS part) ORDER BY 1 LIMIT 1").fetchone()
    if found is None:
        return False
    role = _role(url)
    schema = found[0] if re.fullmatch(r"[a-z_][a-z0-9_]*", found[0]) else '"' + found[0].replace('"', '""') + '"'
    error = InventoryError(f"The inventory {shown_url(url)} may not be used by this database user: its tables are in "
                           f"the schema {schema} of its search_path, which the role may not use; GRANT USAGE ON SCHEMA "
                           f"{schema} TO {role} (and SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}), "
                           "or use a role that may; nothing was changed.")
    error.cannot_write = True
    raise error


def _role(url: str) -> str:
    """The URL's role as SQL names it (ROLE when it names none)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        role = conninfo_to_dict(url).get("user") or "ROLE"
    except Exception:  # not readable as conninfo: libpq said so before any privilege was checked
        role = "ROLE"
    return role if re.fullmatch(r"[a-z_][a-z0-9_]*", role) else '"' + role.replace('"', '""') + '"'


def _grant(text: str, url: str) -> str:
    """What to do about a privilege the role lacks (42501), after libpq's words ``text``."""
    role = _role(url)
    if (schema := re.search(r'permission denied for schema "?([^"\s]+)', text)) is not None:
        return (f"the role must be allowed to create the tables there (GRANT CREATE ON SCHEMA {schema[1]} TO "
                f"{role}; since PostgreSQL 15 only the database's owner may, by default), or run this as the "
                "database's owner.")
    if re.search(r"permission denied for (table|sequence|relation)", text):
        return ("the role lacks a privilege on the inventory's tables (one that may only SELECT runs certkit list and "
                f"check): GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role} (or the "
                "inventory's schema), or use a role that may write.")
    return "GRANT it what it lacks, or use the role that owns the database."


def _password_refused(text: str, typed: bool, named: str | None, url: str) -> str:
    """What follows 'refused the password': libpq's words, and the one place libpq took the password from, in its
    order (a service's password=, else $PGPASSWORD, else the password file: the URL's passfile=, else $PGPASSFILE,
    else ~/.pgpass). Naming three places sent one to check a file libpq never read."""
    from certkit.db_url import service_of

    if typed:
        return f"typed at the prompt ({text}); try again."
    service = service_of(url)
    if service is not None and service[2].get("password"):
        return f"({text}); it is the password of the service {_shown(service[0])} in {_shown(service[1])}: fix it."
    if os.environ.get("PGPASSWORD"):
        return f"({text}); it is $PGPASSWORD's, which libpq takes before any password file: fix or unset $PGPASSWORD."
    if named:
        return f"({text}); check the password file {_shown(named)} that the URL names (passfile=)."
    if os.environ.get("PGPASSFILE"):
        return f"({text}); check the line for this connection in $PGPASSFILE ({_shown(os.environ['PGPASSFILE'])})."
    return f"({text}); check the line for this connection in ~/.pgpass."


def _shown(path: str) -> str:
    from certkit.text import shown

    return shown(path)


def _named_passfile(url: str) -> str | None:
    """The password file the URL names (``passfile=``), which libpq reads instead of $PGPASSFILE and ~/.pgpass."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return conninfo_to_dict(url).get("passfile") or None
    except Exception:  # not readable as conninfo: libpq says what is wrong with it
        return None


def _no_password(where: str, ignored: str | None, named: str | None = None) -> str:
    """No password was found; ``ignored``: the password file libpq would have read, left out for its mode;
    ``named``: the password file the URL names, the only one libpq looked in."""
    if ignored is None and named is not None:
        state = "holds no line for this connection" if os.path.isfile(named) else "does not exist"
        return (f"The inventory {where} needs a password, and the password file {_shown(named)} that the URL names "
                f"(passfile=, read instead of ~/.pgpass and $PGPASSFILE) {state}: add the line "
                "HOST:PORT:DATABASE:USER:PASSWORD to it (mode 600), or set $PGPASSWORD.")
    if ignored is not None:
        from certkit.text import shown

        mode = stat.S_IMODE(os.stat(ignored).st_mode) if os.path.exists(ignored) else 0o644
        return (f"The inventory {where} needs a password, and the password file {shown(ignored)} was ignored: it "
                f"has mode {mode:04o}, and libpq reads none that other users can read or write. Run: chmod 600 "
                f"{shown(ignored)}")
    return (f"The inventory {where} needs a password and none was found: put it in ~/.pgpass (or $PGPASSFILE), "
            "$PGPASSWORD or a service file, or run on a terminal to be asked.")


def unsafe_passfile(url: str, password_given: bool) -> str | None:
    """The password file libpq would read for ``url`` (its passfile=, else $PGPASSFILE, else ~/.pgpass) when
    other users can read or write it: libpq ignores it then, with a WARNING line of its own on standard error,
    which certkit spares (its connection is told another file) to say it in its one Error: line. None when
    no file would be read (a password given, $PGPASSWORD, a service that may name its own), or it is safe."""
    if password_given or os.environ.get("PGPASSWORD") is not None or os.environ.get("PGSERVICE"):
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:  # read by libpq itself, which says what is wrong with it
        return None
    if "service" in params or "password" in params:
        return None
    path = params.get("passfile") or os.environ.get("PGPASSFILE") or os.path.expanduser("~/.pgpass")
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return str(path) if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 else None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")


def wants_password(exc: Exception | None) -> bool:
    text = str(exc).lower()
    return "no password supplied" in text or "fe_sendauth" in text


# What a server that was reached answered when it refused a new connection (libpq's words, lowered),
# and what certkit says: the server's answer, never "cannot be reached" (which sends one to the network).
_ANSWERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("permission denied for database",),
     "may not be used by this database user: {text} (the server refused it; GRANT CONNECT ON DATABASE to this "
     "role)."),
    (("too many clients already", "remaining connection slots are reserved", "too many connections for"),
     "was reached, but it has no free connection for this user: {text}; raise the server's max_connections (or "
     "the role's or database's CONNECTION LIMIT), run fewer --jobs or certkit processes at once, or put a "
     "connection pooler in front, then try again."),
    (("pg_hba.conf",),
     "was reached, but its pg_hba.conf refuses this connection: {text}; a line there must let this user reach "
     "this database from this host (then SELECT pg_reload_conf())."),
    (("does not support ssl",),
     "was reached, but it does not offer TLS, and {sslmode} requires it: {text}; enable ssl on the "
     "server, or choose another sslmode (prefer, disable)."),
    (("gssapi encryption required", "does not support gssapi"),
     "was reached, but GSSAPI encryption, which {gssencmode} requires, cannot be used: {text}; choose "
     "another gssencmode."),
    (("channel binding required",),
     "was reached, but {channel_binding} cannot be met: {text}; use TLS (sslmode) or choose "
     "another channel_binding."),
    (("hot standby mode", "session is read-only", "session is not read-only", "server is in hot standby"),
     "was reached, but it is not the kind of server {target_session_attrs} asks for: {text}."),
    (("requires a valid client certificate",),
     "was reached, but it wants a client certificate: {text}; give one with sslcert=PATH and sslkey=PATH (or "
     "~/.postgresql/postgresql.crt and .key)."),
    (("is not permitted to log in",),
     "was reached, but this role may not log in there: {text}; ALTER ROLE ... LOGIN lets it."),
    (("fatal:",), "was reached, but it refused the connection: {text}."),
)


# libpq's words about a TLS file of this host's (the CA's certificate to trust, the client's certificate or key,
# the CRL): missing, unreadable, not PEM, open to others. Said of the file, never as the server's certificate
# refused nor as a server that cannot be reached.
_LOCAL_TLS_FILE = re.compile(r'(?:root certificate|certificate|private key|revocation list|crl) (?:file|directory) '
                             r'"([^"]+)"|could not get home directory to locate (?:root|client) certificate', re.I)


def _local_tls_file(text: str) -> str | None:
    """The TLS file of this host that libpq's ``text`` says it cannot use (or ~/.postgresql/), else None."""
    found = _LOCAL_TLS_FILE.search(text)
    if found is None or "ssl error" in text.lower():  # the handshake's own words: the server's certificate
        return None
    return _shown(found.group(1)) if found.group(1) else "your home directory's .postgresql/ (set $HOME)"


def _crl_named(url: str) -> str:
    """For a URL that names CRLs (sslcrl=, sslcrldir=): OpenSSL then wants a current CRL of each CA of the
    server's chain, and refuses its certificate without one ("certificate verify failed" as well)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:
        return ""
    named = [f"{name}={_shown(params[name])}" for name in ("sslcrl", "sslcrldir") if params.get(name)]
    return (f", check that {' and '.join(named)} holds a current CRL of that CA (one whose next update has not "
            "passed; without one every certificate of that CA is refused)") if named else ""


def _server_answer(lowered: str) -> str | None:
    """What certkit says of a refused connection, from libpq's words (``{text}`` to fill), if the
    server was reached and answered; None when it was not (a network or an address problem)."""
    return next((said for words_, said in _ANSWERS if any(w in lowered for w in words_)), None)


def _is_connection_error(exc: Exception | None) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)



def refuse_secrets(url: str | None, source: object) -> str | None:
    """``url`` (an existing CA's inventory URL, or None) if it holds no secret nor a parameter certkit refuses
    (:func:`certkit.db_url.unsafe_in`); else refused as
    :func:`certkit.db_url.check_url` refuses one, naming ``source``, where it came from and is to be fixed (the
    CA's certkit-ca.json, a path, or "$CERTKIT_INVENTORY_URL"): nobody typed it on this command."""
    from certkit.db_url import _refusal, is_postgres_url, secrets_in, unsafe_in
    from certkit.text import shown

    if url is None or not is_postgres_url(url):
        return url
    found = secrets_in(url)
    why = None if found else unsafe_in(url)  # (an unsafe parameter: refused as a secret is, naming the source)
    if not found and why is None:
        return url
    named, place = (source, source) if isinstance(source, str) else (f"in {shown(source)}",
                                                                     f"the URL in {shown(source)}")
    said = _refusal(found) if found else f"The inventory URL {why}"
    said = said.replace("The inventory URL ", f"The inventory URL {named} ", 1)
    raise InventoryError(said.replace(" from the URL", f" from {place}", 1))


def configured_url(config_url: str | None, config_path: object) -> str | None:
    """The inventory URL of an existing CA: $CERTKIT_INVENTORY_URL, else ``config_url`` (certkit-ca.json's,
    ``config_path``), else None; one holding a secret is refused naming which of the two it is."""
    from certkit.store_inventory import inventory_from_environment

    if url := inventory_from_environment():
        return refuse_secrets(url, "$CERTKIT_INVENTORY_URL")
    return refuse_secrets(config_url, config_path)
