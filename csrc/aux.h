/* tcplab: leaf helpers for every file that speaks Lua.
 *
 * Includes the Lua headers and no other tcplab header; aux.c calls nothing
 * of tcplab. Everything Lua-facing may use these; nothing here knows about
 * sockets, namespaces or backends. */
#ifndef TCPLAB_AUX_H
#define TCPLAB_AUX_H

#include <lua.h>
#include <lauxlib.h>

/* TCP states as the kernel numbers them (include/net/tcp_states.h). */
enum { TL_STATE_MAX = 12 };
extern const char *const tl_state_names[TL_STATE_MAX];  /* netstat spelling */

/* Return nil, "what: strerror(err)", err like luaL_fileresult. */
int tl_fail(lua_State *L, const char *what, int err);
/* The same with a reason of our own: "what: why" (why NULL: strerror). */
int tl_fail_why(lua_State *L, const char *what, const char *why, int err);

/* Seconds on the monotonic clock. */
double tl_now(void);

/* How a value is shown in an argument message (tcplab.args.show): strings
 * quoted as %q does, numbers, booleans and nil as tostring, else the type. */
const char *tl_push_show(lua_State *L, int idx);
/* Raise "bad argument #arg to 'fname' (msg)" at the caller of the running
 * C function, naming fname explicitly: a Lua tail call into C loses it. */
int tl_arg_error(lua_State *L, int arg, const char *fname, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
