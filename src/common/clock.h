/* clock.h: the monotonic millisecond clock every deadline, tick and interval in predbridge uses. */
#ifndef PB_COMMON_CLOCK_H
#define PB_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t pbclock_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
