/* The socket userdata: one fd, one close path.
 *
 * The fd is always O_NONBLOCK; "blocking" calls wait in poll() against a
 * monotonic deadline (wait.c), so a timeout holds across EINTR, nothing
 * blocks forever unless the caller asked for it (timeout nil), and Ctrl-C
 * ends any wait with nil, "interrupted", EINTR. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/tcp.h>
#include "tcplab.h"

static tl_sock *checksock(lua_State *L, int arg)
{
    tl_sock *s = luaL_checkudata(L, arg, TL_SOCKET_MT);
    if (s->fd < 0)
        luaL_error(L, "attempt to use a closed socket");
    return s;
}

/* Userdata first, resource second: if anything raises, no fd is orphaned. */
static tl_sock *newsock(lua_State *L, int family, double timeout)
{
    tl_sock *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->fd = -1;
    s->family = family;
    s->timeout = timeout;
    s->connecting = 0;
    s->connected = 0;
    luaL_setmetatable(L, TL_SOCKET_MT);
    return s;
}

/* ---- time ---- */

/* nil/none -> def; math.huge -> -1 (forever); raises on NaN or < 0. */
static double opt_timeout(lua_State *L, int arg, double def)
{
    if (lua_isnoneornil(L, arg))
        return def;
    lua_Number t = luaL_checknumber(L, arg);
    luaL_argcheck(L, t == t, arg, "timeout is NaN");
    luaL_argcheck(L, t >= 0, arg, "timeout must be >= 0 (nil blocks)");
    return isinf(t) ? -1 : (double)t;
}

/* nil, "timeout", errno: EAGAIN/EINPROGRESS for timeout 0, else ETIMEDOUT. */
static int timed_out(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, err);
    return 3;
}

/* A call on the non-blocking fd failed with err: wait for `events` when it
 * would block. Returns 0 to try the call again, or the number of results
 * pushed (nil, "timeout", errno / nil, "interrupted", EINTR / nil, msg, errno). */
static int wait_or_fail(lua_State *L, int fd, const char *what, int err, short events,
                        double timeout, tl_waiter *w)
{
    if (err == EINTR)
        return tl_wait_interrupted(w) ? tl_interrupted(L) : 0;
    if (err != EAGAIN)
        return tl_fail(L, what, err);
    if (timeout == 0)
        return timed_out(L, EAGAIN);
    err = tl_wait_fd(w, fd, events);
    if (err == ETIMEDOUT)
        return timed_out(L, ETIMEDOUT);
    if (err == TL_INTERRUPTED)
        return tl_interrupted(L);
    return err ? tl_fail(L, what, err) : 0;
}

/* ---- lifecycle ---- */

/* core.socket(family) */
static int l_socket(lua_State *L)
{
    int family = tl_family_arg(L, 1);
    tl_sock *s = newsock(L, family, -1);
    s->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (s->fd < 0)
        return tl_fail(L, "socket", errno);
    return 1;
}

