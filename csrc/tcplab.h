/* tcplab: shared types of the C core.
 *
 * Arrows point one way: core.c registers; sock.c owns socket fds; the
 * diag_* files speak sock_diag and know nothing of Lua; push.c turns their
 * plain C records into Lua values. */
#ifndef TCPLAB_H
#define TCPLAB_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <lua.h>
#include <lauxlib.h>

#define TL_SOCKET_MT "tcplab.socket"

/* TCP states as the kernel numbers them (include/net/tcp_states.h). */
enum { TL_STATE_MAX = 12 };
extern const char *const tl_state_names[TL_STATE_MAX];  /* netstat spelling */

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
} tl_sock;

int tl_sock_open(lua_State *L);  /* tcplab.core.socket */
void tl_sock_register(lua_State *L);

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

double tl_now(void);  /* seconds on the monotonic clock */
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

/* ---- the process (proc.c): fds, signals for bin/, parent death ---- */
unsigned long tl_signal_count(void);  /* signals caught by catch_signals */
void tl_proc_register(lua_State *L);

/* ---- tcp_info (push.c) ---- */
struct tcp_info;
void tl_push_tcp_info(lua_State *L, const void *info, size_t len);

/* ---- one socket of a sock_diag dump (diag_parse.c) ---- */
typedef struct tl_diag_rec {
    uint8_t family, state, timer, retrans;
    uint16_t sport, dport;          /* host order */
    const uint8_t *src, *dst;       /* 4 or 16 bytes, point into the message */
    uint32_t rqueue, wqueue, uid, inode, expires_ms;
    uint64_t cookie;
    const void *info;               /* struct tcp_info bytes or NULL */
    size_t info_len;
} tl_diag_rec;

/* Parse one sock_diag reply payload. Returns 0, or -1 if malformed. */
int tl_diag_parse(const void *payload, size_t len, tl_diag_rec *rec);

/* ---- the dump's reply (diag_parse.c, no I/O) ---- */
struct tl_diag_result;
/* Called per record, in the order the kernel sends them. */
typedef void (*tl_diag_cb)(const tl_diag_rec *rec, void *ctx);
enum { TL_REPLY_MORE = 0, TL_REPLY_DONE = 1 };
/* Walk one received buffer of a reply to `seq`: records go to cb.
 * Returns TL_REPLY_MORE, TL_REPLY_DONE, or -1 with res filled.
 * *interrupted is set once the kernel flags NLM_F_DUMP_INTR. */
int tl_diag_walk(const void *buf, size_t n, uint32_t seq, uint32_t portid, int *interrupted,
                 tl_diag_cb cb, void *ctx, struct tl_diag_result *res);

/* ---- requests (diag_req.c) ---- */
typedef struct tl_diag_filter {
    uint32_t states;   /* bit per kernel state */
    int family;        /* AF_UNSPEC for both */
    int sport, dport;  /* -1: any */
    int info;          /* ask for INET_DIAG_INFO */
} tl_diag_filter;

/* Build the request into buf (>= TL_DIAG_REQ_SIZE); returns its length. */
enum { TL_DIAG_REQ_SIZE = 256 };
size_t tl_diag_build(void *buf, const tl_diag_filter *f, uint32_t seq);

/* ---- the dump loop (diag.c) ---- */
/* Called when the kernel says the dump was interrupted and it restarts. */
typedef void (*tl_diag_restart_cb)(void *ctx);

enum { TL_WHAT_SIZE = 4200 };  /* a path (PATH_MAX) and a verb */
typedef struct tl_diag_result {
    int err;           /* errno, 0 on success */
    const char *what;  /* which step failed (may point into whatbuf) */
    unsigned restarts; /* NLM_F_DUMP_INTR retries */
    unsigned reopens;  /* ENOBUFS: fresh socket, dump again */
    const char *why;   /* NULL: strerror(err) */
    char whatbuf[TL_WHAT_SIZE];
} tl_diag_result;

/* The netlink socket of a dump and where to make a fresh one. */
struct mnl_socket;
typedef struct tl_diag_conn {
    struct mnl_socket *nl;  /* NULL when closed */
    int nsfd;               /* network namespace to open in; -1: our own */
    const char *path;       /* the namespace's path, for messages */
} tl_diag_conn;

/* Run one dump on conn (opening conn->nl when NULL). On ENOBUFS the socket
 * is replaced by a fresh one in the same namespace and the dump starts over. */
void tl_diag_dump(tl_diag_conn *conn, void *buf, size_t size, const tl_diag_filter *f,
                  tl_diag_cb cb, tl_diag_restart_cb restart, void *ctx,
                  tl_diag_result *res);

/* Test-only fault injection (core._inject_dump_faults): the next `interrupt`
 * dump attempts see their first buffer flagged NLM_F_DUMP_INTR; the next
 * `enobufs` receive calls fail with ENOBUFS before reading. */
void tl_diag_inject(unsigned interrupt, unsigned enobufs);
void tl_diag_last_stats(unsigned *restarts, unsigned *reopens);

/* ---- namespaces (netns.c) ---- */
/* Open a network namespace path (O_NONBLOCK: a FIFO cannot hang us) and
 * check that it is one. Returns the fd, or -1 with res filled (naming path). */
int tl_netns_open(const char *path, tl_diag_result *res);
/* (Re)open conn->nl inside conn->nsfd. Returns 0, or -1 with res filled. */
int tl_diag_connect(tl_diag_conn *conn, tl_diag_result *res);
void tl_netns_register(lua_State *L);

/* ---- snapshot/counts (push.c) ---- */
void tl_diag_register(lua_State *L);

/* Return nil, "what: strerror", errno like luaL_fileresult. */
int tl_fail(lua_State *L, const char *what, int err);
/* The same for a filled result ("what: why" when why is set). */
int tl_fail_result(lua_State *L, const tl_diag_result *res);
/* Point res->what at a formatted message in res->whatbuf. */
void tl_set_what(tl_diag_result *res, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
