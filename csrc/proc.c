/* The process: its fd count (for tests), signal handling for the command
 * line program, and dying with the parent (for helpers we start).
 *
 * The library installs no signal handler on its own: only bin/ calls
 * core.catch_signals(). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include "tcplab.h"

/* core._fds(): how many fds this process has open, counted in C so that
 * nothing is opened for the count except the directory itself (which is
 * left out). Test only: specs compare it before and after. */
static int l_fds(lua_State *L)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return tl_fail(L, "opendir /proc/self/fd", errno);
    int self = dirfd(d);
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end == '\0' && fd != self)
            n++;
    }
    closedir(d);
    lua_pushinteger(L, n);
    return 1;
}

/* ---- signals (bin/ only) ----
 * The handler does what lua.c's laction does, and nothing more: record the
 * signal, restore the default action (a second one kills), and set a hook
 * on the main Lua state (lua_sethook is async-signal-safe). The hook then
 * raises at the next Lua event; a C wait sees the hook change and returns
 * to Lua at once (wait.c). */
static lua_State *volatile signal_L;
static volatile sig_atomic_t caught, ncaught;

unsigned long tl_signal_count(void)
{
    return (unsigned long)ncaught;
}

static void signal_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, caught == SIGTERM ? "terminated" : "interrupted!");
}

static void on_signal(int sig)
{
    int saved = errno;
    caught = sig;
    ncaught = ncaught + 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    lua_sethook(signal_L, signal_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
    errno = saved;
}

/* core.catch_signals(): SIGINT raises "interrupted!", SIGTERM "terminated"
 * in the main Lua state of the caller; no SA_RESTART, so waits see EINTR. */
static int l_catch_signals(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    signal_L = lua_tothread(L, -1);
    lua_pop(L, 1);
    caught = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);   /* one handler at a time */
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return tl_fail(L, "sigaction", errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.caught_signal(): the number of the signal caught, or nil. */
static int l_caught_signal(lua_State *L)
{
    if (caught)
        lua_pushinteger(L, caught);
    else
        lua_pushnil(L);
    return 1;
}

/* core.die_with_parent(ppid): SIGKILL this process when its parent dies.
 * false when the parent is already gone (we were reparented before the
 * call), true otherwise. */
static int l_die_with_parent(lua_State *L)
{
    lua_Integer ppid = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ppid > 0 && ppid <= 0x3fffffff, 1, "pid out of range");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return tl_fail(L, "prctl PR_SET_PDEATHSIG", errno);
    lua_pushboolean(L, getppid() == (pid_t)ppid);
    return 1;
}

void tl_proc_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"_fds", l_fds},
        {"catch_signals", l_catch_signals},
        {"caught_signal", l_caught_signal},
        {"die_with_parent", l_die_with_parent},
        {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
