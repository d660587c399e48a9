/* Time: the monotonic clock, a sleep that Ctrl-C can end, and a test hook
 * that makes blocking calls see EINTR. */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include "tcplab.h"

/* Seconds on the monotonic clock. */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)tl_now());
    return 1;
}

/* sleep(seconds): the whole interval, resuming after signals that leave the
 * Lua state alone; true, or nil, "interrupted", EINTR on Ctrl-C. */
static int l_sleep(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);
    luaL_argcheck(L, t == t && t >= 0 && t <= 86400 * 365, 1, "seconds out of range");
    tl_waiter w;
    tl_wait_begin(&w, L, (double)t);
    if (tl_wait_sleep(&w) == TL_INTERRUPTED)
        return tl_interrupted(L);
    lua_pushboolean(L, 1);
    return 1;
}

static volatile sig_atomic_t interrupts;
static void on_alarm(int sig)
{
    (void)sig;
    interrupts++;
}

/* Test hook: deliver SIGALRM every `seconds` (0 stops) to a handler installed
 * without SA_RESTART, so blocking calls see EINTR. Returns how many alarms
 * arrived since the last call. */
static int l_interrupt_every(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);
    luaL_argcheck(L, t == t && t >= 0 && t <= 3600, 1, "seconds out of range 0..3600");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = t > 0 ? on_alarm : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    struct itimerval it;
    memset(&it, 0, sizeof it);
    it.it_interval.tv_sec = (time_t)t;
    it.it_interval.tv_usec = (suseconds_t)((t - floor(t)) * 1e6);
    it.it_value = it.it_interval;
    if (t > 0)
        sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &it, NULL);
    if (t == 0)
        sigaction(SIGALRM, &sa, NULL);
    lua_pushinteger(L, interrupts);
    interrupts = 0;
    return 1;
}

void tl_time_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"now", l_now}, {"sleep", l_sleep}, {"_interrupt_every", l_interrupt_every}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
