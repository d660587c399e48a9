/* luaopen_tcplab_core: registration only. Each file adds what it exports
 * to the module table; this one lists them. */
#include "tcplab.h"

int luaopen_tcplab_core(lua_State *L);
int luaopen_tcplab_core(lua_State *L)
{
    luaL_checkversion(L);
    lua_newtable(L);
    tl_sock_register(L);
    tl_time_register(L);
    tl_proc_register(L);
    tl_records_register(L);
    tl_netns_register(L);
    tl_errno_register(L);
    tl_capture_register(L);
    tl_bpf_register(L);
    tl_bpf_trace_register(L);
    tl_spawn_register(L);
    tl_textfile_register(L);
    tl_destroy_register(L);
    tl_nfqueue_register(L);
    tl_live_register(L);
    /* The kernel's state numbers and their netstat names (tcp_states.h). */
    lua_createtable(L, TL_STATE_MAX, 1);
    for (int i = 0; i < TL_STATE_MAX; i++) {
        lua_pushstring(L, tl_state_names[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "STATES");
    return 1;
}
