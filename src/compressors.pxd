"""The compression libraries' C API as fastdump's compiled core uses it: one
declaration per function, shared by every .pyx that compresses or decodes pages."""

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
    ctypedef struct z_stream:
        const unsigned char* next_in
        unsigned int avail_in
        unsigned char* next_out
        unsigned int avail_out
        void* zalloc
        void* zfree
        void* opaque
    int deflateInit(z_stream*, int)
    int deflateReset(z_stream*)
    int deflate(z_stream*, int)
    int deflateEnd(z_stream*)
    unsigned long compressBound(unsigned long)
    int uncompress(unsigned char*, unsigned long*, const unsigned char*, unsigned long)
    unsigned long crc32(unsigned long, const unsigned char*, unsigned int)
    const char* zlibVersion()
    int Z_OK
    int Z_STREAM_END
    int Z_FINISH

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
