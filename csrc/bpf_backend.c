/* The BPF iterator backend ("bpf"): an iter/tcp program (bpf/iter_tcp.bpf.c)
 * walks the namespace's TCP hash tables and writes fixed-size records, or
 * only a tally per state, that one read loop hands to bpf_parse.c.
 *
 * The program is loaded once per process, on first use, and stays loaded
 * (with its iterator link) until tl_bpf_unload: lbpf.c calls that from the
 * __gc of a sentinel in the Lua registry, so closing the Lua state or
 * unloading the library releases it; process exit releases it anyway, as
 * nothing is pinned. Each dump creates one iterator fd inside the target
 * namespace (the walk covers the namespace the fd was created in) and the
 * state closes it, so an error raised while records are pushed leaks none.
 *
 * Built without TL_HAVE_BPF (no clang, bpftool or libbpf, or the rock),
 * the backend is still registered and says why it cannot answer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "bpf.h"
#include "owners.h"

#ifndef TL_BPF_WHY
#define TL_BPF_WHY "built without BPF"
#endif

/* Filter fields (of the Lua filter table) the program applies. Any other
 * field a filter sets makes "auto" pick another backend. */
static const char *const bpf_fields[] = {"states", "family", "sport", "dport", "netns",
                                         "columns", "backend", "info", NULL};

/* "auto" takes the iterator for an operation only in a namespace with at
 * least min_sockets[op] TCP sockets (measured crossovers, bench/results.md
 * and doc/performance.md, doc/kernel-notes.md). The iterator visits every bucket of the host's
 * established hash whatever the namespace holds (262,144 buckets on the
 * test machine, 2 ms and more on a busy CPU), so small namespaces go to
 * sock_diag. counts: the iterator tallies in the kernel and hands over one
 * record, faster from a few thousand sockets on; snapshot: every socket
 * crosses to user space either way and the iterator was never faster
 * (1k to 100k sockets), so never; counts by key: the program has no keys. */
static long min_sockets[TL_OP_COUNT_] = {
    [TL_OP_SNAPSHOT] = TL_BPF_NEVER,
    [TL_OP_COUNTS] = 3000,
    [TL_OP_COUNTS_BY] = TL_BPF_NEVER,
};

long tl_bpf_min_sockets(int op, long n)
{
    if (op < 0 || op >= TL_OP_COUNT_)
        return -1;
    long before = min_sockets[op];
    if (n >= 0)
        min_sockets[op] = n;
    return before;
}

#ifdef TL_HAVE_BPF
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "bpf/iter_rec.h"
/* The generated skeleton embeds the object as one long string literal. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "iter_tcp.skel.h"
#pragma GCC diagnostic pop

enum { READ_BUF = 1 << 17 };

static struct iter_tcp *skel;
static struct bpf_link *iter_link;
static struct bpf_link *owners_link;   /* attached on the first owners walk */
static int load_failed;            /* the last load failed: its result is kept */
static int load_err;
static char load_why[320];
static double load_ms;
static char libbpf_last[256];      /* libbpf's last message: the verifier's reason */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    char line[sizeof libbpf_last];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    if (line[0])
        memcpy(libbpf_last, line, sizeof line);
    return 0;
}

/* Root, or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN, in our effective set. */
static int may_load(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return geteuid() == 0;
    uint64_t eff = (uint64_t)data[1].effective << 32 | data[0].effective;
    return (eff >> CAP_SYS_ADMIN & 1) || ((eff >> CAP_BPF & 1) && (eff >> CAP_PERFMON & 1));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void give_load_result(tl_result *res)
{
    res->err = load_err;
    res->what = "bpf";
    res->why = load_why;
}

static int fail_load(tl_result *res, int err, const char *why)
{
    load_failed = 1;
    load_err = err;
    snprintf(load_why, sizeof load_why, "%s", why);
    give_load_result(res);
    return -1;
}

void tl_bpf_unload(void)
{
    if (owners_link)
        bpf_link__destroy(owners_link);
    owners_link = NULL;
    if (iter_link)
        bpf_link__destroy(iter_link);
    iter_link = NULL;
    if (skel)
        iter_tcp__destroy(skel);
    skel = NULL;
    load_failed = 0;
    load_ms = 0;
}

/* Why no BPF program can be loaded here (not root, no BTF), or NULL; *err
 * is the errno to report. */
const char *tl_bpf_cannot(int *err)
{
    if (!may_load()) {
        *err = EPERM;
        return "needs root (CAP_BPF)";
    }
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
        *err = ENOENT;
        return "no BTF (/sys/kernel/btf/vmlinux)";
    }
    return NULL;
}

