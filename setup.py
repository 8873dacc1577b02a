"""Build fastdump's Cython core against the system's compression libraries."""

import glob
import os
import sys

from setuptools import Extension, setup

# Which system library each Cython module links, and the Debian package with its header.
NEEDS = {"_core": ["zstd", "lz4", "z", "deflate", "lzo2", "snappy"]}
HEADERS = {"zstd": ("zstd.h", "libzstd-dev"), "lz4": ("lz4.h", "liblz4-dev"), "z": ("zlib.h", "zlib1g-dev"),
           "deflate": ("libdeflate.h", "libdeflate-dev"),
           "lzo2": ("lzo/lzo1x.h", "liblzo2-dev"), "snappy": ("snappy-c.h", "libsnappy-dev")}
INCLUDE_DIRS = ["/usr/include", "/usr/local/include"] + os.environ.get("CPATH", "").split(":")
#: declarations and C shared by the .pyx files: a change rebuilds every module
SHARED = sorted(glob.glob("src/*.pxd") + glob.glob("src/*.h") + glob.glob("fastdump/*.pxd"))


def check_headers():
    missing = []
    for lib in sorted({lib for libs in NEEDS.values() for lib in libs}):
        header, package = HEADERS[lib]
        if not any(os.path.exists(os.path.join(d, header)) for d in INCLUDE_DIRS if d):
            missing.append(f"{header} (Debian package {package})")
    if missing:
        sys.exit("fastdump: cannot build the core, missing " + ", ".join(missing)
                 + ". Install them, e.g. `apt-get install libzstd-dev liblz4-dev zlib1g-dev libdeflate-dev"
                   " liblzo2-dev libsnappy-dev`,"
                   " or run `bash .ci/setup-host`.")


def extensions():
    from Cython.Build import cythonize

    exts = []
    for pyx in sorted(glob.glob("src/*.pyx")):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(Extension(f"fastdump.{name}", [pyx], libraries=NEEDS.get(name, []),
                              include_dirs=["src"], depends=SHARED, extra_compile_args=["-O3"]))
    return cythonize(exts, language_level=3, compiler_directives={"embedsignature": True})


if not any(a in sys.argv for a in ("egg_info", "sdist", "--name", "--version")):
    check_headers()
    ext_modules = extensions()
else:
    ext_modules = []

setup(ext_modules=ext_modules)
