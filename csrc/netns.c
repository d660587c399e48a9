/* core.netns: a fresh namespace (new(): the caller stays; unshare(): the
 * process moves), a held
 * handle to one (tcplab.netns userdata: one fd, one close path), the
 * identity of one, entering one. Paths are opened and checked by setns.c,
 * which the backends share. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "tcplab.h"
#include "backend.h"

#define SELF_NETNS "/proc/thread-self/ns/net"
#define TL_NETNS_MT "tcplab.netns"

/* ---- the handle: one fd, one close path (liolib style) ---- */

typedef struct tl_netns {
    int fd;          /* -1 once closed */
    char path[];     /* where it was opened, for tostring and messages */
} tl_netns;

static tl_netns *checkns(lua_State *L)
{
    tl_netns *h = luaL_checkudata(L, 1, TL_NETNS_MT);
    if (h->fd < 0)
        luaL_error(L, "attempt to use a closed netns");
    return h;
}

/* Userdata first, resource second: if anything raises, no fd is orphaned. */
static tl_netns *newns(lua_State *L, const char *path)
{
    size_t len = strlen(path);
    tl_netns *h = lua_newuserdatauv(L, sizeof *h + len + 1, 0);
    h->fd = -1;
    memcpy(h->path, path, len + 1);
    luaL_setmetatable(L, TL_NETNS_MT);
    return h;
}