/* Load once; later calls return what the first one found. */
static int load(tl_result *res)
{
    if (skel && iter_link)
        return 0;
    if (load_failed) {
        give_load_result(res);
        return -1;
    }
    int cannot_err = 0;
    const char *cannot = tl_bpf_cannot(&cannot_err);
    if (cannot)
        return fail_load(res, cannot_err, cannot);
    double t0 = now_ms();
    libbpf_set_print(quiet_print);
    libbpf_last[0] = '\0';
    skel = iter_tcp__open();
    if (!skel)
        return fail_load(res, errno, "cannot open the embedded object");
    int rc = iter_tcp__load(skel);
    if (rc) {
        char why[sizeof libbpf_last + 32];
        snprintf(why, sizeof why, "verifier refused (%s)", libbpf_last[0] ? libbpf_last : strerror(-rc));
        iter_tcp__destroy(skel);
        skel = NULL;
        return fail_load(res, -rc, why);
    }
    iter_link = bpf_program__attach_iter(skel->progs.dump_tcp, NULL);
    if (!iter_link) {
        int err = errno;
        iter_tcp__destroy(skel);
        skel = NULL;
        return fail_load(res, err, "cannot attach the iterator");
    }
    load_ms = now_ms() - t0;
    return 0;
}

double tl_bpf_load_ms(void)
{
    return load_ms;
}

int tl_bpf_loaded(void)
{
    return skel != NULL;
}

/* The initial pid namespace: NSpid in /proc/self/status has one number. */
static int in_init_pidns(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 0;
    char line[256];
    int ok = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "NSpid:", 6) == 0) {
            int n = 0;
            for (char *p = strtok(line + 6, " \t\n"); p; p = strtok(NULL, " \t\n"))
                n++;
            ok = n == 1;
            break;
        }
    fclose(f);
    return ok;
}

int tl_bpf_owners(struct tl_owners *o, const char *proc, tl_result *res)
{
    if (!skel && load(res) != 0)
        return -1;
    if (!in_init_pidns()) {
        tl_result_set(res, ENOTSUP, "owners: not the initial pid namespace");
        return -1;
    }
    if (!owners_link) {
        owners_link = bpf_program__attach_iter(skel->progs.dump_owners, NULL);
        if (!owners_link) {
            tl_result_set(res, errno, "owners: cannot attach the iterator");
            return -1;
        }
    }
    int procfd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) {
        tl_result_set(res, errno, "%s", proc);
        return -1;
    }
    int it = bpf_iter_create(bpf_link__fd(owners_link));
    char *buf = it >= 0 ? malloc(READ_BUF) : NULL;
    if (!buf) {
        tl_result_set(res, it < 0 ? errno : ENOMEM, "owners: bpf_iter_create");
        if (it >= 0)
            close(it);
        close(procfd);
        return -1;
    }
    tl_owners_clear(o);
    size_t have = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(it, buf + have, READ_BUF - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            tl_result_set(res, errno, "owners: read");
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        size_t used = 0;
        for (; have - used >= sizeof(struct tl_owner_rec); used += sizeof(struct tl_owner_rec)) {
            struct tl_owner_rec r;
            memcpy(&r, buf + used, sizeof r);
            if (tl_owners_add(o, procfd, (int32_t)r.pid, (int32_t)r.fd, r.inode) != 0) {
                tl_result_set(res, ENOMEM, "owners");
                rc = -1;
                break;
            }
        }
        if (rc)
            break;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    free(buf);
    close(it);
    close(procfd);
    if (rc)
        tl_owners_clear(o);
    return rc;
}

typedef struct bpf_state {
    int nsfd;     /* -1: our own namespace */
    int iter;     /* the walk's fd, -1 between walks */
    unsigned char *buf;
    /* streaming (core.each): this walk's filter, set again before each read
     * (another walk may run between two reads: the program's cfg is one per
     * process); buf[0..have) was read, buf[0..used) handed out */
    struct tl_iter_cfg cfg;
    size_t have, used;
    char path[];
} bpf_state;

static void bpf_close(void *state)
{
    bpf_state *s = state;
    if (!s)
        return;
    if (s->iter >= 0)
        close(s->iter);
    if (s->nsfd >= 0)
        close(s->nsfd);
    free(s->buf);
    free(s);
}

