/* The capture userdata: one AF_PACKET fd, one close path.
 *
 * core.capture.open(port [, {interface = "lo", snaplen = 512}]) reads the
 * TCP segments to or from `port` on an interface of the current network
 * namespace (root: CAP_NET_RAW): "lo" by default, any Ethernet or loopback
 * interface by name, or "any" (every such interface). A classic BPF filter
 * in the kernel keeps TCP over IPv4 and IPv6 with that source or
 * destination port, cut to the first `snaplen` bytes of the frame; on a
 * loopback interface each packet is seen twice, as OUTGOING and again as
 * HOST, and only the OUTGOING copy is kept: one segment per segment on the
 * wire. The length before the cut comes from PACKET_AUXDATA (tp_len).
 *
 * Time: the kernel stamps each packet (SO_TIMESTAMPNS) on CLOCK_REALTIME;
 * the offset realtime -> monotonic is measured once at open and added, so
 * `t` is on the clock of tcplab.now() and the tracepoint. The kernel turns
 * packet stamping on in deferred work (net_enable_timestamp): until that has
 * run, packets carry no stamp and recvmsg stamps them when read, seconds
 * late. open() waits (up to 0.2 s) until a UDP datagram it sends itself on
 * lo comes back stamped before it was read. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include "tcplab.h"
#include "capture.h"

#define TL_CAPTURE_MT "tcplab.capture"
#define SNAP 512            /* default snaplen: headers only */
#define SNAP_MIN 128        /* Ethernet + IPv6 + TCP with options fit */
#define SNAP_MAX 262144     /* tcpdump's default */

typedef struct tl_capture {
    int fd;          /* -1 once closed */
    int port;
    int ifindex;     /* 0: every interface ("any") */
    double offset;   /* monotonic - realtime, seconds */
    lua_Integer drops;       /* frames the kernel dropped (receive buffer full) */
    lua_Integer undecoded;  /* frames that did not parse as TCP */
    size_t snaplen;
    char ifname[IF_NAMESIZE];
    unsigned char buf[];    /* snaplen bytes: one frame */
} tl_capture;

static tl_capture *checkcap(lua_State *L, int arg)
{
    tl_capture *c = luaL_checkudata(L, arg, TL_CAPTURE_MT);
    if (c->fd < 0)
        luaL_error(L, "attempt to use a closed capture");
    return c;
}

static double ts_sec(const struct timespec *ts) { return (double)ts->tv_sec + ts->tv_nsec / 1e9; }

/* monotonic - realtime, read with realtime between two monotonic reads. */
static double clock_offset(void)
{
    struct timespec m0, r, m1;
    clock_gettime(CLOCK_MONOTONIC, &m0);
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &m1);
    return (ts_sec(&m0) + ts_sec(&m1)) / 2 - ts_sec(&r);
}

/* Wait until the kernel stamps packets as they pass (see the top). */
static void await_stamping(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        goto out;
    for (int i = 0; i < 100; i++) {
        char byte = 0, ctl[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = {&byte, 1};
        struct msghdr msg;
        struct timespec now, ts = {0, 0};
        if (sendto(fd, &byte, 1, 0, (struct sockaddr *)&a, sizeof a) != 1)
            break;
        nanosleep(&(struct timespec){0, 2000000}, NULL);
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl;
        msg.msg_controllen = sizeof ctl;
        if (recvmsg(fd, &msg, MSG_DONTWAIT) != 1)
            break;
        clock_gettime(CLOCK_REALTIME, &now);
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS)
                memcpy(&ts, CMSG_DATA(cm), sizeof ts);
        if (ts_sec(&now) - ts_sec(&ts) > 0.001)  /* stamped when sent, not when read */
            break;
    }
out:
    if (fd >= 0)
        close(fd);
}

/* TCP, sport or dport == port, IPv4 (not a later fragment) or IPv6 (TCP
 * as the first next header), behind lo's 14-byte Ethernet header. First,
 * from the kernel's ancillary fields: only Ethernet and loopback links, and
 * on a loopback link only the OUTGOING copy -- the HOST copy never takes
 * room in the receive buffer, so a drop counted is a segment missed. */
