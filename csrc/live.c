/* Live counts (core.live): per-state counts of one network namespace kept
 * by BPF programs (bpf/live.bpf.c), so that a read costs a few map reads,
 * not a walk of the namespace. One userdata owns one loaded copy of the
 * object (its programs, links and maps), an fd holding the namespace and
 * an fd of the namespace's /proc/net/sockstat; :close(), __close and __gc
 * all end in live_release. doc/kernel-live.md says what is exact and why.
 *
 * The namespace is entered only by a short-lived thread (to read its
 * cookie, open its sockstat and create the seed walk's iterator fd, which
 * all stay bound to it): the caller's thread never moves.
 *
 * A read (:counts()): the full sockets' counters from the mmapped .bss;
 * one run of live_read (BPF_PROG_TEST_RUN, no attach) sums the listeners'
 * request queues and counts the FIN_WAIT2 time-wait placeholders still
 * armed; sockstat's `tw` (one pread) is every placeholder, so TIME_WAIT is
 * tw minus those. (iter/bpf_map_elem and iter/bpf_sk_storage_map, which
 * would walk the maps too, fail to load with EPERM on this kernel.)
 *
 * Built without TL_HAVE_BPF, core.live returns nil and the reason. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tcplab.h"
#include "bpf.h"

#ifndef TL_BPF_WHY
#define TL_BPF_WHY "built without BPF"
#endif

#define TL_LIVE_MT "tcplab.live"

#ifdef TL_HAVE_BPF
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "backend.h"
#include "bpf/live_rec.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "live_bpf.skel.h"
#pragma GCC diagnostic pop

typedef struct tl_live {
    struct live_bpf *skel;          /* NULL once closed */
    int nsfd;                       /* holds the namespace */
    int sockstat;                   /* its /proc/net/sockstat */
    uint64_t cookie;
    unsigned long ino;
    double load_ms;
} tl_live;

static void live_release(tl_live *l)
{
    if (l->skel)
        live_bpf__destroy(l->skel);
    l->skel = NULL;
    if (l->nsfd >= 0)
        close(l->nsfd);
    if (l->sockstat >= 0)
        close(l->sockstat);
    l->nsfd = l->sockstat = -1;
}

static tl_live *check_live(lua_State *L)
{
    tl_live *l = luaL_checkudata(L, 1, TL_LIVE_MT);
    if (!l->skel)
        luaL_error(L, "attempt to use a closed live handle");
    return l;
}

/* ---- a step inside the namespace, on a thread of its own ---- */
typedef struct ns_job {
    int nsfd;
    int (*fn)(void *arg, tl_result *res);
    void *arg;
    tl_result res;
    int rc;
} ns_job;

static void *ns_thread(void *p)
{
    ns_job *j = p;
    if (setns(j->nsfd, CLONE_NEWNET) != 0) {
        tl_result_set(&j->res, errno, "setns");
        j->rc = -1;
    } else {
        j->rc = j->fn(j->arg, &j->res);
    }
    return NULL;
}

static int in_netns(int nsfd, int (*fn)(void *, tl_result *), void *arg, tl_result *res)
{
    ns_job j = {.nsfd = nsfd, .fn = fn, .arg = arg, .rc = -1};
    tl_result_clear(&j.res);
    pthread_t t;
    int err = pthread_create(&t, NULL, ns_thread, &j);
    if (err) {
        tl_result_set(res, err, "pthread_create");
        return -1;
    }
    pthread_join(t, NULL);
    if (j.rc != 0) {
        *res = j.res;
        if (j.res.what == j.res.whatbuf)   /* the message lived in the job */
            res->what = res->whatbuf;
    }
    return j.rc;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* inside: the namespace's cookie and its sockstat */
static int prepare(void *arg, tl_result *res)
{
    tl_live *l = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tl_result_set(res, errno, "socket");
        return -1;
    }
    socklen_t len = sizeof l->cookie;
    int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &l->cookie, &len);
    int err = errno;
    close(fd);
    if (rc != 0) {
        tl_result_set(res, err, "getsockopt SO_NETNS_COOKIE");
        return -1;
    }
    l->sockstat = open("/proc/thread-self/net/sockstat", O_RDONLY | O_CLOEXEC);
    if (l->sockstat < 0) {
        tl_result_set(res, errno, "open /proc/thread-self/net/sockstat");
        return -1;
    }
    return 0;
}

typedef struct seed_job {
    struct bpf_link *link;
    int fd;
} seed_job;

static int create_seed(void *arg, tl_result *res)
{
    seed_job *s = arg;
    s->fd = bpf_iter_create(bpf_link__fd(s->link));
    if (s->fd < 0) {
        tl_result_set(res, errno, "live: bpf_iter_create (seed walk)");
        return -1;
    }
    return 0;
}

