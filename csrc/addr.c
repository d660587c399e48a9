/* Address arguments in, address strings out. */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include "tcplab.h"

int tl_family_arg(lua_State *L, int arg)
{
    static const char *const names[] = {"inet", "inet6", NULL};
    static const int families[] = {AF_INET, AF_INET6};
    return families[luaL_checkoption(L, arg, "inet", names)];
}

int tl_check_port(lua_State *L, int arg)
{
    lua_Integer port = luaL_checkinteger(L, arg);
    luaL_argcheck(L, port >= 0 && port <= 65535, arg, "port out of range 0..65535");
    return (int)port;
}

/* Parse "fe80::1%eth0" / "[::1]" / "::ffff:1.2.3.4" / "1.2.3.4" for inet6. */
static int parse6(lua_State *L, int arg, const char *host, struct sockaddr_in6 *sin6)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
    size_t n = strlen(host);
    if (n >= sizeof buf)
        return 0;
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        memcpy(buf, host, n + 1);
    }
    char *pct = strchr(buf, '%');
    if (pct) {
        *pct++ = '\0';
        char *end;
        unsigned long id = strtoul(pct, &end, 10);
        if (*pct && !*end && id <= UINT32_MAX)
            sin6->sin6_scope_id = (uint32_t)id;
        else if (!(sin6->sin6_scope_id = if_nametoindex(pct)))
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown interface in scope id '%s'", pct));
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1)
        return 1;
    struct in_addr v4;
    if (!pct && inet_pton(AF_INET, buf, &v4) == 1) {  /* v4-mapped */
        memset(&sin6->sin6_addr, 0, 10);
        memset((char *)&sin6->sin6_addr + 10, 0xff, 2);
        memcpy((char *)&sin6->sin6_addr + 12, &v4, 4);
        return 1;
    }
    return 0;
}

void tl_check_addr(lua_State *L, int arg, int family, tl_addr *out)
{
    size_t len;
    const char *host = luaL_checklstring(L, arg, &len);
    int port = tl_check_port(L, arg + 1);
    luaL_argcheck(L, strlen(host) == len, arg, "address contains a zero byte");
    int any = len == 0 || strcmp(host, "*") == 0;
    int loopback = strcmp(host, "localhost") == 0;
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof *sin;
        if (any)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (loopback)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            luaL_argerror(L, arg, lua_pushfstring(L, "invalid IPv4 address '%s'", host));
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *sin6;
        if (any)
            sin6->sin6_addr = in6addr_any;
        else if (loopback)
            sin6->sin6_addr = in6addr_loopback;
        else if (!parse6(L, arg, host, sin6))
            luaL_argerror(L, arg, lua_pushfstring(L, "invalid IPv6 address '%s'", host));
    }
}

static int is_v4mapped(const uint8_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, 12) == 0;
}

/* inet_ntop for IPv4 goes through sprintf; this is on the snapshot's hot path. */
static size_t format_v4(const uint8_t *a, char *out)
{
    char *p = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = '.';
    }
    p[-1] = '\0';
    return (size_t)(p - out - 1);
}

size_t tl_format_addr(int family, const void *raw, char *buf, size_t size)
{
    const uint8_t *a = raw;
    if (size < INET6_ADDRSTRLEN)
        return 0;
    if (family == AF_INET)
        return format_v4(a, buf);
    if (is_v4mapped(a))
        return format_v4(a + 12, buf);
    return inet_ntop(AF_INET6, a, buf, (socklen_t)size) ? strlen(buf) : 0;
}

int tl_push_sockaddr(lua_State *L, const struct sockaddr *sa)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        lua_pushlstring(L, buf, tl_format_addr(AF_INET, &sin->sin_addr, buf, sizeof buf));
        lua_pushinteger(L, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        tl_format_addr(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
        char ifname[IF_NAMESIZE];
        if (sin6->sin6_scope_id && if_indextoname(sin6->sin6_scope_id, ifname))
            lua_pushfstring(L, "%s%%%s", buf, ifname);
        else
            lua_pushstring(L, buf);
        lua_pushinteger(L, ntohs(sin6->sin6_port));
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    return 2;
}
