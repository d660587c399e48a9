/* The registry of backends and the result helpers they share. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "backend.h"

/* BPF first where it loads; netlink, complete, answers everything else. */
const tl_backend *const tl_backends[] = {&tl_backend_bpf, &tl_backend_netlink, NULL};

const tl_backend *tl_backend_find(const char *name)
{
    if (strcmp(name, "auto") == 0)
        return tl_backends[0];
    for (int i = 0; tl_backends[i]; i++)
        if (strcmp(tl_backends[i]->name, name) == 0)
            return tl_backends[i];
    return NULL;
}

void tl_result_clear(tl_result *res)
{
    res->err = 0;
    res->what = NULL;
    res->why = NULL;
    res->restarts = 0;
    res->reopens = 0;
}

void tl_result_set(tl_result *res, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->whatbuf, sizeof res->whatbuf, fmt, ap);
    va_end(ap);
    res->err = err;
    res->what = res->whatbuf;
    res->why = NULL;
}
