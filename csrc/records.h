/* tcplab: the parts behind core.snapshot and core.counts, and what passes
 * between them.
 *
 *   filter.c    the Lua filter table -> tl_query, checked once
 *   dump.c      which backend answers a tl_query, its state held by a
 *               userdata while a dump runs, port = P applied to its
 *               records, core.backend and the test hooks
 *   snapshot.c  records -> rows or columns (core.snapshot)
 *   owners_glue.c  the owners of a snapshot's sockets, joined by inode
 *   counts.c    records -> per-state counts, or per key (core.counts)
 *   each.c      records -> rows, one per call of a generic-for iterator (core.each)
 *   bykey.c     the per-key tally (no Lua: bykey.h)
 *
 * Everything a part needs from another is in a struct here: no part reads
 * a value that another left at some index of the Lua stack. */
#ifndef TCPLAB_RECORDS_H
#define TCPLAB_RECORDS_H

#include "tcplab.h"
#include "backend.h"
#include "bykey.h"

/* ---- the filter (filter.c) ---- */

/* The fields of a filter table, in this order; bit i of tl_query.set is
 * FILTER_FIELDS[i]. */
enum {
    TL_FF_STATES, TL_FF_FAMILY, TL_FF_SPORT, TL_FF_DPORT, TL_FF_INFO, TL_FF_NETNS,
    TL_FF_COLUMNS, TL_FF_BACKEND, TL_FF_OWNERS, TL_FF_BY, TL_FF_SRC, TL_FF_DST, TL_FF_PORT,
    TL_FF_COUNT
};
extern const char *const tl_filter_fields[TL_FF_COUNT + 1];

typedef struct tl_query {
    tl_filter f;
    const char *netns;    /* NULL: our own namespace; else a string of the filter
                           * table, alive as long as that table is */
    int columns;
    int owners;           /* snapshot: join /proc/PID/fd owners by inode */
    int by;               /* counts: TL_BY_NONE or the key counted per state (bykey.h) */
    const tl_backend *be; /* NULL: "auto", picked for this filter by tl_dump_open */
    int port, port_lo, port_hi; /* port = P: either end (-1, 0, 0: any), applied by dump.c */
    unsigned set;         /* bit TL_FF_x: the field is set (neither nil nor false) */
} tl_query;

/* The filter at index arg (a table or nil) into q. Raises naming fname and
 * the field. Leaves the stack as it was. */
void tl_query_check(lua_State *L, int arg, const char *fname, tl_query *q);
/* Push "auto name1 name2 ..." for messages; returns the string. */
const char *tl_push_backend_names(lua_State *L);

/* ---- a dump (dump.c) ---- */

typedef struct tl_dump {
    const tl_backend *be;
    void *state;  /* NULL when closed */
} tl_dump;

/* Push a userdata that owns the backend's state (closed by __gc if an
 * error unwinds) and open it; NULL with res filled (the userdata stays
 * pushed either way). */
tl_dump *tl_dump_open(lua_State *L, const tl_query *q, int op, tl_result *res);
/* One walk: records that pass q (port = P included) to cb; then closed. */
void tl_dump_run(tl_dump *d, const tl_query *q, tl_on_record cb, tl_on_restart restart, void *ctx,
                 tl_result *res);
/* Per-state totals counted at the source, added into by_state: 0 and
 * closed, or -1 when this backend or query cannot (then tl_dump_run). */
int tl_dump_count(tl_dump *d, const tl_query *q, int64_t by_state[256], tl_result *res);
void tl_dump_register(lua_State *L);      /* backend, _inject_dump_faults, _dump_stats, ... */

/* ---- a row (snapshot.c): one socket as snapshot and each build it ---- */
enum { TL_ROW_ADDR_SLOTS = 256 };
typedef struct tl_row_addr {
    uint8_t family;   /* 0: empty */
    uint8_t raw[16];
} tl_row_addr;
/* The interned names a row is built from (pushed once by
 * tl_row_push_names: keys, state names, timer names, families) and the
 * cache of address strings. */
