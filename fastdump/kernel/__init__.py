"""Kernel layout: where struct page lives, virtual-to-physical, page classes per dump level."""
