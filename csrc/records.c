/* Records -> Lua: snapshot() builds one table per socket (or one array per
 * field with columns = true), counts() only counts per state. Both take
 * one filter table, checked here once, and ask a backend (backend.h) for
 * tl_sock_rec records; nothing here knows where the records come from. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "tcplab.h"
#include "backend.h"
#include "owners.h"
#include "bpf.h"

#define TL_HANDLE_MT "tcplab.backend_state"
#define TL_OWNERS_MT "tcplab.owners_index"

/* Every state the kernel dumps: bits 1..11 (request sockets come with SYN_RECV). */
enum { ALL_STATES = 0xffe };

/* ---- the filter table, checked once ---- */

typedef struct tl_query {
    tl_filter f;
    const char *netns;    /* NULL: our own namespace; the string is at stack index 2 */
    int columns;
    int owners;           /* snapshot: join /proc/PID/fd owners by inode */
    int by;               /* counts: BY_NONE or the key counted per state */
    const tl_backend *be; /* NULL: "auto", picked for this filter by open_handle */
} tl_query;

static const char *const FILTER_FIELDS[] = {
    "states", "family", "sport", "dport", "info", "netns", "columns", "backend", "owners", "by",
    "src", "dst", NULL};
#define FILTER_FIELD_LIST "states family sport dport info netns columns backend owners by src dst"

enum { BY_NONE, BY_SPORT, BY_DPORT, BY_SRC, BY_DST };
static const char *const BY_NAMES[] = {"sport", "dport", "src", "dst", NULL};

