/* Test-only fault injection: pread()/pread64() on the file named in EIO_FILE
 * fail with EIO when the range touches [EIO_START, EIO_START+EIO_LEN).
 * Loaded with LD_PRELOAD by tests/test_unreadable.py; it stands in for a disk
 * or /proc/vmcore page that the hardware cannot deliver. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
