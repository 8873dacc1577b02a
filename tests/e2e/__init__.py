"""Real end-to-end kdump harness: Debian kernels in QEMU, a real capture kernel, /proc/vmcore."""
