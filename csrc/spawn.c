/* A contained command: core.spawn_contained{ argv = {...}, cgroup_procs = path? }
 *
 * The command runs under an init of our own, the first process of a fresh
 * PID namespace (clone(CLONE_NEWPID)). When that init dies, for whatever
 * reason, the kernel kills every process of the namespace: a daemonizing
 * server, a child forked from a thread, a fork bomb, all go with it. Init:
 *  - dies when this process dies (a lifeline pipe reaches EOF, and
 *    PR_SET_PDEATHSIG), so os.exit or SIGKILL of the caller leaves nothing;
 *  - reaps every orphan of the namespace (they are reparented to it);
 *  - drains the command's stdout and stderr into two rings of TL_RING
 *    bytes in memory shared with this process: the output is never written
 *    to a file, the memory it costs is bounded, and a chatty server is
 *    never blocked on a full pipe;
 *  - records the command's exit status in the same shared memory.
 *
 * The handle owns init: __gc, __close and h:kill() SIGKILL it and reap it
 * (kill first, then wait: waiting never depends on the command's good will).
 * Members are found by their /proc/PID/ns/pid, compared with the namespace
 * held open by the handle (dev+ino of a held fd: never a reused inode). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "tcplab.h"

#define TL_CONTAINED_MT "tcplab.contained"
enum { TL_RING = 64 * 1024, START_TIMEOUT_MS = 10000 };

/* Shared between init (writer) and the caller (reader). */
typedef struct tl_lab_shm {
    uint32_t seq;         /* odd while init writes a ring */
    int32_t cmd_state;    /* 0 running, 1 exited, 2 killed by a signal */
    int32_t cmd_code;
    int32_t cmd_nspid;    /* the command's pid inside the namespace */
    uint64_t total[2];    /* bytes ever written to stdout, stderr */
    char ring[2][TL_RING];
} tl_lab_shm;

typedef struct tl_contained {
    pid_t init;           /* host pid of init; 0 once reaped */
    pid_t command;        /* host pid of the command (it may be gone) */
    int lifeline;         /* write end held here; -1 once closed */
    int pidns;            /* fd of the PID namespace; -1 once closed */
    dev_t ns_dev;
    ino_t ns_ino;
    tl_lab_shm *shm;      /* NULL once unmapped (at __gc) */
} tl_contained;

/* What init or the command's exec reports when it fails to start. */
typedef struct start_report {
    int stage;
    int err;
} start_report;
enum { ST_CGROUP = 1, ST_PIPE, ST_FORK, ST_EXEC, ST_FDS };
static const char *const stage_names[] = {
    "", "join the cgroup", "make the output pipes", "fork the command", "exec the command", "set up fds"};

/* ---- init (the child): only async-signal-safe calls from here ---- */

static void report_and_exit(int fd, int stage, int err)
{
    start_report r = {stage, err};
    ssize_t w = write(fd, &r, sizeof r);
    (void)w;
    _exit(127);
}

static void ring_put(tl_lab_shm *shm, int which, const char *buf, size_t n)
{
    __atomic_add_fetch(&shm->seq, 1, __ATOMIC_ACQ_REL);
    if (n > TL_RING) {
        buf += n - TL_RING;
        shm->total[which] += n - TL_RING;
        n = TL_RING;
    }
    size_t at = (size_t)(shm->total[which] % TL_RING);
    size_t first = TL_RING - at < n ? TL_RING - at : n;
    memcpy(shm->ring[which] + at, buf, first);
    memcpy(shm->ring[which], buf + first, n - first);
    shm->total[which] += n;
    __atomic_add_fetch(&shm->seq, 1, __ATOMIC_ACQ_REL);
}

