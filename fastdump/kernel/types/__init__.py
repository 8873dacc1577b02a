"""The crashed kernel's own symbols and types, read from the dump (kallsyms + BTF).

No debug vmlinux is needed: 6.0+ kernels export their kallsyms tables in
VMCOREINFO, and kallsyms finds ``__start_BTF``, the kernel's BTF type
information.  Every answer is checked; anything that cannot be proven is
:class:`NotAvailable`, never a guess.
"""

from ...errors import FastdumpError


class NotAvailable(FastdumpError):
    """This dump cannot answer the question (no kallsyms, no BTF, or they do not check out)."""


class Disagreement(NotAvailable):
    """BTF and VMCOREINFO lay out ``name`` (``page.flags``, ``page``) differently: one of
    them is damaged, and the dump cannot say which."""

    def __init__(self, message, name):
        super().__init__(message)
        self.name = name
