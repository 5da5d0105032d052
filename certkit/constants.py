"""Names and fixed values shared by the library and the command line.

Importing this module costs nothing (no third-party imports), so the command
line can use it at start-up; everything here is written once.
"""

from __future__ import annotations

# --- keys ---------------------------------------------------------------------------
# ecdsa-p256 is the default: small, fast, and accepted by every TLS stack in use.
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
DEFAULT_KEY_TYPE = "ecdsa-p256"

# --- certificate kinds --------------------------------------------------------------
# What a leaf is for. "peer" carries both serverAuth and clientAuth: the one explicit
# exception, for cluster members that cannot take two certificates (see docs/peers.md).
LEAF_KINDS = ("server", "client", "peer")
KINDS = ("ca", *LEAF_KINDS)

# --- environment variables: secrets and locations, never command-line arguments -----
ENV_CA_DIR = "CERTKIT_CA_DIR"
ENV_PASSPHRASE = "CERTKIT_CA_PASSPHRASE"
ENV_PARENT_PASSPHRASE = "CERTKIT_PARENT_CA_PASSPHRASE"
ENV_P12_PASSWORD = "CERTKIT_P12_PASSWORD"
ENV_PKCS11_PIN = "CERTKIT_PKCS11_PIN"  # the PIN of the token that holds a CA key (certkit.pkcs11)
ENV_INVENTORY_URL = "CERTKIT_INVENTORY_URL"  # overrides the inventory a CA directory names

# --- the files of an issued certificate's folder (certbot's names) -----------------
CERT_FILE = "cert.pem"
KEY_FILE = "privkey.pem"
FULLCHAIN_FILE = "fullchain.pem"
CHAIN_FILE = "chain.pem"
CA_FILE = "ca.pem"
P12_FILE = "bundle.p12"
# Every name a bundle may hold: what --force and renew replace, and nothing else.
BUNDLE_FILES = (CERT_FILE, KEY_FILE, FULLCHAIN_FILE, CHAIN_FILE, CA_FILE, P12_FILE)
# How the issuing commands deliver (--format): a bundle folder, or one output for every certificate
# in a format deployment tools read (certkit.formats).
OUTPUT_FORMATS = ("folder", "jsonl", "k8s", "tar")

# States ``certkit list`` filters by: "valid" and "expired" split issued certificates by date;
# "pending" ones are being written right now; "abandoned" ones were signed but never delivered.
# Where an abandoned certificate's delivery cannot be looked for again (standard output, a program's memory):
# its writer may have stopped after the certificate left, so it stays revocable.
UNSEEN_SINKS = ("stream", "memory")
LIST_STATUSES = ("valid", "expired", "revoked", "pending", "abandoned")

# --- revocation ---------------------------------------------------------------------
# RFC 5280 5.3.1 CRLReason names. certificateHold (reversible) and removeFromCRL (delta
# CRLs only) are left out: certkit's revocations are final; so is aACompromise, which is for
# attribute certificates (the CA/Browser Forum's CRL profile refuses it for TLS certificates).
REVOCATION_REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn")
# What an inventory may hold: certkit offered aACompromise before, and such rows still go on the CRL.
RECORDED_REASONS = (*REVOCATION_REASONS, "aACompromise")
MIN_CRL_DAYS, MAX_CRL_DAYS = 1, 3650  # a CRL's nextUpdate: a day ahead at least, ten years at most

# --- limits: every number a user gives has a range, every file a size limit --------
MAX_DAYS = 36500  # a hundred years: far beyond any sane certificate, far below datetime's end
MAX_CERT_FILE_BYTES = 1 << 20  # a certificate, CSR, key or bundle file: a few kilobytes in practice
MAX_SECRET_FILE_BYTES = 4096  # a passphrase, password or PIN file
MAX_MANIFEST_LINE_BYTES = 1 << 16  # one line of an issue-batch manifest