/* Push "auto name1 name2 ..." for messages. */
static const char *push_backend_names(lua_State *L)
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
static void check_port(lua_State *L, const char *fname, const char *key, int *exact, int *lo,
                       int *hi)
{
    *exact = -1;
    *lo = *hi = 0;
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    lua_Integer a = -1, b = -1;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (lua_isinteger(L, -1)) {
        a = lua_tointeger(L, -1);
        if (a < 0 || a > 65535)
            tl_arg_error(L, 1, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
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
            tl_arg_error(L, 1, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
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
        tl_arg_error(L, 1, fname, "%s: port 0..65535 expected, got %s" PORT_HINT, key,
                     tl_push_show(L, -1));
    }
    if (a < 0 || b < a || b > 65535)
        tl_arg_error(L, 1, fname, "%s: range LO-HI with 0 <= LO <= HI <= 65535 expected, got %s",
                     key, tl_push_show(L, -1));
    if (a == b)
        *exact = (int)a;
    else
        *lo = (int)a, *hi = (int)b;
    lua_pop(L, 1);
}

/* key: nil, "ADDR" or "ADDR/BITS" (v4 or v6) into *p (family 0 when nil). */
static void check_prefix(lua_State *L, const char *fname, const char *key, tl_prefix *p)
{
    memset(p, 0, sizeof *p);
    lua_getfield(L, 1, key);
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
        tl_arg_error(L, 1, fname, "%s: address or address/prefix (v4 or v6) expected, got %s", key,
                     tl_push_show(L, -1));
    lua_pop(L, 1);
}

static int check_bool(lua_State *L, const char *fname, const char *key)
{
    lua_getfield(L, 1, key);
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        tl_arg_error(L, 1, fname, "%s: boolean expected, got %s", key, lua_typename(L, t));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* What a backend must be able to do for the filter. */
static unsigned query_caps(const tl_query *q)
{
    unsigned need = 0;
    if (q->f.sport_hi > 0 || q->f.dport_hi > 0)
        need |= TL_CAP_RANGE_FILTER;
    if (q->f.src.family || q->f.dst.family)
        need |= TL_CAP_ADDR_FILTER;
    return need;
}

/* The filter at index 1 (a table or nil), into q. Raises naming fname and
 * the field, in the words tcplab's Lua layer always used. Leaves the
 * filter at index 1 and the netns string (or nil) at index 2. */
static void check_query(lua_State *L, const char *fname, tl_query *q)
{
    memset(&q->f, 0, sizeof q->f);
    q->f.states = ALL_STATES;
    q->f.family = AF_UNSPEC;
    q->f.sport = q->f.dport = -1;
    q->f.info = 0;
    q->netns = NULL;
    q->columns = 0;
    q->owners = 0;
    q->by = BY_NONE;
    q->be = NULL;
    int t = lua_type(L, 1);
    if (t == LUA_TNONE || t == LUA_TNIL) {
        lua_settop(L, 2);
        return;
    }
    if (t != LUA_TTABLE)
        tl_arg_error(L, 1, fname, "filter table expected, got %s", lua_typename(L, t));
    lua_settop(L, 1);
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; FILTER_FIELDS[i] && !known; i++)
                known = strcmp(lua_tostring(L, -2), FILTER_FIELDS[i]) == 0;
        if (!known)
            tl_arg_error(L, 1, fname, "unknown filter field '%s'; valid: %s",
                         luaL_tolstring(L, -2, NULL), FILTER_FIELD_LIST);
    }

    lua_getfield(L, 1, "states");  /* the Lua layer turns names into this mask */
    if (!lua_isnil(L, -1)) {
        int isint = lua_isinteger(L, -1);
        lua_Integer mask = lua_tointeger(L, -1);
        if (!isint || mask < 0 || mask > 0xffffffff)
            tl_arg_error(L, 1, fname, "states: bit mask 0..0xffffffff expected, got %s",
                         tl_push_show(L, -1));
        q->f.states = (uint32_t)mask;
    }
    lua_getfield(L, 1, "family");
    if (!lua_isnil(L, -1)) {
        const char *fam = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(fam, "inet") == 0)
            q->f.family = AF_INET;
        else if (strcmp(fam, "inet6") == 0)
            q->f.family = AF_INET6;
        else if (strcmp(fam, "any") != 0)
            tl_arg_error(L, 1, fname, "family: 'inet', 'inet6' or nil expected, got %s",
                         tl_push_show(L, -1));
    }
    lua_pop(L, 2);
    q->f.info = check_bool(L, fname, "info");
    q->columns = check_bool(L, fname, "columns");  /* counts() checks it and has no use for it */
    q->owners = check_bool(L, fname, "owners");
    if (q->owners && strcmp(fname, "snapshot") != 0)
        tl_arg_error(L, 1, fname, "owners: only snapshot() lists owners");
    lua_getfield(L, 1, "by");
    if (!lua_isnil(L, -1)) {
        const char *by = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        for (int i = 0; BY_NAMES[i] && q->by == BY_NONE; i++)
            if (strcmp(by, BY_NAMES[i]) == 0)
                q->by = BY_SPORT + i;
        if (q->by == BY_NONE)
            tl_arg_error(L, 1, fname, "by: 'sport', 'dport', 'src' or 'dst' expected, got %s",
                         tl_push_show(L, -1));
        if (strcmp(fname, "counts") != 0)
            tl_arg_error(L, 1, fname, "by: only counts() counts by key");
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "netns");
    if (!lua_isnil(L, -1)) {
        size_t len;
        const char *path = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!path || strlen(path) != len)
            tl_arg_error(L, 1, fname, "netns: path string expected");
    }
    lua_pop(L, 1);
    check_port(L, fname, "sport", &q->f.sport, &q->f.sport_lo, &q->f.sport_hi);
    check_port(L, fname, "dport", &q->f.dport, &q->f.dport_lo, &q->f.dport_hi);
    check_prefix(L, fname, "src", &q->f.src);
    check_prefix(L, fname, "dst", &q->f.dst);
    lua_getfield(L, 1, "backend");
    if (!lua_isnil(L, -1)) {
        q->be = lua_type(L, -1) == LUA_TSTRING ? tl_backend_find(lua_tostring(L, -1)) : NULL;
        if (!q->be && strcmp(lua_tostring(L, -1), "auto") != 0)
            tl_arg_error(L, 1, fname, "backend: one of %s expected, got %s",
                         push_backend_names(L), tl_push_show(L, -1));
        if (q->be && strcmp(lua_tostring(L, -1), "auto") == 0)
            q->be = NULL;
    }
    lua_settop(L, 1);
    lua_getfield(L, 1, "netns");  /* index 2: keeps the string alive for the call */
    q->netns = lua_tostring(L, 2);
}

