/* The nfqueue userdata: one NFQUEUE netlink socket (and the raw sockets
 * that re-send a duplicated packet), one close path.
 *
 * core.nfqueue.open(num) binds queue `num` of the current network
 * namespace (call it through ns:run: the sockets keep the namespace they
 * were made in), copy mode "packet", fail-open (a full queue accepts rather
 * than drops). q:read(timeout) hands the queued packets to Lua as tables;
 * q:verdict(id, "accept"|"drop") lets one go or drops it; q:inject(bytes)
 * sends a copy of an IP packet, marked TL_NFQ_INJECT_MARK so the rule that
 * queues the port's packets (which skips that mark) lets the copy through.
 * Closing gives every packet still queued the verdict accept (one batch
 * verdict up to the highest id seen) before the socket goes: the kernel
 * would drop them otherwise. Messages are built and parsed by nfqueue_msg.c. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libmnl/libmnl.h>
#include "tcplab.h"
#include "nfqueue.h"

#define TL_NFQ_MT "tcplab.nfqueue"
#define TL_NFQ_INJECT_MARK 0x7cb1
/* a whole lo packet (MTU 65536) and the message around it */
#define TL_NFQ_BUF (65536 + 4096)

typedef struct tl_nfq {
    struct mnl_socket *nl;   /* NULL once closed */
    int raw4, raw6;          /* -1: none */
    uint16_t queue;
    int have_id;
    uint32_t max_id;         /* the highest packet id seen */
    int errors, last_err;    /* verdicts the kernel refused */
    lua_Integer packets;     /* packets read */
    unsigned char buf[TL_NFQ_BUF];
} tl_nfq;

static tl_nfq *checkq(lua_State *L, int arg)
{
    tl_nfq *q = luaL_checkudata(L, arg, TL_NFQ_MT);
    if (!q->nl)
        luaL_error(L, "attempt to use a closed nfqueue");
    return q;
}

/* Send one request with NLM_F_ACK and wait (up to 1 s) for its answer. */
static int request(tl_nfq *q, size_t len, uint32_t seq)
{
    if (mnl_socket_sendto(q->nl, q->buf, len) < 0)
        return errno;
    struct pollfd pfd = {mnl_socket_get_fd(q->nl), POLLIN, 0};
    int r = poll(&pfd, 1, 1000);
    if (r == 0)
        return ETIMEDOUT;
    if (r < 0)
        return errno;
    ssize_t n = mnl_socket_recvfrom(q->nl, q->buf, sizeof q->buf);
    if (n < 0)
        return errno;
    if (mnl_cb_run(q->buf, (size_t)n, seq, mnl_socket_get_portid(q->nl), NULL, NULL) < 0)
        return errno;
    return 0;
}

static int raw_socket(int family)
{
    int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), mark = TL_NFQ_INJECT_MARK;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* core.nfqueue.open(num): a queue, or nil, msg, errno (EBUSY: another
 * process of this namespace has the number). */
static int l_open(lua_State *L)
{
    lua_Integer num = luaL_checkinteger(L, 1);
    luaL_argcheck(L, num >= 0 && num <= 65535, 1, "queue number 0..65535 expected");
    tl_nfq *q = lua_newuserdatauv(L, sizeof *q, 0);
    q->nl = NULL;
    q->raw4 = q->raw6 = -1;
    q->queue = (uint16_t)num;
    q->have_id = 0;
    q->max_id = 0;
    q->errors = q->last_err = 0;
    q->packets = 0;
    luaL_setmetatable(L, TL_NFQ_MT);
    q->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!q->nl)
        return tl_fail(L, "nfqueue socket", errno);
    if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0)
        return tl_fail(L, "nfqueue bind", errno);
    int fd = mnl_socket_get_fd(q->nl), size = 8 << 20, one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    /* a lost message would leave its packet queued until close: say so
     * instead (ENOBUFS), never drop silently */
    (void)one;
    uint32_t seq = (uint32_t)(tl_now() * 1000);
    int err = request(q, tl_nfq_put_bind(q->buf, q->queue, seq), seq);
    if (err)
        return tl_fail(L, lua_pushfstring(L, "nfqueue bind queue %d", (int)num), err);
    err = request(q, tl_nfq_put_params(q->buf, q->queue, 0xffff, seq + 1), seq + 1);
    if (!err)
        err = request(q, tl_nfq_put_fail_open(q->buf, q->queue, seq + 2), seq + 2);
    if (err)
        return tl_fail(L, "nfqueue config", err);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        return tl_fail(L, "nfqueue O_NONBLOCK", errno);
    q->raw4 = raw_socket(AF_INET);
    if (q->raw4 < 0)
        return tl_fail(L, "nfqueue raw socket", errno);
    q->raw6 = raw_socket(AF_INET6);   /* -1 where IPv6 is off: inject says so */
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_addr(lua_State *L, const char *k, int family, const uint8_t *raw)
{
    char buf[INET6_ADDRSTRLEN + 1];
    tl_format_addr(family, raw, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, k);
}

