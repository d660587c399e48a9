/* The result helpers every backend shares (backend.h). Kept apart from
 * the registry (backend.c) so that a backend's object needs only this one,
 * not the list of every backend: no cycle between backend.o and them. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "backend.h"

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
