/* C records -> Lua values: snapshot() builds one table per socket with
 * interned keys and cached address strings; counts() only counts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/tcp.h>
#include <libmnl/libmnl.h>
#include "tcplab.h"

#define TL_DIAG_MT "tcplab.diag"

/* The kernel caps one dump part at 32 KiB; twice that never truncates,
 * and if it ever did, recv reports ENOSPC instead of cutting. */
enum { DUMP_BUF_SIZE = 65536 };

/* Owns the netlink socket, the namespace fd and the receive buffer while
 * a dump runs, so an error raised while pushing (out of memory) leaks none. */
typedef struct diag_handle {
    tl_diag_conn conn;
    void *buf;
} diag_handle;

static void close_handle(diag_handle *h)
{
    if (h->conn.nl)
        mnl_socket_close(h->conn.nl);
    if (h->conn.nsfd >= 0)
        close(h->conn.nsfd);
    free(h->buf);
    h->conn.nl = NULL;
    h->conn.nsfd = -1;
    h->buf = NULL;
}

static int handle_gc(lua_State *L)
{
    close_handle(luaL_checkudata(L, 1, TL_DIAG_MT));
    return 0;
}

/* Pushes the handle; returns NULL after pushing nil, msg, errno. The
 * netlink socket itself is opened by the dump, inside the held namespace. */
static diag_handle *open_handle(lua_State *L, const char *netns)
{
    diag_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->conn.nl = NULL;
    h->conn.nsfd = -1;
    h->conn.path = NULL;
    h->buf = NULL;
    luaL_setmetatable(L, TL_DIAG_MT);
    h->buf = malloc(DUMP_BUF_SIZE);
    if (!h->buf) {
        tl_fail(L, "malloc", ENOMEM);
        return NULL;
    }
    if (netns) {
        tl_diag_result res;
        res.why = NULL;
        h->conn.nsfd = tl_netns_open(netns, &res);
        if (h->conn.nsfd < 0) {
            tl_fail_result(L, &res);
            return NULL;
        }
        h->conn.path = netns;  /* argument 6 stays on the stack while we run */
    }
    return h;
}

/* core.snapshot/counts(states, family, sport, dport, info, netns) */
static void check_filter(lua_State *L, tl_diag_filter *f)
{
    lua_Integer states = luaL_checkinteger(L, 1);
    luaL_argcheck(L, states >= 0 && states <= 0xffffffff, 1, "states mask out of range");
    f->states = (uint32_t)states;
    static const char *const fams[] = {"any", "inet", "inet6", NULL};
    static const int famv[] = {AF_UNSPEC, AF_INET, AF_INET6};
    f->family = famv[luaL_checkoption(L, 2, "any", fams)];
    f->sport = lua_isnoneornil(L, 3) ? -1 : tl_check_port(L, 3);
    f->dport = lua_isnoneornil(L, 4) ? -1 : tl_check_port(L, 4);
    f->info = lua_toboolean(L, 5);
    luaL_optstring(L, 6, NULL);
}

/* ---- snapshot ---- */

enum { K_STATE, K_FAMILY, K_SRC, K_SPORT, K_DST, K_DPORT, K_RQUEUE, K_WQUEUE,
       K_UID, K_INODE, K_COOKIE, K_TIMER, K_EXPIRES, K_RETRANS, K_INFO, K_COUNT };
static const char *const keys[K_COUNT] = {
    "state", "family", "src", "sport", "dst", "dport", "rqueue", "wqueue",
    "uid", "inode", "cookie", "timer", "expires_ms", "retrans", "info"};
static const char *const timer_names[] = {"off", "on", "keepalive", "timewait", "persist"};
enum { N_TIMERS = 5 };

/* Address strings, formatted once per distinct address of a dump: a
 * direct-mapped cache whose strings live in a Lua table on the stack. Hash
 * order interleaves hosts, so one "last address" would miss on most rows. */
enum { ADDR_SLOTS = 256 };
typedef struct addr_slot {
    uint8_t family;   /* 0: empty */
    uint8_t raw[16];
} addr_slot;

