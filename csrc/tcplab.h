/* tcplab: the Lua side of the C core, shared by the files that push to or
 * read from a Lua state.
 *
 * The arrows: core.c only registers what the other files export. sock.c
 * (the socket userdata) uses addr.c, wait.c, tcpinfo.c and aux.c; wait.c
 * asks proc.c how many signals were caught; records.c and its parts
 * (records.h: filter, dump, snapshot, owners glue, counts) turn tl_sock_rec
 * records of a backend (backend.h) into Lua values, through tcpinfo.c for
 * tcp_info; netns.c (the namespace handle) and those parts are the only
 * Lua-side files that include backend.h. Nothing under backend.h includes
 * this header or lua.h: the sources of records know nothing of Lua. Every
 * file here may use aux.h, which includes no tcplab header. */
#ifndef TCPLAB_H
#define TCPLAB_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include "aux.h"

#define TL_SOCKET_MT "tcplab.socket"

/* ---- addresses (addr.c) ---- */
typedef struct tl_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} tl_addr;

/* Parse host/port for a socket of `family`; raises naming argument `arg`. */
void tl_check_addr(lua_State *L, int arg, int family, tl_addr *out);
/* Push host string and port of a sockaddr; returns 2. */
int tl_push_sockaddr(lua_State *L, const struct sockaddr *sa);
/* Format raw address bytes into buf (>= INET6_ADDRSTRLEN); v4-mapped v6 is
 * shown as v4. Returns the string's length. */
size_t tl_format_addr(int family, const void *raw, char *buf, size_t size);
int tl_check_port(lua_State *L, int arg);
int tl_family_arg(lua_State *L, int arg);  /* "inet" | "inet6" -> AF_* */

/* ---- sockets (sock.c) ---- */
typedef struct tl_sock {
    int fd;          /* -1 once closed */
    int family;
    double timeout;  /* < 0: block forever; 0: never wait; > 0 seconds */
    int connecting;  /* a connect() of ours returned before it completed */
    int connected;   /* a connect() of ours returned true: later ones say EISCONN */
} tl_sock;

void tl_sock_register(lua_State *L);  /* core.socket and the metatable */

/* ---- tcp_info -> Lua table (tcpinfo.c) ---- */
/* Fields past `len` (an older kernel's shorter struct) are left out. */
void tl_push_tcp_info(lua_State *L, const void *info, size_t len);

/* ---- waiting (wait.c) ----
 * Every wait of the library goes through a tl_waiter: it holds a monotonic
 * deadline across EINTR, and it gives up at once, with TL_INTERRUPTED, when
 * a signal handler has asked the Lua state to stop: lua.c's SIGINT handler
 * (and core.catch_signals) set a hook, so a hook or mask that differs from
 * the one seen when the wait began means "return to Lua now, the hook will
 * raise". A handler that leaves the Lua state alone (SIGALRM) changes
 * nothing and the wait goes on to its deadline. */
enum { TL_INTERRUPTED = -1 };
typedef struct tl_waiter {
    lua_State *L;
    lua_Hook hook;
    int mask;
    unsigned long signals;  /* tl_signal_count() when the wait began */
    double deadline;        /* < 0: none */
} tl_waiter;

/* timeout < 0: forever. Call before the first step that may wait. */
void tl_wait_begin(tl_waiter *w, lua_State *L, double timeout);
int tl_wait_interrupted(const tl_waiter *w);
/* Wait for events on fd: 0 when ready (or POLLERR/POLLHUP), ETIMEDOUT,
 * TL_INTERRUPTED, or an errno from poll. */
int tl_wait_fd(tl_waiter *w, int fd, short events);
/* Sleep to the deadline: 0, or TL_INTERRUPTED. */
int tl_wait_sleep(tl_waiter *w);
/* Push nil, "interrupted", EINTR; returns 3. */
int tl_interrupted(lua_State *L);

/* ---- registration: each adds its functions to the module table on top ---- */
void tl_time_register(lua_State *L);     /* time.c: now, sleep, _interrupt_every */
void tl_proc_register(lua_State *L);     /* proc.c: _fds, catch_signals, ... */
void tl_records_register(lua_State *L);  /* records.c: snapshot, counts, backend */
void tl_netns_register(lua_State *L);    /* netns.c: netns.* */
void tl_errno_register(lua_State *L);    /* errnos.c: errno */
void tl_capture_register(lua_State *L);  /* capture.c: capture.open, capture.parse */
void tl_bpf_register(lua_State *L);      /* lbpf.c: bpf_info, the unload sentinel */
void tl_bpf_trace_register(lua_State *L); /* lbpf_trace.c: bpf_trace (the BPF transition recorder) */
void tl_spawn_register(lua_State *L);    /* spawn.c: spawn_contained (the lab's PID namespace) */
void tl_textfile_register(lua_State *L);  /* textfile.c: textfile_write (atomic, symlink-safe) */
void tl_destroy_register(lua_State *L);  /* destroy_lua.c: destroy (SOCK_DESTROY, ss -K) */
void tl_nfqueue_register(lua_State *L);  /* nfqueue.c: nfqueue.open, nfqueue.parse (NFQUEUE) */
void tl_live_register(lua_State *L);     /* live.c: live (counts kept by BPF programs) */

/* ---- the process (proc.c) ---- */
unsigned long tl_signal_count(void);  /* signals caught by catch_signals */

#endif
