/* The BPF transition recorder: core.bpf_trace{ ports = {...}, netns = path
 * | "all", buffer_kb = n, life = true }
 * loads bpf/state_tp.bpf.c (a tp_btf program on sock/inet_sock_set_state),
 * configured for one network namespace (its inode; "all": every one) and up
 * to 64 ports (none: every port), and
 * attaches it; the userdata owns the skeleton (program, link, ring buffer
 * map) and the ring buffer reader, and one close path releases them all
 * (:close(), __close, __gc). :poll(timeout) returns the events that have
 * arrived, waiting up to timeout seconds for the first; :lost() counts
 * the events the ring buffer had no room for and those the kernel skipped.
 *
 * Each recorder loads its own copy: the filter is read-only data the
 * verifier sees, and two recorders never share a ring buffer.
 *
 * Records are decoded by tl_state_decode (bpf_parse.c: no Lua, no libbpf).
 *
 * life = true: the program keeps each socket's lifetime in socket storage,
 * and the event that ends a full socket carries it (ev.life: the first
 * time seen, the states, the owner, tcp_sock's byte counts; the lifetimes
 * themselves are made in lua/tcplab/trace/life.lua).
 *
 * The namespace is named to the program by its cookie (SO_NETNS_COOKIE of a
 * socket made in it), which the kernel never reuses: an inode number is
 * reused once its namespace is freed, and another namespace's sockets would
 * pass the filter.
 *
 * What a recorder costs is outside Lua's heap: the kernel's ring buffer
 * (buffer_kb), the program and its maps. Lua's collector cannot see that, so
 * (1) each new recorder advances the collector as if its ring buffer had been
 * allocated (lua_gc LUA_GCSTEP, buffer_kb), and (2) at most
 * TL_TRACE_MAX_LIVE recorders are open per process: at the cap a full
 * collection runs first (recorders that are garbage close), and if they are
 * all still reachable the new one is refused with a message that says to
 * close them.
 *
 * Built without TL_HAVE_BPF, core.bpf_trace returns nil and the reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tcplab.h"

#ifndef TL_BPF_WHY
#define TL_BPF_WHY "built without BPF"
#endif

#define TL_BPF_TRACE "tcplab.bpf_trace"

#include <stdint.h>
#include "bpf.h"

#ifdef TL_HAVE_BPF
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include "backend.h"
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/types.h>
#include "bpf/state_ev.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "state_tp.skel.h"
#pragma GCC diagnostic pop

/* open BPF recorders per process (each holds a program, its link and a ring buffer) */
#define TL_TRACE_MAX_LIVE 16
static int live_recorders;

typedef struct tl_bpf_trace {
    struct state_tp *skel;
    struct ring_buffer *rb;
    tl_state_event *evs;   /* what one consume collected */
    size_t n, cap;
    uint64_t bad;          /* records that were not one */
    int oom;
    int live;              /* counted in live_recorders */
    uint32_t got[TL_STATE_MAX_CPUS];   /* events delivered, per writing CPU */
} tl_bpf_trace;

static void trace_release(tl_bpf_trace *t)
{
    if (t->live)
        live_recorders--;
    t->live = 0;
    if (t->rb)
        ring_buffer__free(t->rb);
    t->rb = NULL;
    if (t->skel)
        state_tp__destroy(t->skel);
    t->skel = NULL;
    free(t->evs);
    t->evs = NULL;
    t->n = t->cap = 0;
}

static int on_event(void *ctx, void *data, size_t size)
{
    tl_bpf_trace *t = ctx;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tl_state_event *evs = realloc(t->evs, cap * sizeof *evs);
        if (!evs) {
            t->oom = 1;
            return -ENOMEM;
        }
        t->evs = evs;
        t->cap = cap;
    }
    if (tl_state_decode(data, size, &t->evs[t->n]) == 0) {
        const tl_state_event *ev = &t->evs[t->n];
        if (ev->cpu < TL_STATE_MAX_CPUS && ev->seq)
            t->got[ev->cpu]++;
        t->n++;
    } else
        t->bad++;
    return 0;
}

static tl_bpf_trace *check_trace(lua_State *L)
{
    tl_bpf_trace *t = luaL_checkudata(L, 1, TL_BPF_TRACE);
    if (!t->skel)
        luaL_error(L, "bpf trace: closed");
    return t;
}

/* the cookie of the network namespace we are in (SO_NETNS_COOKIE) */
static int netns_cookie_here(void *arg, tl_result *res)
{
    uint64_t *cookie = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tl_result_set(res, errno, "socket");
        return -1;
    }
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
    socklen_t len = sizeof *cookie;
    int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len);
    int err = errno;
    close(fd);
    if (rc != 0) {
        tl_result_set(res, err, "getsockopt SO_NETNS_COOKIE");
        return -1;
    }
    return 0;
}