/* Read an iterator to its end (the programs write nothing: they count). */
static int drain(int fd, tl_result *res, const char *what)
{
    char buf[512];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            tl_result_set(res, errno, "%s: read", what);
            return -1;
        }
        if (n == 0)
            return 0;
    }
}

/* The address of tw_timer_handler (a static function) from /proc/kallsyms, or 0. */
static uint64_t kallsyms_addr(const char *name)
{
    FILE *f = fopen("/proc/kallsyms", "re");
    if (!f)
        return 0;
    char line[512];
    uint64_t addr = 0;
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        char *sym = strchr(line, ' ');
        if (!sym || !(sym = strchr(sym + 1, ' ')))
            continue;
        sym++;
        if (strncmp(sym, name, nl) == 0 && (sym[nl] == '\n' || sym[nl] == '\0')) {
            addr = strtoull(line, NULL, 16);
            break;
        }
    }
    fclose(f);
    return addr;
}

static char libbpf_msg[256];
static int live_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    if (getenv("TCPLAB_LIVE_DEBUG"))
        vfprintf(stderr, fmt, ap);
    char line[sizeof libbpf_msg];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    if (line[0])
        memcpy(libbpf_msg, line, sizeof line);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Load, attach, seed. 0, or -1 with res filled (what names the step). */
static int live_open(tl_live *l, tl_result *res)
{
    int cerr = 0;
    const char *cannot = tl_bpf_cannot(&cerr);
    if (cannot) {
        res->err = cerr;
        res->what = "live";
        res->why = cannot;
        return -1;
    }
    if (in_netns(l->nsfd, prepare, l, res) != 0)
        return -1;
    uint64_t handler = kallsyms_addr("tw_timer_handler");
    if (!handler) {
        res->err = ENOENT;
        res->what = "live";
        res->why = "no address for tw_timer_handler in /proc/kallsyms (kptr_restrict?)";
        return -1;
    }
    double t0 = now_ms();
    libbpf_set_print(live_print);
    libbpf_msg[0] = '\0';
    l->skel = live_bpf__open();
    if (!l->skel) {
        tl_result_set(res, errno, "live: open the embedded object");
        return -1;
    }
    l->skel->rodata->target_cookie = l->cookie;
    l->skel->rodata->tw_handler = handler;
    bpf_program__set_autoattach(l->skel->progs.live_seed, false);
    bpf_program__set_autoattach(l->skel->progs.live_read, false);
    int rc = live_bpf__load(l->skel);
    if (rc == -EMFILE || rc == -ENFILE) {   /* out of fds, not refused: say so */
        tl_result_set(res, -rc, "live: load the programs (each handle holds about 18 fds)");
        return -1;
    }
    if (rc) {
        tl_result_set(res, -rc, "live: verifier refused (%s)", libbpf_msg[0] ? libbpf_msg : strerror(-rc));
        return -1;
    }
    rc = live_bpf__attach(l->skel);
    if (rc) {
        tl_result_set(res, -rc, "live: attach the tracepoints");
        return -1;
    }
    /* the seed: once, after the tracepoints are attached */
    seed_job s = {.link = bpf_program__attach_iter(l->skel->progs.live_seed, NULL), .fd = -1};
    if (!s.link) {
        tl_result_set(res, errno, "live: attach the seed walk");
        return -1;
    }
    rc = in_netns(l->nsfd, create_seed, &s, res);
    if (rc == 0) {
        rc = drain(s.fd, res, "live: seed walk");
        close(s.fd);
    }
    bpf_link__destroy(s.link);
    if (rc != 0)
        return -1;
    /* every hashed socket of before has storage now: later ones go without */
    __atomic_store_n(&l->skel->bss->seeded, 1, __ATOMIC_SEQ_CST);
    l->load_ms = now_ms() - t0;
    return 0;
}

/* core.live(path | nil): a handle on the namespace at path (nil: the
 * calling thread's), or nil, why, errno. */
static int l_live(lua_State *L)
{
    const char *path = luaL_optstring(L, 1, NULL);
    tl_live *l = lua_newuserdatauv(L, sizeof *l, 0);   /* closed, before any resource */
    memset(l, 0, sizeof *l);
    l->nsfd = l->sockstat = -1;
    luaL_setmetatable(L, TL_LIVE_MT);
    tl_result res;
    tl_result_clear(&res);
    l->nsfd = tl_netns_open(path ? path : "/proc/thread-self/ns/net", &res);
    if (l->nsfd < 0)
        return tl_fail_why(L, res.what, res.why, res.err);
    struct stat st;
    if (fstat(l->nsfd, &st) == 0)
        l->ino = (unsigned long)st.st_ino;
    if (live_open(l, &res) != 0) {
        int err = res.err;
        lua_pushfstring(L, "%s: %s", res.what, res.why ? res.why : strerror(err));
        live_release(l);
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_pushinteger(L, err);
        return 3;
    }
    return 1;
}