static void *bpf_open(const char *netns, tl_result *res)
{
    if (load(res) != 0)
        return NULL;
    size_t len = netns ? strlen(netns) : 0;
    bpf_state *s = malloc(sizeof *s + len + 1);
    if (!s) {
        tl_result_set(res, ENOMEM, "malloc");
        return NULL;
    }
    s->nsfd = s->iter = -1;
    s->have = s->used = 0;
    memcpy(s->path, netns ? netns : "", len + 1);
    s->buf = malloc(READ_BUF);
    if (!s->buf) {
        bpf_close(s);
        tl_result_set(res, ENOMEM, "malloc");
        return NULL;
    }
    if (netns && (s->nsfd = tl_netns_open(netns, res)) < 0) {
        bpf_close(s);
        return NULL;
    }
    return s;
}

static int bpf_probe(tl_result *res)
{
    return load(res);
}

static int create_iter(void *arg, tl_result *res)
{
    bpf_state *s = arg;
    s->iter = bpf_iter_create(bpf_link__fd(iter_link));
    if (s->iter < 0) {
        tl_result_set(res, errno, "bpf_iter_create");
        s->iter = -1;
        return -1;
    }
    return 0;
}

/* One walk: records to cb, or (tally != NULL) the program's tally. */
static void walk(bpf_state *s, const tl_filter *f, tl_on_record cb, void *ctx, int64_t *tally,
                 tl_result *res)
{
    tl_result_clear(res);
    if (!skel && load(res) != 0)
        return;
    struct tl_iter_cfg cfg = {
        .states = f->states, .family = (uint32_t)f->family, .sport = f->sport,
        .dport = f->dport, .count = tally != NULL,
    };
    skel->bss->cfg = cfg;
    memset(skel->bss->tally, 0, sizeof skel->bss->tally);
    if (s->iter >= 0)
        close(s->iter);
    s->iter = -1;
    int rc = s->nsfd < 0 ? create_iter(s, res) : tl_netns_run(s->nsfd, s->path, create_iter, s, res);
    if (rc != 0)
        return;
    size_t carry = 0;
    int tallied = 0;
    for (;;) {
        ssize_t n = read(s->iter, s->buf + carry, READ_BUF - carry);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)  /* EAGAIN: a million sockets, none written */
                continue;
            tl_result_set(res, errno, "bpf iterator read");
            break;
        }
        if (n == 0) {
            if (carry)
                tl_result_set(res, EPROTO, "bpf iterator: a record cut short");
            else if (tally && !tallied)
                tl_result_set(res, EPROTO, "bpf iterator: no tally at the end of the walk");
            break;
        }
        size_t have = carry + (size_t)n;
        long used = tl_bpf_walk(s->buf, have, cb, ctx, tally, &tallied, res);
        if (used < 0)
            break;
        carry = have - (size_t)used;
        memmove(s->buf, s->buf + used, carry);
    }
    close(s->iter);
    s->iter = -1;
}

static void bpf_dump(void *state, const tl_filter *f, tl_on_record cb, tl_on_restart restart,
                     void *ctx, tl_result *res)
{
    (void)restart;  /* a walk is never started over: no inconsistency to report */
    walk(state, f, cb, ctx, NULL, res);
}

/* Streaming (core.each): the iterator created; bpf_next reads it one
 * buffer at a time. */
static int bpf_start(void *state, const tl_filter *f, tl_result *res)
{
    bpf_state *s = state;
    tl_result_clear(res);
    if (!skel && load(res) != 0)
        return -1;
    struct tl_iter_cfg cfg = {
        .states = f->states, .family = (uint32_t)f->family, .sport = f->sport,
        .dport = f->dport, .count = 0,
    };
    s->cfg = cfg;
    skel->bss->cfg = cfg;
    s->have = s->used = 0;
    if (s->iter >= 0)
        close(s->iter);
    s->iter = -1;
    return s->nsfd < 0 ? create_iter(s, res) : tl_netns_run(s->nsfd, s->path, create_iter, s, res);
}

