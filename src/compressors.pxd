"""The compression libraries' C API as fastdump's compiled core uses it: one
declaration per function, shared by every .pyx that compresses or decodes pages."""

from libc.stdint cimport uint32_t

cdef extern from "zstd.h" nogil:
    ctypedef struct ZSTD_CCtx:
        pass
    ZSTD_CCtx* ZSTD_createCCtx()
    size_t ZSTD_freeCCtx(ZSTD_CCtx*)
    size_t ZSTD_compressCCtx(ZSTD_CCtx*, void*, size_t, const void*, size_t, int)
    size_t ZSTD_compressBound(size_t)
    size_t ZSTD_decompress(void*, size_t, const void*, size_t)
    unsigned ZSTD_isError(size_t)
    unsigned ZSTD_versionNumber()

cdef extern from "lz4.h" nogil:
    int LZ4_sizeofState()
    int LZ4_compress_fast_extState(void*, const char*, char*, int, int, int)
    int LZ4_compressBound(int)
    int LZ4_decompress_safe(const char*, char*, int, int)
    int LZ4_versionNumber()

cdef extern from "zlib.h" nogil:
    unsigned long compressBound(unsigned long)
    int uncompress(unsigned char*, unsigned long*, const unsigned char*, unsigned long)
    int uncompress2(unsigned char*, unsigned long*, const unsigned char*, unsigned long*)
    const char* zlibVersion()
    int Z_OK

# zlib-format pages (makedumpfile -c) larger than 32 KiB are written by libdeflate: the same stream format
# that every reader inflates with zlib, made 1.2-2.3 times faster than by zlib's deflate,
# and its CRC-32 (zlib's polynomial and values) about 3 times faster than zlib's
cdef extern from "libdeflate.h" nogil:
    cdef struct libdeflate_compressor:
        pass
    libdeflate_compressor* libdeflate_alloc_compressor(int)
    void libdeflate_free_compressor(libdeflate_compressor*)
    size_t libdeflate_zlib_compress(libdeflate_compressor*, const void*, size_t, void*, size_t)
    size_t libdeflate_zlib_compress_bound(libdeflate_compressor*, size_t)
    uint32_t libdeflate_crc32(uint32_t, const void*, size_t)
    const char* LIBDEFLATE_VERSION_STRING

# zlib-format pages of up to 32 KiB are written by fastdump's own page compressor: libdeflate
# spends a third of a 4 KiB page's time on per-call set-up (page_deflate.h)
cdef extern from "page_deflate.h" nogil:
    ctypedef struct fd_deflate_ws:
        pass
    fd_deflate_ws* fd_deflate_new(uint32_t)
    void fd_deflate_free(fd_deflate_ws*)
    size_t fd_deflate_page(fd_deflate_ws*, const unsigned char*, size_t, unsigned char*, size_t)
    void fd_code_lengths(const uint32_t*, int, int, unsigned char*)
    int FD_DEFLATE_MAX_PAGE

cdef extern from "lzo/lzo1x.h" nogil:
    ctypedef unsigned long lzo_uint
    int lzo_init()
    int lzo1x_decompress_safe(const unsigned char*, lzo_uint, unsigned char*, lzo_uint*, void*)
    int lzo1x_1_compress(const unsigned char*, lzo_uint, unsigned char*, lzo_uint*, void*)
    int LZO_E_OK
    int LZO1X_1_MEM_COMPRESS

cdef extern from "snappy-c.h" nogil:
    ctypedef enum snappy_status:
        SNAPPY_OK
    snappy_status snappy_uncompress(const char*, size_t, char*, size_t*)
    snappy_status snappy_compress(const char*, size_t, char*, size_t*)
    size_t snappy_max_compressed_length(size_t)