typedef struct snap_ctx {
    lua_State *L;
    int result;       /* stack index of the array */
    int key0, state0, timer0, fam0;
    int col0;         /* columnar mode: stack index of the first column, else 0 */
    int ncols;
    lua_Integer n;
    int addr_tbl;     /* stack index of the cache's strings */
    addr_slot addrs[ADDR_SLOTS];
} snap_ctx;

static void push_addr(snap_ctx *c, uint8_t family, const uint8_t *raw)
{
    lua_State *L = c->L;
    size_t len = family == AF_INET ? 4 : 16;
    uint32_t h = 2166136261u;   /* FNV-1a over the address bytes */
    for (size_t i = 0; i < len; i++)
        h = (h ^ raw[i]) * 16777619u;
    unsigned slot = (h ^ (h >> 16)) % ADDR_SLOTS;
    addr_slot *e = &c->addrs[slot];
    if (e->family == family && memcmp(e->raw, raw, len) == 0) {
        lua_rawgeti(L, c->addr_tbl, slot + 1);
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    lua_pushlstring(L, buf, tl_format_addr(family, raw, buf, sizeof buf));
    lua_pushvalue(L, -1);
    lua_rawseti(L, c->addr_tbl, slot + 1);
    e->family = family;
    memcpy(e->raw, raw, len);
}

/* key, value, rawset: no metamethods, no string hashing (keys are on the stack). */
#define KEY(k) lua_pushvalue(L, c->key0 + (k))
#define SET() lua_rawset(L, -3)

static void snap_record(const tl_diag_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    lua_State *L = c->L;
    lua_createtable(L, 0, K_COUNT);
    KEY(K_STATE);
    if (r->state < TL_STATE_MAX)
        lua_pushvalue(L, c->state0 + r->state);
    else
        lua_pushinteger(L, r->state);
    SET();
    KEY(K_FAMILY), lua_pushvalue(L, c->fam0 + (r->family == AF_INET6)), SET();
    KEY(K_SRC), push_addr(c, r->family, r->src), SET();
    KEY(K_SPORT), lua_pushinteger(L, r->sport), SET();
    KEY(K_DST), push_addr(c, r->family, r->dst), SET();
    KEY(K_DPORT), lua_pushinteger(L, r->dport), SET();
    KEY(K_RQUEUE), lua_pushinteger(L, r->rqueue), SET();
    KEY(K_WQUEUE), lua_pushinteger(L, r->wqueue), SET();
    KEY(K_UID), lua_pushinteger(L, r->uid), SET();
    KEY(K_INODE), lua_pushinteger(L, r->inode), SET();
    KEY(K_COOKIE), lua_pushinteger(L, (lua_Integer)r->cookie), SET();
    KEY(K_TIMER);
    if (r->timer < N_TIMERS)
        lua_pushvalue(L, c->timer0 + r->timer);
    else
        lua_pushinteger(L, r->timer);
    SET();
    KEY(K_EXPIRES), lua_pushinteger(L, r->expires_ms), SET();
    KEY(K_RETRANS), lua_pushinteger(L, r->retrans), SET();
    if (r->info)
        KEY(K_INFO), tl_push_tcp_info(L, r->info, r->info_len), SET();
    lua_rawseti(L, c->result, ++c->n);
}

/* Columnar: one array per field, row i of every column is socket i. No
 * per-socket table, no key hashing: rawseti into each array part. */
#define COL(k) lua_rawseti(L, c->col0 + (k), c->n)

static void col_record(const tl_diag_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    lua_State *L = c->L;
    c->n++;
    if (r->state < TL_STATE_MAX)
        lua_pushvalue(L, c->state0 + r->state);
    else
        lua_pushinteger(L, r->state);
    COL(K_STATE);
    lua_pushvalue(L, c->fam0 + (r->family == AF_INET6)), COL(K_FAMILY);
    push_addr(c, r->family, r->src), COL(K_SRC);
    lua_pushinteger(L, r->sport), COL(K_SPORT);
    push_addr(c, r->family, r->dst), COL(K_DST);
    lua_pushinteger(L, r->dport), COL(K_DPORT);
    lua_pushinteger(L, r->rqueue), COL(K_RQUEUE);
    lua_pushinteger(L, r->wqueue), COL(K_WQUEUE);
    lua_pushinteger(L, r->uid), COL(K_UID);
    lua_pushinteger(L, r->inode), COL(K_INODE);
    lua_pushinteger(L, (lua_Integer)r->cookie), COL(K_COOKIE);
    if (r->timer < N_TIMERS)
        lua_pushvalue(L, c->timer0 + r->timer);
    else
        lua_pushinteger(L, r->timer);
    COL(K_TIMER);
    lua_pushinteger(L, r->expires_ms), COL(K_EXPIRES);
    lua_pushinteger(L, r->retrans), COL(K_RETRANS);
    if (c->ncols > K_INFO) {
        if (r->info)
            tl_push_tcp_info(L, r->info, r->info_len);
        else
            lua_pushboolean(L, 0);
        COL(K_INFO);
    }
}

static void new_columns(snap_ctx *c)
{
    for (int k = 0; k < c->ncols; k++) {
        lua_newtable(c->L);
        lua_replace(c->L, c->col0 + k);
    }
}

static void snap_restart(void *ctx)
{
    snap_ctx *c = ctx;
    if (c->col0) {
        new_columns(c);
    } else {
        lua_newtable(c->L);
        lua_replace(c->L, c->result);
    }
    c->n = 0;
}

/* The body of core.snapshot, run under lua_pcall by l_snapshot. */
static int snapshot_body(lua_State *L)
{
    tl_diag_filter f;
    check_filter(L, &f);
    const char *netns = lua_tostring(L, 6);
    int columns = lua_toboolean(L, 7);
    lua_settop(L, 7);
    diag_handle *h = open_handle(L, netns);  /* index 8 */
    if (!h)
        return 3;
    luaL_checkstack(L, 2 * K_COUNT + TL_STATE_MAX + N_TIMERS + 8, "snapshot");
    snap_ctx c;
    memset(&c, 0, sizeof c);
    c.L = L;
    lua_newtable(L);
    c.result = lua_gettop(L);
    c.key0 = c.result + 1;
    for (int i = 0; i < K_COUNT; i++)
        lua_pushstring(L, keys[i]);
    c.state0 = lua_gettop(L) + 1;
    for (int i = 0; i < TL_STATE_MAX; i++)
        lua_pushstring(L, tl_state_names[i]);
    c.timer0 = lua_gettop(L) + 1;
    for (int i = 0; i < N_TIMERS; i++)
        lua_pushstring(L, timer_names[i]);
    c.fam0 = lua_gettop(L) + 1;
    lua_pushliteral(L, "inet");
    lua_pushliteral(L, "inet6");
    lua_createtable(L, ADDR_SLOTS, 0);
    c.addr_tbl = lua_gettop(L);
    if (columns) {
        c.ncols = f.info ? K_COUNT : K_INFO;
        c.col0 = lua_gettop(L) + 1;
        lua_settop(L, c.col0 + c.ncols - 1);
        new_columns(&c);
    }

    tl_diag_result res;
    tl_diag_dump(&h->conn, h->buf, DUMP_BUF_SIZE, &f, columns ? col_record : snap_record,
                 snap_restart, &c, &res);
    close_handle(h);
    if (res.err)
        return tl_fail_result(L, &res);
    if (columns) {
        for (int k = 0; k < c.ncols; k++) {
            lua_pushvalue(L, c.col0 + k);
            lua_setfield(L, c.result, keys[k]);
        }
        lua_pushinteger(L, c.n);
        lua_setfield(L, c.result, "n");
    }
    lua_pushvalue(L, c.result);
    return 1;
}

/* core.snapshot(states, family, sport, dport, info, netns, columns)
 * Every table built stays alive until we return: an incremental collection
 * meanwhile would only mark them again and again, so the collector pauses.
 * The body runs under lua_pcall so that an error (out of memory) cannot
 * leave it paused; the handle is then closed by its __gc. */
static int l_snapshot(lua_State *L)
{
    tl_diag_filter f;
    check_filter(L, &f);  /* argument errors name 'snapshot' */
    lua_settop(L, 7);
    int was_running = lua_gc(L, LUA_GCISRUNNING);
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, snapshot_body);
    lua_insert(L, 1);
    int status = lua_pcall(L, 7, LUA_MULTRET, 0);
    if (was_running)
        lua_gc(L, LUA_GCRESTART);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* ---- counts ---- */

typedef struct count_ctx {
    lua_Integer by_state[256];
} count_ctx;

static void count_record(const tl_diag_rec *r, void *ctx)
{
    ((count_ctx *)ctx)->by_state[r->state]++;
}

static void count_restart(void *ctx)
{
    memset(ctx, 0, sizeof(count_ctx));
}

static int l_counts(lua_State *L)
{
    tl_diag_filter f;
    check_filter(L, &f);
    f.info = 0;
    const char *netns = lua_tostring(L, 6);
    lua_settop(L, 6);
    diag_handle *h = open_handle(L, netns);
    if (!h)
        return 3;
    count_ctx c;
    memset(&c, 0, sizeof c);
    tl_diag_result res;
    tl_diag_dump(&h->conn, h->buf, DUMP_BUF_SIZE, &f, count_record, count_restart, &c, &res);
    close_handle(h);
    if (res.err)
        return tl_fail_result(L, &res);
    int nstates = 0;
    for (int i = 0; i < 256; i++)
        nstates += c.by_state[i] != 0;
    lua_createtable(L, 0, nstates);
    for (int i = 0; i < 256; i++) {
        if (!c.by_state[i])
            continue;
        if (i < TL_STATE_MAX)
            lua_pushstring(L, tl_state_names[i]);
        else
            lua_pushinteger(L, i);
        lua_pushinteger(L, c.by_state[i]);
        lua_rawset(L, -3);
    }
    return 1;
}

/* ---- tcp_info ---- */

#define TI(name, field) {name, offsetof(struct tcp_info, field), sizeof(((struct tcp_info *)0)->field)}
static const struct ti_field {
    const char *name;
    unsigned short off, size;
} ti_fields[] = {
    TI("ca_state", tcpi_ca_state), TI("retransmits", tcpi_retransmits),
    TI("probes", tcpi_probes), TI("backoff", tcpi_backoff), TI("options", tcpi_options),
    TI("rto_us", tcpi_rto), TI("ato_us", tcpi_ato), TI("snd_mss", tcpi_snd_mss),
    TI("rcv_mss", tcpi_rcv_mss), TI("unacked", tcpi_unacked), TI("sacked", tcpi_sacked),
    TI("lost", tcpi_lost), TI("retrans", tcpi_retrans), TI("fackets", tcpi_fackets),
    TI("last_data_sent_ms", tcpi_last_data_sent), TI("last_ack_sent_ms", tcpi_last_ack_sent),
    TI("last_data_recv_ms", tcpi_last_data_recv), TI("last_ack_recv_ms", tcpi_last_ack_recv),
    TI("pmtu", tcpi_pmtu), TI("rcv_ssthresh", tcpi_rcv_ssthresh), TI("rtt_us", tcpi_rtt),
    TI("rttvar_us", tcpi_rttvar), TI("snd_ssthresh", tcpi_snd_ssthresh),
    TI("snd_cwnd", tcpi_snd_cwnd), TI("advmss", tcpi_advmss), TI("reordering", tcpi_reordering),
    TI("rcv_rtt_us", tcpi_rcv_rtt), TI("rcv_space", tcpi_rcv_space),
    TI("total_retrans", tcpi_total_retrans), TI("pacing_rate", tcpi_pacing_rate),
    TI("max_pacing_rate", tcpi_max_pacing_rate), TI("bytes_acked", tcpi_bytes_acked),
    TI("bytes_received", tcpi_bytes_received), TI("segs_out", tcpi_segs_out),
    TI("segs_in", tcpi_segs_in), TI("notsent_bytes", tcpi_notsent_bytes),
    TI("min_rtt_us", tcpi_min_rtt), TI("data_segs_in", tcpi_data_segs_in),
    TI("data_segs_out", tcpi_data_segs_out), TI("delivery_rate", tcpi_delivery_rate),
    TI("busy_time_us", tcpi_busy_time), TI("rwnd_limited_us", tcpi_rwnd_limited),
    TI("sndbuf_limited_us", tcpi_sndbuf_limited), TI("delivered", tcpi_delivered),
    TI("delivered_ce", tcpi_delivered_ce), TI("bytes_sent", tcpi_bytes_sent),
    TI("bytes_retrans", tcpi_bytes_retrans), TI("dsack_dups", tcpi_dsack_dups),
    TI("reord_seen", tcpi_reord_seen), TI("rcv_ooopack", tcpi_rcv_ooopack),
    TI("snd_wnd", tcpi_snd_wnd),
};

/* Fields past `len` (an older kernel's shorter struct) are left out. */
void tl_push_tcp_info(lua_State *L, const void *info, size_t len)
{
    const unsigned char *p = info;
    size_t n = sizeof ti_fields / sizeof ti_fields[0];
    lua_createtable(L, 0, (int)n + 3);
    if (len >= 1) {
        lua_pushstring(L, p[0] < TL_STATE_MAX ? tl_state_names[p[0]] : "UNKNOWN");
        lua_setfield(L, -2, "state");
    }
    if (len > offsetof(struct tcp_info, tcpi_options) + 1) {  /* the wscale bitfields */
        unsigned char ws = p[offsetof(struct tcp_info, tcpi_options) + 1];
        lua_pushinteger(L, ws & 0x0f);
        lua_setfield(L, -2, "snd_wscale");
        lua_pushinteger(L, ws >> 4);
        lua_setfield(L, -2, "rcv_wscale");
    }
    for (size_t i = 0; i < n; i++) {
        const struct ti_field *fd = &ti_fields[i];
        if ((size_t)fd->off + fd->size > len)
            continue;
        uint64_t v;
        if (fd->size == 1) {
            v = p[fd->off];
        } else if (fd->size == 4) {
            uint32_t v32;
            memcpy(&v32, p + fd->off, 4);
            v = v32;
        } else {
            memcpy(&v, p + fd->off, 8);
        }
        if (v <= (uint64_t)LUA_MAXINTEGER)
            lua_pushinteger(L, (lua_Integer)v);
        else
            lua_pushnumber(L, (lua_Number)v);
        lua_setfield(L, -2, fd->name);
    }
}

/* ---- test-only fault injection ---- */

static unsigned check_faults(lua_State *L, const char *field)
{
    lua_getfield(L, 1, field);
    int isint = 0;
    lua_Integer n = lua_isnil(L, -1) ? (isint = 1, 0) : lua_tointegerx(L, -1, &isint);
    if (!isint || n < 0 || n > 1000)
        luaL_argerror(L, 1, lua_pushfstring(L, "%s: count 0..1000 expected", field));
    lua_pop(L, 1);
    return (unsigned)n;
}

/* core._inject_dump_faults{interrupt = N, enobufs = N}: the next N dump
 * attempts are flagged NLM_F_DUMP_INTR on their first buffer; the next N
 * receive calls fail with ENOBUFS. Replaces what was pending ({} clears);
 * each fault is counted down as it fires. Test only. */
static int l_inject_dump_faults(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "interrupt") != 0 && strcmp(k, "enobufs") != 0)
            luaL_argerror(L, 1, lua_pushfstring(L, "unknown fault '%s' (valid: interrupt enobufs)", k));
        lua_pop(L, 1);
    }
    unsigned interrupt = check_faults(L, "interrupt");
    tl_diag_inject(interrupt, check_faults(L, "enobufs"));
    return 0;
}

/* core._dump_stats(): {restarts = n, reopens = n} of the last dump. Test only. */
static int l_dump_stats(lua_State *L)
{
    unsigned restarts, reopens;
    tl_diag_last_stats(&restarts, &reopens);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, restarts);
    lua_setfield(L, -2, "restarts");
    lua_pushinteger(L, reopens);
    lua_setfield(L, -2, "reopens");
    return 1;
}

void tl_diag_register(lua_State *L)
{
    static const luaL_Reg handle_mt[] = {{"__gc", handle_gc}, {"__close", handle_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_DIAG_MT);
    luaL_setfuncs(L, handle_mt, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_snapshot);
    lua_setfield(L, -2, "snapshot");
    lua_pushcfunction(L, l_counts);
    lua_setfield(L, -2, "counts");
    lua_pushcfunction(L, l_inject_dump_faults);
    lua_setfield(L, -2, "_inject_dump_faults");
    lua_pushcfunction(L, l_dump_stats);
    lua_setfield(L, -2, "_dump_stats");
}
