/* core.destroy(sockets [, netns]): SOCK_DESTROY for each socket (records as
 * snapshot returns them: family src sport dst dport cookie). Every argument
 * is checked into a C array first; then one sock_diag socket is opened,
 * used and closed with nothing in between that can raise, so no error
 * skips its close. Returns { {ok = true} | {ok = false, err = msg, errno = n}, ... }
 * in the order given, or nil, msg, errno when the socket cannot be opened. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "tcplab.h"
#include "destroy.h"

typedef struct one {
    tl_destroy_id id;
    int err;
} one;

static void check_addr(lua_State *L, int i, const char *key, int family, uint8_t *out)
{
    lua_getfield(L, -1, key);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    uint8_t v4[4];
    int ok = 0;
    if (s && family == AF_INET) {
        ok = inet_pton(AF_INET, s, out) == 1;
    } else if (s) {
        ok = inet_pton(AF_INET6, s, out) == 1;
        if (!ok && inet_pton(AF_INET, s, v4) == 1) {  /* the dump shows v4-mapped as v4 */
            memset(out, 0, 10);
            out[10] = out[11] = 0xff;
            memcpy(out + 12, v4, 4);
            ok = 1;
        }
    }
    if (!ok)
        tl_arg_error(L, 1, "destroy", "sockets[%d].%s: an address of the socket's family expected, got %s",
                     i, key, tl_push_show(L, -1));
    lua_pop(L, 1);
}

static uint16_t check_port(lua_State *L, int i, const char *key)
{
    lua_getfield(L, -1, key);
    lua_Integer p = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
    if (p < 0 || p > 65535)
        tl_arg_error(L, 1, "destroy", "sockets[%d].%s: port 0..65535 expected, got %s", i, key,
                     tl_push_show(L, -1));
    lua_pop(L, 1);
    return (uint16_t)p;
}

static int l_destroy(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *netns = luaL_optstring(L, 2, NULL);
    lua_Integer n = luaL_len(L, 1);
    if (n > 1 << 20)
        tl_arg_error(L, 1, "destroy", "at most 1048576 sockets per call, got %d", (int)n);
    one *list = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *list, 0);
    memset(list, 0, (size_t)(n ? n : 1) * sizeof *list);
    for (lua_Integer i = 1; i <= n; i++) {
        one *o = &list[i - 1];
        lua_geti(L, 1, i);
        if (!lua_istable(L, -1))
            tl_arg_error(L, 1, "destroy", "sockets[%d]: a socket record expected, got %s", (int)i,
                         tl_push_show(L, -1));
        lua_getfield(L, -1, "family");
        const char *fam = lua_tostring(L, -1);
        if (fam && strcmp(fam, "inet") == 0)
            o->id.family = AF_INET;
        else if (fam && strcmp(fam, "inet6") == 0)
            o->id.family = AF_INET6;
        else
            tl_arg_error(L, 1, "destroy", "sockets[%d].family: \"inet\" or \"inet6\" expected, got %s",
                         (int)i, tl_push_show(L, -1));
        lua_pop(L, 1);
        check_addr(L, (int)i, "src", o->id.family, o->id.src);
        check_addr(L, (int)i, "dst", o->id.family, o->id.dst);
        o->id.sport = check_port(L, (int)i, "sport");
        o->id.dport = check_port(L, (int)i, "dport");
        lua_getfield(L, -1, "cookie");
        if (!lua_isinteger(L, -1))
            tl_arg_error(L, 1, "destroy", "sockets[%d].cookie: the socket's cookie (an integer) expected, got %s",
                         (int)i, tl_push_show(L, -1));
        o->id.cookie = (uint64_t)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    /* From here to tl_destroyer_free nothing raises. */
    tl_result res;
    tl_result_clear(&res);
    tl_destroyer *d = tl_destroyer_open(netns, &res);
    if (!d)
        return tl_fail_why(L, res.what, res.why, res.err);
    for (lua_Integer i = 0; i < n; i++) {
        tl_result_clear(&res);
        list[i].err = tl_destroyer_close_one(d, &list[i].id, &res) == 0 ? 0 : res.err;
    }
    tl_destroyer_free(d);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushboolean(L, list[i].err == 0);
        lua_setfield(L, -2, "ok");
        if (list[i].err) {
            lua_pushstring(L, strerror(list[i].err));
            lua_setfield(L, -2, "err");
            lua_pushinteger(L, list[i].err);
            lua_setfield(L, -2, "errno");
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

void tl_destroy_register(lua_State *L)
{
    lua_pushcfunction(L, l_destroy);
    lua_setfield(L, -2, "destroy");
}
