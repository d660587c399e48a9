/* The filter table of core.snapshot and core.counts, checked once into a
 * tl_query (records.h): every field's type and range, the backend by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "records.h"

/* Every state the kernel dumps: bits 1..11 (request sockets come with SYN_RECV). */
enum { ALL_STATES = 0xffe };

const char *const tl_filter_fields[TL_FF_COUNT + 1] = {
    "states", "family", "sport", "dport", "info", "netns", "columns", "backend", "owners", "by",
    "src", "dst", "port", NULL};
#define FILTER_FIELD_LIST "states family sport dport port info netns columns backend owners by src dst"

static const char *const BY_NAMES[] = {"sport", "dport", "src", "dst", NULL};

/* Push "auto name1 name2 ..." for messages. */
const char *tl_push_backend_names(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "auto");
    for (int i = 0; tl_backends[i]; i++) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, tl_backends[i]->name);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* key: nil, a port, "LO-HI" or {lo, hi}. A port (or a one-port range) goes
 * to *exact, a range to *lo..*hi (hi > 0, backend.h); -1 and 0, 0 when nil. */
#define PORT_HINT " (a range: \"LO-HI\" or {lo, hi})"
static void check_port(lua_State *L, int arg, const char *fname, const char *key, int *exact,
                       int *lo, int *hi)
{
    *exact = -1;
    *lo = *hi = 0;
    lua_getfield(L, arg, key);
    int t = lua_type(L, -1);
    lua_Integer a = -1, b = -1;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (lua_isinteger(L, -1)) {
        a = lua_tointeger(L, -1);
        if (a < 0 || a > 65535)
            tl_arg_error(L, arg, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
                         tl_push_show(L, -1));
        *exact = (int)a;
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TSTRING) {
        const char *str = lua_tostring(L, -1);
        unsigned long x, y;
        int used = -1;
        if (!strchr(str, '-'))
            tl_arg_error(L, arg, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
                         tl_push_show(L, -1));
        if (sscanf(str, "%5lu-%5lu%n", &x, &y, &used) == 2 && used == (int)lua_rawlen(L, -1) &&
            str[0] >= '0' && str[0] <= '9')
            a = (lua_Integer)x, b = (lua_Integer)y;
    } else if (t == LUA_TTABLE && lua_rawlen(L, -1) == 2) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (lua_isinteger(L, -2) && lua_isinteger(L, -1))
            a = lua_tointeger(L, -2), b = lua_tointeger(L, -1);
        lua_pop(L, 2);
    } else {
        tl_arg_error(L, arg, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
                     tl_push_show(L, -1));
    }
    if (a < 0 || b < a || b > 65535)
        tl_arg_error(L, arg, fname, "%s: range LO-HI with 0 <= LO <= HI <= 65535 expected, got %s",
                     key, tl_push_show(L, -1));
    if (a == b)
        *exact = (int)a;
    else
        *lo = (int)a, *hi = (int)b;
    lua_pop(L, 1);
}