static int s_bind(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    tl_addr a;
    tl_check_addr(L, 2, s->family, &a);
    if (bind(s->fd, (struct sockaddr *)&a.ss, a.len) != 0)
        return tl_fail(L, "bind", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_listen(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    lua_Integer backlog = luaL_optinteger(L, 2, SOMAXCONN);
    luaL_argcheck(L, backlog >= 0 && backlog <= INT_MAX, 2, "backlog out of range");
    if (listen(s->fd, (int)backlog) != 0)
        return tl_fail(L, "listen", errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* Is the socket already connected to exactly this address? (EISCONN is
 * the answer for a listener too, and for a socket connected elsewhere.) */
static int connected_to(int fd, const tl_addr *a)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || peer.ss_family != a->ss.ss_family)
        return 0;
    if (peer.ss_family == AF_INET) {
        const struct sockaddr_in *p = (const void *)&peer, *t = (const void *)&a->ss;
        return p->sin_port == t->sin_port && p->sin_addr.s_addr == t->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *p = (const void *)&peer, *t = (const void *)&a->ss;
    return p->sin6_port == t->sin6_port &&
           memcmp(&p->sin6_addr, &t->sin6_addr, sizeof p->sin6_addr) == 0;
}

static int s_connect(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    tl_addr a;
    tl_check_addr(L, 2, s->family, &a);
    double t = opt_timeout(L, 4, s->timeout);
    tl_waiter w;
    tl_wait_begin(&w, L, t);
    /* After a connect of ours completed and was reported (true), the next
     * connect(2) may still return 0: the kernel moves a socket whose
     * non-blocking connect it saw complete from SS_CONNECTING to
     * SS_CONNECTED on that call. It is EISCONN all the same. */
    if (connect(s->fd, (struct sockaddr *)&a.ss, a.len) == 0) {
        s->connecting = 0;
        if (s->connected)
            return tl_fail(L, "connect", EISCONN);
        s->connected = 1;
        lua_pushboolean(L, 1);
        return 1;
    }
    int err = errno;
    if (err == EISCONN) {
        /* A second connect after EINPROGRESS lands here once the first
         * completed: that is success, but only when this object's own
         * connect was still pending (never reported), and only for the same
         * peer. Otherwise EISCONN, as connect(2) says. */
        if (s->connected || !s->connecting || !connected_to(s->fd, &a))
            return tl_fail(L, "connect", EISCONN);
        s->connecting = 0;
        s->connected = 1;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (err != EINPROGRESS && err != EALREADY && err != EINTR) {
        s->connecting = 0;
        return tl_fail(L, "connect", err);
    }
    s->connecting = 1;  /* until a call sees it complete */
    if (t == 0)
        return timed_out(L, EINPROGRESS);
    err = tl_wait_fd(&w, s->fd, POLLOUT);
    if (err == ETIMEDOUT)
        return timed_out(L, ETIMEDOUT);
    if (err == TL_INTERRUPTED)
        return tl_interrupted(L);
    socklen_t len = sizeof err;
    if (err == 0 && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    s->connecting = 0;  /* completed, one way or the other */
    if (err)
        return tl_fail(L, "connect", err);
    s->connected = 1;
    lua_pushboolean(L, 1);
    return 1;
}

static int s_accept(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    double t = opt_timeout(L, 2, s->timeout);
    tl_waiter w;
    tl_wait_begin(&w, L, t);
    tl_sock *c = newsock(L, s->family, s->timeout);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        c->fd = accept4(s->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c->fd >= 0)
            return 1 + tl_push_sockaddr(L, (struct sockaddr *)&peer);
        int err = errno == ECONNABORTED ? EINTR : errno;  /* a peer gave up: take the next */
        int nres = wait_or_fail(L, s->fd, "accept", err, POLLIN, t, &w);
        if (nres)
            return nres;
    }
}

/* read(max [, timeout]): data, "" at EOF, or nil, "timeout", errno. */
static int s_read(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    lua_Integer max = luaL_checkinteger(L, 2);
    luaL_argcheck(L, max >= 1 && max <= (1 << 30), 2, "size out of range 1..2^30");
    double t = opt_timeout(L, 3, s->timeout);
    tl_waiter w;
    tl_wait_begin(&w, L, t);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)max);
    for (;;) {
        ssize_t n = recv(s->fd, p, (size_t)max, 0);
        if (n >= 0) {
            luaL_pushresultsize(&b, (size_t)n);
            return 1;
        }
        int nres = wait_or_fail(L, s->fd, "read", errno, POLLIN, t, &w);
        if (nres)
            return nres;
    }
}

/* write(data [, timeout]): writes all of data (timeout 0: what fits).
 * On failure the 4th result is the number of bytes already written. */
static int s_write(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    size_t len, done = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    double t = opt_timeout(L, 3, s->timeout);
    tl_waiter w;
    tl_wait_begin(&w, L, t);
    while (done < len) {
        ssize_t n = send(s->fd, data + done, len - done, MSG_NOSIGNAL);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        int err = errno, nres;
        if (err == EINTR && !tl_wait_interrupted(&w))
            continue;
        if (err == EAGAIN && t == 0 && done > 0)
            break;
        if (err == EAGAIN && t != 0)
            err = tl_wait_fd(&w, s->fd, POLLOUT);
        if (err == 0)
            continue;
        if (err == EINTR || err == TL_INTERRUPTED)
            nres = tl_interrupted(L);
        else if (err == EAGAIN || err == ETIMEDOUT)
            nres = timed_out(L, err);
        else
            nres = tl_fail(L, "write", err);
        lua_pushinteger(L, (lua_Integer)done);
        return nres + 1;
    }
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
}

static int s_shutdown(lua_State *L)
{
    static const char *const names[] = {"read", "write", "both", NULL};
    static const int hows[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
    tl_sock *s = checksock(L, 1);
    int how = hows[luaL_checkoption(L, 2, "both", names)];
    if (shutdown(s->fd, how) != 0)
        return tl_fail(L, "shutdown", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int aux_close(lua_State *L, tl_sock *s)
{
    int fd = s->fd;
    s->fd = -1;  /* closed before anything else: a second close is harmless */
    if (fd >= 0 && close(fd) != 0 && errno != EINTR)
        return tl_fail(L, "close", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_close(lua_State *L)
{
    return aux_close(L, luaL_checkudata(L, 1, TL_SOCKET_MT));
}

static int s_gc(lua_State *L)
{
    tl_sock *s = luaL_checkudata(L, 1, TL_SOCKET_MT);
    aux_close(L, s);
    return 0;
}

/* ---- inspection ---- */

static int get_info(tl_sock *s, struct tcp_info *ti, socklen_t *len)
{
    memset(ti, 0, sizeof *ti);
    *len = sizeof *ti;
    return getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, ti, len);
}

static int s_state(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    struct tcp_info ti;
    socklen_t len;
    if (get_info(s, &ti, &len) != 0)
        return tl_fail(L, "getsockopt TCP_INFO", errno);
    if (ti.tcpi_state < TL_STATE_MAX)
        lua_pushstring(L, tl_state_names[ti.tcpi_state]);
    else
        lua_pushinteger(L, ti.tcpi_state);
    return 1;
}

static int s_info(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    struct tcp_info ti;
    socklen_t len;
    if (get_info(s, &ti, &len) != 0)
        return tl_fail(L, "getsockopt TCP_INFO", errno);
    tl_push_tcp_info(L, &ti, len);
    return 1;
}

static int name_result(lua_State *L, int peer)
{
    tl_sock *s = checksock(L, 1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
                 : getsockname(s->fd, (struct sockaddr *)&ss, &len);
    if (r != 0)
        return tl_fail(L, peer ? "getpeername" : "getsockname", errno);
    return tl_push_sockaddr(L, (struct sockaddr *)&ss);
}

static int s_getsockname(lua_State *L) { return name_result(L, 0); }
static int s_getpeername(lua_State *L) { return name_result(L, 1); }

static int s_fileno(lua_State *L)
{
    lua_pushinteger(L, checksock(L, 1)->fd);
    return 1;
}

/* The inode that /proc/PID/fd shows as socket:[N] and sock_diag as inode. */
static int s_inode(lua_State *L)
{
    struct stat st;
    if (fstat(checksock(L, 1)->fd, &st) != 0)
        return tl_fail(L, "fstat", errno);
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    return 1;
}

static int s_cookie(lua_State *L)
{
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (getsockopt(checksock(L, 1)->fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0)
        return tl_fail(L, "getsockopt SO_COOKIE", errno);
    lua_pushinteger(L, (lua_Integer)cookie);
    return 1;
}

static int s_settimeout(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    s->timeout = opt_timeout(L, 2, -1);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_gettimeout(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    if (s->timeout < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, s->timeout);
    return 1;
}

static int s_family(lua_State *L)
{
    tl_sock *s = luaL_checkudata(L, 1, TL_SOCKET_MT);
    lua_pushstring(L, s->family == AF_INET6 ? "inet6" : "inet");
    return 1;
}

static int s_isclosed(lua_State *L)
{
    lua_pushboolean(L, ((tl_sock *)luaL_checkudata(L, 1, TL_SOCKET_MT))->fd < 0);
    return 1;
}

/* "socket inet 127.0.0.1:5000 LISTEN", peer added when connected. */
static void add_endpoint(luaL_Buffer *b, lua_State *L, int peer, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                 : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (r != 0)
        return;
    tl_push_sockaddr(L, (struct sockaddr *)&ss);
    const char *host = lua_tostring(L, -2);
    lua_pushfstring(L, strchr(host, ':') ? " %s[%s]:%d" : " %s%s:%d",
                    peer ? "-> " : "", host, (int)lua_tointeger(L, -1));
    lua_remove(L, -2);
    lua_remove(L, -2);
    luaL_addvalue(b);
}

static int s_tostring(lua_State *L)
{
    tl_sock *s = luaL_checkudata(L, 1, TL_SOCKET_MT);
    if (s->fd < 0) {
        lua_pushliteral(L, "socket (closed)");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, s->family == AF_INET6 ? "socket inet6" : "socket inet");
    add_endpoint(&b, L, 0, s->fd);
    add_endpoint(&b, L, 1, s->fd);
    struct tcp_info ti;
    socklen_t len;
    if (get_info(s, &ti, &len) == 0 && ti.tcpi_state < TL_STATE_MAX) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, tl_state_names[ti.tcpi_state]);
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- options ---- */

enum { OPT_BOOL, OPT_INT, OPT_LINGER };
static const struct option {
    const char *name;
    int level, optname, kind;
} options[] = {
    {"reuseaddr", SOL_SOCKET, SO_REUSEADDR, OPT_BOOL},
    {"reuseport", SOL_SOCKET, SO_REUSEPORT, OPT_BOOL},
    {"keepalive", SOL_SOCKET, SO_KEEPALIVE, OPT_BOOL},
    {"linger", SOL_SOCKET, SO_LINGER, OPT_LINGER},
    {"rcvbuf", SOL_SOCKET, SO_RCVBUF, OPT_INT},
    {"sndbuf", SOL_SOCKET, SO_SNDBUF, OPT_INT},
    {"nodelay", IPPROTO_TCP, TCP_NODELAY, OPT_BOOL},
    {"quickack", IPPROTO_TCP, TCP_QUICKACK, OPT_BOOL},
    {"keepidle", IPPROTO_TCP, TCP_KEEPIDLE, OPT_INT},
    {"keepintvl", IPPROTO_TCP, TCP_KEEPINTVL, OPT_INT},
    {"keepcnt", IPPROTO_TCP, TCP_KEEPCNT, OPT_INT},
    {"maxseg", IPPROTO_TCP, TCP_MAXSEG, OPT_INT},
    {"v6only", IPPROTO_IPV6, IPV6_V6ONLY, OPT_BOOL},
};

static const struct option *checkoption(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    size_t i, n = sizeof options / sizeof options[0];
    for (i = 0; i < n; i++)
        if (strcmp(name, options[i].name) == 0)
            return &options[i];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "unknown option '%s' (valid:", name);
    luaL_addvalue(&b);
    for (i = 0; i < n; i++) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, options[i].name);
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    luaL_argerror(L, arg, lua_tostring(L, -1));
    return NULL;
}

static int s_setopt(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    const struct option *o = checkoption(L, 2);
    int ival;
    struct linger lg = {0, 0};
    const void *val = &ival;
    socklen_t len = sizeof ival;
    if (o->kind == OPT_BOOL) {
        luaL_checktype(L, 3, LUA_TBOOLEAN);
        ival = lua_toboolean(L, 3);
    } else if (o->kind == OPT_INT) {
        lua_Integer v = luaL_checkinteger(L, 3);
        luaL_argcheck(L, v >= 0 && v <= INT_MAX, 3, "value out of range");
        ival = (int)v;
    } else {  /* linger: seconds, or false for off */
        if (lua_isboolean(L, 3) && !lua_toboolean(L, 3)) {
            lg.l_onoff = 0;
        } else {
            lua_Integer v = luaL_checkinteger(L, 3);
            luaL_argcheck(L, v >= 0 && v <= INT_MAX, 3, "linger seconds out of range");
            lg.l_onoff = 1;
            lg.l_linger = (int)v;
        }
        val = &lg;
        len = sizeof lg;
    }
    if (setsockopt(s->fd, o->level, o->optname, val, len) != 0)
        return tl_fail(L, lua_pushfstring(L, "setopt %s", o->name), errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_getopt(lua_State *L)
{
    tl_sock *s = checksock(L, 1);
    const struct option *o = checkoption(L, 2);
    struct linger lg;
    int ival = 0;
    void *val = o->kind == OPT_LINGER ? (void *)&lg : (void *)&ival;
    socklen_t len = o->kind == OPT_LINGER ? sizeof lg : sizeof ival;
    if (getsockopt(s->fd, o->level, o->optname, val, &len) != 0)
        return tl_fail(L, lua_pushfstring(L, "getopt %s", o->name), errno);
    if (o->kind == OPT_BOOL)
        lua_pushboolean(L, ival);
    else if (o->kind == OPT_INT)
        lua_pushinteger(L, ival);
    else if (lg.l_onoff)
        lua_pushinteger(L, lg.l_linger);
    else
        lua_pushboolean(L, 0);
    return 1;
}

static const luaL_Reg methods[] = {
    {"bind", s_bind},         {"listen", s_listen},
    {"connect", s_connect},   {"accept", s_accept},
    {"read", s_read},         {"write", s_write},
    {"shutdown", s_shutdown}, {"close", s_close},
    {"state", s_state},       {"info", s_info},
    {"getsockname", s_getsockname}, {"getpeername", s_getpeername},
    {"fileno", s_fileno},     {"inode", s_inode},
    {"cookie", s_cookie},     {"setopt", s_setopt},
    {"getopt", s_getopt},     {"settimeout", s_settimeout},
    {"gettimeout", s_gettimeout}, {"family", s_family},
    {"isclosed", s_isclosed},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", s_gc}, {"__close", s_gc}, {"__tostring", s_tostring},
    {"__index", NULL}, {NULL, NULL}};

void tl_sock_register(lua_State *L)
{
    luaL_newmetatable(L, TL_SOCKET_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_socket);
    lua_setfield(L, -2, "socket");
}
