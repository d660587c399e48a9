/* Waiting: a monotonic deadline that holds across EINTR, and a way out
 * when Ctrl-C (or core.catch_signals) asks the Lua state to stop.
 *
 * lua.c's SIGINT handler only sets a hook; the hook raises "interrupted!"
 * at the next Lua event. A C function that retries poll() on EINTR forever
 * never gets back to Lua, so the hook never runs. After EINTR we compare the
 * state's hook with the one seen when the wait began: if it changed, we
 * return to Lua at once and the hook does the rest.
 *
 * A signal can also land between taking that snapshot and entering poll():
 * then poll() does not see EINTR. So no single poll() lasts longer than
 * SLICE_MS; between slices the hook is looked at again. A missed Ctrl-C
 * costs at most one slice, an idle wait one wake-up per slice. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <time.h>
#include "tcplab.h"

enum { SLICE_MS = 1000 };

void tl_wait_begin(tl_waiter *w, lua_State *L, double timeout)
{
    w->L = L;
    w->hook = lua_gethook(L);
    w->mask = lua_gethookmask(L);
    w->signals = tl_signal_count();
    w->deadline = timeout < 0 ? -1 : tl_now() + timeout;
}

int tl_wait_interrupted(const tl_waiter *w)
{
    return lua_gethook(w->L) != w->hook || lua_gethookmask(w->L) != w->mask ||
           tl_signal_count() != w->signals;
}

/* Milliseconds for the next slice: 0 when the deadline has passed. */
static int slice_ms(const tl_waiter *w)
{
    if (w->deadline < 0)
        return SLICE_MS;
    double left = w->deadline - tl_now();
    if (left <= 0)
        return 0;
    return left * 1000.0 >= SLICE_MS ? SLICE_MS : (int)ceil(left * 1000.0);
}

int tl_wait_fd(tl_waiter *w, int fd, short events)
{
    for (;;) {
        if (tl_wait_interrupted(w))
            return TL_INTERRUPTED;
        int ms = slice_ms(w);
        if (ms == 0)
            return ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 0;  /* ready, or POLLERR/POLLHUP: the next call says which */
        if (r < 0 && errno != EINTR)
            return errno;
    }
}

int tl_wait_sleep(tl_waiter *w)
{
    for (;;) {
        if (tl_wait_interrupted(w))
            return TL_INTERRUPTED;
        int ms = slice_ms(w);
        if (ms == 0)
            return 0;
        /* Absolute end of this slice: EINTR resumes toward the same instant. */
        double end = w->deadline >= 0 && w->deadline - tl_now() < SLICE_MS / 1000.0
                         ? w->deadline
                         : tl_now() + SLICE_MS / 1000.0;
        struct timespec ts = {.tv_sec = (time_t)end,
                              .tv_nsec = (long)((end - floor(end)) * 1e9)};
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (r != 0 && r != EINTR)
            return 0;  /* EINVAL cannot happen for a valid timespec */
    }
}

int tl_interrupted(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "interrupted");
    lua_pushinteger(L, EINTR);
    return 3;
}