static int attach_filter(int fd, int port, unsigned snaplen)
{
    struct sock_filter code[] = {
        /* p0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)(SKF_AD_OFF + SKF_AD_HATYPE)),
        /* p1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARPHRD_LOOPBACK, 1, 0),
        /* p2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARPHRD_ETHER, 2, 21),
        /* p3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
        /* p4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 0, 19),
        /* 0 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 10, 0),
        /* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 16),
        /* 3 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 14),
        /* 5 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 12, 0),
        /* 7 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),
        /* 8 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14),
        /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)port, 8, 0),
        /* 10 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 16),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)port, 6, 7),
        /* 12 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),
        /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 5),
        /* 14 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 54),
        /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)port, 2, 0),
        /* 16 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 56),
        /* 17 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)port, 0, 1),
        /* 18 */ BPF_STMT(BPF_RET | BPF_K, snaplen),
        /* 19 */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

/* The link type of interface `name` (ARPHRD_*), or -1 with errno. */
static int link_type(const char *name)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, name, strlen(name) + 1);
    int r = ioctl(fd, SIOCGIFHWADDR, &ifr);
    int err = errno;
    close(fd);
    errno = err;
    return r != 0 ? -1 : ifr.ifr_hwaddr.sa_family;
}

/* The filter's offsets assume a 14-byte Ethernet header: loopback and
 * Ethernet (veth, bridges, NICs) have one. */
static int framed(int hatype) { return hatype == ARPHRD_ETHER || hatype == ARPHRD_LOOPBACK; }

/* core.capture.open(port [, opts]): a capture, or nil, msg, errno.
 * opts.interface: "lo" (default), a name, or "any"; opts.snaplen: bytes of
 * each frame kept, SNAP_MIN..SNAP_MAX (default SNAP); opts.buffer_kb: the
 * receive buffer (SO_RCVBUF, default 4 MiB): frames that find it full are
 * dropped by the kernel and counted (cap:drops()). */
static int l_open(lua_State *L)
{
    int port = tl_check_port(L, 1);
    luaL_argcheck(L, port > 0, 1, "port 1..65535 expected");
    const char *ifname = "lo";
    lua_Integer snaplen = SNAP;
    int rcvbuf = 4 << 20;   /* room for a scenario's segments between reads */
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "interface") != LUA_TNIL) {
            size_t n;
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 2, "interface: a name string expected (\"lo\", \"eth0\", \"any\")");
            ifname = lua_tolstring(L, -1, &n);
            if (n == 0 || n >= IF_NAMESIZE || strlen(ifname) != n || strchr(ifname, '/'))
                luaL_argerror(L, 2, lua_pushfstring(L, "interface: a name of 1..%d bytes expected, got '%s'",
                                                    IF_NAMESIZE - 1, ifname));
        }
        if (lua_getfield(L, 2, "buffer_kb") != LUA_TNIL) {
            int isint;
            lua_Integer kb = lua_tointegerx(L, -1, &isint);
            if (!isint || kb < 1 || kb > 1 << 20)
                luaL_argerror(L, 2, "buffer_kb: an integer 1..1048576 (KiB) expected");
            rcvbuf = (int)(kb * 1024);
        }
        if (lua_getfield(L, 2, "snaplen") != LUA_TNIL) {
            int isint;
            snaplen = lua_tointegerx(L, -1, &isint);
            if (!isint || snaplen < SNAP_MIN || snaplen > SNAP_MAX)
                luaL_argerror(L, 2, lua_pushfstring(L, "snaplen: an integer %d..%d expected", SNAP_MIN, SNAP_MAX));
        }
    }
    int any = strcmp(ifname, "any") == 0;
    tl_capture *c = lua_newuserdatauv(L, sizeof *c + (size_t)snaplen, 0);
    c->fd = -1;
    c->port = port;
    c->undecoded = 0;
    c->drops = 0;
    c->snaplen = (size_t)snaplen;
    memcpy(c->ifname, ifname, strlen(ifname) + 1);
    luaL_setmetatable(L, TL_CAPTURE_MT);
    c->ifindex = any ? 0 : (int)if_nametoindex(ifname);
    if (!any && c->ifindex == 0) {
        int err = errno;
        lua_pushfstring(L, "capture: no interface '%s' in this network namespace", ifname);
        return tl_fail(L, lua_tostring(L, -1), err == ENXIO ? ENODEV : err);
    }
    if (!any) {
        int hatype = link_type(ifname);
        if (hatype < 0)
            return tl_fail(L, "capture SIOCGIFHWADDR", errno);
        if (!framed(hatype)) {
            lua_pushfstring(L, "capture: interface '%s' has link type %d, not Ethernet or loopback (only those "
                               "are read)", ifname, hatype);
            return tl_fail(L, lua_tostring(L, -1), EOPNOTSUPP);
        }
    }
    /* protocol 0: the socket receives nothing until bind, so no packet
     * arrives before the filter is in place */
    c->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return tl_fail(L, "capture socket", errno);
    int one = 1;
    /* root may exceed rmem_max; the kernel doubles it and keeps a floor */
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0)
        return tl_fail(L, "capture SO_TIMESTAMPNS", errno);
    if (setsockopt(c->fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0)
        return tl_fail(L, "capture PACKET_AUXDATA", errno);
    if (attach_filter(c->fd, port, (unsigned)snaplen) != 0)
        return tl_fail(L, "capture SO_ATTACH_FILTER", errno);
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = c->ifindex;
    if (bind(c->fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        int err = errno;
        lua_pushfstring(L, "capture bind %s", ifname);
        return tl_fail(L, lua_tostring(L, -1), err);
    }
    await_stamping();
    c->offset = clock_offset();
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

/* { t, family, src, sport, dst, dport, flags = "SA", seq, ack, win, len,
 *   options = { mss, wscale, sack_ok, ts = { val, ecr } } } */
static void push_seg(lua_State *L, const tl_seg *s, double t)
{
    char flags[9];
    lua_createtable(L, 0, 12);
    lua_pushnumber(L, t);
    lua_setfield(L, -2, "t");
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
    lua_createtable(L, 0, 4);
    if (s->mss >= 0)
        set_int(L, "mss", s->mss);
    if (s->wscale >= 0)
        set_int(L, "wscale", s->wscale);
    if (s->sack_ok) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "sack_ok");
    }
    if (s->has_ts) {
        lua_createtable(L, 0, 2);
        set_int(L, "val", s->tsval);
        set_int(L, "ecr", s->tsecr);
        lua_setfield(L, -2, "ts");
    }
    lua_setfield(L, -2, "options");
}

