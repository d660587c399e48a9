/* Leaf helpers of the Lua side: errors in luaL_fileresult's shape, the
 * state names, the monotonic clock, argument messages. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "aux.h"

const char *const tl_state_names[TL_STATE_MAX] = {
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
    "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"};

int tl_fail_why(lua_State *L, const char *what, const char *why, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, why ? why : strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

int tl_fail(lua_State *L, const char *what, int err)
{
    return tl_fail_why(L, what, NULL, err);
}

double tl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* string.format("%q") of a string (lstrlib.c's addquoted). */
static void add_quoted(luaL_Buffer *b, const char *s, size_t len)
{
    luaL_addchar(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch == '\n') {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)ch);
        } else if (iscntrl(ch)) {
            char buf[10];
            int next_digit = i + 1 < len && isdigit((unsigned char)s[i + 1]);
            snprintf(buf, sizeof buf, next_digit ? "\\%03d" : "\\%d", ch);
            luaL_addstring(b, buf);
        } else {
            luaL_addchar(b, (char)ch);
        }
    }
    luaL_addchar(b, '"');
}

const char *tl_push_show(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "string ");
        add_quoted(&b, s, len);
        luaL_pushresult(&b);
        return lua_tostring(L, -1);
    }
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
    case LUA_TNIL:
        return luaL_tolstring(L, idx, NULL);
    default:
        return lua_pushstring(L, luaL_typename(L, idx));
    }
}

/* Is this a file of tcplab's own Lua layer (a checkout's lua/tcplab/ or an
 * install's share/lua/5.4/tcplab/)? */
static int library_source(const lua_Debug *ar)
{
    return ar->source[0] == '@' &&
           (strstr(ar->source, "lua/tcplab/") || strstr(ar->source, "5.4/tcplab/"));
}

/* luaL_where of the first caller outside tcplab's Lua layer: an argument
 * error points at the line that passed the argument, not at the wrapper
 * (tcplab.snapshot) that handed it on to C. */
static void where_caller(lua_State *L)
{
    lua_Debug ar;
    int level = 1;
    while (lua_getstack(L, level, &ar) && lua_getinfo(L, "S", &ar) && library_source(&ar))
        level++;
    luaL_where(L, level);
}

int tl_arg_error(lua_State *L, int arg, const char *fname, const char *fmt, ...)
{
    va_list ap;
    where_caller(L);
    lua_pushfstring(L, "bad argument #%d to '%s' (", arg, fname);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushliteral(L, ")");
    lua_concat(L, 4);
    return lua_error(L);
}