/* Close every fd but those listed (sorted ascending). */
static void close_others(const int *keep, int n)
{
    unsigned int from = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned int)keep[i] > from)
            syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
        from = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static void init_main(tl_lab_shm *shm, int life, int rep, int go, char *const *argv, const char *cgroup_procs,
                      const sigset_t *caller_mask)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "tcplab-init");
    /* our fds above 2 first, so that 0..2 can become /dev/null */
    life = fcntl(life, F_DUPFD_CLOEXEC, 3);
    rep = fcntl(rep, F_DUPFD_CLOEXEC, 3);
    go = fcntl(go, F_DUPFD_CLOEXEC, 3);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0 && devnull < 3)
        devnull = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
    if (life < 0 || rep < 0 || go < 0 || devnull < 0)
        _exit(127);
    if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
        report_and_exit(rep, ST_FDS, errno);
    /* fds of the caller that were not close-on-exec stay out of the lab */
    int keep[4] = {life, rep, go, devnull};
    qsort(keep, 4, sizeof keep[0], cmp_int);
    int keep_all[7] = {0, 1, 2, keep[0], keep[1], keep[2], keep[3]};
    close_others(keep_all, 7);
    if (cgroup_procs) {
        int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0\n", 2) != 2)
            report_and_exit(rep, ST_CGROUP, errno);
        close(fd);
    }
    int out[2], err[2];
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
        report_and_exit(rep, ST_PIPE, errno);
    pid_t cmd = fork();
    if (cmd < 0)
        report_and_exit(rep, ST_FORK, errno);
    if (cmd == 0) {
        /* wait until the caller has seen our host pid: one byte, or EOF
         * when the caller is gone */
        char b;
        if (read(go, &b, 1) != 1)
            _exit(127);
        if (dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            report_and_exit(rep, ST_FDS, errno);
        /* what the caller ignores or blocks is not the command's business */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, 0);
        sigprocmask(SIG_SETMASK, caller_mask, NULL);
        execvp(argv[0], argv);
        report_and_exit(rep, ST_EXEC, errno);  /* rep is close-on-exec: EOF means exec worked */
    }
    shm->cmd_nspid = (int32_t)cmd;
    close(go);
    close(out[1]);
    close(err[1]);
    close(rep);
    static char buf[65536];
    int fds[2] = {out[0], err[0]};
    for (;;) {
        struct pollfd p[4] = {
            {.fd = life, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
            {.fd = fds[0], .events = POLLIN},
            {.fd = fds[1], .events = POLLIN},
        };
        int r = poll(p, 4, -1);
        if (r < 0 && errno != EINTR)
            _exit(1);
        if (r <= 0)
            continue;
        if (p[0].revents)   /* the caller is gone (or closed the lab): end everything */
            _exit(0);
        for (int i = 0; i < 2; i++) {
            if (!p[2 + i].revents)
                continue;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n > 0) {
                ring_put(shm, i, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(fds[i]);
                fds[i] = -1;   /* poll ignores negative fds */
            }
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
            int st;
            pid_t w;
            while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
                if (w == cmd) {
                    shm->cmd_code = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
                    __atomic_store_n(&shm->cmd_state, WIFEXITED(st) ? 1 : 2, __ATOMIC_RELEASE);
                }
            }
        }
    }
}

/* ---- the caller's side ---- */

static tl_contained *check_contained(lua_State *L)
{
    return (tl_contained *)luaL_checkudata(L, 1, TL_CONTAINED_MT);
}

/* SIGKILL init and reap it: the kernel kills the whole namespace first.
 * Harmless twice. */
static void contained_kill(tl_contained *c)
{
    if (c->init > 0) {
        kill(c->init, SIGKILL);
        while (waitpid(c->init, NULL, 0) < 0 && errno == EINTR) {
        }
        c->init = 0;
    }
    if (c->lifeline >= 0) {
        close(c->lifeline);
        c->lifeline = -1;
    }
    if (c->pidns >= 0) {
        close(c->pidns);
        c->pidns = -1;
    }
}

static pid_t do_clone(void)
{
    /* fork() with a new PID namespace for the child only: unshare(CLONE_NEWPID)
     * would change where every later child of this process goes. */
    return (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL, 0UL);
}