/* One frame as read: when it was stamped, its length before the cut. */
typedef struct frame_meta {
    double t;            /* monotonic seconds */
    int64_t wall_ns;     /* realtime nanoseconds (the kernel's stamp) */
    size_t caplen, len;  /* bytes kept, bytes on the wire */
    int ifindex;
} frame_meta;

/* Receive one frame: 1 with *seg and *m filled, 0 for a frame to skip,
 * -1 when none is waiting (errno set). */
static int recv_one(tl_capture *c, tl_seg *seg, frame_meta *m)
{
    char ctl[CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    struct sockaddr_ll from;
    struct iovec iov = {c->buf, c->snaplen};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof ctl;
    ssize_t n = recvmsg(c->fd, &msg, 0);
    if (n < 0)
        return -1;
    /* the filter keeps Ethernet and loopback links only, and on loopback
     * the OUTGOING copy only; here: another host's frame (an interface some
     * other program made promiscuous) */
    if (from.sll_pkttype != PACKET_OUTGOING && from.sll_pkttype != PACKET_HOST)
        return 0;
    m->caplen = (size_t)n < c->snaplen ? (size_t)n : c->snaplen;
    m->len = m->caplen;
    m->ifindex = from.sll_ifindex;
    if (tl_capture_parse_frame(c->buf, m->caplen, seg) != 0) {
        c->undecoded++;
        return 0;
    }
    struct timespec real;
    clock_gettime(CLOCK_REALTIME, &real);
    m->t = tl_now();
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
            memcpy(&real, CMSG_DATA(cm), sizeof real);
            m->t = ts_sec(&real) + c->offset;
        } else if (cm->cmsg_level == SOL_PACKET && cm->cmsg_type == PACKET_AUXDATA) {
            struct tpacket_auxdata aux;
            memcpy(&aux, CMSG_DATA(cm), sizeof aux);
            if (aux.tp_len >= m->caplen)
                m->len = aux.tp_len;
        }
    }
    m->wall_ns = (int64_t)real.tv_sec * 1000000000 + real.tv_nsec;
    return 1;
}

/* cap:read([timeout [, raw [, max]]]): the list of segments waiting now;
 * when none, waits up to timeout seconds (default 0) for the first. raw:
 * each segment also carries its frame's bytes (Ethernet header first, at
 * most snaplen) as `raw`, with `wire_len` (the frame's length before the
 * cut), `wall_ns` (the kernel's stamp, realtime ns) and `ifindex`. max: at
 * most that many segments (the rest stay queued). Ctrl-C: nil,
 * "interrupted", EINTR. */
