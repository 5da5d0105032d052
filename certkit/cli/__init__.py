"""The command line: parse, call the library, print. Nothing else lives here.

Every command is listed once, in :data:`COMMANDS`, by the module and function
that define it, one module per task family:

- :mod:`certkit.cli.ca`: ``init-ca``, ``check``
- :mod:`certkit.cli.issue`: ``issue-server``, ``issue-client``, ``issue-peer``, ``sign-csr``
- :mod:`certkit.cli.p12`: ``export-p12``
- :mod:`certkit.cli.batch`: ``issue-batch``
- :mod:`certkit.cli.lifecycle`: ``list``, ``revoke``
- :mod:`certkit.cli.crl`: ``crl``
- :mod:`certkit.cli.renew`: ``renew``
- :mod:`certkit.cli.inspect`: ``inspect``, ``verify``, ``probe``
- :mod:`certkit.cli.serve`: ``serve``, ``demo``
- :mod:`certkit.cli.trust`: ``trust`` (``install``, ``status``, ``uninstall``)
- :mod:`certkit.cli.acme`: ``acme serve``
- :mod:`certkit.cli.inventory`: ``inventory migrate``

A module is imported only when one of its commands runs (click's lazy group
pattern), so a one-shot ``issue-server`` does not pay for the others, and
``certkit --help`` loads no cryptography. Options and helpers that several
commands share are in :mod:`certkit.cli.common`; bulk renewal's and the output
formats' parts of ``renew`` and the issuing commands are in
:mod:`certkit.cli.fleet` and :mod:`certkit.cli.output`.
"""

from __future__ import annotations

import click

from certkit import __version__
from certkit.cli.common import CertkitGroup

# name -> "module:function". The only list of commands; --help is built from it.
COMMANDS = {
    "acme": "certkit.cli.acme:acme",
    "check": "certkit.cli.ca:check",
    "crl": "certkit.cli.crl:crl",
    "demo": "certkit.cli.serve:demo",
    "export-p12": "certkit.cli.p12:export_p12",
    "init-ca": "certkit.cli.ca:init_ca",
    "inspect": "certkit.cli.inspect:inspect_",
    "inventory": "certkit.cli.inventory:inventory",
    "issue-batch": "certkit.cli.batch:issue_batch",
    "issue-client": "certkit.cli.issue:issue_client",
    "issue-peer": "certkit.cli.issue:issue_peer",
    "issue-server": "certkit.cli.issue:issue_server",
    "list": "certkit.cli.lifecycle:list_certificates",
    "probe": "certkit.cli.inspect:probe",
    "renew": "certkit.cli.renew:renew",
    "revoke": "certkit.cli.lifecycle:revoke",
    "serve": "certkit.cli.serve:serve",
    "sign-csr": "certkit.cli.issue:sign_csr",
    "trust": "certkit.cli.trust:trust",
    "verify": "certkit.cli.inspect:verify",
}


@click.group(cls=CertkitGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="certkit")
def main() -> None:
    """certkit: a local CA for TLS server and client (mutual TLS) certificates.

    \b
    Examples:
      certkit init-ca --name "Home Lab CA"
      certkit issue-server localhost 127.0.0.1 ::1
      certkit issue-client alice --email alice@example.com
      certkit demo

    The CA lives in --ca-dir, else $CERTKIT_CA_DIR, else a per-user data
    directory. The CA key passphrase comes from a prompt, $CERTKIT_CA_PASSPHRASE
    or --passphrase-file; never from the command line.
    """
    import warnings

    from certkit.cli.common import one_line_warning

    # A library warning (cryptography's about a non-conforming certificate, say) is news
    # for the user, in one line like every other message, not a Python source excerpt.
    warnings.showwarning = one_line_warning
    # cryptography warns of a name attribute over its length limit as it parses one (a CSR's CN of 65
    # bytes); certkit checks each name itself and says so in its own words, or shows the name as it is.
    warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
    # cryptography 50 deprecates finite-field Diffie-Hellman: reading a DH key file (refused, or described) warns
    # of the library's future, which is no news about the user's file
    warnings.filterwarnings("ignore", message=".*[Dd]iffie-[Hh]ellman")
