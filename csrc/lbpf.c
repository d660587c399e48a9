/* The Lua side of the BPF backend: core.bpf_info() and the sentinel whose
 * __gc releases the loaded program when the Lua state closes (lua_close at
 * exit, or a library unload), so nothing outlives its user. */
#include "tcplab.h"
#include "bpf.h"

#define TL_BPF_SENTINEL "tcplab.bpf_sentinel"

static int sentinel_gc(lua_State *L)
{
    (void)L;
    tl_bpf_unload();
    return 0;
}

/* core.bpf_info(): { loaded = bool, load_ms = n } (load_ms: the one load of
 * this process, 0 before it). */
static int l_bpf_info(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, tl_bpf_loaded());
    lua_setfield(L, -2, "loaded");
    lua_pushnumber(L, tl_bpf_load_ms());
    lua_setfield(L, -2, "load_ms");
    return 1;
}

/* core._bpf_unload(): release the program now (test only). */
static int l_bpf_unload(lua_State *L)
{
    (void)L;
    tl_bpf_unload();
    return 0;
}

/* core._bpf_min_sockets(op [, n]): the namespace size below which "auto"
 * passes over the iterator for op ("snapshot", "counts" or "counts_by");
 * sets it when n is given (0: never passes over it; math.maxinteger: always
 * does). Returns the value before. Test and bench only. */
static int l_bpf_min_sockets(lua_State *L)
{
    static const char *const ops[] = {"snapshot", "counts", "counts_by", NULL};
    int op = luaL_checkoption(L, 1, NULL, ops);
    lua_Integer n = luaL_optinteger(L, 2, -1);
    luaL_argcheck(L, n >= -1 && n <= TL_BPF_NEVER, 2, "0 or more expected");
    lua_pushinteger(L, tl_bpf_min_sockets(op, (long)n));
    return 1;
}

void tl_bpf_register(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, TL_BPF_SENTINEL) == LUA_TNIL) {
        lua_newuserdatauv(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, sentinel_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, TL_BPF_SENTINEL);
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"bpf_info", l_bpf_info}, {"_bpf_unload", l_bpf_unload},
                                   {"_bpf_min_sockets", l_bpf_min_sockets}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
