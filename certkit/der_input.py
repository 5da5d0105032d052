"""DER where OpenSSL's file loaders read PEM only: ``serve --cert/--key`` and ``probe --cert/--key``.

A DER file holds one object, so certkit reads it as every other file option does (one certificate, or
one private key, traditional or PKCS#8, encrypted or not; or a DER chain, certificates one after another,
as Java and Go read it) and hands OpenSSL its PEM
form, from memory; a file that is PEM, or no DER certificate or key, is handed over as it is, for the
callers' own checks to say what it holds."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pem_form(data: bytes, *, key: bool = False) -> bytes:
    """``data`` in PEM when it is one DER certificate (or, with ``key``, one DER private key); ``data`` itself
    otherwise: a key given for a certificate, or the reverse, is said by the callers as before. An encrypted
    PKCS#8 key stays encrypted (its block is ENCRYPTED PRIVATE KEY): refused, or opened, as the same key in PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from certkit.errors import parse_errors
    from certkit.key_encryption import is_encrypted

    if data.lstrip()[:1] != b"\x30":  # PEM, text, or nothing DER starts with
        return data
    if not key:
        from certkit.material_kinds import der_chain

        try:
            return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.PEM)
        except parse_errors():  # a DER chain (cat cert.der ca.der): the chain in PEM, in its order
            return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in der_chain(data) or ()) or data
    if is_encrypted(data):
        body = base64.encodebytes(data).replace(b"\n", b"")
        lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + lines + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
    try:
        key = serialization.load_der_private_key(data, None)
    except Exception:  # not a key (ValueError), or a type cryptography cannot read: said by the caller
        return data
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@contextmanager
def pem_paths(cert: str | Path, *key: str | Path) -> Iterator[list[str]]:
    """Paths OpenSSL can read a certificate file ``cert`` (and its ``key`` file) from as PEM: each one itself
    when it is PEM (or no DER certificate, or key), else its PEM form in memory
    (:func:`certkit.sslcontext.in_memory`), gone when the block ends."""
    from certkit.sslcontext import in_memory

    paths = [cert, *key]
    try:
        datas = [Path(p).read_bytes() for p in paths]
    except OSError:  # OpenSSL reads it and says why not, as before
        yield [str(p) for p in paths]
        return
    pems = [pem_form(d, key=i > 0) for i, d in enumerate(datas)]
    if pems == datas:
        yield [str(p) for p in paths]
        return
    with in_memory(*pems) as memory:
        yield [str(m if pem != data else p) for m, pem, data, p in zip(memory, pems, datas, paths, strict=True)]


def read_pem_form(path: Path, what: str, *, key: bool = False) -> bytes:
    """The file ``path`` (at most MAX_CERT_FILE_BYTES; ``what`` names it in an error), in :func:`pem_form`."""
    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.files import read_limited

    return pem_form(read_limited(path, MAX_CERT_FILE_BYTES, what=what), key=key)


def server_files(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """serve's ``--cert`` and ``--key`` files, in :func:`pem_form`; a file of another kind (a CSR, a CRL, a key
    given as the certificate or the reverse, a bundle.p12), PEM or DER alike, refused in the words every reader
    of a certificate (:func:`certkit.material.load_certificates`) or a key (:func:`certkit.keys.held_instead`)
    says it with, before OpenSSL reads them."""
    from certkit.errors import CertkitError
    from certkit.keys import held_instead
    from certkit.material import load_certificates
    from certkit.material_kinds import advice_for
    from certkit.text import shown

    chain_pem, key_pem = read_pem_form(cert, "PEM file"), read_pem_form(key, "PEM file", key=True)
    if b"-----BEGIN CERTIFICATE-----" not in chain_pem:  # (a damaged certificate block: said as before)
        load_certificates(cert, "--cert, the server certificate chain")
    if b"PRIVATE KEY-----" not in key_pem and (held := held_instead(key_pem, b"-----BEGIN" in key_pem)):
        advice = advice_for(held, key, key=True)  # a bundle.p12 "is" one, and what to give instead
        raise CertkitError(f"The server key {shown(key)} {'is' if advice else 'holds'} {held}, not a private "
                           f"key{advice}.")
    return chain_pem, key_pem


def refuse_unread_extensions(cert_file: Path, leaf) -> None:
    """Refuse a server certificate whose extensions certkit cannot read (a TLS Feature naming a feature cryptography
    does not know, which OpenSSL serves): its purpose cannot be checked; in inspect's words, not a traceback."""
    from certkit.errors import CertkitError, damage_said, parse_errors
    from certkit.text import shown

    try:
        list(leaf.extensions)
    except parse_errors() as exc:
        raise CertkitError(f"{shown(cert_file)} holds {damage_said(exc, of=[leaf])}; serve checks a server "
                           "certificate's extensions (serverAuth) before serving it.") from None