static int c_read(lua_State *L)
{
    tl_capture *c = checkcap(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, timeout == timeout && timeout >= 0, 2, "timeout must be >= 0");
    int raw = lua_toboolean(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, LUA_MAXINTEGER);
    luaL_argcheck(L, max >= 1, 4, "max: 1 or more segments expected");
    tl_waiter w;
    tl_wait_begin(&w, L, isinf(timeout) ? -1 : (double)timeout);
    lua_newtable(L);
    lua_Integer n = 0;
    for (;;) {
        tl_seg seg;
        frame_meta m;
        if (n >= max)
            return 1;
        int r = recv_one(c, &seg, &m);
        if (r > 0) {
            push_seg(L, &seg, m.t);
            if (raw) {
                lua_pushlstring(L, (const char *)c->buf, m.caplen);
                lua_setfield(L, -2, "raw");
                set_int(L, "wire_len", (lua_Integer)m.len);
                set_int(L, "wall_ns", (lua_Integer)m.wall_ns);
                set_int(L, "ifindex", m.ifindex);
            }
            lua_rawseti(L, -2, ++n);
            continue;
        }
        if (r == 0)
            continue;
        int err = errno;
        if (err == EINTR) {
            if (tl_wait_interrupted(&w))
                return tl_interrupted(L);
            continue;
        }
        if (err != EAGAIN)
            return tl_fail(L, "capture read", err);
        if (n > 0 || timeout == 0)
            return 1;
        err = tl_wait_fd(&w, c->fd, POLLIN);
        if (err == ETIMEDOUT)
            return 1;
        if (err == TL_INTERRUPTED)
            return tl_interrupted(L);
        if (err)
            return tl_fail(L, "capture wait", err);
        timeout = 0;  /* one wait: after it, take what is there */
    }
}

static int aux_close(lua_State *L, tl_capture *c)
{
    int fd = c->fd;
    c->fd = -1;
    if (fd >= 0 && close(fd) != 0 && errno != EINTR)
        return tl_fail(L, "close", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_close(lua_State *L) { return aux_close(L, luaL_checkudata(L, 1, TL_CAPTURE_MT)); }

static int c_gc(lua_State *L)
{
    aux_close(L, luaL_checkudata(L, 1, TL_CAPTURE_MT));
    return 0;
}

static int c_port(lua_State *L)
{
    lua_pushinteger(L, checkcap(L, 1)->port);
    return 1;
}

/* Frames the filter passed that did not decode as TCP (should stay 0). */
/* The interface read ("lo", a name, or "any") and the snaplen. */
static int c_interface(lua_State *L)
{
    tl_capture *c = checkcap(L, 1);
    lua_pushstring(L, c->ifname);
    lua_pushinteger(L, (lua_Integer)c->snaplen);
    return 2;
}

static int c_undecoded(lua_State *L)
{
    lua_pushinteger(L, checkcap(L, 1)->undecoded);
    return 1;
}

/* Frames the kernel dropped before we read them (PACKET_STATISTICS, which
 * resets on each read: summed here). A segment missing from a ladder is
 * then the capture's fault, not the network's. */
static int c_drops(lua_State *L)
{
    tl_capture *c = checkcap(L, 1);
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    if (getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0)
        return tl_fail(L, "capture PACKET_STATISTICS", errno);
    c->drops += st.tp_drops;
    lua_pushinteger(L, c->drops);
    return 1;
}

static int c_isclosed(lua_State *L)
{
    lua_pushboolean(L, ((tl_capture *)luaL_checkudata(L, 1, TL_CAPTURE_MT))->fd < 0);
    return 1;
}

static int c_tostring(lua_State *L)
{
    tl_capture *c = luaL_checkudata(L, 1, TL_CAPTURE_MT);
    if (c->fd < 0)
        lua_pushliteral(L, "capture (closed)");
    else
        lua_pushfstring(L, "capture %s tcp port %d", c->ifname, c->port);
    return 1;
}

/* core.capture.parse(bytes [, "ip"|"frame"]): decode one packet (the
 * decoder on its own, for tests): the segment table or nil. */
static int l_parse(lua_State *L)
{
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    static const char *const kinds[] = {"ip", "frame", NULL};
    int frame = luaL_checkoption(L, 2, "ip", kinds);
    tl_seg seg;
    int r = frame ? tl_capture_parse_frame(bytes, len, &seg) : tl_capture_parse_ip(bytes, len, &seg);
    if (r != 0) {
        lua_pushnil(L);
        return 1;
    }
    push_seg(L, &seg, 0);
    return 1;
}

static const luaL_Reg methods[] = {
    {"read", c_read}, {"close", c_close}, {"port", c_port},
    {"undecoded", c_undecoded}, {"drops", c_drops}, {"interface", c_interface},
    {"isclosed", c_isclosed}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", c_gc}, {"__close", c_gc}, {"__tostring", c_tostring},
    {"__index", NULL}, {NULL, NULL}};

static const luaL_Reg functions[] = {{"open", l_open}, {"parse", l_parse}, {NULL, NULL}};

void tl_capture_register(lua_State *L)
{
    luaL_newmetatable(L, TL_CAPTURE_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    lua_setfield(L, -2, "capture");
}
