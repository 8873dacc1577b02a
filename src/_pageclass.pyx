# cython: language_level=3
"""Page classes as one enum for Cython and Python: ``PageClass`` (declared in
fastdump/_pageclass.pxd, which the struct-page scan cimports)."""
