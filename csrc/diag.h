/* tcplab: the sock_diag backend's parts (diag_req.c, diag_parse.c,
 * diag_backend.c). No Lua: these files include backend.h and this header
 * only, and spec/nolua_spec.lua holds them to it. */
#ifndef TCPLAB_DIAG_H
#define TCPLAB_DIAG_H

#include "backend.h"

/* ---- requests (diag_req.c) ---- */
/* Build the request into buf (>= TL_DIAG_REQ_SIZE); returns its length. */
enum { TL_DIAG_REQ_SIZE = 256 };
size_t tl_diag_build(void *buf, const tl_filter *f, uint32_t seq);

/* ---- replies (diag_parse.c: no I/O, what the fuzz target feeds) ---- */
/* Parse one sock_diag reply payload. Returns 0, or -1 if malformed. */
int tl_diag_parse(const void *payload, size_t len, tl_sock_rec *rec);

enum { TL_REPLY_MORE = 0, TL_REPLY_DONE = 1 };
/* Walk one received buffer of a reply to `seq`: records go to cb.
 * Returns TL_REPLY_MORE, TL_REPLY_DONE, or -1 with res filled.
 * *interrupted is set once the kernel flags NLM_F_DUMP_INTR. */
int tl_diag_walk(const void *buf, size_t n, uint32_t seq, uint32_t portid, int *interrupted,
                 tl_on_record cb, void *ctx, tl_result *res);

#endif