static int fail(lua_State *L, tl_bpf_trace *t, const char *what, int err)
{
    trace_release(t);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* core.bpf_trace{ ports = {p, ...}, netns = path | "all", buffer_kb = n }: a
 * recorder, or nil, why, errno. Bad fields raise, naming the field. */
static int l_bpf_trace(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct tl_state_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    lua_getfield(L, 1, "ports");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return luaL_error(L, "bpf_trace: ports: table expected, got %s", luaL_typename(L, -1));
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n > TL_STATE_MAX_PORTS)
            return luaL_error(L, "bpf_trace: ports: at most %d ports, got %d", TL_STATE_MAX_PORTS, (int)n);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_Integer p = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
            if (p < 1 || p > 65535)
                return luaL_error(L, "bpf_trace: ports[%d]: port 1..65535 expected, got %s", (int)i,
                                  tl_push_show(L, -1));
            cfg.ports[cfg.nports++] = (uint16_t)p;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "netns");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bpf_trace: netns: a path or \"all\" expected, got %s", luaL_typename(L, -1));
    const char *path = lua_isnil(L, -1) ? "/proc/self/ns/net" : lua_tostring(L, -1);
    if (strcmp(path, "all") != 0) {
        /* a network namespace, or why not (a FIFO, a file, another kind of namespace) */
        tl_result res;
        tl_result_clear(&res);
        int nsfd = tl_netns_open(path, &res);
        if (nsfd < 0)
            return tl_fail_why(L, res.what, res.why, res.err);
        uint64_t cookie = 0;
        int rc = tl_netns_run(nsfd, path, netns_cookie_here, &cookie, &res);
        close(nsfd);
        if (rc != 0)
            return tl_fail_why(L, res.what, res.why, res.err);
        cfg.netns_cookie = cookie;   /* cookies start at 1: 0 means every namespace */
    }
    lua_pop(L, 1);
    /* the ring buffer: buffer_kb KiB (1024), rounded up to a power of two, at least a page */
    lua_getfield(L, 1, "buffer_kb");
    if (!lua_isnil(L, -1) && !lua_isinteger(L, -1))
        return luaL_error(L, "bpf_trace: buffer_kb: integer 1..2^20 expected, got %s", tl_push_show(L, -1));
    lua_Integer kb = lua_isnil(L, -1) ? 1024 : lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (kb < 1 || kb > (1 << 20))
        return luaL_error(L, "bpf_trace: buffer_kb: integer 1..2^20 expected, got %d", (int)kb);
    lua_getfield(L, 1, "life");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        return luaL_error(L, "bpf_trace: life: true or false expected, got %s", luaL_typename(L, -1));
    cfg.life = lua_toboolean(L, -1) ? 1 : 0;
    lua_pop(L, 1);
    uint32_t ring = (uint32_t)sysconf(_SC_PAGESIZE);
    while (ring < (uint32_t)kb * 1024u)
        ring <<= 1;

    int cannot_err = 0;
    const char *cannot = tl_bpf_cannot(&cannot_err);
    if (cannot) {
        lua_pushnil(L);
        lua_pushstring(L, cannot);
        lua_pushinteger(L, cannot_err);
        return 3;
    }
    /* the collector is told what this one costs, and garbage recorders go
     * before the cap refuses a new one */
    lua_gc(L, LUA_GCSTEP, (int)(ring / 1024));
    if (live_recorders >= TL_TRACE_MAX_LIVE)
        lua_gc(L, LUA_GCCOLLECT, 0);
    if (live_recorders >= TL_TRACE_MAX_LIVE)
        return luaL_error(L, "bpf_trace: %d recorders are open in this process (at most %d): close the ones you "
                          "are done with (rec:close(), or local rec <close> = ...)", live_recorders,
                          TL_TRACE_MAX_LIVE);
    tl_bpf_trace *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TL_BPF_TRACE);
    t->live = 1;
    live_recorders++;
    libbpf_set_print(NULL);   /* the reason goes back to Lua, not to stderr */
    t->skel = state_tp__open();
    if (!t->skel)
        return fail(L, t, "cannot open the embedded object", errno);
    t->skel->rodata->cfg = cfg;
    int rc0 = bpf_map__set_max_entries(t->skel->maps.events, ring);
    if (rc0)
        return fail(L, t, "cannot size the ring buffer", -rc0);
    int rc = state_tp__load(t->skel);
    if (rc)
        return fail(L, t, "cannot load the tracepoint program", rc < 0 ? -rc : EINVAL);
    rc = state_tp__attach(t->skel);
    if (rc)
        return fail(L, t, "cannot attach to sock/inet_sock_set_state", rc < 0 ? -rc : EINVAL);
    t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event, t, NULL);
    if (!t->rb)
        return fail(L, t, "ring_buffer__new", errno ? errno : EINVAL);
    return 1;
}

