/* core.errno: errno values by name, from this system's <errno.h>, so that
 * scripts compare against ECONNREFUSED instead of 111. */
#include <errno.h>
#include "tcplab.h"

#define E(name) {#name, name}
static const struct {
    const char *name;
    int value;
} errnos[] = {
    E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(EBADF), E(EAGAIN), E(EWOULDBLOCK),
    E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY), E(EEXIST), E(ENODEV), E(EINVAL), E(ENFILE),
    E(EMFILE), E(ENOSPC), E(EPIPE), E(ERANGE), E(ENOSYS), E(EPROTO), E(ENOTSOCK),
    E(EDESTADDRREQ), E(EMSGSIZE), E(EPROTOTYPE), E(ENOPROTOOPT), E(EPROTONOSUPPORT),
    E(EOPNOTSUPP), E(EAFNOSUPPORT), E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETDOWN),
    E(ENETUNREACH), E(ENETRESET), E(ECONNABORTED), E(ECONNRESET), E(ENOBUFS), E(EISCONN),
    E(ENOTCONN), E(ESHUTDOWN), E(ETIMEDOUT), E(ECONNREFUSED), E(EHOSTDOWN), E(EHOSTUNREACH),
    E(EALREADY), E(EINPROGRESS), E(ENOTSUP),
};

void tl_errno_register(lua_State *L)
{
    int n = (int)(sizeof errnos / sizeof errnos[0]);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, errnos[i].value);
        lua_setfield(L, -2, errnos[i].name);
    }
    lua_setfield(L, -2, "errno");
}
