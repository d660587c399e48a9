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

typedef struct tl_diag_result {
    int err;           /* errno, 0 on success */
    const char *what;  /* which step failed */
    unsigned restarts; /* NLM_F_DUMP_INTR retries */
} tl_diag_result;

/* Run one dump on netlink socket `nl` (an mnl socket). */
struct mnl_socket;
void tl_diag_dump(struct mnl_socket *nl, void *buf, size_t size, const tl_diag_filter *f,
                  tl_diag_cb cb, tl_diag_restart_cb restart, void *ctx,
                  tl_diag_result *res);

/* ---- namespaces (netns.c) ---- */
/* Open a sock_diag netlink socket inside the namespace at path (NULL: own). */
struct mnl_socket *tl_diag_open(const char *netns_path, int *err, const char **what);
void tl_netns_register(lua_State *L);

/* ---- snapshot/counts (push.c) ---- */
void tl_diag_register(lua_State *L);

/* Return nil, "what: strerror", errno like luaL_fileresult. */
int tl_fail(lua_State *L, const char *what, int err);

#endif
