/* Capture real sock_diag replies for the fuzz seed corpus: in a fresh
 * network namespace, make LISTEN, ESTABLISHED, TIME_WAIT and SYN_RECV-free
 * v4/v6 sockets, dump them (with and without tcp_info, both request kinds)
 * and write every received buffer to DIR/NAME-N.
 *   capture DIR        (root) */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>
#include "../csrc/diag.h"

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int listener(int family, const char *addr)
{
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        s->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &s->sin_addr);
        len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        s->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &s->sin6_addr);
        len = sizeof *s;
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 8))
        die("listener");
    return fd;
}

/* Connect to the listener; close client-first when tw is set. */
static void pair(int lfd, int tw)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    int c = socket(ss.ss_family, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&ss, len))
        die("connect");
    int a = accept(lfd, NULL, NULL);
    if (a < 0)
        die("accept");
    if (write(c, "x", 1) != 1)
        die("write");
    if (tw) {
        char b[4];
        close(c);
        while (read(a, b, sizeof b) > 0)
            ;
        close(a);
    }
}

static void dump(const char *dir, const char *name, const tl_filter *f)
{
    struct mnl_socket *nl = mnl_socket_open(NETLINK_SOCK_DIAG);
    if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
        die("netlink");
    _Alignas(struct nlmsghdr) char req[TL_DIAG_REQ_SIZE];
    size_t len = tl_diag_build(req, f, 4242);
    if (mnl_socket_sendto(nl, req, len) < 0)
        die("send");
    static char buf[65536];
    for (int part = 0;; part++) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            die("recv");
        char path[512];
        snprintf(path, sizeof path, "%s/%s-%d", dir, name, part);
        FILE *out = fopen(path, "wb");
        if (!out || fwrite(buf, 1, (size_t)n, out) != (size_t)n || fclose(out))
            die(path);
        const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
        int done = 0;
        for (int left = (int)n; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left))
            done |= h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR;
        if (done)
            break;
    }
    mnl_socket_close(nl);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: capture DIR\n");
        return 2;
    }
    if (unshare(CLONE_NEWNET) != 0)
        die("unshare");
    if (system("ip link set lo up") != 0)
        die("ip link set lo up");
    int l4 = listener(AF_INET, "127.0.0.1"), l6 = listener(AF_INET6, "::1");
    pair(l4, 0);
    pair(l6, 0);
    pair(l4, 1);
    pair(l6, 1);
    tl_filter all = {.states = 0xffe, .family = AF_UNSPEC, .sport = -1, .dport = -1};
    dump(argv[1], "all", &all);
    all.info = 1;
    dump(argv[1], "all-info", &all);
    tl_filter v6 = {.states = 0xffe, .family = AF_INET6, .sport = -1, .dport = -1, .info = 1};
    dump(argv[1], "v6-info", &v6);
    tl_filter lst = {.states = 1 << 10, .family = AF_UNSPEC, .sport = -1, .dport = -1};
    dump(argv[1], "listen", &lst);
    tl_filter tw = {.states = 1 << 6, .family = AF_INET, .sport = -1, .dport = -1};
    dump(argv[1], "timewait", &tw);
    tl_filter bad = {.states = 0xffe, .family = 99, .sport = -1, .dport = -1};
    dump(argv[1], "error", &bad);  /* an NLMSG_ERROR reply */
    return 0;
}
