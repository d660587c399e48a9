/* make test-asan only. The suite runs in one lua5.4 process with the ASan
 * runtime preloaded and leak detection on; every process it starts inherits
 * the preload (ip, nft, cc1 and the like), and those leak by design or hang
 * in LeakSanitizer's exit check. When TCPLAB_ASAN_CHILD_OPTIONS is set, the
 * module, once loaded, hands those options to the processes started after
 * it; its own process keeps the options it started with (ASan reads them at
 * start-up). Built into sanitizer builds only. */
#if defined(__SANITIZE_ADDRESS__)
#include <stdlib.h>

__attribute__((constructor)) static void child_options(void)
{
    const char *opts = getenv("TCPLAB_ASAN_CHILD_OPTIONS");
    if (opts)
        setenv("ASAN_OPTIONS", opts, 1);
}
#else
typedef int tl_asan_children_unused;  /* ISO C wants something in a file */
#endif
