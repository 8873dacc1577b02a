/* SIGBUS guard for reads through a mapping, shared by fastdump's compiled modules.
 *
 * A mapped page that cannot be delivered (a saved vmcore truncated while it is being
 * read, an NFS server error) raises SIGBUS on the access.  A worker arms a
 * thread-local jump point around one window; the handler jumps back there and the
 * window is read again with pread, where the same failure is an errno.  Each module
 * that includes this has its own handler and jump points: a SIGBUS its own threads
 * did not arm for goes on to the handler installed before it (another module's guard,
 * Python's faulthandler), or, when that is not a handler, the old action is restored
 * and the fault repeats under it (the default: die). */
#ifndef FD_SIGBUS_H
#define FD_SIGBUS_H
#include <setjmp.h>
#include <signal.h>
#include <string.h>

static __thread sigjmp_buf fd_bus_jmp;
static __thread volatile int fd_bus_armed;
static struct sigaction fd_bus_previous;

static void fd_bus_handler(int sig, siginfo_t *info, void *ctx) {
    if (fd_bus_armed) {
        fd_bus_armed = 0;
        siglongjmp(fd_bus_jmp, 1);
    }
    if ((fd_bus_previous.sa_flags & SA_SIGINFO) && fd_bus_previous.sa_sigaction) {
        fd_bus_previous.sa_sigaction(sig, info, ctx);
        return;
    }
    sigaction(sig, &fd_bus_previous, NULL);   /* the fault repeats under the old action */
}

static int fd_bus_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fd_bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;    /* the mask stays as it was: sigsetjmp(.., 0) is enough */
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, &fd_bus_previous);
}

/* a macro: sigsetjmp must run in the frame that stays alive while armed */
#define fd_bus_arm() (fd_bus_armed = 1, sigsetjmp(fd_bus_jmp, 0))
#define fd_bus_disarm() (fd_bus_armed = 0)
#endif
