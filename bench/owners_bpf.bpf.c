// SPDX-License-Identifier: GPL-2.0
/* A measuring prototype, not part of the module: every socket fd of every
 * process as (tgid, fd, inode), from an iter/task_file program, to compare
 * with owners.c's walk of /proc/PID/fd (bench/owners_bpf.c).
 * tgid is the init pid namespace's number. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct rec { __u32 pid, fd; __u64 ino; };

SEC("iter/task_file")
int owners(struct bpf_iter__task_file *ctx)
{
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!task || !file)
        return 0;
    struct inode *in = file->f_inode;
    if (!in || (in->i_mode & 00170000) != 0140000)   /* S_IFSOCK */
        return 0;
    if (BPF_CORE_READ(in, i_sb, s_magic) != 0x534F434B)   /* SOCKFS_MAGIC: not a bound path */
        return 0;
    struct rec r = { .pid = task->tgid, .fd = ctx->fd, .ino = in->i_ino };
    bpf_seq_write(ctx->meta->seq, &r, sizeof r);
    return 0;
}
