/* The owners of a snapshot's sockets: one walk (the BPF iter/task_file
 * program, else /proc/PID/fd) after the dump, joined by inode. The index
 * is held by a userdata, so an error while pushing leaves it to __gc. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "records.h"
#include "owners.h"
#include "bpf.h"

#define TL_OWNERS_MT "tcplab.owners_index"

static int owners_gc(lua_State *L)
{
    tl_owners **p = luaL_checkudata(L, 1, TL_OWNERS_MT);
    tl_owners_free(*p);
    *p = NULL;
    return 0;
}

/* Push { {pid=, comm=, fd=}, ... } for inode (keys at k0: pid comm fd). */
static void push_owners(lua_State *L, const tl_owners *o, uint32_t inode, int k0)
{
    lua_newtable(L);
    lua_Integer i = 0;
    for (const tl_owner *w = tl_owners_first(o, inode); w; w = tl_owners_at(o, w->next)) {
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, k0);
        lua_pushinteger(L, w->pid);
        lua_rawset(L, -3);
        lua_pushvalue(L, k0 + 1);
        lua_pushstring(L, tl_owners_comm(o, w));
        lua_rawset(L, -3);
        lua_pushvalue(L, k0 + 2);
        lua_pushinteger(L, w->fd);
        lua_rawset(L, -3);
        lua_rawseti(L, -2, ++i);
    }
}

/* Add owners to the snapshot at `result` (rows, or columns when v->columns):
 * record.owners = { {pid, comm, fd}, ... } (a socket is shared after fork),
 * record.owners_incomplete = true when some process's fds could not be
 * read (the socket may have owners we could not see; inode-0 sockets, as
 * TIME_WAIT, have none to miss), result.owners_unreadable = that count.
 * 0, or -1 with errno set. */
int tl_snapshot_owners(lua_State *L, const tl_snap_view *v)
{
    luaL_checkstack(L, 16, "owners");
    int inode_col = 0;
    if (v->columns) {
        lua_getfield(L, v->result, "inode");
        inode_col = lua_gettop(L);
    }
    tl_owners **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = NULL;
    luaL_setmetatable(L, TL_OWNERS_MT);
    int ud = lua_gettop(L);
    *p = tl_owners_new((size_t)v->n);
    if (!*p)
        return errno = ENOMEM, -1;
    for (lua_Integer i = 1; i <= v->n; i++) {
        if (v->columns) {
            lua_rawgeti(L, inode_col, i);
        } else {
            lua_rawgeti(L, v->result, i);
            lua_pushvalue(L, v->inode_key);
            lua_rawget(L, -2);
            lua_remove(L, -2);
        }
        uint32_t ino = (uint32_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (tl_owners_want(*p, ino) != 0)
            return errno = ENOMEM, -1;
    }
    /* The iter/task_file program where it loads (root, BTF; one load per
     * process, kept), else the walk of /proc/PID/fd. TCPLAB_OWNERS_WALK=proc
     * forces the walk (the tests compare both, the bench times both). */
    tl_result r;
    tl_result_clear(&r);
    const char *walk = "bpf";
    const char *force = getenv("TCPLAB_OWNERS_WALK");
    if ((force && strcmp(force, "proc") == 0) || tl_bpf_owners(*p, "/proc", &r) != 0) {
        walk = "proc";
        if (tl_owners_scan(*p, "/proc") != 0)
            return -1;
    }
    unsigned unreadable = tl_owners_unreadable(*p);
    int k0 = lua_gettop(L) + 1;
    lua_pushliteral(L, "pid");
    lua_pushliteral(L, "comm");
    lua_pushliteral(L, "fd");
    lua_pushliteral(L, "owners");
    lua_pushliteral(L, "owners_incomplete");
    int kown = k0 + 3, kinc = k0 + 4;
    int own_col = 0, inc_col = 0;
    if (v->columns) {
        lua_createtable(L, (int)v->n, 0);
        own_col = lua_gettop(L);
        lua_createtable(L, (int)v->n, 0);
        inc_col = lua_gettop(L);
    }
    for (lua_Integer i = 1; i <= v->n; i++) {
        uint32_t ino;
        if (v->columns) {
            lua_rawgeti(L, inode_col, i);
            ino = (uint32_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
            push_owners(L, *p, ino, k0);
            lua_rawseti(L, own_col, i);
            lua_pushboolean(L, unreadable && ino);
            lua_rawseti(L, inc_col, i);
            continue;
        }
        lua_rawgeti(L, v->result, i);
        lua_pushvalue(L, v->inode_key);
        lua_rawget(L, -2);
        ino = (uint32_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_pushvalue(L, kown);
        push_owners(L, *p, ino, k0);
        lua_rawset(L, -3);
        if (unreadable && ino) {
            lua_pushvalue(L, kinc);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3);
        }
        lua_pop(L, 1);
    }
    if (v->columns) {
        lua_pushvalue(L, own_col);
        lua_setfield(L, v->result, "owners");
        lua_pushvalue(L, inc_col);
        lua_setfield(L, v->result, "owners_incomplete");
    }
    lua_pushinteger(L, unreadable);
    lua_setfield(L, v->result, "owners_unreadable");
    lua_pushstring(L, walk);
    lua_setfield(L, v->result, "owners_walk");
    lua_settop(L, ud);
    tl_owners_free(*p);
    *p = NULL;
    lua_pop(L, 1 + (inode_col != 0));
    return 0;
}


void tl_owners_glue_register(lua_State *L)
{
    static const luaL_Reg owners_mt[] = {{"__gc", owners_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_OWNERS_MT);
    luaL_setfuncs(L, owners_mt, 0);
    lua_pop(L, 1);
}
