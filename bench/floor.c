/* The floor: one sock_diag dump of every TCP socket, counting states and
 * nothing else; raw netlink, no library. Prints the time it took, from
 * socket() to close(), in nanoseconds, and the counts.
 *
 *   floor [--listen]     --listen asks for LISTEN sockets only */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    unsigned states = 0xffe;
    if (argc > 1 && strcmp(argv[1], "--listen") == 0)
        states = 1u << 10;
    static char buf[65536] __attribute__((aligned(8)));
    long long counts[256] = {0}, total = 0;
    long long t0 = now_ns();
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = TCPDIAG_GETSOCK;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.nlh.nlmsg_seq = 1;
    msg.req.idiag_family = AF_INET;
    msg.req.idiag_states = states;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("sendto");
        return 1;
    }
    for (int done = 0; !done;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("recv");
            return 1;
        }
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                done = 1;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                fprintf(stderr, "netlink error\n");
                return 1;
            }
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            counts[m->idiag_state]++;
            total++;
        }
    }
    close(fd);
    long long t1 = now_ns();
    printf("ns %lld total %lld", t1 - t0, total);
    for (int i = 0; i < 256; i++)
        if (counts[i])
            printf(" %d:%lld", i, counts[i]);
    printf("\n");
    return 0;
}
