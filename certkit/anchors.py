"""The trust anchors a verification starts from: a PEM file of CA certificates (``--ca-file``), or a
certkit CA directory; shared by ``verify`` and ``probe``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509


def load_trust(ca_file: str | Path | None = None, ca_dir: str | Path | None = None, *, roots_only: bool = False
               ) -> tuple[list["x509.Certificate"], list["x509.Certificate"], str]:
    """Trust anchors, extra intermediates, and a description: from a PEM file of CA
    certificates (all trusted, as OpenSSL's -CAfile; with ``roots_only``, as OpenSSL's -CAfile
    without -partial_chain: only its self-signed CAs are anchors, its other CAs intermediates), else
    from a certkit CA directory (its root trusted, an intermediate CA's own certificate supplied as
    untrusted)."""
    if ca_file is not None:
        from certkit.material import load_material
        from certkit.vocabulary import is_ca, self_signed

        found = [c for c, _ in load_material(ca_file).certificates]
        if found and not roots_only:  # probe: what curl --cacert trusts (a self-signed server's own, too)
            return found, [], str(ca_file)
        cas = [c for c in found if is_ca(c)]
        if not cas:
            raise CertkitError(f"{shown(ca_file)} holds no CA certificate" + (
                f" (what it holds, {shown(found[0].subject.rfc4514_string())}, is not a CA: basicConstraints "
                "CA:FALSE or none)." if found else "."))
        roots = [c for c in cas if self_signed(c)]
        if not roots:
            raise CertkitError(f"{shown(ca_file)} holds no root CA certificate (a self-signed one): OpenSSL "
                               f"(openssl verify -CAfile, nginx, Python) takes no other as a trust anchor; give "
                               f"the root above {shown(cas[0].subject.rfc4514_string())}.")
        return roots, [c for c in cas if c not in roots], str(ca_file)
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    cert, parents = store.load_certificates()
    if parents:
        return [parents[-1]], [cert, *parents[:-1]], str(store.path)
    return [cert], [], str(store.path)


