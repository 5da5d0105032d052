"""One simulated host of tests/test_team_concurrency.py: a process with its own copy of the CA
directory, whose inventory is one shared PostgreSQL database.

    python team_worker.py issue  CA_DIR OUT_DIR COUNT PREFIX
    python team_worker.py revoke CA_DIR CRL_DIR STOP_FILE ISSUER_LOG...
    python team_worker.py crl    CA_DIR CRL_DIR STOP_FILE

Each prints one line per thing done, flushed the moment it is done, so the test (and a
``kill -9`` at any moment) knows exactly what was reported:

- ``issued SERIAL FOLDER``: the certificate's row is valid and its bundle complete;
- ``revoked SERIAL T``: the revocation is committed (T: CLOCK_MONOTONIC, shared by all processes);
- ``crl NUMBER T`` (revoke and crl): CRL_DIR/NUMBER.der is written; its number was taken after T;
- ``taken SERIAL``: the inventory refused a serial another host holds (the certificate is signed again).

Issuers draw serials from a deliberately small space (2^14 values above 2^100) so that hosts
collide for real and the database, not chance, keeps the serials unique; certkit's own serials
have 159 random bits.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

PASSPHRASE = b"correct horse battery staple"


def say(*words) -> None:
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


def open_ca(ca_dir: str):
    from certkit.store import CADirectory

    return CADirectory(ca_dir).load(PASSPHRASE)


def issue(ca_dir: str, out_dir: str, count: str, prefix: str) -> None:
    import certkit.ca
    from certkit.inventory import Inventory
    from certkit.issuing import FolderTarget, deliver, server_request
    from certkit.vocabulary import serial_hex

    certkit.ca._random_serial = lambda: (1 << 100) | random.getrandbits(14)
    record_pending = Inventory.record_pending

    def reporting(self, entries, **options):
        taken = record_pending(self, entries, **options)
        for index in taken:
            say("taken", serial_hex(entries[index].cert.serial_number))
        return taken

    Inventory.record_pending = reporting
    ca = open_ca(ca_dir)
    for i in range(int(count)):
        folder = Path(out_dir) / f"{prefix}-{i}"
        # sync=False: the test kills processes, not the machine; fsync would only slow it down.
        delivery = deliver(ca, server_request([f"{prefix}-{i}.team.example"]), FolderTarget(folder, sync=False))
        say("issued", delivery.issued.serial_hex, folder)


def _signed_crl(ca, crl_dir: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.revocation import sign_crl

    started = time.monotonic()
    crl = sign_crl(ca, days=1)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    path = Path(crl_dir) / f"{number}.der"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(Encoding.DER))
    os.replace(tmp, path)
    say("crl", number, f"{started:.6f}")


def revoke(ca_dir: str, crl_dir: str, stop_file: str, *logs: str) -> None:
    ca = open_ca(ca_dir)
    done: set[str] = set()
    count = 0
    while not os.path.exists(stop_file):
        issued = []
        for log in logs:
            try:
                lines = Path(log).read_text().split("\n")[:-1]  # whole lines only: the writer may be mid-line
            except OSError:
                continue
            issued += [line.split()[1] for line in lines if line.startswith("issued ")]
        todo = [s for s in issued if s not in done]
        if not todo:
            time.sleep(0.05)
            continue
        serial = random.choice(todo)
        ca.revoke(serial, "keyCompromise")
        done.add(serial)
        count += 1
        say("revoked", serial, f"{time.monotonic():.6f}")
        if count % 5 == 0:  # CRL numbers taken by two processes at once
            _signed_crl(ca, crl_dir)
        time.sleep(0.02)


def crl(ca_dir: str, crl_dir: str, stop_file: str) -> None:
    ca = open_ca(ca_dir)
    while not os.path.exists(stop_file):
        _signed_crl(ca, crl_dir)
        time.sleep(0.03)


if __name__ == "__main__":
    {"issue": issue, "revoke": revoke, "crl": crl}[sys.argv[1]](*sys.argv[2:])
