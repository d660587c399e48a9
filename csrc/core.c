/* luaopen_tcplab_core: registration only. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include "tcplab.h"

const char *const tl_state_names[TL_STATE_MAX] = {
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
    "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"};

int tl_fail(lua_State *L, const char *what, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

int tl_fail_result(lua_State *L, const tl_diag_result *res)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", res->what, res->why ? res->why : strerror(res->err));
    lua_pushinteger(L, res->err);
    return 3;
}

void tl_set_what(tl_diag_result *res, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->whatbuf, sizeof res->whatbuf, fmt, ap);
    va_end(ap);
    res->err = err;
    res->what = res->whatbuf;
    res->why = NULL;
}

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

int luaopen_tcplab_core(lua_State *L);
int luaopen_tcplab_core(lua_State *L)
{
    tl_sock_register(L);
    static const luaL_Reg fns[] = {{"socket", tl_sock_open}, {"now", l_now}, {"sleep", l_sleep},
                                       {"_interrupt_every", l_interrupt_every}, {NULL, NULL}};
    luaL_newlib(L, fns);
    tl_proc_register(L);
    tl_diag_register(L);
    tl_netns_register(L);
    /* The kernel's state numbers and their netstat names (tcp_states.h). */
    lua_createtable(L, TL_STATE_MAX, 1);
    for (int i = 0; i < TL_STATE_MAX; i++) {
        lua_pushstring(L, tl_state_names[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "STATES");
    return 1;
}