/* ---- the backend's state, held by a userdata while a dump runs ----
 * An error raised while pushing (out of memory) leaves it to __gc. */

typedef struct tl_handle {
    const tl_backend *be;
    void *state;  /* NULL when closed */
} tl_handle;

static void close_handle(tl_handle *h)
{
    if (h->state)
        h->be->close(h->state);
    h->state = NULL;
}

static int handle_gc(lua_State *L)
{
    close_handle(luaL_checkudata(L, 1, TL_HANDLE_MT));
    return 0;
}

static unsigned last_restarts, last_reopens;
static const char *last_backend = "";

/* The first field of the filter at index 1 that `be` cannot answer, or
 * NULL: tcp_info only where it has it, every field set (neither nil nor
 * false) one it lists. The string lives in the filter table. */
static const char *unsupported(lua_State *L, const tl_backend *be, const tl_query *q)
{
    if (q->f.info && !(be->caps & TL_CAP_INFO))
        return "info";
    if (q->netns && !(be->caps & TL_CAP_NETNS_PATH))
        return "netns";
    unsigned need = query_caps(q), missing = need & ~be->caps;
    if (missing & TL_CAP_RANGE_FILTER)
        return q->f.sport_hi > 0 ? "sport" : "dport";   /* a port range */
    if (missing & TL_CAP_ADDR_FILTER)
        return q->f.src.family ? "src" : "dst";          /* an address prefix */
    if (!be->fields || lua_type(L, 1) != LUA_TTABLE)
        return NULL;
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        if (!lua_toboolean(L, -1))
            continue;
        const char *key = lua_tostring(L, -2);  /* check_query let strings only */
        int known = 0;
        for (int i = 0; be->fields[i] && !known; i++)
            known = strcmp(key, be->fields[i]) == 0;
        if (!known) {
            lua_pop(L, 2);
            return key;
        }
    }
    return NULL;
}

/* "auto": the first backend that answers this operation (TL_OP_*) for this
 * filter and is usable here; the last one (netlink, complete) when none
 * before it is. */
static const tl_backend *pick_backend(lua_State *L, const tl_query *q, int op)
{
    int i = 0;
    for (; tl_backends[i + 1]; i++) {
        tl_result r;
        tl_result_clear(&r);
        const tl_backend *be = tl_backends[i];
        if (!unsupported(L, be, q) && !(be->declines && be->declines(op, &q->f, q->netns)) && be->probe(&r) == 0)
            break;
    }
    return tl_backends[i];
}

/* Push the handle and open the backend's state; NULL with res filled. */
static tl_handle *open_handle(lua_State *L, const tl_query *q, int op, tl_result *res)
{
    const tl_backend *be = q->be ? q->be : pick_backend(L, q, op);
    tl_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->be = be;
    h->state = NULL;
    luaL_setmetatable(L, TL_HANDLE_MT);
    tl_result_clear(res);
    last_backend = be->name;
    const char *field = unsupported(L, be, q);
    if (field) {
        tl_result_set(res, ENOTSUP, "%s: cannot answer filter field '%s'", be->name, field);
        if (strcmp(field, "netns") == 0) {
            res->what = be->name;
            res->why = "cannot dump another namespace by path";
        }
        return NULL;
    }
    h->state = be->open(q->netns, res);
    return h->state ? h : NULL;
}

static void run_dump(tl_handle *h, const tl_query *q, tl_on_record cb, tl_on_restart restart,
                     void *ctx, tl_result *res)
{
    h->be->dump(h->state, &q->f, cb, restart, ctx, res);
    close_handle(h);
    last_restarts = res->restarts;
    last_reopens = res->reopens;
}

/* ---- snapshot ---- */

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

/* A name pre-interned on the stack at first + v when v < n, else v itself. */
static void push_name(lua_State *L, int first, unsigned n, unsigned v)
{
    if (v < n)
        lua_pushvalue(L, first + (int)v);
    else
        lua_pushinteger(L, v);
}

/* THE field table of a record, shared by the row and the column builder:
 * X(id, key, present, push). `push` pushes the value of record r (one Lua
 * value); `present` says whether r has the field (a row leaves it out, a
 * column holds false). Expanded in place by each builder rather than
 * walked at run time, so sharing it adds no dispatch per field: the code
 * compiled is the hand-written sequence of before. */
