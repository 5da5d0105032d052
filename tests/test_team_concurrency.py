"""Several hosts issuing from one CA, simulated: processes, each with its own copy of the CA
directory, all pointing at one real PostgreSQL (tests/team_worker.py is one such host).

Proven: 4 issuers x 250 certificates while one process revokes and another signs CRLs give
1,000 unique serials (drawn from a space small enough that hosts collide for real: the primary
key, not chance, keeps them unique), every certificate valid or revoked with its bundle on disk,
CRL numbers unique and increasing in every process, and every revocation on every CRL whose
number was taken after it. Then ``kill -9`` of an issuer, the revoker and the CRL signer, each
at a moment of its own: nothing any of them reported as done is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from certkit.inventory.reconcile import bundle_holds
from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import REPO, openssl, run_certkit

WORKER = Path(__file__).with_name("team_worker.py")


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


class Hosts:
    """The CA created once, then one copy of its directory per simulated host."""

    def __init__(self, tmp_path: Path, url: str, env: dict) -> None:
        self.tmp, self.env = tmp_path, env
        self.ca_dir = tmp_path / "ca"
        run_certkit("init-ca", "--ca-dir", self.ca_dir, "--name", "Team CA", "--inventory", url, env=env,
                    check=True)
        self.crl_dir = tmp_path / "crls"
        self.crl_dir.mkdir()
        self.stop_file = tmp_path / "stop"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, mode: str, *args) -> subprocess.Popen:
        host = self.tmp / f"host-{name}"
        shutil.copytree(self.ca_dir, host / "ca")  # its own copy: ca.pem, ca-key.pem, certkit-ca.json
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([sys.executable, str(WORKER), mode, str(host / "ca"), *map(str, args)],
                                env=self.env, stdout=log, stderr=subprocess.PIPE, text=True, cwd=host)
        proc.log = log
        self.procs[name] = proc
        return proc

    def issuer(self, name: str, count: int) -> subprocess.Popen:
        out = self.tmp / "bundles" / name
        out.mkdir(parents=True)
        return self.start(name, "issue", out, count, name)

    def lines(self, name: str, kind: str) -> list[list[str]]:
        text = (self.tmp / f"{name}.log").read_text()
        return [line.split()[1:] for line in text.split("\n")[:-1] if line.startswith(kind + " ")]

    def wait_for(self, name: str, kind: str, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines(name, kind)) < count:
            proc = self.procs[name]
            assert proc.poll() is None, f"{name} exited early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"{name} reported fewer than {count} {kind}"
            time.sleep(0.05)

    def finish(self, name: str, timeout: float = 300) -> None:
        proc = self.procs[name]
        _, err = proc.communicate(timeout=timeout)
        proc.log.close()
        assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{err}"

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        proc.log.close()
        assert proc.returncode == -signal.SIGKILL

    def stop_all(self) -> None:
        self.stop_file.touch()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
            proc.log.close()


@pytest.fixture
def hosts(tmp_path, postgres_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
    env.update(PYTHONPATH=str(REPO), CERTKIT_CA_PASSPHRASE="correct horse battery staple")
    team = Hosts(tmp_path, postgres_url, env)
    try:
        yield team
    finally:
        team.stop_all()


def crls(hosts: Hosts, ca_cert) -> dict[int, set[str]]:
    """Every CRL written, by number, as its set of revoked serials; each signed by the CA."""
    found = {}
    for path in hosts.crl_dir.glob("*.der"):
        crl = x509.load_der_x509_crl(path.read_bytes())
        assert crl.is_signature_valid(ca_cert.public_key())
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert path.stem == str(number)
        found[number] = {serial_hex(r.serial_number) for r in crl}
    return found


def check_crls(hosts: Hosts, names: list[str], revocations: dict[str, float], found: dict[int, set[str]]) -> None:
    """CRL numbers unique and increasing in each process; a later number never lists fewer; each
    revocation on every CRL whose number was taken after the revocation was reported done."""
    taken = []
    for name in names:
        numbers = [int(n) for n, _t in hosts.lines(name, "crl")]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), (name, numbers)
        taken += [(int(n), float(t)) for n, t in hosts.lines(name, "crl")]
    assert len({n for n, _t in taken}) == len(taken), "a CRL number was taken twice"
    ordered = sorted(found)
    for lower, higher in zip(ordered, ordered[1:], strict=False):
        assert found[lower] <= found[higher], f"CRL {higher} lists less than CRL {lower}"
    for number, started in taken:
        missing = {s for s, t in revocations.items() if t < started} - found[number]
        assert not missing, f"CRL {number} misses revocations done before it was started: {missing}"


def test_four_hosts_issue_1000_while_one_revokes_and_one_signs_crls(hosts: Hosts) -> None:
    names = [f"issuer{n}" for n in range(4)]
    for name in names:
        hosts.issuer(name, 250)
    hosts.start("revoker", "revoke", hosts.crl_dir, hosts.stop_file, *[hosts.tmp / f"{n}.log" for n in names])
    hosts.start("crl", "crl", hosts.crl_dir, hosts.stop_file)
    for name in names:
        hosts.finish(name)
    hosts.stop_file.touch()
    hosts.finish("revoker")
    hosts.finish("crl")

    issued = {serial: Path(folder) for name in names for serial, folder in hosts.lines(name, "issued")}
    assert sum(len(hosts.lines(n, "issued")) for n in names) == 1000
    assert len(issued) == 1000, "a serial was reported twice"
    # Serials did collide (about 30 of 1,000 draws from 2^14): the database refused the second holder.
    assert sum(len(hosts.lines(n, "taken")) for n in names) > 0
    revocations = {serial: float(t) for serial, t in hosts.lines("revoker", "revoked")}
    assert len(revocations) >= 10

    ca = CADirectory(hosts.ca_dir).open()
    rows = {r["serial"]: r for r in ca.inventory.rows()}
    assert set(rows) == set(issued)  # none pending, none abandoned, nothing else
    for serial, folder in issued.items():
        assert rows[serial]["status"] == ("revoked" if serial in revocations else "valid"), serial
        assert rows[serial]["folder"] == str(folder)
    sample = list(issued.items())[::50]
    assert all(bundle_holds(folder, ca.inventory.certificate(serial).public_bytes(_der()), True)
               for serial, folder in sample)

    found = crls(hosts, ca.cert)
    assert len(found) >= 5
    check_crls(hosts, ["revoker", "crl"], revocations, found)
    # The next CRL, from yet another host: the next number, every revocation, and openssl agrees.
    final = hosts.tmp / "final.pem"
    run_certkit("crl", "--ca-dir", hosts.ca_dir, "--out", final, env=hosts.env, check=True)
    crl = x509.load_pem_x509_crl(final.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == max(found) + 1
    assert {serial_hex(r.serial_number) for r in crl} == set(revocations)
    assert openssl("crl", "-in", final, "-noout", "-verify", "-CAfile", hosts.ca_dir / "ca.pem").returncode == 0


def test_kill_9_loses_nothing_reported(hosts: Hosts) -> None:
    names = ["victim", "survivor"]
    for name in names:
        hosts.issuer(name, 120)
    hosts.start("revoker", "revoke", hosts.crl_dir, hosts.stop_file, *[hosts.tmp / f"{n}.log" for n in names])
    hosts.start("crl", "crl", hosts.crl_dir, hosts.stop_file)
    # Each killed at a moment of its own, mid-way through what it does.
    hosts.wait_for("victim", "issued", 30)
    hosts.kill("victim")
    hosts.wait_for("revoker", "revoked", 6)
    hosts.kill("revoker")
    hosts.wait_for("crl", "crl", 6)
    hosts.kill("crl")
    hosts.finish("survivor")

    # Any command on a host settles what the dead left pending (the victim's host: its folders).
    victim_ca = hosts.tmp / "host-victim" / "ca"
    run_certkit("list", "--ca-dir", victim_ca, "--json", env=hosts.env, check=True)
    ca = CADirectory(victim_ca).open()
    assert ca.inventory.pending_count() == 0
    rows = {r["serial"]: r for r in ca.inventory.rows()}
    revocations = {serial: float(t) for serial, t in hosts.lines("revoker", "revoked")}
    for name in names:
        for serial, folder in hosts.lines(name, "issued"):
            assert rows[serial]["status"] in ("valid", "revoked"), (name, serial, rows[serial]["status"])
            assert bundle_holds(folder, ca.inventory.certificate(serial).public_bytes(_der()), True)
    # What the victim signed but never reported is valid only if its bundle is complete, else abandoned.
    reported = {s for s, _f in hosts.lines("victim", "issued")}
    for row in ca.inventory.query(status="abandoned"):
        assert row["serial"] not in reported
        assert not bundle_holds(row["folder"], ca.inventory.certificate(row["serial"]).public_bytes(_der()), True)
    for serial in revocations:
        assert rows[serial]["status"] == "revoked"
    found = crls(hosts, ca.cert)
    check_crls(hosts, ["revoker", "crl"], revocations, found)
    # The next CRL number is above every number reported; it lists every reported revocation.
    final = hosts.tmp / "final.pem"
    run_certkit("crl", "--ca-dir", hosts.ca_dir, "--out", final, env=hosts.env, check=True)
    crl = x509.load_pem_x509_crl(final.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > max(found)
    assert set(revocations) <= {serial_hex(r.serial_number) for r in crl}


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER
