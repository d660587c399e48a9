/* luaopen_tcplab_core: registration only. */
#include <errno.h>
#include <math.h>
#include <string.h>
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

/* Seconds on the monotonic clock. */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* Sleep the whole interval, resuming after signals. */
static int l_sleep(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);
    luaL_argcheck(L, t == t && t >= 0 && t <= 86400 * 365, 1, "seconds out of range");
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - floor(t)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

int luaopen_tcplab_core(lua_State *L);
int luaopen_tcplab_core(lua_State *L)
{
    tl_sock_register(L);
    static const luaL_Reg fns[] = {{"socket", tl_sock_open}, {"now", l_now}, {"sleep", l_sleep}, {NULL, NULL}};
    luaL_newlib(L, fns);
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