#define TL_FIELDS(X)                                                                     \
    X(STATE, "state", 1, push_name(L, c->state0, TL_STATE_MAX, r->state))                \
    X(FAMILY, "family", 1, lua_pushvalue(L, c->fam0 + (r->family == AF_INET6)))         \
    X(SRC, "src", 1, push_addr(c, r->family, r->src))                                    \
    X(SPORT, "sport", 1, lua_pushinteger(L, r->sport))                                   \
    X(DST, "dst", 1, push_addr(c, r->family, r->dst))                                    \
    X(DPORT, "dport", 1, lua_pushinteger(L, r->dport))                                   \
    X(RQUEUE, "rqueue", 1, lua_pushinteger(L, r->rqueue))                                \
    X(WQUEUE, "wqueue", 1, lua_pushinteger(L, r->wqueue))                                \
    X(UID, "uid", 1, lua_pushinteger(L, r->uid))                                         \
    X(INODE, "inode", 1, lua_pushinteger(L, r->inode))                                   \
    X(COOKIE, "cookie", 1, lua_pushinteger(L, (lua_Integer)r->cookie))                   \
    X(TIMER, "timer", 1, push_name(L, c->timer0, N_TIMERS, r->timer))                    \
    X(EXPIRES, "expires_ms", 1, lua_pushinteger(L, r->expires_ms))                       \
    X(RETRANS, "retrans", 1, lua_pushinteger(L, r->retrans))                             \
    X(INFO, "info", r->info != NULL, tl_push_tcp_info(L, r->info, r->info_len))         \
    X(CONG, "cong", r->cong != NULL, lua_pushlstring(L, r->cong, r->cong_len))

#define FIELD_ID(id, key, present, push) K_##id,
enum { TL_FIELDS(FIELD_ID) K_COUNT };
#define FIELD_KEY(id, key, present, push) key,
static const char *const keys[K_COUNT] = {TL_FIELDS(FIELD_KEY)};

/* A row: key, value, rawset; no metamethods, no string hashing (the keys
 * are pre-interned on the stack). */
