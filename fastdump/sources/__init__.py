"""Where dumps come from: ELF vmcores, raw memory, saved dump files, and opening any of them."""
