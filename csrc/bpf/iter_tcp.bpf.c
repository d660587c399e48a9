// SPDX-License-Identifier: GPL-2.0
/* tcplab: every TCP socket of the walked namespace as a fixed-size record
 * (struct tl_iter_rec), or only a tally per state, from an iter/tcp
 * program: the hash tables sock_diag walks, without formatting inet_diag
 * attributes. Fields are read with CO-RE, so one object runs on any kernel
 * with BTF. What is computed mirrors inet_diag_msg_common_fill,
 * inet_sk_diag_fill, inet_twsk_diag_fill and inet_req_diag_fill. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "iter_rec.h"

char LICENSE[] SEC("license") = "GPL";

extern int CONFIG_HZ __kconfig;

/* Set by userspace before each walk (the .bss map, mmapped). */
struct tl_iter_cfg cfg;
__u32 tally[TL_ITER_NSTATES];

enum {
    ST_TIME_WAIT = 6, ST_SYN_RECV = 3, ST_NEW_SYN_RECV = 12,
    T_RETRANS = 1, T_PROBE0 = 3, T_LOSS_PROBE = 5, T_REO_TIMEOUT = 6,
};

static __always_inline __u32 delta_ms(unsigned long expires, __u64 now)
{
    long d = (long)(expires - (unsigned long)now);
    if (d <= 0)
        return 0;
    return (__u32)((__u64)d * 1000 / CONFIG_HZ);
}

/* Loads go straight through the BTF pointers the iterator and the
 * bpf_skc_to_* helpers give (inlined, fault-checked loads, CO-RE
 * relocated); a bpf_probe_read helper call per field would cost more than
 * the walk itself. */
static __always_inline void full_sock(struct tcp_sock *tp, struct tl_iter_rec *r, __u32 uid)
{
    struct inet_connection_sock *icsk = &tp->inet_conn;
    struct sock *sk = &icsk->icsk_inet.sk;
    __u8 pending = icsk->icsk_pending;

    r->uid = uid;
    if (r->state == 10) {   /* LISTEN: accept queue and its limit */
        r->rqueue = sk->sk_ack_backlog;
        r->wqueue = sk->sk_max_ack_backlog;
    } else {
        int rq = (int)(tp->rcv_nxt - tp->copied_seq);
        r->rqueue = rq > 0 ? rq : 0;
        r->wqueue = tp->write_seq - tp->snd_una;
    }
    struct socket *so = sk->sk_socket;
    if (so) {  /* SOCK_INODE(): struct socket is the first member of socket_alloc */
        struct file *file = so->file;
        if (file)
            r->inode = (__u32)file->f_inode->i_ino;
        else
            r->inode = (__u32)BPF_CORE_READ((struct socket_alloc *)so, vfs_inode.i_ino);
    }
    if (pending == T_RETRANS || pending == T_REO_TIMEOUT || pending == T_LOSS_PROBE) {
        r->timer = 1;
        r->retrans = icsk->icsk_retransmits;
        r->expires_ms = delta_ms(icsk->icsk_retransmit_timer.expires, bpf_jiffies64());
    } else if (pending == T_PROBE0) {
        r->timer = 4;
        r->retrans = icsk->icsk_probes_out;
        r->expires_ms = delta_ms(icsk->icsk_retransmit_timer.expires, bpf_jiffies64());
    } else if (sk->sk_timer.entry.pprev) {   /* timer_pending() */
        r->timer = 2;
        r->retrans = icsk->icsk_probes_out;
        r->expires_ms = delta_ms(sk->sk_timer.expires, bpf_jiffies64());
    }
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
    struct sock_common *skc = ctx->sk_common;
    struct seq_file *seq = ctx->meta->seq;

    if (!skc) {  /* the end of the walk */
        if (cfg.count) {
            struct tl_iter_tally t = {.kind = TL_ITER_TALLY};
            for (int i = 0; i < TL_ITER_NSTATES; i++)
                t.by_state[i] = tally[i];
            bpf_seq_write(seq, &t, sizeof t);
        }
        return 0;
    }

    __u8 kstate = skc->skc_state;
    __u8 state = kstate;
    struct tcp_timewait_sock *tw = NULL;
    if (kstate == ST_TIME_WAIT) {
        tw = bpf_skc_to_tcp_timewait_sock(skc);
        if (!tw)
            return 0;
        state = tw->tw_sk.tw_substate;
    } else if (kstate == ST_NEW_SYN_RECV) {
        state = ST_SYN_RECV;
    }
    if (state >= TL_ITER_NSTATES || !(cfg.states & (1u << state)))
        return 0;
    __u16 family = skc->skc_family;
    if (cfg.family && family != cfg.family)
        return 0;
    __u16 sport = skc->skc_num;
    __u16 dport = bpf_ntohs(skc->skc_dport);
    if ((cfg.sport >= 0 && sport != cfg.sport) || (cfg.dport >= 0 && dport != cfg.dport))
        return 0;

    if (cfg.count) {
        tally[state & (TL_ITER_NSTATES - 1)]++;
        return 0;
    }

    struct tl_iter_rec r = {};
    r.kind = TL_ITER_SOCK;
    r.family = (__u8)family;
    r.state = state;
    r.sport = sport;
    r.dport = dport;
    if (family == 10) {  /* AF_INET6 */
        __builtin_memcpy(r.src, &skc->skc_v6_rcv_saddr, 16);
        __builtin_memcpy(r.dst, &skc->skc_v6_daddr, 16);
    } else {
        __be32 a = skc->skc_rcv_saddr, b = skc->skc_daddr;
        __builtin_memcpy(r.src, &a, 4);
        __builtin_memcpy(r.dst, &b, 4);
    }
    r.cookie = bpf_get_socket_cookie(skc);

    if (tw) {
        r.timer = 3;
        r.expires_ms = delta_ms(tw->tw_sk.tw_timer.expires, bpf_jiffies64());
    } else if (kstate == ST_NEW_SYN_RECV) {
        struct tcp_request_sock *treq = bpf_skc_to_tcp_request_sock(skc);
        if (!treq)
            return 0;
        r.timer = 1;
        r.retrans = treq->req.req.num_retrans;
        r.expires_ms = delta_ms(treq->req.req.rsk_timer.expires, bpf_jiffies64());
    } else {
        struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
        if (!tp)
            return 0;
        full_sock(tp, &r, ctx->uid);
    }
    bpf_seq_write(seq, &r, sizeof r);
    return 0;
}

/* Socket owners (tl_bpf_owners): every socket fd of every process as a
 * struct tl_owner_rec. As /proc/PID/fd, only a thread group leader's fd
 * table; only sockfs inodes (an O_PATH fd of a socket file on disk is
 * S_IFSOCK too, with that filesystem's inode number). */
SEC("iter/task_file")
int dump_owners(struct bpf_iter__task_file *ctx)
{
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!task || !file || task->pid != task->tgid)
        return 0;
    struct inode *in = file->f_inode;
    if (!in || (in->i_mode & 00170000) != 0140000)
        return 0;
    if (BPF_CORE_READ(in, i_sb, s_magic) != 0x534F434B)   /* SOCKFS_MAGIC */
        return 0;
    struct tl_owner_rec r = {.pid = (__u32)task->tgid, .fd = ctx->fd, .inode = (__u32)in->i_ino};
    bpf_seq_write(ctx->meta->seq, &r, sizeof r);
    return 0;
}
