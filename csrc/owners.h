/* tcplab: which processes hold which socket inodes, by one walk of
 * /proc/PID/fd. No Lua here (spec/backend_spec.lua compiles this file
 * against a lua.h that is an #error); records.c pushes the result. */
#ifndef TCPLAB_OWNERS_H
#define TCPLAB_OWNERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tl_owner {
    int32_t pid, fd;
    uint32_t comm;   /* offset of the NUL-terminated comm in the index's pool */
    uint32_t next;   /* index + 1 of the next owner of the same inode, 0: none */
} tl_owner;

typedef struct tl_owners tl_owners;

/* An index for about n inodes (grows if more are added); NULL: no memory. */
tl_owners *tl_owners_new(size_t n);
void tl_owners_free(tl_owners *o);
/* Ask for the owners of inode (0 is ignored). -1: no memory. */
int tl_owners_want(tl_owners *o, uint32_t inode);
/* One walk over /proc: every fd that is a wanted socket becomes an owner.
 * Processes that vanish mid-walk are skipped; those whose fd table cannot
 * be read (EACCES, EPERM) are counted in tl_owners_unreadable. Returns 0,
 * or -1 with errno set when /proc itself cannot be read or memory runs out. */
int tl_owners_scan(tl_owners *o, const char *proc);
/* What tl_owners_scan does, from records another walk made (bpf_backend.c):
 * forget the owners found so far, then add each (pid, fd, inode) -- skipped
 * unless inode is wanted; comm comes from PROC/PID/comm (procfd: that
 * directory), read once per run of records of one pid. -1: no memory. */
void tl_owners_clear(tl_owners *o);
int tl_owners_add(tl_owners *o, int procfd, int32_t pid, int32_t fd, uint32_t inode);
/* The first owner of inode (NULL: none seen); follow ->next with tl_owners_at. */
const tl_owner *tl_owners_first(const tl_owners *o, uint32_t inode);
const tl_owner *tl_owners_at(const tl_owners *o, uint32_t next);
const char *tl_owners_comm(const tl_owners *o, const tl_owner *w);
/* Processes whose fds could not be read during the last scan. */
unsigned tl_owners_unreadable(const tl_owners *o);

#endif
