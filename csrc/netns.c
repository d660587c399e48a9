/* Network namespaces: a fresh one for the process (with lo up), or a
 * netlink socket opened inside another one without moving the process. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <libmnl/libmnl.h>
#include "tcplab.h"

#define SELF_NETNS "/proc/thread-self/ns/net"

static struct mnl_socket *open_bound(int bus, int *err, const char **what)
{
    struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
    if (!nl) {
        *err = errno;
        *what = "netlink socket";
        return NULL;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        *err = errno;
        *what = "netlink bind";
        mnl_socket_close(nl);
        return NULL;
    }
    return nl;
}

struct mnl_socket *tl_diag_open(const char *netns_path, int *err, const char **what)
{
    if (!netns_path)
        return open_bound(NETLINK_SOCK_DIAG, err, what);
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
        *err = errno;
        *what = "open netns";
        return NULL;
    }
    int self = open(SELF_NETNS, O_RDONLY | O_CLOEXEC);
    if (self < 0) {
        *err = errno;
        *what = "open own netns";
        close(target);
        return NULL;
    }
    struct mnl_socket *nl = NULL;
    if (setns(target, CLONE_NEWNET) != 0) {
        *err = errno;
        *what = "setns";
    } else {
        /* A netlink socket stays bound to the namespace it was made in. */
        nl = open_bound(NETLINK_SOCK_DIAG, err, what);
        if (setns(self, CLONE_NEWNET) != 0) {
            /* Going on in the wrong namespace would make every later
             * answer a lie; this cannot happen for our own namespace. */
            fprintf(stderr, "tcplab: cannot return to own network namespace: %s\n", strerror(errno));
            abort();
        }
    }
    close(target);
    close(self);
    return nl;
}

/* Set IFF_UP on `lo` through rtnetlink. */
static int lo_up(int *err, const char **what)
{
    struct mnl_socket *nl = open_bound(NETLINK_ROUTE, err, what);
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
    *what = "rtnetlink lo up";
    if (ifm->ifi_index == 0) {
        *err = ENODEV;
    } else if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        *err = errno;
    } else {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            *err = errno;
        else if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
            *err = errno;
        else
            rc = 0;
    }
    mnl_socket_close(nl);
    return rc;
}

static int l_unshare(lua_State *L)
{
    if (unshare(CLONE_NEWNET) != 0)
        return tl_fail(L, "unshare CLONE_NEWNET", errno);
    int err = 0;
    const char *what = NULL;
    if (lo_up(&err, &what) != 0)
        return tl_fail(L, what, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* The namespace's identity: the inode of /proc/thread-self/ns/net or of a path. */
static int l_id(lua_State *L)
{
    const char *path = luaL_optstring(L, 1, SELF_NETNS);
    struct stat st;
    if (stat(path, &st) != 0)
        return tl_fail(L, path, errno);
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    return 1;
}

static int l_enter(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tl_fail(L, path, errno);
    int r = setns(fd, CLONE_NEWNET), err = errno;
    close(fd);
    if (r != 0)
        return tl_fail(L, "setns", err);
    lua_pushboolean(L, 1);
    return 1;
}

void tl_netns_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"unshare", l_unshare}, {"id", l_id}, {"enter", l_enter}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "netns");
}