static int l_spawn_contained(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "argv");
    if (!lua_istable(L, -1))
        return tl_arg_error(L, 1, "spawn_contained", "argv: list of strings expected");
    int argv_idx = lua_gettop(L);
    lua_Integer argc = luaL_len(L, argv_idx);
    if (argc < 1 || argc > 4096)
        return tl_arg_error(L, 1, "spawn_contained", "argv: 1..4096 strings expected");
    char **argv = (char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
    for (lua_Integer i = 1; i <= argc; i++) {
        if (lua_rawgeti(L, argv_idx, i) != LUA_TSTRING)
            return tl_arg_error(L, 1, "spawn_contained", "argv[%d]: string expected", (int)i);
        const char *a = lua_tostring(L, -1);
        memcpy(&argv[i - 1], &a, sizeof a);   /* exec's char *const[]; never written */
        lua_pop(L, 1);   /* still referenced by the argv table */
    }
    argv[argc] = NULL;
    lua_getfield(L, 1, "cgroup_procs");
    const char *cgroup_procs = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return tl_arg_error(L, 1, "spawn_contained", "cgroup_procs: path string expected");
        cgroup_procs = lua_tostring(L, -1);
    }

    /* the userdata before the resources: nothing is orphaned if this raises */
    tl_contained *c = (tl_contained *)lua_newuserdatauv(L, sizeof *c, 0);
    c->init = c->command = 0;
    c->lifeline = c->pidns = -1;
    c->shm = NULL;
    luaL_setmetatable(L, TL_CONTAINED_MT);

    void *m = mmap(NULL, sizeof(tl_lab_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return tl_fail(L, "mmap", errno);
    c->shm = (tl_lab_shm *)m;
    int life[2], rep[2], go[2];
    if (pipe2(life, O_CLOEXEC) != 0)
        return tl_fail(L, "pipe2", errno);
    if (pipe2(rep, O_CLOEXEC) != 0) {
        int e = errno;
        close(life[0]);
        close(life[1]);
        return tl_fail(L, "pipe2", e);
    }
    if (pipe2(go, O_CLOEXEC) != 0) {
        int e = errno;
        close(life[0]);
        close(life[1]);
        close(rep[0]);
        close(rep[1]);
        return tl_fail(L, "pipe2", e);
    }
    sigset_t caller_mask;
    sigprocmask(SIG_SETMASK, NULL, &caller_mask);
    pid_t pid = do_clone();
    if (pid == 0) {
        close(life[1]);
        close(rep[0]);
        close(go[1]);
        init_main(c->shm, life[0], rep[1], go[0], argv, cgroup_procs, &caller_mask);
        _exit(1);
    }
    int e = errno;
    close(life[0]);
    close(rep[1]);
    close(go[0]);
    if (pid < 0) {
        close(life[1]);
        close(rep[0]);
        close(go[1]);
        return tl_fail(L, "clone CLONE_NEWPID", e);
    }
    c->init = pid;
    c->lifeline = life[1];
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
    struct stat st;
    c->pidns = open(path, O_RDONLY | O_CLOEXEC);
    if (c->pidns < 0 || fstat(c->pidns, &st) != 0) {
        e = errno;
        close(rep[0]);
        contained_kill(c);
        return tl_fail(L, path, e);
    }
    c->ns_dev = st.st_dev;
    c->ns_ino = st.st_ino;
    /* The command waits on `go` until we know its host pid: init's only
     * child then. A report on rep meanwhile: init could not start it. */
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    start_report r = {0, 0};
    struct pollfd p = {.fd = rep[0], .events = POLLIN};
    int pr = 0;
    double until = tl_now() + START_TIMEOUT_MS / 1000.0;
    while (c->command == 0 && tl_now() < until) {
        pr = poll(&p, 1, 5);
        if (pr > 0)
            break;
        int cf = open(path, O_RDONLY | O_CLOEXEC);
        if (cf >= 0) {
            char buf[32];
            ssize_t k = read(cf, buf, sizeof buf - 1);
            close(cf);
            if (k > 0) {
                buf[k] = '\0';
                c->command = (pid_t)strtol(buf, NULL, 10);
            }
        }
    }
    if (c->command > 0) {
        ssize_t w = write(go[1], "g", 1);
        (void)w;
    }
    close(go[1]);
    /* EOF on rep: the command was exec'd. A report: why it was not. */
    while ((pr = poll(&p, 1, START_TIMEOUT_MS)) < 0 && errno == EINTR) {
    }
    ssize_t n = pr > 0 ? read(rep[0], &r, sizeof r) : -1;
    close(rep[0]);
    if (pr == 0) {
        contained_kill(c);
        return tl_fail_why(L, "start the command", "init did not start it in time", ETIMEDOUT);
    }
    if (n == (ssize_t)sizeof r) {
        contained_kill(c);
        return tl_fail(L, stage_names[r.stage >= ST_CGROUP && r.stage <= ST_FDS ? r.stage : 0], r.err);
    }
    return 1;
}

/* Is /proc/<name> a member of c's namespace and not a zombie? */
static int is_member(const tl_contained *c, int procfd, const char *name)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "%s/ns/pid", name);
    if (fstatat(procfd, path, &st, 0) != 0 || st.st_dev != c->ns_dev || st.st_ino != c->ns_ino)
        return 0;
    snprintf(path, sizeof path, "%s/stat", name);
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    if (!rp || rp[1] != ' ')
        return 0;
    return rp[2] != 'Z' && rp[2] != 'X';
}

/* Walk the members (not init): fn(c, pid, arg) for each. Returns the count. */
static lua_Integer each_member(const tl_contained *c, void (*fn)(const tl_contained *, pid_t, void *), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int procfd = dirfd(d);
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == c->init || !is_member(c, procfd, e->d_name))
            continue;
        fn(c, (pid_t)pid, arg);
        n++;
    }
    closedir(d);
    return n;
}