static int bpf_next(void *state, tl_on_record cb, void *ctx, tl_result *res)
{
    bpf_state *s = state;
    tl_result_clear(res);
    if (s->iter < 0 || !skel) {
        tl_result_set(res, EBADF, "bpf iterator: not started, or the program unloaded");
        return -1;
    }
    /* the records handed out last time are gone now: keep the cut record */
    size_t carry = s->have - s->used;
    memmove(s->buf, s->buf + s->used, carry);
    s->have = carry;
    s->used = 0;
    for (;;) {
        skel->bss->cfg = s->cfg;
        ssize_t n = read(s->iter, s->buf + carry, READ_BUF - carry);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            tl_result_set(res, errno, "bpf iterator read");
            return -1;
        }
        if (n == 0) {
            close(s->iter);
            s->iter = -1;
            if (carry) {
                tl_result_set(res, EPROTO, "bpf iterator: a record cut short");
                return -1;
            }
            return 0;
        }
        s->have = carry + (size_t)n;
        int tallied = 0;
        long used = tl_bpf_walk(s->buf, s->have, cb, ctx, NULL, &tallied, res);
        if (used < 0)
            return -1;
        s->used = (size_t)used;
        return 1;
    }
}

static size_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t have = 0;
    while (have < cap) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    return have;
}

/* The TCP sockets of the calling thread's namespace (sockstat), or -1. */
static int count_here(void *arg, tl_result *res)
{
    (void)res;
    char v4[1024], v6[512];
    size_t n4 = read_small("/proc/thread-self/net/sockstat", v4, sizeof v4);
    size_t n6 = read_small("/proc/thread-self/net/sockstat6", v6, sizeof v6);
    *(long *)arg = n4 ? tl_sockstat_tcp(v4, n4, n6 ? v6 : NULL, n6) : -1;
    return 0;
}

/* Listeners only: sock_diag walks the listening hash alone, the iterator
 * walks every table. Otherwise the operation's crossover (min_sockets). */
static int bpf_declines(int op, const tl_filter *f, const char *netns)
{
    if ((f->states & ~(1u << 10)) == 0)
        return 1;
    long min = tl_bpf_min_sockets(op, -1);
    if (min <= 0)
        return 0;
    if (min == TL_BPF_NEVER)
        return 1;
    long n = -1;
    tl_result res;
    tl_result_clear(&res);
    if (netns) {
        int nsfd = tl_netns_open(netns, &res);
        if (nsfd < 0)
            return 0;   /* bpf's open names the path */
        tl_netns_run(nsfd, netns, count_here, &n, &res);
        close(nsfd);
    } else {
        count_here(&n, &res);
    }
    return n >= 0 && n < min;
}

static void no_record(const tl_sock_rec *rec, void *ctx)
{
    (void)rec;
    (void)ctx;
}

static void bpf_count(void *state, const tl_filter *f, int64_t *by_state, tl_result *res)
{
    walk(state, f, no_record, NULL, by_state, res);
}

const tl_backend tl_backend_bpf = {
    .name = "bpf",
    .caps = TL_CAP_TIMEWAIT | TL_CAP_REQSK | TL_CAP_NETNS_PATH | TL_CAP_PORT_FILTER,
    .probe = bpf_probe,
    .open = bpf_open,
    .dump = bpf_dump,
    .close = bpf_close,
    .inject = NULL,
    .count = bpf_count,
    .fields = bpf_fields,
    .declines = bpf_declines,
    .start = bpf_start,
    .next = bpf_next,
};

#else  /* !TL_HAVE_BPF */

static int bpf_probe(tl_result *res)
{
    res->err = ENOTSUP;
    res->what = "bpf";
    res->why = TL_BPF_WHY;
    return -1;
}

static void *bpf_open(const char *netns, tl_result *res)
{
    (void)netns;
    bpf_probe(res);
    return NULL;
}

static void bpf_dump(void *state, const tl_filter *f, tl_on_record cb, tl_on_restart restart,
                     void *ctx, tl_result *res)
{
    (void)state, (void)f, (void)cb, (void)restart, (void)ctx;
    bpf_probe(res);
}

static void bpf_close(void *state)
{
    (void)state;
}

double tl_bpf_load_ms(void)
{
    return 0;
}

int tl_bpf_owners(struct tl_owners *o, const char *proc, tl_result *res)
{
    (void)o, (void)proc;
    bpf_probe(res);
    return -1;
}

int tl_bpf_loaded(void)
{
    return 0;
}

void tl_bpf_unload(void)
{
}

const tl_backend tl_backend_bpf = {
    .name = "bpf",
    .caps = 0,
    .probe = bpf_probe,
    .open = bpf_open,
    .dump = bpf_dump,
    .close = bpf_close,
    .fields = bpf_fields,
};
#endif
