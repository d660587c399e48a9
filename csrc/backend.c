/* The registry of backends (the result helpers they share: result.c). */
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
