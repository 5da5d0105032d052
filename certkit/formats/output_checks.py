"""What an :class:`~certkit.formats.output.Output` does before anything is signed (:class:`OutputChecks`, the
base class of ``Output``, whose attributes it reads): the output file held, what writing it could not do refused
(a path in a CA directory, a link, a file in the way, a key for a terminal; a name the format cannot hold), and
what the file ``--force`` overwrites held, recorded as replaced or released once the new file is in place."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.formats.encoding import FormatRefused, check_record_name, member_name, secret_name, typed_name
from certkit.formats.recorded import foreign_notes, identity, issued_into, refuse_output_misfits, release
from certkit.text import shown

if TYPE_CHECKING:
    from pathlib import Path

    from certkit.ca import CA
    from certkit.inventory import Inventory
    from certkit.issuing import Request


class OutputChecks:
    """The checks of an :class:`~certkit.formats.output.Output` before anything is signed, and what the file
    ``--force`` overwrites held; ``Output`` sets the attributes they read (``path``, ``given``, ``force``, ...)."""

    def held(self, ca: "CA"):
        """Hold the output file for this process alone, from the check to :meth:`released` (waiting while
        another certkit command writes it): two commands given the same file with ``--force`` would each
        record in it certificates only the last one's file holds (their keys lost)."""
        from contextlib import nullcontext

        from certkit.bundle_locks import folders_held

        if self.path is None or not ca.directories or ca.inventory is None:
            return nullcontext()
        return folders_held(ca.directories[0], [self.path])

    def check(self, ca_dirs: Iterable[str | Path] = (), *, keyed: bool = True,
              inventory: "Inventory | None" = None) -> None:
        """Refuse what writing could not do: a path in a CA directory, through a link, over a
        folder, over an existing file (unless ``force``); a key or an archive for a terminal."""
        self.checked = True
        if self.path is None:
            from certkit.text import stdout_closed

            closed = stdout_closed("the certificates (and their keys)") if self._stream is None else None
            if closed:
                raise CertkitError(closed)
            if self.stream.isatty():
                if keyed:
                    raise CertkitError("Standard output is a terminal: certkit does not print private keys there "
                                       "(they would stay in the scrollback and the terminal's log); write them to "
                                       "a file or a pipe.")
                if self.format == "tar":
                    raise CertkitError("Standard output is a terminal, and a tar archive is binary; write it to a "
                                       "file or a pipe.")
            refuse_output_misfits(None, "", inventory, self.format, self.stream)  # a terminal was refused above
            if keyed:
                from certkit.files import private_stream

                self.made_private = private_stream(self.stream, change=False)  # made so by make_private()
            return
        from certkit.bundle import check_folder_owner
        from certkit.formats.placing import refuse_missing_folder
        from certkit.paths import check_can_write, check_folders_above, check_output, refuse_controlled_above

        check_output(self.given, ca_dirs, what="output file")
        refuse_controlled_above(self.given, "output file")  # its temporary file, by name
        if self.given.is_symlink():
            raise UnsafeOutputPath(f"{shown(self.file_text)} is a symbolic link; certkit does not write through links. "
                                   "Give the real path.")
        if self.given.exists() and not self.given.is_file():
            raise OutputExists(f"{shown(self.file_text)} exists and is not a file.", replaceable=False)
        if self.given.exists() and not self.force:  # what --force would not replace either says so first
            refuse_output_misfits(self.path, self.file_text, inventory, self.format)
            raise OutputExists(f"{shown(self.file_text)} already exists{issued_into(self.path, inventory)}.")
        check_folders_above(self.given, "output file")
        refuse_missing_folder(self.given, self.file_text)
        check_can_write(self.given, "output file")
        refuse_output_misfits(self.path, self.file_text, inventory, self.format)
        parent = self.path.parent
        if parent.is_dir():
            check_folder_owner(parent)

    def check_name(self, request: Request, name: str) -> None:
        """Refuse, per certificate, what this format cannot hold: a Secret without a key, a name that
        is no Kubernetes name or archive path, a name given twice, a control character (as a folder's)."""
        if self.format != "tar":  # tar's member_name says it in its words
            check_record_name(name)
        if self.format == "k8s":
            if not request.keyed:
                raise FormatRefused("A kubernetes.io/tls Secret holds the private key, and a certificate signed "
                                    "from a CSR has none here (the requester keeps it); write jsonl, tar or a "
                                    "folder instead.")
            try:
                secret_name(name, typed_name(request))
            except FormatRefused:
                typed = request.common_name or (request.identities[0].value if request.identities else name)
                if typed == name:
                    raise
                raise FormatRefused(f"'{shown(typed)}' gives no usable Kubernetes name: its bundle name, "
                                    f"'{shown(name)}', has no ASCII letters or digits.") from None
        elif self.format == "tar":
            member_name(name)
        if self.path is None and self.format != "tar":
            self._refuse_appended_twice(self.key(name, typed_name(request)))

    def _refuse_appended_twice(self, key: str) -> None:
        """Refuse a Secret name (a jsonl name) that the file standard output appends to (``>>``) holds already, as
        two lines of one batch are refused: ``kubectl apply`` would put this Secret in place of that one."""
        from certkit.formats.recorded import names_appended_to, refuse_held_name

        if self._appended is None:  # read once per output: a batch asks for every line
            self._appended = names_appended_to(self.stream, self.format)
        refuse_held_name(self._appended, key, self.format)

    def key(self, name: str, typed: str | None = None) -> str:
        """What must differ between two certificates of one output: the Secret's name (of a certificate
        for ``typed``, :func:`typed_name`), the archive folder."""
        if self.format == "k8s":
            return secret_name(name, typed)
        return member_name(name) if self.format == "tar" else name

    def replaced(self, ca: "CA", request: Request) -> str | None:
        """The certificate that ``request``'s replaces in the file ``--force`` overwrites: the one of ``ca``
        recorded valid (and not renewed) in that file, of the same kind and for the same names (in any
        order), so that it is recorded as succeeded, as a folder's is. None if there is none, or several."""
        if self._replaced is None:  # once per output: a batch asks for every line
            self._replaced = {}
            for row in self._held(ca.inventory):
                key = (row["kind"], identity(row["names"], row["subject"]))
                self._replaced[key] = None if key in self._replaced else row["serial"]
        if request.identities:
            return self._replaced.get((request.kind, frozenset(str(i) for i in request.identities)))
        if request.common_name is None:
            return None
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        # a client known by its common name alone: its certificate names its subject (DirName:CN=...)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)]).rfc4514_string()
        return self._replaced.get((request.kind, ("subject", subject)))

    def _held(self, inventory: "Inventory | None") -> list[dict]:
        """The certificates recorded valid (and not renewed) in the file ``--force`` overwrites."""
        if not self.force or self.path is None or inventory is None or not self.path.is_file():
            return []
        return inventory.rows("WHERE folder = ? AND sink = 'file' AND status = 'valid' AND NOT EXISTS "
                              "(SELECT 1 FROM certificates n WHERE n.renewed_from = certificates.serial"
                              " AND n.status IN ('valid', 'revoked'))", (str(self.path),))

    def foreign_held(self, ca: "CA") -> list[str]:
        """Notes for another CA's certificates in the file ``--force`` overwrites (:func:`foreign_notes`)."""
        return foreign_notes(self.path, ca) if self.force and self.path is not None else []

    def held_before(self, inventory: "Inventory | None") -> None:
        """Before anything is signed: note the certificates the file ``--force`` overwrites holds (see
        :meth:`released`)."""
        self._before = [row["serial"] for row in self._held(inventory)]

    def released(self, inventory: "Inventory | None") -> list[str]:
        """Once the new file is in place: the certificates the overwritten file held that no new one
        succeeds (other names, or a batch with fewer lines). The file no longer holds them nor their
        keys, so their rows stop naming it; they stay valid (whoever took them from the old file may
        use them) until revoked. Returns their serials."""
        if not self._before or inventory is None or self.path is None:
            return []
        gone = release(inventory, self.path, self._before)
        self._before = []
        return gone
