/* luaopen_tcplab_core: registration only. */
#include <string.h>
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

int luaopen_tcplab_core(lua_State *L);
int luaopen_tcplab_core(lua_State *L)
{
    tl_sock_register(L);
    static const luaL_Reg fns[] = {{"socket", tl_sock_open}, {NULL, NULL}};
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
