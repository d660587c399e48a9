/* Namespace plumbing without Lua, for backends and for netns.c: open and
 * check a namespace path, run a step inside another namespace and come
 * back (a netlink socket or an iterator fd stays bound to the namespace it
 * was made in), bring lo up in a fresh one.
 *
 * Every path is opened O_NONBLOCK (a FIFO given by mistake cannot hang us)
 * and checked with NS_GET_NSTYPE before use; every error names the path. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <libmnl/libmnl.h>
#include "backend.h"

#define SELF_NETNS "/proc/thread-self/ns/net"

struct mnl_socket *tl_netlink_open(int bus, tl_result *res)
{
    struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
    if (!nl) {
        res->err = errno;
        res->what = "netlink socket";
        return NULL;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        res->err = errno;
        res->what = "netlink bind";
        mnl_socket_close(nl);
        return NULL;
    }
    return nl;
}

int tl_netns_open(const char *path, tl_result *res)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        tl_result_set(res, errno, "open %s", path);
        return -1;
    }
    if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
        close(fd);
        tl_result_set(res, EINVAL, "%s", path);
        res->why = "not a network namespace";
        return -1;
    }
    return fd;
}

/* setns into fd, or die: going on in the wrong namespace would make every
 * later answer a lie, and returning to our own cannot fail. */
void tl_netns_return(int self)
{
    if (setns(self, CLONE_NEWNET) != 0) {
        fprintf(stderr, "tcplab: cannot return to own network namespace: %s\n", strerror(errno));
        abort();
    }
}

int tl_netns_run(int nsfd, const char *path, int (*fn)(void *arg, tl_result *res), void *arg,
                 tl_result *res)
{
    int self = tl_netns_open(SELF_NETNS, res);
    if (self < 0)
        return -1;
    int rc = -1;
    if (setns(nsfd, CLONE_NEWNET) != 0) {
        tl_result_set(res, errno, "setns %s", path);
    } else {
        rc = fn(arg, res);
        tl_netns_return(self);
    }
    close(self);
    return rc;
}

int tl_netns_fresh(tl_result *res)
{
    int self = tl_netns_open(SELF_NETNS, res);
    if (self < 0)
        return -1;
    int fd = -1;
    if (unshare(CLONE_NEWNET) != 0) {
        tl_result_set(res, errno, "unshare CLONE_NEWNET");
        close(self);
        return -1;
    }
    /* from here on this thread is in the new namespace: every path goes back */
    if (tl_netns_lo_up(res) == 0)
        fd = tl_netns_open(SELF_NETNS, res);
    tl_netns_return(self);
    close(self);
    return fd;
}

int tl_netns_lo_up(tl_result *res)
{
    struct mnl_socket *nl = tl_netlink_open(NETLINK_ROUTE, res);
    if (!nl)
        return -1;
    _Alignas(struct nlmsghdr) char buf[8192];  /* a request and its ACK */
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = (uint32_t)time(NULL);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = (int)if_nametoindex("lo");
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    int rc = -1;
    res->what = "rtnetlink lo up";
    if (ifm->ifi_index == 0) {
        res->err = ENODEV;
    } else if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        res->err = errno;
    } else {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            res->err = errno;
        else if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
            res->err = errno;
        else
            rc = 0;
    }
    mnl_socket_close(nl);
    return rc;
}