#define ROW_FIELD(id, key, present, push)       \
    if (present) {                              \
        lua_pushvalue(L, c->key0 + K_##id);     \
        push;                                   \
        lua_rawset(L, -3);                      \
    }

static void snap_record(const tl_sock_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    lua_State *L = c->L;
    lua_createtable(L, 0, K_COUNT);
    TL_FIELDS(ROW_FIELD)
    lua_rawseti(L, c->result, ++c->n);
}

/* Columnar: one array per field, row i of every column is socket i. No
 * per-socket table, no key hashing: rawseti into each array part. info and cong are
 * a column only when asked for. */
#define COL_FIELD(id, key, present, push)                 \
    if (K_##id < K_INFO || c->ncols > K_##id) {           \
        if (present) {                                    \
            push;                                         \
        } else {                                          \
            lua_pushboolean(L, 0);                        \
        }                                                 \
        lua_rawseti(L, c->col0 + K_##id, c->n);           \
    }

static void col_record(const tl_sock_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    lua_State *L = c->L;
    c->n++;
    TL_FIELDS(COL_FIELD)
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

/* ---- owners: one /proc walk after the dump, joined by inode ---- */

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

/* Add owners to the snapshot at `result` (rows, or columns when c->col0):
 * record.owners = { {pid, comm, fd}, ... } (a socket is shared after fork),
 * record.owners_incomplete = true when some process's fds could not be
 * read (the socket may have owners we could not see; inode-0 sockets, as
 * TIME_WAIT, have none to miss), result.owners_unreadable = that count.
 * 0, or -1 with errno set. */
static int add_owners(lua_State *L, snap_ctx *c)
{
    luaL_checkstack(L, 16, "owners");
    int inode_col = 0;
    if (c->col0) {
        lua_getfield(L, c->result, "inode");
        inode_col = lua_gettop(L);
    }
    tl_owners **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = NULL;
    luaL_setmetatable(L, TL_OWNERS_MT);
    int ud = lua_gettop(L);
    *p = tl_owners_new((size_t)c->n);
    if (!*p)
        return errno = ENOMEM, -1;
    for (lua_Integer i = 1; i <= c->n; i++) {
        if (c->col0) {
            lua_rawgeti(L, inode_col, i);
        } else {
            lua_rawgeti(L, c->result, i);
            lua_pushvalue(L, c->key0 + K_INODE);
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
    if (c->col0) {
        lua_createtable(L, (int)c->n, 0);
        own_col = lua_gettop(L);
        lua_createtable(L, (int)c->n, 0);
        inc_col = lua_gettop(L);
    }
    for (lua_Integer i = 1; i <= c->n; i++) {
        uint32_t ino;
        if (c->col0) {
            lua_rawgeti(L, inode_col, i);
            ino = (uint32_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
            push_owners(L, *p, ino, k0);
            lua_rawseti(L, own_col, i);
            lua_pushboolean(L, unreadable && ino);
            lua_rawseti(L, inc_col, i);
            continue;
        }
        lua_rawgeti(L, c->result, i);
        lua_pushvalue(L, c->key0 + K_INODE);
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
    if (c->col0) {
        lua_pushvalue(L, own_col);
        lua_setfield(L, c->result, "owners");
        lua_pushvalue(L, inc_col);
        lua_setfield(L, c->result, "owners_incomplete");
    }
    lua_pushinteger(L, unreadable);
    lua_setfield(L, c->result, "owners_unreadable");
    lua_pushstring(L, walk);
    lua_setfield(L, c->result, "owners_walk");
    lua_settop(L, ud);
    tl_owners_free(*p);
    *p = NULL;
    lua_pop(L, 1 + (inode_col != 0));
    return 0;
}

/* The body of core.snapshot, run under lua_pcall by l_snapshot with the
 * filter, the netns string and the checked query (a light userdata). */
static int snapshot_body(lua_State *L)
{
    const tl_query *q = lua_touserdata(L, 3);
    tl_result res;
    tl_handle *h = open_handle(L, q, TL_OP_SNAPSHOT, &res);  /* index 4 */
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
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
    if (q->columns) {
        c.ncols = q->f.info ? K_COUNT : K_INFO;
        c.col0 = lua_gettop(L) + 1;
        lua_settop(L, c.col0 + c.ncols - 1);
        new_columns(&c);
    }

    run_dump(h, q, q->columns ? col_record : snap_record, snap_restart, &c, &res);
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
    if (q->columns) {
        for (int k = 0; k < c.ncols; k++) {
            lua_pushvalue(L, c.col0 + k);
            lua_setfield(L, c.result, keys[k]);
        }
        lua_pushinteger(L, c.n);
        lua_setfield(L, c.result, "n");
    }
    if (q->owners && add_owners(L, &c) != 0)
        return tl_fail_why(L, "/proc", NULL, errno);
    lua_pushvalue(L, c.result);
    return 1;
}

/* core.snapshot(filter)
 * Every table built stays alive until we return: an incremental collection
 * meanwhile would only mark them again and again, so the collector pauses.
 * The body runs under lua_pcall so that an error (out of memory) cannot
 * leave it paused; the backend's state is then closed by its __gc. */
static int l_snapshot(lua_State *L)
{
    tl_query q;
    check_query(L, "snapshot", &q);
    int was_running = lua_gc(L, LUA_GCISRUNNING);
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, snapshot_body);
    lua_insert(L, 1);
    lua_pushlightuserdata(L, &q);
    int status = lua_pcall(L, 3, LUA_MULTRET, 0);
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

static void count_record(const tl_sock_rec *r, void *ctx)
{
    ((count_ctx *)ctx)->by_state[r->state]++;
}

static void count_restart(void *ctx)
{
    memset(ctx, 0, sizeof(count_ctx));
}

/* ---- counts by key: a port or an address, states per key ----
 * An open-addressing table filled during the dump (no Lua in the
 * callback: a failed allocation sets oom and the rest is skipped). */

#define TL_BYKEY_MT "tcplab.counts_by"
enum { BY_STATES = 16 };  /* kernel states are 1..12 */

typedef struct by_slot {
    uint8_t used, family;
    uint16_t port;
    uint8_t addr[16];
    uint32_t n[BY_STATES];
} by_slot;

typedef struct by_ctx {
    by_slot *slots;
    size_t cap, used;
    int by, oom;
} by_ctx;

static int bykey_gc(lua_State *L)
{
    by_ctx *c = luaL_checkudata(L, 1, TL_BYKEY_MT);
    free(c->slots);
    c->slots = NULL;
    return 0;
}

static uint32_t by_hash(const by_ctx *c, uint8_t family, uint16_t port, const uint8_t *addr)
{
    if (c->by == BY_SPORT || c->by == BY_DPORT)
        return port * 2654435761u;
    uint32_t h = 2166136261u ^ family;
    for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
        h = (h ^ addr[i]) * 16777619u;
    return h ^ (h >> 15);
}

static by_slot *by_find(by_ctx *c, uint8_t family, uint16_t port, const uint8_t *addr)
{
    int isport = c->by == BY_SPORT || c->by == BY_DPORT;
    size_t alen = family == AF_INET ? 4 : 16;
    for (size_t i = by_hash(c, family, port, addr) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        by_slot *s = &c->slots[i];
        if (!s->used)
            return s;
        if (isport ? s->port == port
                   : s->family == family && memcmp(s->addr, addr, alen) == 0)
            return s;
    }
}

static int by_resize(by_ctx *c, size_t cap)
{
    by_slot *old = c->slots;
    size_t oldcap = c->cap;
    by_slot *fresh = calloc(cap, sizeof *fresh);
    if (!fresh)
        return -1;
    c->slots = fresh;
    c->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].used)
            *by_find(c, old[i].family, old[i].port, old[i].addr) = old[i];
    free(old);
    return 0;
}

static void by_record(const tl_sock_rec *r, void *ctx)
{
    by_ctx *c = ctx;
    if (c->oom || r->state >= BY_STATES)
        return;
    uint16_t port = c->by == BY_SPORT ? r->sport : c->by == BY_DPORT ? r->dport : 0;
    const uint8_t *addr = c->by == BY_SRC ? r->src : c->by == BY_DST ? r->dst : NULL;
    uint8_t family = addr ? r->family : 0;
    by_slot *s = by_find(c, family, port, addr);
    if (!s->used) {
        if (2 * (c->used + 1) > c->cap) {
            if (by_resize(c, 2 * c->cap) != 0) {
                c->oom = 1;
                return;
            }
            s = by_find(c, family, port, addr);
        }
        s->used = 1;
        s->family = family;
        s->port = port;
        if (addr)
            memcpy(s->addr, addr, family == AF_INET ? 4 : 16);
        c->used++;
    }
    s->n[r->state]++;
}

static void by_restart(void *ctx)
{
    by_ctx *c = ctx;
    memset(c->slots, 0, c->cap * sizeof *c->slots);
    c->used = 0;
}

/* counts{by = ...}: { [key] = { STATE = n, ... } } */
static int counts_by(lua_State *L, tl_query *q)
{
    tl_result res;
    tl_handle *h = open_handle(L, q, TL_OP_COUNTS_BY, &res);
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
    by_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, TL_BYKEY_MT);
    c->by = q->by;
    if (by_resize(c, 256) != 0)
        return tl_fail_why(L, "counts", NULL, ENOMEM);
    run_dump(h, q, by_record, by_restart, c, &res);
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
    if (c->oom)
        return tl_fail_why(L, "counts", NULL, ENOMEM);
    luaL_checkstack(L, TL_STATE_MAX + 8, "counts");
    int name0 = lua_gettop(L) + 1;
    for (int i = 0; i < TL_STATE_MAX; i++)
        lua_pushstring(L, tl_state_names[i]);
    lua_createtable(L, 0, (int)c->used);
    for (size_t i = 0; i < c->cap; i++) {
        const by_slot *s = &c->slots[i];
        if (!s->used)
            continue;
        if (q->by == BY_SPORT || q->by == BY_DPORT) {
            lua_pushinteger(L, s->port);
        } else {
            char buf[INET6_ADDRSTRLEN];
            lua_pushlstring(L, buf, tl_format_addr(s->family, s->addr, buf, sizeof buf));
        }
        lua_newtable(L);
        for (int st = 0; st < BY_STATES; st++) {
            if (!s->n[st])
                continue;
            push_name(L, name0, TL_STATE_MAX, (unsigned)st);
            lua_pushinteger(L, s->n[st]);
            lua_rawset(L, -3);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

/* core.counts(filter): { STATE = n, ... } */
static int l_counts(lua_State *L)
{
    tl_query q;
    check_query(L, "counts", &q);
    q.f.info = 0;
    if (q.by != BY_NONE)
        return counts_by(L, &q);
    tl_result res;
    tl_handle *h = open_handle(L, &q, TL_OP_COUNTS, &res);
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
    count_ctx c;
    memset(&c, 0, sizeof c);
    if (h->be->count) {  /* counted at the source */
        int64_t by_state[256] = {0};
        h->be->count(h->state, &q.f, by_state, &res);
        close_handle(h);
        last_restarts = res.restarts;
        last_reopens = res.reopens;
        for (int i = 0; i < 256; i++)
            c.by_state[i] = by_state[i];
    } else {
        run_dump(h, &q, count_record, count_restart, &c, &res);
    }
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
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

/* ---- which backend ---- */

/* core.backend([name]): the name of the backend that answers a filter
 * naming `name` ("auto" by default), or nil when it is not usable here;
 * and { name = true | "why not", ... } for every backend of this build. */
static int l_backend(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, "auto");
    const tl_backend *want = tl_backend_find(name);
    if (!want)
        tl_arg_error(L, 1, "backend", "one of %s expected, got %s", push_backend_names(L),
                     tl_push_show(L, 1));
    lua_settop(L, 1);
    lua_pushnil(L);       /* 2: the answer */
    lua_newtable(L);      /* 3: availability */
    for (int i = 0; tl_backends[i]; i++) {
        const tl_backend *be = tl_backends[i];
        tl_result res;
        tl_result_clear(&res);
        if (be->probe(&res) == 0) {
            lua_pushboolean(L, 1);
            if (be == want || (lua_isnil(L, 2) && strcmp(name, "auto") == 0)) {
                lua_pushstring(L, be->name);
                lua_replace(L, 2);
            }
        } else {
            lua_pushfstring(L, "%s: %s", res.what, res.why ? res.why : strerror(res.err));
        }
        lua_setfield(L, 3, be->name);
    }
    return 2;
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
 * attempts see their source change under them (sock_diag: the first buffer
 * is flagged NLM_F_DUMP_INTR); the next N reads lose records (ENOBUFS).
 * Replaces what was pending ({} clears); each fault is counted down as it
 * fires. Every backend that can is told. Test only. */
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
    unsigned enobufs = check_faults(L, "enobufs");
    for (int i = 0; tl_backends[i]; i++)
        if (tl_backends[i]->inject)
            tl_backends[i]->inject(interrupt, enobufs);
    return 0;
}

/* core._dump_backend(): the name of the backend that answered (or was
 * asked) last. Test only. */
static int l_dump_backend(lua_State *L)
{
    lua_pushstring(L, last_backend);
    return 1;
}

/* core._dump_stats(): {restarts = n, reopens = n} of the last dump. Test only. */
static int l_dump_stats(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, last_restarts);
    lua_setfield(L, -2, "restarts");
    lua_pushinteger(L, last_reopens);
    lua_setfield(L, -2, "reopens");
    return 1;
}

void tl_records_register(lua_State *L)
{
    static const luaL_Reg handle_mt[] = {{"__gc", handle_gc}, {"__close", handle_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_HANDLE_MT);
    luaL_setfuncs(L, handle_mt, 0);
    lua_pop(L, 1);
    static const luaL_Reg bykey_mt[] = {{"__gc", bykey_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_BYKEY_MT);
    luaL_setfuncs(L, bykey_mt, 0);
    lua_pop(L, 1);
    static const luaL_Reg owners_mt[] = {{"__gc", owners_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_OWNERS_MT);
    luaL_setfuncs(L, owners_mt, 0);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"snapshot", l_snapshot}, {"counts", l_counts}, {"backend", l_backend},
        {"_inject_dump_faults", l_inject_dump_faults}, {"_dump_stats", l_dump_stats},
        {"_dump_backend", l_dump_backend},
        {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