/* key: nil, "ADDR" or "ADDR/BITS" (v4 or v6) into *p (family 0 when nil). */
static void check_prefix(lua_State *L, int arg, const char *fname, const char *key, tl_prefix *p)
{
    memset(p, 0, sizeof *p);
    lua_getfield(L, arg, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    size_t len = 0;
    const char *str = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    char buf[INET6_ADDRSTRLEN + 8];
    int ok = str && len < sizeof buf && strlen(str) == len;
    if (ok) {
        memcpy(buf, str, len + 1);
        char *slash = strchr(buf, '/');
        long bits = -1;
        if (slash) {
            char *end;
            *slash = '\0';
            bits = (slash[1] >= '0' && slash[1] <= '9') ? strtol(slash + 1, &end, 10) : -1;
            if (bits < 0 || *end)
                ok = 0;
        }
        if (ok && inet_pton(AF_INET, buf, p->addr) == 1)
            p->family = AF_INET;
        else if (ok && inet_pton(AF_INET6, buf, p->addr) == 1)
            p->family = AF_INET6;
        else
            ok = 0;
        long max = p->family == AF_INET ? 32 : 128;
        if (ok && bits > max)
            ok = 0;
        p->bits = (uint8_t)(bits < 0 ? max : bits);
    }
    if (!ok)
        tl_arg_error(L, arg, fname, "%s: address or address/prefix (v4 or v6) expected, got %s", key,
                     tl_push_show(L, -1));
    lua_pop(L, 1);
}

static int check_bool(lua_State *L, int arg, const char *fname, const char *key)
{
    lua_getfield(L, arg, key);
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        tl_arg_error(L, arg, fname, "%s: boolean expected, got %s", key, lua_typename(L, t));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The filter at index arg (a table or nil), into q. Raises naming fname
 * and the field, in the words tcplab's Lua layer always used. */
void tl_query_check(lua_State *L, int arg, const char *fname, tl_query *q)
{
    memset(q, 0, sizeof *q);
    q->f.states = ALL_STATES;
    q->f.family = AF_UNSPEC;
    q->f.sport = q->f.dport = -1;
    q->by = TL_BY_NONE;
    q->port = -1;
    arg = lua_absindex(L, arg);
    int top = lua_gettop(L);
    int t = lua_type(L, arg);
    if (t == LUA_TNONE || t == LUA_TNIL)
        return;
    if (t != LUA_TTABLE)
        tl_arg_error(L, arg, fname, "filter table expected, got %s", lua_typename(L, t));
    luaL_checkstack(L, 8, "filter");
    for (lua_pushnil(L); lua_next(L, arg); lua_pop(L, 1)) {
        int known = -1;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; tl_filter_fields[i] && known < 0; i++)
                if (strcmp(lua_tostring(L, -2), tl_filter_fields[i]) == 0)
                    known = i;
        if (known < 0)
            tl_arg_error(L, arg, fname, "unknown filter field '%s'; valid: %s",
                         luaL_tolstring(L, -2, NULL), FILTER_FIELD_LIST);
        if (lua_toboolean(L, -1))
            q->set |= 1u << known;
    }

    lua_getfield(L, arg, "states");  /* the Lua layer turns names into this mask */
    if (!lua_isnil(L, -1)) {
        int isint = lua_isinteger(L, -1);
        lua_Integer mask = lua_tointeger(L, -1);
        if (!isint || mask < 0 || mask > 0xffffffff)
            tl_arg_error(L, arg, fname, "states: bit mask 0..0xffffffff expected, got %s",
                         tl_push_show(L, -1));
        q->f.states = (uint32_t)mask;
    }
    lua_getfield(L, arg, "family");
    if (!lua_isnil(L, -1)) {
        const char *fam = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(fam, "inet") == 0)
            q->f.family = AF_INET;
        else if (strcmp(fam, "inet6") == 0)
            q->f.family = AF_INET6;
        else if (strcmp(fam, "any") != 0)
            tl_arg_error(L, arg, fname, "family: 'inet', 'inet6' or nil expected, got %s",
                         tl_push_show(L, -1));
    }
    lua_pop(L, 2);
    q->f.info = check_bool(L, arg, fname, "info");
    q->columns = check_bool(L, arg, fname, "columns");  /* counts() checks it and has no use for it */
    q->owners = check_bool(L, arg, fname, "owners");
    if (q->owners && strcmp(fname, "snapshot") != 0)
        tl_arg_error(L, arg, fname, "owners: only snapshot() lists owners");
    lua_getfield(L, arg, "by");
    if (!lua_isnil(L, -1)) {
        const char *by = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        for (int i = 0; BY_NAMES[i] && q->by == TL_BY_NONE; i++)
            if (strcmp(by, BY_NAMES[i]) == 0)
                q->by = TL_BY_SPORT + i;
        if (q->by == TL_BY_NONE)
            tl_arg_error(L, arg, fname, "by: 'sport', 'dport', 'src' or 'dst' expected, got %s",
                         tl_push_show(L, -1));
        if (strcmp(fname, "counts") != 0)
            tl_arg_error(L, arg, fname, "by: only counts() counts by key");
    }
    lua_pop(L, 1);
    lua_getfield(L, arg, "netns");
    if (!lua_isnil(L, -1)) {
        size_t len;
        const char *path = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!path || strlen(path) != len)
            tl_arg_error(L, arg, fname, "netns: path string expected");
    }
    lua_pop(L, 1);
    check_port(L, arg, fname, "sport", &q->f.sport, &q->f.sport_lo, &q->f.sport_hi);
    check_port(L, arg, fname, "dport", &q->f.dport, &q->f.dport_lo, &q->f.dport_hi);
    check_prefix(L, arg, fname, "src", &q->f.src);
    check_prefix(L, arg, fname, "dst", &q->f.dst);
    check_port(L, arg, fname, "port", &q->port, &q->port_lo, &q->port_hi);
    if (q->f.family == AF_INET && (q->f.src.family == AF_INET6 || q->f.dst.family == AF_INET6))
        tl_arg_error(L, arg, fname, "%s: an IPv6 address never matches family 'inet' sockets "
                     "(use family = 'inet6' or an IPv4 address)",
                     q->f.src.family == AF_INET6 ? "src" : "dst");
    lua_getfield(L, arg, "backend");
    if (!lua_isnil(L, -1)) {
        /* a string, else no name at all: never strcmp a NULL */
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        q->be = name ? tl_backend_find(name) : NULL;
        if (!q->be && (!name || strcmp(name, "auto") != 0)) {
            const char *shown = tl_push_show(L, -1);
            tl_arg_error(L, arg, fname, "backend: one of %s expected, got %s",
                         tl_push_backend_names(L), shown);
        }
        if (q->be && strcmp(name, "auto") == 0)
            q->be = NULL;
    }
    lua_pop(L, 1);
    /* the string stays alive in the filter table, which the caller holds */
    lua_getfield(L, arg, "netns");
    q->netns = lua_tostring(L, -1);
    lua_settop(L, top);
}

