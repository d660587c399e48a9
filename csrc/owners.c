/* Socket owners: one walk over /proc/PID/fd, every fd's link read once
 * (readlinkat), matched against the inodes a dump asked for in an
 * open-addressing table sized to the dump. comm is read only for a process
 * that holds at least one of them. No Lua (owners.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "owners.h"

typedef struct slot {
    uint32_t inode;       /* 0: empty */
    uint32_t head, tail;  /* owner index + 1, 0: none */
} slot;

struct tl_owners {
    slot *slots;
    size_t cap, used;     /* cap: a power of two */
    tl_owner *own;
    size_t nown, capown;
    char *pool;
    size_t npool, cappool;
    unsigned unreadable;
    int32_t lastpid;      /* tl_owners_add: the pid whose comm is lastcomm */
    uint32_t lastcomm;
};

static size_t hash(uint32_t ino, size_t cap)
{
    return (size_t)((ino * 2654435761u) ^ (ino >> 15)) & (cap - 1);
}

static slot *find(const tl_owners *o, uint32_t ino)
{
    for (size_t i = hash(ino, o->cap);; i = (i + 1) & (o->cap - 1)) {
        slot *s = &o->slots[i];
        if (s->inode == ino || s->inode == 0)
            return s;
    }
}

static int resize(tl_owners *o, size_t cap)
{
    slot *old = o->slots;
    size_t oldcap = o->cap;
    o->slots = calloc(cap, sizeof *o->slots);
    if (!o->slots) {
        o->slots = old;
        return -1;
    }
    o->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].inode)
            *find(o, old[i].inode) = old[i];
    free(old);
    return 0;
}

tl_owners *tl_owners_new(size_t n)
{
    tl_owners *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    if (resize(o, cap) != 0) {
        free(o);
        return NULL;
    }
    o->lastpid = -1;
    return o;
}

void tl_owners_free(tl_owners *o)
{
    if (!o)
        return;
    free(o->slots);
    free(o->own);
    free(o->pool);
    free(o);
}

int tl_owners_want(tl_owners *o, uint32_t inode)
{
    if (inode == 0)
        return 0;
    if (2 * (o->used + 1) > o->cap && resize(o, 2 * o->cap) != 0)
        return -1;
    slot *s = find(o, inode);
    if (s->inode == 0) {
        s->inode = inode;
        o->used++;
    }
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* comm of pid into the pool; its offset, or (uint32_t)-1 without memory.
 * A process gone by now gets "?". */
static uint32_t add_comm(tl_owners *o, int procfd, const char *pid)
{
    char path[300], buf[32];
    snprintf(path, sizeof path, "%s/comm", pid);
    ssize_t n = -1;
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    if (n <= 0) {
        buf[0] = '?';
        n = 1;
    }
    if (buf[n - 1] == '\n')
        n--;
    if (grow((void **)&o->pool, &o->cappool, o->npool + (size_t)n + 1, 1) != 0)
        return (uint32_t)-1;
    uint32_t off = (uint32_t)o->npool;
    memcpy(o->pool + off, buf, (size_t)n);
    o->pool[off + n] = '\0';
    o->npool += (size_t)n + 1;
    return off;
}

/* (pid, fd) becomes the last owner of s. 0, or -1 without memory (comm too). */
static int link_owner(tl_owners *o, slot *s, int32_t pid, int32_t fd, uint32_t comm)
{
    if (comm == (uint32_t)-1 ||
        grow((void **)&o->own, &o->capown, o->nown + 1, sizeof *o->own) != 0)
        return -1;
    tl_owner *w = &o->own[o->nown++];
    w->pid = pid;
    w->fd = fd;
    w->comm = comm;
    w->next = 0;
    if (s->tail)
        o->own[s->tail - 1].next = (uint32_t)o->nown;
    else
        s->head = (uint32_t)o->nown;
    s->tail = (uint32_t)o->nown;
    return 0;
}

void tl_owners_clear(tl_owners *o)
{
    for (size_t i = 0; i < o->cap; i++)
        o->slots[i].head = o->slots[i].tail = 0;
    o->nown = o->npool = 0;
    o->unreadable = 0;
    o->lastpid = -1;
}

int tl_owners_add(tl_owners *o, int procfd, int32_t pid, int32_t fd, uint32_t inode)
{
    if (inode == 0)
        return 0;
    slot *s = find(o, inode);
    if (s->inode == 0)
        return 0;
    if (pid != o->lastpid) {
        char name[16];
        snprintf(name, sizeof name, "%d", (int)pid);
        o->lastcomm = add_comm(o, procfd, name);
        o->lastpid = pid;
    }
    return link_owner(o, s, pid, fd, o->lastcomm);
}

/* The fds of one process. 0, or -1 when memory ran out. */
static int scan_pid(tl_owners *o, int procfd, const char *pid)
{
    char path[300];
    snprintf(path, sizeof path, "%s/fd", pid);
    int dfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == EACCES || errno == EPERM)
            o->unreadable++;
        return 0;  /* ENOENT, ESRCH: the process is gone */
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    uint32_t comm = (uint32_t)-2;  /* not read yet */
    long pidn = strtol(pid, NULL, 10);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char link[64];
        ssize_t n = readlinkat(dfd, e->d_name, link, sizeof link - 1);
        if (n < 9 || memcmp(link, "socket:[", 8) != 0)
            continue;   /* not a socket, or closed meanwhile */
        link[n] = '\0';
        char *end;
        unsigned long ino = strtoul(link + 8, &end, 10);
        if (*end != ']' || ino == 0 || ino > UINT32_MAX)
            continue;
        slot *s = find(o, (uint32_t)ino);
        if (s->inode == 0)
            continue;
        if (comm == (uint32_t)-2)
            comm = add_comm(o, procfd, pid);
        if (link_owner(o, s, (int32_t)pidn, (int32_t)strtol(e->d_name, NULL, 10), comm) != 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    return rc;
}

int tl_owners_scan(tl_owners *o, const char *proc)
{
    tl_owners_clear(o);
    int procfd = open(proc ? proc : "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        return -1;
    int dup_fd = dup(procfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        int err = errno;
        if (dup_fd >= 0)
            close(dup_fd);
        close(procfd);
        errno = err;
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        const char *p = e->d_name;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == e->d_name || *p)
            continue;
        rc = scan_pid(o, procfd, e->d_name);
    }
    closedir(d);
    close(procfd);
    if (rc != 0)
        errno = ENOMEM;
    return rc;
}

const tl_owner *tl_owners_first(const tl_owners *o, uint32_t inode)
{
    if (inode == 0)
        return NULL;
    const slot *s = find(o, inode);
    return s->inode && s->head ? &o->own[s->head - 1] : NULL;
}

const tl_owner *tl_owners_at(const tl_owners *o, uint32_t next)
{
    return next ? &o->own[next - 1] : NULL;
}

const char *tl_owners_comm(const tl_owners *o, const tl_owner *w)
{
    return o->pool + w->comm;
}

unsigned tl_owners_unreadable(const tl_owners *o)
{
    return o->unreadable;
}
