/* A zlib-format (RFC 1950/1951) compressor for one page of at most 32 KiB: makedumpfile's
 * `-c` page format, read by every dump reader with zlib's inflate.
 *
 * Why not libdeflate for these: on a 4 KiB page about a third of its time is work that does
 * not depend on the page (it clears 192 KiB of hash tables and builds Huffman codes on every
 * call).  Here the hash table has 4096 slots (8 KiB cleared per page) and the code building
 * is sized for one page.  On the kept pages of a real 16 GiB guest at -d 31 this takes about
 * half the CPU of libdeflate's level 2 and stores 1 % fewer bytes (3.7 % fewer than zlib's
 * level 1, which makedumpfile uses).
 *
 * Parsing is greedy over hash chains of 3-byte prefixes (chain depth FD_DEFLATE_DEPTH, a
 * match of FD_DEFLATE_NICE bytes ends the search); the page is one final block with fixed or
 * dynamic Huffman codes, whichever is shorter, or nothing (0) when it would not fit `cap`.
 * Code lengths over the limit are rebuilt from halved frequencies.  Everything a call needs
 * is in the caller's workspace: no global state, so any number of threads may compress. */
#ifndef FD_PAGE_DEFLATE_H
#define FD_PAGE_DEFLATE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <libdeflate.h>

#define FD_DEFLATE_MAX_PAGE 32768       /* the DEFLATE window; frequencies then fit 16 bits */
#define FD_DEFLATE_HASH_BITS 12
#define FD_DEFLATE_DEPTH 6
#define FD_DEFLATE_NICE 16
#ifndef FD_DEFLATE_SKIP_AFTER
#define FD_DEFLATE_SKIP_AFTER 64        /* literals in a row before positions are skipped */
#endif

typedef struct {
    uint32_t page;                      /* largest input, <= FD_DEFLATE_MAX_PAGE */
    uint16_t head[1u << FD_DEFLATE_HASH_BITS];   /* position + 1 of the latest prefix, 0: none */
    uint8_t len_code[259];              /* match length -> length code - 257 */
    uint8_t rev8[256];                  /* bit reversal: Huffman codes go out LSB first */
    uint8_t *dist_code;                 /* distance -> distance code, [page + 1] */
    uint16_t *prev;                     /* [page] the previous position with the same hash + 1 */
    uint16_t *sym, *dist, *mlen;        /* [page] the parse: symbol, distance (0: literal), length */
} fd_deflate_ws;

static const uint16_t fd_len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43,
                                         51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t fd_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
                                         5, 5, 5, 5, 0};
static const uint16_t fd_dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385,
                                          513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t fd_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10,
                                          11, 11, 12, 12, 13, 13};
static const uint8_t fd_cl_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

static void fd_deflate_free(fd_deflate_ws *ws) {
    if (!ws)
        return;
    free(ws->dist_code); free(ws->prev); free(ws->sym); free(ws->dist); free(ws->mlen);
    free(ws);
}

/* A workspace for pages of up to `page` bytes, or NULL (no memory, or page too large). */
static fd_deflate_ws *fd_deflate_new(uint32_t page) {
    if (page == 0 || page > FD_DEFLATE_MAX_PAGE)
        return NULL;
    fd_deflate_ws *ws = (fd_deflate_ws *)calloc(1, sizeof(fd_deflate_ws));
    if (!ws)
        return NULL;
    ws->page = page;
    ws->dist_code = (uint8_t *)malloc(page + 1);
    ws->prev = (uint16_t *)malloc(page * sizeof(uint16_t));
    ws->sym = (uint16_t *)malloc(page * sizeof(uint16_t));
    ws->dist = (uint16_t *)malloc(page * sizeof(uint16_t));
    ws->mlen = (uint16_t *)malloc(page * sizeof(uint16_t));
    if (!ws->dist_code || !ws->prev || !ws->sym || !ws->dist || !ws->mlen) {
        fd_deflate_free(ws);
        return NULL;
    }
    for (int c = 0; c < 29; c++) {
        int hi = c == 28 ? 258 : c == 27 ? 257 : fd_len_base[c] + (1 << fd_len_extra[c]) - 1;
        for (int l = fd_len_base[c]; l <= hi; l++)
            ws->len_code[l] = (uint8_t)c;
    }
    for (int c = 0; c < 30; c++)
        for (uint32_t d = fd_dist_base[c]; d < (uint32_t)fd_dist_base[c] + (1u << fd_dist_extra[c]) && d <= page; d++)
            ws->dist_code[d] = (uint8_t)c;
    for (int v = 0; v < 256; v++) {
        int r = 0;
        for (int b = 0; b < 8; b++)
            r |= ((v >> b) & 1) << (7 - b);
        ws->rev8[v] = (uint8_t)r;
    }
    return ws;
}

