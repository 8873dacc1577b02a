/* Test-only fault injection, loaded with LD_PRELOAD by tests/test_unreadable.py.
 * pread()/pread64() on the file named in EIO_FILE fail with EIO when the range
 * touches [EIO_START, EIO_START+EIO_LEN): a page the hardware cannot deliver.
 * mmap() of that file behaves like /proc/vmcore: a mapping that crosses one of
 * the file offsets in MMAP_BOUNDARIES (comma separated) fails with EAGAIN and is
 * logged to MMAP_LOG; MMAP_FAIL_ALL=1 makes every mapping fail. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static ssize_t (*real_pread)(int, void *, size_t, off_t);

static int is_target(int fd) {
    const char *want = getenv("EIO_FILE");
    char link[64], path[PATH_MAX];
    if (!want) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strcmp(path, want) == 0;
}

static ssize_t faulty(int fd, void *buf, size_t count, off_t off) {
    if (!real_pread) real_pread = dlsym(RTLD_NEXT, "pread");
    if (is_target(fd)) {
        long long s = atoll(getenv("EIO_START") ? getenv("EIO_START") : "0");
        long long l = atoll(getenv("EIO_LEN") ? getenv("EIO_LEN") : "0");
        if ((long long)off < s + l && (long long)(off + count) > s) {
            errno = EIO;
            return -1;
        }
    }
    return real_pread(fd, buf, count, off);
}

ssize_t pread(int fd, void *buf, size_t count, off_t off) { return faulty(fd, buf, count, off); }
ssize_t pread64(int fd, void *buf, size_t count, off_t off) { return faulty(fd, buf, count, off); }

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);

static void *faulty_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (!real_mmap) real_mmap = dlsym(RTLD_NEXT, "mmap");
    if (fd >= 0 && is_target(fd)) {
        int fail = getenv("MMAP_FAIL_ALL") != NULL;
        const char *b = getenv("MMAP_BOUNDARIES");
        while (!fail && b && *b) {
            long long at = atoll(b);
            if ((long long)off < at && (long long)(off + len) > at) fail = 1;
            b = strchr(b, ',');
            if (b) b++;
        }
        if (fail) {
            const char *logp = getenv("MMAP_LOG");
            if (logp) {
                FILE *f = fopen(logp, "a");
                if (f) { fprintf(f, "%lld %zu\n", (long long)off, len); fclose(f); }
            }
            errno = EAGAIN;
            return MAP_FAILED;
        }
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return faulty_mmap(addr, len, prot, flags, fd, off);
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return faulty_mmap(addr, len, prot, flags, fd, off);
}