typedef struct push_ctx {
    lua_State *L;
    tl_nfq *q;
    lua_Integer n;
} push_ctx;

/* { id, hook, mark, raw, tcp = true, family, src, sport, dst, dport,
 *   flags = "SA", seq, ack, win, len } */
static void push_packet(const tl_nfq_pkt *p, void *arg)
{
    push_ctx *c = arg;
    lua_State *L = c->L;
    if (!c->q->have_id || p->id > c->q->max_id)
        c->q->max_id = p->id;
    c->q->have_id = 1;
    c->q->packets++;
    lua_createtable(L, 0, 16);
    set_int(L, "id", p->id);
    set_int(L, "hook", p->hook);
    set_int(L, "mark", p->mark);
    lua_pushlstring(L, p->payload ? (const char *)p->payload : "", p->plen);
    lua_setfield(L, -2, "raw");
    lua_pushboolean(L, p->is_tcp);
    lua_setfield(L, -2, "tcp");
    if (p->is_tcp) {
        const tl_seg *s = &p->seg;
        char flags[9];
        lua_pushstring(L, s->family == AF_INET6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        set_addr(L, "src", s->family, s->src);
        set_int(L, "sport", s->sport);
        set_addr(L, "dst", s->family, s->dst);
        set_int(L, "dport", s->dport);
        tl_capture_flags(s->flags, flags);
        lua_pushstring(L, flags);
        lua_setfield(L, -2, "flags");
        set_int(L, "seq", s->seq);
        set_int(L, "ack", s->ack);
        set_int(L, "win", s->win);
        set_int(L, "len", s->len);
    }
    lua_rawseti(L, -2, ++c->n);
}

/* q:read([timeout]): the list of packets queued now; when none, waits up to
 * timeout seconds (default 0) for the first. Ctrl-C: nil, "interrupted",
 * EINTR. ENOBUFS (the kernel could not hand us a packet: it stays queued
 * until close) fails with that errno. */
static int q_read(lua_State *L)
{
    tl_nfq *q = checkq(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, timeout == timeout && timeout >= 0, 2, "timeout must be >= 0");
    tl_waiter w;
    tl_wait_begin(&w, L, isinf(timeout) ? -1 : (double)timeout);
    lua_newtable(L);
    push_ctx c = {L, q, 0};
    int fd = mnl_socket_get_fd(q->nl);
    for (;;) {
        ssize_t n = recv(fd, q->buf, sizeof q->buf, 0);
        if (n > 0) {
            tl_nfq_parse(q->buf, (size_t)n, push_packet, &c, &q->errors, &q->last_err);
            continue;
        }
        int err = n == 0 ? EAGAIN : errno;
        if (err == EINTR) {
            if (tl_wait_interrupted(&w))
                return tl_interrupted(L);
            continue;
        }
        if (err != EAGAIN)
            return tl_fail(L, "nfqueue read", err);
        if (c.n > 0 || timeout == 0)
            return 1;
        err = tl_wait_fd(&w, fd, POLLIN);
        if (err == ETIMEDOUT)
            return 1;
        if (err == TL_INTERRUPTED)
            return tl_interrupted(L);
        if (err)
            return tl_fail(L, "nfqueue wait", err);
        timeout = 0;
    }
}

static int send_verdict(tl_nfq *q, uint32_t id, uint32_t verdict, int batch)
{
    unsigned char msg[TL_NFQ_MSG_SIZE];
    size_t len = tl_nfq_put_verdict(msg, q->queue, id, verdict, batch);
    return mnl_socket_sendto(q->nl, msg, len) < 0 ? errno : 0;
}

/* q:verdict(id, "accept"|"drop"): true, or nil, msg, errno. */
static int q_verdict(lua_State *L)
{
    tl_nfq *q = checkq(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    luaL_argcheck(L, id >= 0 && id <= 0xffffffff, 2, "packet id 0..2^32-1 expected");
    static const char *const names[] = {"accept", "drop", NULL};
    int which = luaL_checkoption(L, 3, NULL, names);
    int err = send_verdict(q, (uint32_t)id, which == 0 ? NF_ACCEPT : NF_DROP, 0);
    if (err)
        return tl_fail(L, "nfqueue verdict", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* q:inject(bytes): send a copy of an IP packet (v4 or v6, header first) to
 * its destination, marked so the queue's rule lets it pass. */
static int q_inject(lua_State *L)
{
    tl_nfq *q = checkq(L, 1);
    size_t len;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 2, &len);
    struct sockaddr_storage ss;
    socklen_t slen;
    int fd;
    memset(&ss, 0, sizeof ss);
    if (len >= 20 && p[0] >> 4 == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, p + 16, 4);
        slen = sizeof *a;
        fd = q->raw4;
    } else if (len >= 40 && p[0] >> 4 == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, p + 24, 16);
        slen = sizeof *a;
        fd = q->raw6;
        if (fd < 0)
            return tl_fail(L, "nfqueue inject (no IPv6 raw socket)", EAFNOSUPPORT);
    } else {
        return luaL_argerror(L, 2, "an IPv4 or IPv6 packet expected");
    }
    if (sendto(fd, p, len, 0, (struct sockaddr *)&ss, slen) < 0)
        return tl_fail(L, "nfqueue inject", errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* Verdicts the kernel refused so far, and the errno of the last one. */
static int q_refused(lua_State *L)
{
    tl_nfq *q = checkq(L, 1);
    lua_pushinteger(L, q->errors);
    lua_pushinteger(L, q->last_err);
    return 2;
}

static int q_packets(lua_State *L)
{
    lua_pushinteger(L, checkq(L, 1)->packets);
    return 1;
}

static int q_number(lua_State *L)
{
    lua_pushinteger(L, checkq(L, 1)->queue);
    return 1;
}

static int aux_close(lua_State *L, tl_nfq *q)
{
    struct mnl_socket *nl = q->nl;
    int r4 = q->raw4, r6 = q->raw6, err = 0;
    q->nl = NULL;   /* closed before anything else: a second close is harmless */
    q->raw4 = q->raw6 = -1;
    if (nl) {
        if (q->have_id)   /* let every packet still queued go */
            err = send_verdict(&(tl_nfq){.nl = nl, .queue = q->queue}, q->max_id, NF_ACCEPT, 1);
        mnl_socket_close(nl);
    }
    if (r4 >= 0)
        close(r4);
    if (r6 >= 0)
        close(r6);
    if (err)
        return tl_fail(L, "nfqueue close: accepting the queued packets", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int q_close(lua_State *L) { return aux_close(L, luaL_checkudata(L, 1, TL_NFQ_MT)); }

static int q_gc(lua_State *L)
{
    aux_close(L, luaL_checkudata(L, 1, TL_NFQ_MT));
    return 0;
}

static int q_isclosed(lua_State *L)
{
    lua_pushboolean(L, ((tl_nfq *)luaL_checkudata(L, 1, TL_NFQ_MT))->nl == NULL);
    return 1;
}

static int q_tostring(lua_State *L)
{
    tl_nfq *q = luaL_checkudata(L, 1, TL_NFQ_MT);
    if (!q->nl)
        lua_pushliteral(L, "nfqueue (closed)");
    else
        lua_pushfstring(L, "nfqueue %d (%I packets)", (int)q->queue, q->packets);
    return 1;
}

/* core.nfqueue.parse(bytes): the packets of one datagram as read from the
 * socket (the parser on its own, for tests): a list, refused verdicts. */
static int l_parse(lua_State *L)
{
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    tl_nfq *q = lua_newuserdatauv(L, sizeof *q, 0);   /* scratch: no fd, no metatable */
    memset(q, 0, sizeof(*q) - sizeof q->buf);
    void *copy = lua_newuserdatauv(L, len ? len : 1, 0);
    memcpy(copy, bytes, len);
    lua_newtable(L);
    push_ctx c = {L, q, 0};
    tl_nfq_parse(copy, len, push_packet, &c, &q->errors, &q->last_err);
    lua_pushinteger(L, q->errors);
    return 2;
}

static const luaL_Reg methods[] = {
    {"read", q_read}, {"verdict", q_verdict}, {"inject", q_inject}, {"refused", q_refused},
    {"packets", q_packets}, {"number", q_number}, {"close", q_close}, {"isclosed", q_isclosed},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", q_gc}, {"__close", q_gc}, {"__tostring", q_tostring}, {"__index", NULL}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"open", l_open}, {"parse", l_parse}, {NULL, NULL}};

void tl_nfqueue_register(lua_State *L)
{
    luaL_newmetatable(L, TL_NFQ_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    lua_pushinteger(L, TL_NFQ_INJECT_MARK);
    lua_setfield(L, -2, "INJECT_MARK");
    lua_setfield(L, -2, "nfqueue");
}