/* ev.life = { born, bytes_acked, bytes_received, path = {...}, pid, comm,
 * active, passive, fin_acked, fin_received, path_full, listener } into the
 * event table on top */
static void push_life(lua_State *L, const tl_state_event *ev)
{
    lua_createtable(L, 0, 12);
    lua_pushnumber(L, ev->born);
    lua_setfield(L, -2, "born");
    lua_pushinteger(L, (lua_Integer)ev->bytes_acked);
    lua_setfield(L, -2, "bytes_acked");
    lua_pushinteger(L, (lua_Integer)ev->bytes_received);
    lua_setfield(L, -2, "bytes_received");
    lua_createtable(L, (int)ev->npath, 0);
    for (unsigned i = 0; i < ev->npath; i++) {
        lua_pushstring(L, ev->path[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "path");
    if (ev->life & TL_LIFE_OWNER) {
        lua_pushinteger(L, (lua_Integer)ev->pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, ev->comm);
        lua_setfield(L, -2, "comm");
    }
    static const struct { unsigned bit; const char *name; } flags[] = {
        {TL_LIFE_ACTIVE, "active"}, {TL_LIFE_PASSIVE, "passive"}, {TL_LIFE_FIN_ACKED, "fin_acked"},
        {TL_LIFE_FIN_RCVD, "fin_received"}, {TL_LIFE_PATH_FULL, "path_full"}, {TL_LIFE_LISTENER, "listener"}};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        lua_pushboolean(L, (ev->life & flags[i].bit) != 0);
        lua_setfield(L, -2, flags[i].name);
    }
    lua_setfield(L, -2, "life");
}

/* rec:poll([timeout]): a list of events (maybe empty) after waiting up to
 * timeout seconds (0: none; < 0: forever) for the first; or nil,
 * "interrupted", EINTR. */
static int t_poll(lua_State *L)
{
    tl_bpf_trace *t = check_trace(L);
    double timeout = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, timeout == timeout, 2, "seconds expected, got nan");
    tl_waiter w;
    tl_wait_begin(&w, L, timeout);
    t->n = 0;
    t->oom = 0;
    int rc = ring_buffer__consume(t->rb);
    if (rc == 0 && timeout != 0) {
        int wr = tl_wait_fd(&w, ring_buffer__epoll_fd(t->rb), POLLIN);
        if (wr == TL_INTERRUPTED)
            return tl_interrupted(L);
        rc = ring_buffer__consume(t->rb);
    }
    if (t->oom)
        return luaL_error(L, "bpf trace: out of memory");
    lua_createtable(L, (int)t->n, 0);
    for (size_t i = 0; i < t->n; i++) {
        const tl_state_event *ev = &t->evs[i];
        lua_createtable(L, 0, 10);
        lua_pushnumber(L, ev->time);
        lua_setfield(L, -2, "time");
        lua_pushstring(L, ev->family);
        lua_setfield(L, -2, "family");
        lua_pushstring(L, ev->src);
        lua_setfield(L, -2, "src");
        lua_pushinteger(L, ev->sport);
        lua_setfield(L, -2, "sport");
        lua_pushstring(L, ev->dst);
        lua_setfield(L, -2, "dst");
        lua_pushinteger(L, ev->dport);
        lua_setfield(L, -2, "dport");
        lua_pushstring(L, ev->from);
        lua_setfield(L, -2, "from");
        lua_pushstring(L, ev->to);
        lua_setfield(L, -2, "to");
        lua_pushinteger(L, (lua_Integer)ev->cookie);
        lua_setfield(L, -2, "cookie");
        lua_pushinteger(L, (lua_Integer)ev->netns);
        lua_setfield(L, -2, "netns");
        lua_pushinteger(L, (lua_Integer)ev->netns_cookie);
        lua_setfield(L, -2, "netns_cookie");
        if (ev->kernel_to) {   /* the kernel's own word, as the tracefs rewrite keeps it */
            lua_pushstring(L, ev->kernel_to);
            lua_setfield(L, -2, "kernel");
        }
        lua_pushinteger(L, (lua_Integer)ev->cpu);
        lua_setfield(L, -2, "cpu");
        lua_pushinteger(L, (lua_Integer)ev->seq);
        lua_setfield(L, -2, "seq");
        if (ev->why) {   /* what the kernel's X -> CLOSE was decided on */
            lua_pushstring(L, ev->why);
            lua_setfield(L, -2, "why");
        }
        if (ev->rescued) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "rescued");
        }
        if (ev->ends)
            push_life(L, ev);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    t->n = 0;
    return 1;
}