static void push_pid(const tl_contained *c, pid_t pid, void *arg)
{
    (void)c;
    lua_State *L = (lua_State *)arg;
    lua_pushinteger(L, pid);
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

/* h:members(): the host pids of every live process of the namespace but init. */
static int l_members(lua_State *L)
{
    tl_contained *c = check_contained(L);
    lua_newtable(L);
    if (c->init == 0)
        return 1;
    if (each_member(c, push_pid, L) < 0)
        return tl_fail(L, "opendir /proc", errno);
    return 1;
}

typedef struct sig_arg {
    int sig;
    lua_Integer sent;
} sig_arg;

/* Signal through a pidfd checked to be ours: a pid reused between the walk
 * and the signal is never hit. */
static void signal_one(const tl_contained *c, pid_t pid, void *arg)
{
    sig_arg *s = (sig_arg *)arg;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return;
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
    if (stat(path, &st) == 0 && st.st_dev == c->ns_dev && st.st_ino == c->ns_ino &&
        syscall(SYS_pidfd_send_signal, pfd, s->sig, NULL, 0) == 0)
        s->sent++;
    close(pfd);
}

/* h:signal(signo): signal every member but init; returns how many were signalled. */
static int l_signal(lua_State *L)
{
    tl_contained *c = check_contained(L);
    lua_Integer sig = luaL_checkinteger(L, 2);
    luaL_argcheck(L, sig > 0 && sig < 65, 2, "signal number 1..64 expected");
    sig_arg s = {(int)sig, 0};
    if (c->init > 0 && each_member(c, signal_one, &s) < 0)
        return tl_fail(L, "opendir /proc", errno);
    lua_pushinteger(L, s.sent);
    return 1;
}

/* h:init_pid(): init's host pid, or nil once it is reaped. */
static int l_init_pid(lua_State *L)
{
    tl_contained *c = check_contained(L);
    if (c->init == 0)
        return 0;
    lua_pushinteger(L, c->init);
    return 1;
}

/* h:command(): the command's host pid; then, once it ended, "exit", code
 * or "signal", number. */
static int l_command(lua_State *L)
{
    tl_contained *c = check_contained(L);
    if (!c->shm)
        return 0;
    lua_pushinteger(L, c->command);
    int state = __atomic_load_n(&c->shm->cmd_state, __ATOMIC_ACQUIRE);
    if (state == 0)
        return 1;
    lua_pushstring(L, state == 1 ? "exit" : "signal");
    lua_pushinteger(L, c->shm->cmd_code);
    return 3;
}

/* Copy ring `which` in order into b; its total byte count is pushed too. */
static int push_ring(lua_State *L, const tl_lab_shm *shm, int which)
{
    static char copy[TL_RING];
    uint64_t total = 0;
    size_t len = 0;
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t s1 = __atomic_load_n(&shm->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        total = shm->total[which];
        len = total < TL_RING ? (size_t)total : TL_RING;
        size_t start = total < TL_RING ? 0 : (size_t)(total % TL_RING);
        if (start == 0) {
            memcpy(copy, shm->ring[which], len);
        } else {
            memcpy(copy, shm->ring[which] + start, TL_RING - start);
            memcpy(copy + (TL_RING - start), shm->ring[which], start);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&shm->seq, __ATOMIC_ACQUIRE) == s1)
            break;
    }
    lua_pushlstring(L, copy, len);
    lua_pushinteger(L, (lua_Integer)total);
    return 2;
}

/* h:output(): stdout tail, stderr tail (the last 64 KiB each), and the
 * byte counts of all the command wrote to each. */
static int l_output(lua_State *L)
{
    tl_contained *c = check_contained(L);
    if (!c->shm) {
        lua_pushliteral(L, "");
        lua_pushliteral(L, "");
        lua_pushinteger(L, 0);
        lua_pushinteger(L, 0);
        return 4;
    }
    push_ring(L, c->shm, 0);
    push_ring(L, c->shm, 1);
    lua_rotate(L, -3, -1);  /* out, outn, err, errn -> out, err, errn, outn */
    lua_rotate(L, -2, 1);   /* -> out, err, outn, errn */
    return 4;
}

/* h:kill(): SIGKILL init (the kernel kills the namespace) and reap it. The
 * output stays readable. Returns true. */
static int l_kill(lua_State *L)
{
    tl_contained *c = check_contained(L);
    contained_kill(c);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    tl_contained *c = check_contained(L);
    contained_kill(c);
    if (c->shm) {
        munmap(c->shm, sizeof(tl_lab_shm));
        c->shm = NULL;
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    tl_contained *c = check_contained(L);
    if (c->init == 0)
        lua_pushliteral(L, "contained command (stopped)");
    else
        lua_pushfstring(L, "contained command (init %d)", (int)c->init);
    return 1;
}

void tl_spawn_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"members", l_members}, {"signal", l_signal}, {"init_pid", l_init_pid}, {"command", l_command},
        {"output", l_output},   {"kill", l_kill},     {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_gc}, {"__close", l_kill}, {"__tostring", l_tostring}, {NULL, NULL}};
    if (luaL_newmetatable(L, TL_CONTAINED_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_spawn_contained);
    lua_setfield(L, -2, "spawn_contained");
}
