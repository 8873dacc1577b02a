/* SIGBUS guard of fastdump's compiled core (_core.pyx): a worker arms a thread-local
   jump point around one mmap window; a SIGBUS there jumps back, any other goes to the
   handler that was installed before. */
#ifndef FASTDUMP_SIGBUS_H
#define FASTDUMP_SIGBUS_H

#include <setjmp.h>
#include <signal.h>
#include <string.h>
static __thread sigjmp_buf fd_bus_jmp;
static __thread volatile int fd_bus_armed;
static struct sigaction fd_bus_previous;
static void fd_bus_handler(int sig, siginfo_t *info, void *ctx) {
    (void)info; (void)ctx;
    if (fd_bus_armed) {
        fd_bus_armed = 0;
        siglongjmp(fd_bus_jmp, 1);
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