/* The tw count of sockstat's "TCP:" line, or -1. */
static long read_tw(int fd)
{
    char buf[1024];
    ssize_t n;
    do
        n = pread(fd, buf, sizeof buf - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    return tl_sockstat_field(buf, (size_t)n, "TCP:", "tw");
}

/* h:counts(): { ESTABLISHED = n, ... } all eleven states, or nil, why, errno. */
static int l_live_counts(lua_State *L)
{
    tl_live *l = check_live(L);
    tl_result res;
    tl_result_clear(&res);
    LIBBPF_OPTS(bpf_test_run_opts, run);
    if (bpf_prog_test_run_opts(bpf_program__fd(l->skel->progs.live_read), &run) != 0)
        return tl_fail(L, "live: run the read program", errno);
    long tw = read_tw(l->sockstat);
    if (tw < 0)
        return tl_fail_why(L, "live: sockstat", "no tw count", EPROTO);
    int64_t n[TL_LIVE_NSTATES];
    for (int i = 0; i < TL_LIVE_NSTATES; i++)
        n[i] = __atomic_load_n(&l->skel->bss->counts[i], __ATOMIC_RELAXED);
    int64_t fw2 = (int64_t)l->skel->bss->fw2;
    if (fw2 > tw)   /* a placeholder freed between the walk and the read */
        fw2 = tw;
    n[3] += (int64_t)l->skel->bss->reqs;
    n[5] += fw2;
    n[6] = tw - fw2;
    lua_createtable(L, 0, 11);
    for (int i = 1; i <= 11; i++) {
        lua_pushinteger(L, n[i] > 0 ? n[i] : 0);
        lua_setfield(L, -2, tl_state_names[i]);
    }
    return 1;
}

/* h:info(): { netns = inode, cookie = n, load_ms = n, misses = n, rescued = n } */
static int l_live_info(lua_State *L)
{
    tl_live *l = check_live(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)l->ino);
    lua_setfield(L, -2, "netns");
    lua_pushinteger(L, (lua_Integer)l->cookie);
    lua_setfield(L, -2, "cookie");
    lua_pushnumber(L, l->load_ms);
    lua_setfield(L, -2, "load_ms");
    lua_pushinteger(L, (lua_Integer)l->skel->bss->misses);
    lua_setfield(L, -2, "misses");
    lua_pushinteger(L, (lua_Integer)l->skel->bss->rescued);
    lua_setfield(L, -2, "rescued");
    return 1;
}

static int l_live_close(lua_State *L)
{
    tl_live *l = luaL_checkudata(L, 1, TL_LIVE_MT);
    live_release(l);
    return 0;
}

static int l_live_tostring(lua_State *L)
{
    tl_live *l = luaL_checkudata(L, 1, TL_LIVE_MT);
    if (!l->skel)
        lua_pushliteral(L, "live (closed)");
    else
        lua_pushfstring(L, "live netns %I (%p)", (lua_Integer)l->ino, (void *)l);
    return 1;
}

/* core._bpf_fds(): how many of this process's fds are BPF objects
 * (programs, maps, links). Test only: specs compare it around a handle. */
static int l_bpf_fds(lua_State *L)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return tl_fail(L, "opendir /proc/self/fd", errno);
    int self = dirfd(d);
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (e->d_name[0] == '.' || *end != '\0' || fd == self)
            continue;
        char target[64];
        ssize_t len = readlinkat(self, e->d_name, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strncmp(target, "anon_inode:bpf", 14) == 0;
        }
    }
    closedir(d);
    lua_pushinteger(L, n);
    return 1;
}

void tl_live_register(lua_State *L)
{
    static const luaL_Reg methods[] = {{"counts", l_live_counts}, {"info", l_live_info},
                                       {"close", l_live_close}, {NULL, NULL}};
    static const luaL_Reg mt[] = {{"__gc", l_live_close}, {"__close", l_live_close},
                                  {"__tostring", l_live_tostring}, {NULL, NULL}};
    luaL_newmetatable(L, TL_LIVE_MT);
    luaL_setfuncs(L, mt, 0);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, "live_methods");   /* core.live_methods: for the Lua layer */
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"live", l_live}, {"_bpf_fds", l_bpf_fds}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}

#else  /* !TL_HAVE_BPF */

static int l_live(lua_State *L)
{
    return tl_fail_why(L, "live", TL_BPF_WHY, ENOTSUP);
}

void tl_live_register(lua_State *L)
{
    static const luaL_Reg fns[] = {{"live", l_live}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
#endif
