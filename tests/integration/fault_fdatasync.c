/* fault_fdatasync.c: an LD_PRELOAD module for integration tests that makes fdatasync fail on demand.
 *
 * While the file named by $PB_FAULT_FDATASYNC exists, every fdatasync(2) of the process returns -1
 * with errno EIO, as the kernel does after a write-back error; otherwise (variable unset or empty,
 * file absent) the real fdatasync runs. The file is checked on every call, so a test switches the
 * fault on and off in a running process by creating and removing it.
 *
 * Under AddressSanitizer the process needs ASAN_OPTIONS=verify_asan_link_order=0: this module is
 * loaded before the ASan runtime. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int fdatasync(int fd) {
    const char *trigger = getenv("PB_FAULT_FDATASYNC");
    if (trigger && *trigger && access(trigger, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    /* Looked up on each call: no state shared between the threads that sync. */
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}