static int aux_close(lua_State *L, tl_netns *h)
{
    int fd = h->fd;
    h->fd = -1;  /* closed before anything else: a second close is harmless */
    if (fd >= 0 && close(fd) != 0 && errno != EINTR)
        return tl_fail(L, "close", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int ns_close(lua_State *L)
{
    return aux_close(L, luaL_checkudata(L, 1, TL_NETNS_MT));
}

static int ns_gc(lua_State *L)
{
    aux_close(L, luaL_checkudata(L, 1, TL_NETNS_MT));
    return 0;
}

static int ns_enter(lua_State *L)
{
    tl_netns *h = checkns(L);
    if (setns(h->fd, CLONE_NEWNET) != 0) {
        int err = errno;
        return tl_fail(L, lua_pushfstring(L, "setns %s", h->path), err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int ns_id(lua_State *L)
{
    struct stat st;
    if (fstat(checkns(L)->fd, &st) != 0)
        return tl_fail(L, "fstat", errno);
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    return 1;
}

/* dev and inode, not the inode alone: the kernel reuses namespace inode
 * numbers once a namespace is freed, but not while we hold its fd. */
static int ns_is_current(lua_State *L)
{
    tl_netns *h = checkns(L);
    struct stat held, cur;
    if (fstat(h->fd, &held) != 0)
        return tl_fail(L, "fstat", errno);
    if (stat(SELF_NETNS, &cur) != 0)
        return tl_fail(L, SELF_NETNS, errno);
    lua_pushboolean(L, held.st_dev == cur.st_dev && held.st_ino == cur.st_ino);
    return 1;
}

static int ns_tostring(lua_State *L)
{
    tl_netns *h = luaL_checkudata(L, 1, TL_NETNS_MT);
    struct stat st;
    if (h->fd < 0)
        lua_pushliteral(L, "netns (closed)");
    else if (fstat(h->fd, &st) == 0)
        lua_pushfstring(L, "netns %s (inode %I)", h->path, (lua_Integer)st.st_ino);
    else
        lua_pushfstring(L, "netns %s", h->path);
    return 1;
}

/* A path argument (default: our own namespace); a zero byte would cut it. */
static const char *check_path(lua_State *L, int arg, const char *def)
{
    size_t len;
    const char *path = def ? luaL_optlstring(L, arg, def, &len) : luaL_checklstring(L, arg, &len);
    luaL_argcheck(L, strlen(path) == len, arg, "path contains a zero byte");
    return path;
}

/* core.netns.open([path]): a handle, or nil, msg, errno. */
static int l_open(lua_State *L)
{
    const char *path = check_path(L, 1, SELF_NETNS);
    tl_netns *h = newns(L, path);
    tl_result res;
    tl_result_clear(&res);
    h->fd = tl_netns_open(path, &res);
    if (h->fd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    return 1;
}

/* core.netns.unshare(): move into a fresh namespace with lo up; returns a
 * handle to it. Holding it keeps the kernel from reusing its inode. */
static int l_unshare(lua_State *L)
{
    tl_netns *h = newns(L, "unshare()");
    tl_result res;
    tl_result_clear(&res);
    if (unshare(CLONE_NEWNET) != 0)
        return tl_fail(L, "unshare CLONE_NEWNET", errno);
    if (tl_netns_lo_up(&res) != 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    h->fd = tl_netns_open(SELF_NETNS, &res);
    if (h->fd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    return 1;
}

/* core.netns.new(): a handle to a fresh namespace with lo up; the caller
 * stays where it is (setns.c switches in to create it and back). */
static int l_new(lua_State *L)
{
    tl_netns *h = newns(L, "new()");
    tl_result res;
    tl_result_clear(&res);
    h->fd = tl_netns_fresh(&res);
    if (h->fd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    return 1;
}

/* ns:run(fn, ...): call fn(...) with the calling thread inside the
 * namespace and return its results, always back in the caller's namespace
 * first. An error raised inside (a bad argument, Ctrl-C's "interrupted!")
 * is caught, the thread switched back, and the error raised again: no way
 * out of this function leaves the caller elsewhere. What fn creates
 * (sockets, forked processes) keeps the namespace it was made in. */
static int ns_run(lua_State *L)
{
    tl_netns *h = checkns(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    tl_result res;
    tl_result_clear(&res);
    int self = tl_netns_open(SELF_NETNS, &res);
    if (self < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    if (setns(h->fd, CLONE_NEWNET) != 0) {
        int err = errno;
        close(self);
        return tl_fail(L, lua_pushfstring(L, "setns %s", h->path), err);
    }
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    tl_netns_return(self);
    close(self);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L) - 1;
}

/* The fd the handle holds (for /proc/self/fd/N, which names the namespace
 * to the dump backends while the handle is open). */
static int ns_fd(lua_State *L)
{
    lua_pushinteger(L, checkns(L)->fd);
    return 1;
}

/* The namespace's identity: the inode of /proc/thread-self/ns/net or of a path. */
static int l_id(lua_State *L)
{
    const char *path = check_path(L, 1, SELF_NETNS);
    tl_result res;
    tl_result_clear(&res);
    int fd = tl_netns_open(path, &res);
    if (fd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    struct stat st;
    int r = fstat(fd, &st), err = errno;
    close(fd);
    if (r != 0)
        return tl_fail(L, "fstat", err);
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    return 1;
}

static int l_enter(lua_State *L)
{
    const char *path = check_path(L, 1, NULL);
    tl_result res;
    tl_result_clear(&res);
    int fd = tl_netns_open(path, &res);
    if (fd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    int r = setns(fd, CLONE_NEWNET), err = errno;
    close(fd);
    if (r != 0)
        return tl_fail(L, lua_pushfstring(L, "setns %s", path), err);
    lua_pushboolean(L, 1);
    return 1;
}

void tl_netns_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"enter", ns_enter}, {"run", ns_run}, {"fd", ns_fd}, {"id", ns_id}, {"is_current", ns_is_current},
        {"close", ns_close}, {NULL, NULL}};
    static const luaL_Reg metamethods[] = {
        {"__gc", ns_gc}, {"__close", ns_gc}, {"__tostring", ns_tostring},
        {"__index", NULL}, {NULL, NULL}};
    luaL_newmetatable(L, TL_NETNS_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_remove(L, -2);   /* the methods table stays: netns.methods below */

    static const luaL_Reg fns[] = {
        {"unshare", l_unshare}, {"new", l_new}, {"id", l_id}, {"enter", l_enter}, {"open", l_open},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_insert(L, -2);
    lua_setfield(L, -2, "methods");   /* the Lua layer adds socket/listen/connect */
    lua_setfield(L, -2, "netns");
}