/* Stable sort of (frequency << 16 | symbol) keys by frequency (< 65536), symbols ascending. */
static void fd_sort_by_freq(uint64_t *k, int m) {
    uint64_t tmp[288];
    for (int shift = 16; shift < 32; shift += 8) {
        int cnt[257] = {0};
        for (int i = 0; i < m; i++)
            cnt[((k[i] >> shift) & 0xFF) + 1]++;
        for (int b = 0; b < 256; b++)
            cnt[b + 1] += cnt[b];
        for (int i = 0; i < m; i++)
            tmp[cnt[(k[i] >> shift) & 0xFF]++] = k[i];
        memcpy(k, tmp, m * sizeof(uint64_t));
    }
}

/* Huffman code lengths for n (<= 288) symbols, none longer than `limit` bits. */
static void fd_code_lengths(const uint32_t *freq, int n, int limit, uint8_t *len) {
    uint32_t f[288], w[576];
    uint64_t keys[288];
    int parent[576], depth[576];
    memcpy(f, freq, n * sizeof(uint32_t));
    for (;;) {
        int m = 0;
        for (int s = 0; s < n; s++)
            if (f[s])
                keys[m++] = ((uint64_t)f[s] << 16) | (uint64_t)s;
        memset(len, 0, n);
        if (m == 0)
            return;
        if (m == 1) {
            len[keys[0] & 0xFFFF] = 1;
            return;
        }
        fd_sort_by_freq(keys, m);
        for (int i = 0; i < m; i++)
            w[i] = (uint32_t)(keys[i] >> 16);
        /* two queues: leaves by weight, then internal nodes in the order they are made */
        int leaf = 0, inner = m, next = m;
        while (next < 2 * m - 1) {
            int pick[2];
            for (int k = 0; k < 2; k++) {
                if (leaf < m && (inner >= next || w[leaf] <= w[inner]))
                    pick[k] = leaf++;
                else
                    pick[k] = inner++;
            }
            w[next] = w[pick[0]] + w[pick[1]];
            parent[pick[0]] = parent[pick[1]] = next;
            next++;
        }
        depth[2 * m - 2] = 0;
        int deepest = 0;
        for (int i = 2 * m - 3; i >= 0; i--) {
            depth[i] = depth[parent[i]] + 1;
            if (i < m && depth[i] > deepest)
                deepest = depth[i];
        }
        if (deepest <= limit) {
            for (int i = 0; i < m; i++)
                len[keys[i] & 0xFFFF] = depth[i];
            return;
        }
        for (int s = 0; s < n; s++)     /* flatten the distribution and build again */
            if (f[s])
                f[s] = (f[s] >> 1) | 1;
    }
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed for the LSB-first stream. */
static void fd_make_codes(const fd_deflate_ws *ws, const uint8_t *len, int n, uint16_t *code) {
    uint16_t count[16] = {0}, next[16] = {0};
    for (int s = 0; s < n; s++)
        count[len[s]]++;
    count[0] = 0;
    uint32_t c = 0;
    for (int b = 1; b < 16; b++) {
        c = (c + count[b - 1]) << 1;
        next[b] = (uint16_t)c;
    }
    for (int s = 0; s < n; s++)
        if (len[s]) {
            uint32_t v = next[len[s]]++;
            code[s] = (uint16_t)(((uint32_t)ws->rev8[v & 0xFF] << 8 | ws->rev8[(v >> 8) & 0xFF]) >> (16 - len[s]));
        }
}

typedef struct { uint8_t *p; uint64_t buf; int n; } fd_bits;

static inline void fd_put(fd_bits *b, uint32_t v, int n) {
    b->buf |= (uint64_t)v << b->n;
    b->n += n;
    while (b->n >= 8) {
        *b->p++ = (uint8_t)b->buf;
        b->buf >>= 8;
        b->n -= 8;
    }
}

/* Run-length code the code lengths: symbol in the low byte, its repeat count in the high. */
static int fd_rle_lengths(const uint8_t *lens, int n, uint16_t *out) {
    int k = 0;
    for (int i = 0; i < n;) {
        int l = lens[i], run = 1;
        while (i + run < n && lens[i + run] == l)
            run++;
        int left = run;
        if (l == 0) {
            while (left >= 11) {
                int r = left > 138 ? 138 : left;
                out[k++] = (uint16_t)(18 | ((r - 11) << 8));
                left -= r;
            }
            if (left >= 3) {
                out[k++] = (uint16_t)(17 | ((left - 3) << 8));
                left = 0;
            }
            while (left-- > 0)
                out[k++] = 0;
        } else {
            out[k++] = (uint16_t)l;
            left--;
            while (left >= 3) {
                int r = left > 6 ? 6 : left;
                out[k++] = (uint16_t)(16 | ((r - 3) << 8));
                left -= r;
            }
            while (left-- > 0)
                out[k++] = (uint16_t)l;
        }
        i += run;
    }
    return k;
}

static inline uint32_t fd_load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t fd_load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t fd_hash3(const uint8_t *p) {
    return ((fd_load32(p) & 0xFFFFFFu) * 0x9E3779B1u) >> (32 - FD_DEFLATE_HASH_BITS);
}

static inline int fd_match_len(const uint8_t *a, const uint8_t *b, int max) {
    int l = 0;
    while (l + 8 <= max) {
        uint64_t x = fd_load64(a + l) ^ fd_load64(b + l);
        if (x)                          /* the first differing byte in memory order */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            return l + (__builtin_clzll(x) >> 3);
#else
            return l + (__builtin_ctzll(x) >> 3);
#endif
        l += 8;
    }
    while (l < max && a[l] == b[l])
        l++;
    return l;
}

/* Compress n (<= ws->page) bytes into a zlib stream of at most cap bytes; 0 if it does not fit. */
static size_t fd_deflate_page(fd_deflate_ws *ws, const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    uint32_t lfreq[288] = {0}, dfreq[30] = {0};
    uint16_t *head = ws->head, *prev = ws->prev, *sym = ws->sym, *sdist = ws->dist, *slen = ws->mlen;
    if (n > ws->page)
        return 0;
    memset(head, 0, sizeof(ws->head));
    size_t ns = 0, i = 0, misses = 0;
    while (i < n) {
        int best = 0, bdist = 0;
        if (i + 4 <= n) {               /* the hash loads 4 bytes */
            uint32_t h = fd_hash3(src + i);
            int cand = head[h];
            prev[i] = (uint16_t)cand;
            head[h] = (uint16_t)(i + 1);
            int maxl = n - i > 258 ? 258 : (int)(n - i);
            for (int d = 0; cand && d < FD_DEFLATE_DEPTH; d++) {
                int c = cand - 1;
                if (src[c + best] == src[i + best]) {
                    int l = fd_match_len(src + c, src + i, maxl);
                    if (l > best) {
                        best = l;
                        bdist = (int)i - c;
                        if (l >= FD_DEFLATE_NICE || l == maxl)   /* src[i + maxl] may be past the page */
                            break;
                    }
                }
                cand = prev[c];
            }
        }
        if (best >= 3) {
            int lc = ws->len_code[best];
            sym[ns] = (uint16_t)(257 + lc);
            sdist[ns] = (uint16_t)bdist;
            slen[ns] = (uint16_t)best;
            ns++;
            lfreq[257 + lc]++;
            dfreq[ws->dist_code[bdist]]++;
            if (best <= 4)              /* short matches: their positions join the chains too */
                for (int k = 1; k < best && i + k + 4 <= n; k++) {
                    uint32_t h = fd_hash3(src + i + k);
                    prev[i + k] = head[h];
                    head[h] = (uint16_t)(i + k + 1);
                }
            i += best;
            misses = 0;
        } else {
            /* a long stretch without matches (compressed or random data): search ever fewer
             * positions, as LZ4 does; the bytes between go out as literals all the same */
            size_t run = ++misses > FD_DEFLATE_SKIP_AFTER ? 1 + ((misses - FD_DEFLATE_SKIP_AFTER) >> 4) : 1;
            if (run > n - i)
                run = n - i;
            for (size_t k = 0; k < run; k++) {
                sym[ns] = src[i + k];
                sdist[ns] = 0;
                ns++;
                lfreq[src[i + k]]++;
            }
            i += run;
        }
    }
    lfreq[256]++;
    /* at least two codes in each tree, as zlib's deflate makes them: some inflaters want them */
    {
        int used = 0;
        for (int s = 0; s < 286; s++)
            used += lfreq[s] != 0;
        if (used < 2)
            lfreq[lfreq[0] ? 1 : 0]++;
        used = 0;
        for (int s = 0; s < 30; s++)
            used += dfreq[s] != 0;
        if (used < 2)
            dfreq[dfreq[0] ? 1 : 0]++;
        if (used == 0)
            dfreq[1]++;
    }
    uint8_t llen[288] = {0}, dlen[30], all[316], clen[19];
    uint16_t rle[316], lcode[288], dcode[30], ccode[19];
    fd_code_lengths(lfreq, 286, 15, llen);
    fd_code_lengths(dfreq, 30, 15, dlen);
    int hlit = 286, hdist = 30;
    while (hlit > 257 && !llen[hlit - 1])
        hlit--;
    while (hdist > 1 && !dlen[hdist - 1])
        hdist--;
    memcpy(all, llen, hlit);
    memcpy(all + hlit, dlen, hdist);
    int nr = fd_rle_lengths(all, hlit + hdist, rle);
    uint32_t cfreq[19] = {0};
    for (int k = 0; k < nr; k++)
        cfreq[rle[k] & 0xFF]++;
    fd_code_lengths(cfreq, 19, 7, clen);
    int hclen = 19;
    while (hclen > 4 && !clen[fd_cl_order[hclen - 1]])
        hclen--;
    /* the block's size in bits, both ways */
    uint64_t dyn = 3 + 14 + 3 * (uint64_t)hclen, fix = 3;
    for (int k = 0; k < nr; k++) {
        int s = rle[k] & 0xFF;
        dyn += clen[s] + (s == 16 ? 2 : s == 17 ? 3 : s == 18 ? 7 : 0);
    }
    for (int s = 0; s < 286; s++)
        if (lfreq[s]) {
            int e = s >= 257 ? fd_len_extra[s - 257] : 0;
            int fl = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
            dyn += (uint64_t)lfreq[s] * (llen[s] + e);
            fix += (uint64_t)lfreq[s] * (fl + e);
        }
    for (int s = 0; s < 30; s++)
        if (dfreq[s]) {
            dyn += (uint64_t)dfreq[s] * (dlen[s] + fd_dist_extra[s]);
            fix += (uint64_t)dfreq[s] * (5 + fd_dist_extra[s]);
        }
    int fixed = fix <= dyn;
    if (2 + ((fixed ? fix : dyn) + 7) / 8 + 4 > cap)
        return 0;
    if (fixed) {                        /* RFC 1951 3.2.6: all 288 and 30 codes exist */
        for (int s = 0; s < 288; s++)
            llen[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
        for (int s = 0; s < 30; s++)
            dlen[s] = 5;
    }
    fd_make_codes(ws, llen, 288, lcode);
    fd_make_codes(ws, dlen, 30, dcode);
    dst[0] = 0x78;                      /* deflate, 32 KiB window; FLG: fastest, check bits */
    dst[1] = 0x01;
    fd_bits b = {dst + 2, 0, 0};
    if (fixed) {
        fd_put(&b, 1 | (1 << 1), 3);
    } else {
        fd_make_codes(ws, clen, 19, ccode);
        fd_put(&b, 1 | (2 << 1), 3);
        fd_put(&b, hlit - 257, 5);
        fd_put(&b, hdist - 1, 5);
        fd_put(&b, hclen - 4, 4);
        for (int k = 0; k < hclen; k++)
            fd_put(&b, clen[fd_cl_order[k]], 3);
        for (int k = 0; k < nr; k++) {
            int s = rle[k] & 0xFF, x = rle[k] >> 8;
            fd_put(&b, ccode[s], clen[s]);
            if (s >= 16)
                fd_put(&b, x, s == 16 ? 2 : s == 17 ? 3 : 7);
        }
    }
    for (size_t k = 0; k < ns; k++) {
        int s = sym[k];
        fd_put(&b, lcode[s], llen[s]);
        if (s > 256) {
            int lc = s - 257, d = sdist[k], dc = ws->dist_code[d];
            if (fd_len_extra[lc])
                fd_put(&b, slen[k] - fd_len_base[lc], fd_len_extra[lc]);
            fd_put(&b, dcode[dc], dlen[dc]);
            if (fd_dist_extra[dc])
                fd_put(&b, d - fd_dist_base[dc], fd_dist_extra[dc]);
        }
    }
    fd_put(&b, lcode[256], llen[256]);
    if (b.n)
        fd_put(&b, 0, 8 - b.n);
    uint32_t a = libdeflate_adler32(1, src, n);
    b.p[0] = (uint8_t)(a >> 24);
    b.p[1] = (uint8_t)(a >> 16);
    b.p[2] = (uint8_t)(a >> 8);
    b.p[3] = (uint8_t)a;
    return (size_t)(b.p + 4 - dst);
}

#endif
