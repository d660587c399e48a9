/* core.textfile_write(path, text): replace the file at path atomically, as
 * node_exporter's textfile collector (or any reader) needs, and safely in a
 * directory others can write to.
 *
 * The temp file is PATH.tmp.PID.XXXXXXXX (random), created beside path with
 * O_CREAT|O_EXCL|O_NOFOLLOW relative to an fd of the directory: a symlink or
 * any file planted at that name makes the open fail (we pick another name),
 * it is never followed. Written, fsync'd, renamed over path (a reader sees
 * the old file or the new one, never part of one), then the directory is
 * fsync'd. On any failure the temp file is unlinked. Before writing, temp
 * files of this path left by processes that no longer run (SIGKILL, power
 * loss) are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "tcplab.h"

enum { SUFFIX_LEN = 8, TRIES = 100 };

static char forced_suffix[SUFFIX_LEN + 1];  /* test hook: the next first try's name */

/* Is process pid gone (no such process, or a zombie waiting to be reaped)? */
static int pid_gone(long pid)
{
    if (pid <= 0 || pid > 0x3fffffff)
        return 0;
    if (kill((pid_t)pid, 0) != 0)
        return errno == ESRCH;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Remove BASE.tmp.PID and BASE.tmp.PID.* of processes that are gone (not
 * ours). Only names of that shape; symlinks are unlinked, never followed.
 * Returns how many were removed. */
static int sweep(int dirfd, const char *base)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    size_t blen = strlen(base);
    long self = (long)getpid();
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0)
            continue;
        const char *digits = name + blen + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (end == digits || errno || (*end != 0 && *end != '.') || pid == self)
            continue;
        if (pid_gone(pid) && unlinkat(dirfd, name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static void random_suffix(char *out)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[SUFFIX_LEN];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;   /* no entropy yet: O_EXCL still makes it safe */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unsigned long x = (unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 16);
        for (int i = 0; i < SUFFIX_LEN; i++, x = x * 6364136223846793005UL + 1442695040888963407UL)
            r[i] = (unsigned char)(x >> 33);
    }
    for (int i = 0; i < SUFFIX_LEN; i++)
        out[i] = alnum[r[i] % (sizeof alnum - 1)];
    out[SUFFIX_LEN] = 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int l_textfile_write(lua_State *L)
{
    size_t plen, tlen;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *text = luaL_checklstring(L, 2, &tlen);
    luaL_argcheck(L, plen > 0 && strlen(path) == plen, 1, "a file path (no NUL bytes) expected");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    luaL_argcheck(L, *base && strcmp(base, ".") != 0 && strcmp(base, "..") != 0, 1,
                  "a file path (not a directory) expected");
    /* the directory part: "" -> ".", "/x" -> "/" */
    lua_pushlstring(L, path, slash ? (size_t)(slash - path) : 0);
    const char *dir = lua_tostring(L, -1);
    if (!*dir)
        dir = slash ? "/" : ".";
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return tl_fail(L, path, errno);
    /* rename replaces whatever is at path: never a device (--pcap /dev/null
     * would put a regular file in its place), a fifo, a socket or a directory.
     * A symlink is replaced, not followed (see the header). */
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        close(dirfd);
        const char *kind = S_ISDIR(st.st_mode) ? "a directory" : S_ISCHR(st.st_mode) ? "a character device"
                         : S_ISBLK(st.st_mode) ? "a block device" : S_ISFIFO(st.st_mode) ? "a fifo" : "a socket";
        lua_pushfstring(L, "%s is %s, not a regular file: tcplab writes a file whole (a temp file, then rename "
                        "over it) and will not replace it; name a regular file", path, kind);
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_pushinteger(L, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
        return 3;
    }
    int swept = sweep(dirfd, base);

    char tmp[4096];
    int fd = -1, err = 0;
    for (int i = 0; i < TRIES && fd < 0; i++) {
        char suffix[SUFFIX_LEN + 1];
        if (i == 0 && forced_suffix[0]) {
            memcpy(suffix, forced_suffix, sizeof suffix);
            forced_suffix[0] = 0;
        } else {
            random_suffix(suffix);
        }
        if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%s", base, (long)getpid(), suffix) >= (int)sizeof tmp) {
            close(dirfd);
            return tl_fail(L, path, ENAMETOOLONG);
        }
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        err = errno;
        if (fd < 0 && err != EEXIST)
            break;
    }
    if (fd < 0) {
        close(dirfd);
        return tl_fail(L, path, err);
    }
    const char *step = NULL;
    if (write_all(fd, text, tlen) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    err = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        err = errno;
    }
    if (!step && renameat(dirfd, tmp, dirfd, base) != 0) {
        step = "rename";
        err = errno;
    }
    if (step) {
        unlinkat(dirfd, tmp, 0);
        close(dirfd);
        lua_pushfstring(L, "%s (%s of %s)", path, step, tmp);
        return tl_fail(L, lua_tostring(L, -1), err);
    }
    fsync(dirfd);   /* the rename itself durable; a failure here loses nothing written */
    close(dirfd);
    lua_pushboolean(L, 1);
    lua_pushinteger(L, swept);
    return 2;
}

/* core._textfile_next_suffix(s): the next write's first temp name ends in
 * s (8 characters). Test only: a spec plants a symlink exactly there. */
static int l_textfile_next_suffix(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n == SUFFIX_LEN && !strchr(s, '/'), 1, "8 characters, no '/', expected");
    memcpy(forced_suffix, s, SUFFIX_LEN + 1);
    return 0;
}

void tl_textfile_register(lua_State *L)
{
    static const luaL_Reg fns[] = {{"textfile_write", l_textfile_write},
                                   {"_textfile_next_suffix", l_textfile_next_suffix},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
