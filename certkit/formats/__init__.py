"""Outputs that deployment tools read: a JSON line, a Kubernetes Secret or a tar archive per certificate.

``--format folder`` is the bundle folder of :mod:`certkit.bundle`. The other
formats put every certificate of a command into one output, a file or standard
output:

- ``jsonl``: one JSON object per line (names, serial, dates, and the PEMs
  ``cert``, ``key``, ``chain``, ``fullchain``, ``ca``); ``cert`` and ``key``
  are the fields cfssl prints, so ``cfssljson`` reads a line;
- ``k8s``: a ``kubernetes.io/tls`` Secret per certificate (``tls.crt`` the
  full chain, ``tls.key``, ``ca.crt``: the keys cert-manager writes), as a
  stream of YAML documents that ``kubectl apply -f`` takes;
- ``tar``: one archive holding a folder per certificate with the bundle's files
  and modes (keys 0600), as ``tar -x`` recreates the folders of ``--format folder``.

Each is an issuing-pipeline :class:`~certkit.issuing.Target`, so every
certificate is still planned, signed, recorded ``pending`` (sink ``file`` with
the output file as its folder, or ``stream`` for standard output), written,
and only then marked ``valid``. A file appears whole or not at all: it is
written under a temporary name beside its destination (mode 0600 when it holds
a key) and renamed into place once complete and flushed to disk. So when many
certificates go into one file (``issue-batch``), their rows stay pending until
the file is in place (:meth:`Output.commit`; the target is ``deferred``), and a
batch that fails marks them abandoned (:meth:`Output.abort`); a writer killed
outright leaves rows that the next command settles by reading the file at the
recorded path (:func:`holds_certificates`). Standard output cannot be made
durable: a certificate written to it is delivered once the write returns.

Keys in these outputs are as sensitive as ``privkey.pem``: a file holding one is
0600, and a key (or a binary archive) is never written to a terminal.

The package: :mod:`~certkit.formats.encoding` (the bytes of each format),
:mod:`~certkit.formats.output` (the file or stream they go to, and the pipeline
target), :mod:`~certkit.formats.reading` (a file read back by reconciliation).
"""

from certkit.formats.encoding import (
    ANNOTATION_PREFIX,
    FORMATS,
    ONE_OUTPUT,
    SECRET_TYPE,
    Encoder,
    FormatRefused,
    jsonl_record,
    k8s_secret,
    member_name,
    secret_name,
    tar_bundle,
    tar_end,
    yaml_string,
)
from certkit.formats.output import Output, OutputTarget
from certkit.formats.reading import holds_certificates

__all__ = ["ANNOTATION_PREFIX", "FORMATS", "ONE_OUTPUT", "SECRET_TYPE", "Encoder", "FormatRefused", "Output",
           "OutputTarget", "holds_certificates", "jsonl_record", "k8s_secret", "member_name", "secret_name",
           "tar_bundle", "tar_end", "yaml_string"]
