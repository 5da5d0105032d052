"""The fifteenth round's regress audit: siblings of round fourteen's fixes that those fixes missed.

1. A passphrase or password file kept in a bundle folder (round fourteen: export-p12, renew FOLDER and the
   issue commands refuse to write over it) was removed by bulk renewal (renew --all / --expiring) and by
   issue-batch --force, which replace many folders: the CA key's passphrase file named like a leftover
   (chain.pem under a root CA) was gone after the run, exit 0. Every bundle write now refuses to replace or
   remove a file the command was given to read (bundle.check_writable, files.keep_input).
"""

from __future__ import annotations

from pathlib import Path

from conftest import PASSPHRASE, assert_clean_error, run_certkit


# --- 1. a passphrase file kept in a bundle folder, under bulk renewal and issue-batch --------------------------
def _kept_passphrase(folder: Path) -> Path:
    kept = folder / "chain.pem"  # a leftover under a root CA: a whole new bundle removes it
    kept.write_text(PASSPHRASE + "\n")
    kept.chmod(0o600)
    return kept


def test_bulk_renewal_and_issue_batch_keep_a_passphrase_file_in_a_bundle_folder(ca_dir: Path, ca_env: dict,
                                                                                tmp_path: Path):
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    srv = tmp_path / "srv"
    run_certkit("issue-server", "a.example.com", "--out", srv, env=ca_env, check=True)
    kept = _kept_passphrase(srv)
    proc = run_certkit("renew", "--all", "--passphrase-file", kept, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "is the file given as --passphrase-file, which this command reads" in proc.stdout + proc.stderr
    assert kept.read_text() == PASSPHRASE + "\n"

    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,b.example.com,b\n")
    out_dir = tmp_path / "outs"
    run_certkit("issue-batch", manifest, "--out-dir", out_dir, env=ca_env, check=True)
    kept = _kept_passphrase(out_dir / "b")
    proc = run_certkit("issue-batch", manifest, "--out-dir", out_dir, "--force", "--passphrase-file", kept, env=env)
    assert_clean_error(proc, "is the file given as --passphrase-file, which this command reads")
    assert kept.read_text() == PASSPHRASE + "\n"

    # the same file outside the folders is taken as before, and a leftover that no command reads still goes
    outside = tmp_path / "pf"
    outside.write_text(PASSPHRASE + "\n")
    outside.chmod(0o600)
    run_certkit("issue-batch", manifest, "--out-dir", out_dir, "--force", "--passphrase-file", outside, env=env,
                check=True)
    assert not kept.exists()
    run_certkit("renew", "--all", "--passphrase-file", outside, env=env, check=True)
    assert not (srv / "chain.pem").exists()