typedef struct tl_rowkit {
    lua_State *L;
    int dir;          /* 1: the names are consecutive stack slots from key0;
                       * -1: consecutive upvalues (their pseudo-indices go down) */
    int key0, state0, timer0, fam0;
    int addr_tbl;     /* a table (stack slot or upvalue) holding the cached strings */
    int mt;           /* 0, or the index of the metatable tl_row_push gives a row */
    tl_row_addr addrs[TL_ROW_ADDR_SLOTS];
} tl_rowkit;
/* Push every name a row needs, in order; returns how many. */
int tl_row_push_names(lua_State *L);
/* k for names pushed at `first` (the first one's index; dir as above). */
void tl_row_kit(tl_rowkit *k, lua_State *L, int first, int dir, int addr_tbl);
/* Push the row of r: state family src sport dst dport ... (+ info, cong). */
void tl_row_push(tl_rowkit *k, const tl_sock_rec *r);
/* Push field number id of r's row (the order of tl_row_push_names' keys):
 * 1, or nil and 0 when r has no such field (info, cong without them). */
int tl_row_push_field(tl_rowkit *k, const tl_sock_rec *r, int id);
/* How many keys a row can have (the first names tl_row_push_names pushes). */
int tl_row_nkeys(void);

/* ---- rows as values (row.c) ---- */
#define TL_ROW_MT "tcplab.row"            /* a table row's metatable: __tostring */
#define TL_LAZY_ROW_MT "tcplab.lazy_row"  /* each's rows: a copied record, fields on demand */
/* Push a lazy row holding its own copy of r (addresses, tcp_info, cong);
 * mt is the index of TL_LAZY_ROW_MT's table. */
void tl_lazy_row_push(lua_State *L, int mt, const tl_sock_rec *r);
void tl_row_register(lua_State *L);       /* both metatables */

/* ---- a dump, one buffer at a time (dump.c, for each.c) ---- */
/* Fill d (a field of the caller's userdata) for q, "auto" picking for
 * operation op (TL_OP_*): 0, or -1 with res filled; d->state is NULL
 * unless it is open. */
int tl_dump_init(tl_dump *d, const tl_query *q, int op, tl_result *res);
/* Start a streaming walk: 0, or -1 with res filled (ENOTSUP: the backend
 * cannot stream). */
int tl_dump_start(tl_dump *d, const tl_query *q, tl_result *res);
/* One buffer's records that pass q (port = P included) to cb: 1 while more
 * follow, 0 at the end, -1 with res filled (backend.h: start/next). */
int tl_dump_next(tl_dump *d, const tl_query *q, tl_on_record cb, void *ctx, tl_result *res);
/* Close the backend's state (the socket or iterator fd); harmless twice. */
void tl_dump_close(tl_dump *d);

/* ---- the parts' registration ---- */
void tl_snapshot_register(lua_State *L);  /* snapshot.c: snapshot */
void tl_counts_register(lua_State *L);    /* counts.c: counts */
void tl_each_register(lua_State *L);      /* each.c: each */

/* ---- owners (owners_glue.c) ----
 * The snapshot as it stands once the dump is done. */
typedef struct tl_snap_view {
    int result;       /* stack index of the result table */
    int columns;      /* 1: result holds one array per field (result.inode, ...) */
    int inode_key;    /* rows: stack index of the interned "inode" key */
    lua_Integer n;    /* number of sockets */
} tl_snap_view;

/* Add owners to the snapshot v describes: record.owners = { {pid, comm, fd},
 * ... }, record.owners_incomplete, result.owners_unreadable and
 * result.owners_walk. 0, or -1 with errno set. Leaves the stack as it was. */
int tl_snapshot_owners(lua_State *L, const tl_snap_view *v);
void tl_owners_glue_register(lua_State *L);  /* the index's metatable */

/* A name pre-interned on the stack at first + v when v < n, else v itself. */
static inline void tl_push_name(lua_State *L, int first, unsigned n, unsigned v)
{
    if (v < n)
        lua_pushvalue(L, first + (int)v);
    else
        lua_pushinteger(L, v);
}

#endif
