/* The TCP sockets of a namespace as /proc/net/sockstat and sockstat6 count
 * them (per namespace: "TCP: inuse N orphan N tw N alloc N mem N" and
 * "TCP6: inuse N"), for the BPF backend's choice of walk. No Lua. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "bpf.h"

/* The number after `key ` in the line that starts with `line`, or -1. */
static long field(const char *text, size_t n, const char *line, const char *key)
{
    size_t ll = strlen(line), kl = strlen(key);
    for (size_t at = 0; at < n;) {
        const char *start = text + at;
        const char *nl = memchr(start, '\n', n - at);
        size_t len = nl ? (size_t)(nl - start) : n - at;
        if (len > ll && memcmp(start, line, ll) == 0) {
            for (size_t i = ll; i + kl + 1 < len; i++) {
                if (start[i] == ' ' && memcmp(start + i + 1, key, kl) == 0 && i + 1 + kl < len &&
                    start[i + 1 + kl] == ' ') {
                    long v = 0;
                    size_t j = i + 2 + kl;
                    if (j >= len || start[j] < '0' || start[j] > '9')
                        return -1;
                    for (; j < len && start[j] >= '0' && start[j] <= '9'; j++) {
                        if (v > (1L << 40))
                            return -1;
                        v = v * 10 + (start[j] - '0');
                    }
                    return v;
                }
            }
            return -1;
        }
        at += len + 1;
    }
    return -1;
}

long tl_sockstat_tcp(const char *v4, size_t n4, const char *v6, size_t n6)
{
    long inuse = field(v4, n4, "TCP:", "inuse");
    long tw = field(v4, n4, "TCP:", "tw");
    long inuse6 = v6 ? field(v6, n6, "TCP6:", "inuse") : 0;
    if (inuse < 0 || tw < 0 || inuse6 < 0)
        return -1;
    return inuse + tw + inuse6;
}

long tl_sockstat_field(const char *text, size_t n, const char *line, const char *key)
{
    return field(text, n, line, key);
}