/* What t_lost and t_stats both read: on_state's program info
 * (recursion_misses, run_cnt, run_time_ns) and, over every CPU, the events
 * the program wrote, those the ring buffer delivered, and those written but
 * not (yet) delivered. 0, or -1 with errno set. */
typedef struct trace_counts {
    struct bpf_prog_info info;
    uint64_t written, got, undelivered;
} trace_counts;

static int read_counts(const tl_bpf_trace *t, trace_counts *c)
{
    uint32_t len = sizeof c->info;
    memset(c, 0, sizeof *c);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(t->skel->progs.on_state), &c->info, &len) != 0)
        return -1;
    for (int cpu = 0; cpu < TL_STATE_MAX_CPUS; cpu++) {
        uint32_t w = t->skel->bss->written[cpu];
        c->written += w;
        c->got += t->got[cpu];
        if (w > t->got[cpu])
            c->undelivered += w - t->got[cpu];
    }
    return 0;
}

/* rec:lost(): the events the ring buffer had no room for; the transitions
 * the kernel skipped on_state for (it was already running on that CPU: a
 * softirq's transition interrupting it; recursion_misses, counted before the
 * program's filter, so of any namespace or port) that on_state_nested did
 * not record either; and those on_state_nested recorded instead. */
static int t_lost(lua_State *L)
{
    tl_bpf_trace *t = check_trace(L);
    trace_counts c;
    if (read_counts(t, &c) != 0)
        return tl_fail(L, "bpf trace: program info", errno);
    /* on_state's misses that on_state_nested ran for (recorded, or not
     * wanted by the filter) are not lost */
    uint64_t rescued = t->skel->bss->rescued, seen = t->skel->bss->nested_seen;
    uint64_t skipped = c.info.recursion_misses > seen ? c.info.recursion_misses - seen : 0;
    lua_pushinteger(L, (lua_Integer)t->skel->bss->lost);
    lua_pushinteger(L, (lua_Integer)skipped);
    lua_pushinteger(L, (lua_Integer)rescued);
    lua_pushinteger(L, (lua_Integer)c.undelivered);
    return 4;
}

/* core.bpf_trace_open(): how many BPF recorders this process holds open, and the cap */
static int l_live(lua_State *L)
{
    lua_pushinteger(L, live_recorders);
    lua_pushinteger(L, TL_TRACE_MAX_LIVE);
    return 2;
}

/* rec:stats(): the program's own counts, to find where an event went: {
 * written, delivered, port_hits, netns_misses, lost, rescued, nested_seen,
 * recursion_misses, run_cnt, run_time_ns } (run_cnt and run_time_ns count
 * only while kernel.bpf_stats_enabled is 1) */
static int t_stats(lua_State *L)
{
    tl_bpf_trace *t = check_trace(L);
    trace_counts c;
    if (read_counts(t, &c) != 0)
        return tl_fail(L, "bpf trace: program info", errno);
    struct bpf_prog_info info = c.info;
    uint64_t written = c.written, got = c.got;
    lua_createtable(L, 0, 10);
#define FIELD(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))
    FIELD("written", written);
    FIELD("delivered", got);
    FIELD("port_hits", t->skel->bss->port_hits);
    FIELD("netns_misses", t->skel->bss->netns_misses);
    FIELD("witness_hits", t->skel->bss->witness_hits);
    FIELD("lost", t->skel->bss->lost);
    FIELD("rescued", t->skel->bss->rescued);
    FIELD("nested_seen", t->skel->bss->nested_seen);
    FIELD("recursion_misses", info.recursion_misses);
    FIELD("run_cnt", info.run_cnt);
    FIELD("run_time_ns", info.run_time_ns);
#undef FIELD
    return 1;
}

/* rec:close(): release the program, its link and the ring buffer (idempotent). */
static int t_close(lua_State *L)
{
    tl_bpf_trace *t = luaL_checkudata(L, 1, TL_BPF_TRACE);
    trace_release(t);
    return 0;
}

static void register_trace(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"poll", t_poll}, {"lost", t_lost}, {"stats", t_stats}, {"close", t_close}, {NULL, NULL}};
    lua_pushcfunction(L, l_live);
    lua_setfield(L, -2, "bpf_trace_open");
    if (luaL_newmetatable(L, TL_BPF_TRACE)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, t_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, t_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_bpf_trace);
    lua_setfield(L, -2, "bpf_trace");
}

#else  /* !TL_HAVE_BPF */

static int l_bpf_trace(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    lua_pushstring(L, TL_BPF_WHY);
    lua_pushinteger(L, ENOTSUP);
    return 3;
}

static void register_trace(lua_State *L)
{
    lua_pushcfunction(L, l_bpf_trace);
    lua_setfield(L, -2, "bpf_trace");
}
#endif

void tl_bpf_trace_register(lua_State *L)
{
    register_trace(L);
}
