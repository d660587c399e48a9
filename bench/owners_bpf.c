/* A measuring prototype, not part of the module (root, clang, bpftool, libbpf):
 * N socket fds in this process, then the time of one owners walk three ways:
 * owners.c's /proc walk (tl_owners_scan), and an iter/task_file program
 * (bench/owners_bpf.bpf.c) read whole, with its one-off load timed apart.
 *   clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Ibuild -c -o build/owners_bpf.bpf.o bench/owners_bpf.bpf.c
 *   bpftool gen skeleton build/owners_bpf.bpf.o name owners_bpf > build/owners_bpf.skel.h
 *   cc -O2 -Ibuild -Icsrc -o build/owners_bpf bench/owners_bpf.c csrc/owners.c -lbpf
 *   build/owners_bpf 10000 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "owners.h"
#include "owners_bpf.skel.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
struct rec { unsigned pid, fd; unsigned long long ino; };

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000, reps = argc > 2 ? atoi(argv[2]) : 21;
    struct rlimit rl = { n + 100, n + 100 };
    setrlimit(RLIMIT_NOFILE, &rl);
    unsigned *ino = malloc(n * sizeof *ino);
    for (int i = 0; i + 1 < n; i += 2) {
        int sv[2];
        struct stat st;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            return perror("socketpair"), 1;
        fstat(sv[0], &st), ino[i] = st.st_ino;
        fstat(sv[1], &st), ino[i + 1] = st.st_ino;
    }
    n &= ~1;
    double t0 = now();
    struct owners_bpf *skel = owners_bpf__open_and_load();
    struct bpf_link *link = skel ? bpf_program__attach_iter(skel->progs.owners, NULL) : NULL;
    if (!link)
        return perror("bpf"), 1;
    double load = now() - t0;
    static char buf[1 << 20];
    double tp[101], tb[101];
    if (reps > 101)
        reps = 101;
    size_t fp = 0, fb = 0;
    for (int k = 0; k < reps; k++) {
        t0 = now();    /* /proc */
        tl_owners *o = tl_owners_new(n);
        for (int i = 0; i < n; i++)
            tl_owners_want(o, ino[i]);
        tl_owners_scan(o, "/proc");
        fp = 0;
        for (int i = 0; i < n; i++)
            fp += tl_owners_first(o, ino[i]) != NULL;
        tl_owners_free(o);
        tp[k] = now() - t0;
        t0 = now();    /* bpf: the records only (no join) */
        int fd = bpf_iter_create(bpf_link__fd(link));
        ssize_t m;
        fb = 0;
        while ((m = read(fd, buf, sizeof buf)) > 0)
            fb += (size_t)m / sizeof(struct rec);
        close(fd);
        tb[k] = now() - t0;
    }
    qsort(tp, reps, sizeof *tp, cmp);
    qsort(tb, reps, sizeof *tb, cmp);
    printf("%d socket fds: /proc walk %.2f ms (min %.2f, %zu matched); iter/task_file %.2f ms "
           "(min %.2f, %zu socket fds on the host); its load %.1f ms once\n",
           n, tp[reps / 2] * 1e3, tp[0] * 1e3, fp, tb[reps / 2] * 1e3, tb[0] * 1e3, fb, load * 1e3);
    bpf_link__destroy(link);
    owners_bpf__destroy(skel);
    return 0;
}
