// SPDX-License-Identifier: GPL-2.0
/* tcplab: the transitions of one network namespace's TCP sockets on chosen
 * ports, from the sock/inet_sock_set_state tracepoint, into a ring buffer:
 * filtered in the kernel by namespace (the namespace's cookie, never reused;
 * 0: all), protocol and port, with the socket cookie, the namespace and a
 * CLOCK_MONOTONIC timestamp. What is reported mirrors the tracepoint's own
 * fields (TP_STORE_ADDRS), with one exception: a full socket leaving
 * FIN_WAIT1, FIN_WAIT2 or CLOSING for CLOSE after tcp_time_wait() handed its
 * connection to a placeholder in TIME_WAIT (the peer's FIN was taken) is
 * written as X -> TIME_WAIT, flagged TL_EV_TIME_WAIT (see record()). An
 * orphan whose FIN_WAIT2 moves into a placeholder before the peer's FIN, a
 * reset or a timeout stays X -> CLOSE.
 *
 * Each event carries the writing CPU and that CPU's running count of
 * events written (seq), and `written` counts them per CPU: userspace finds
 * an event written but never delivered as a hole in one CPU's sequence, or
 * as a count it never reached.
 *
 * Two programs on the one tracepoint. The kernel does not run a tracing
 * program that is already running on the same CPU: a transition made in a
 * softirq that interrupts on_state (running for a process-context
 * transition, of any socket) would be skipped and only counted in
 * on_state's recursion_misses. on_state marks the CPU while it runs;
 * on_state_nested, the second program, records a transition only when it
 * finds that mark, i.e. exactly when on_state was skipped for it (when
 * on_state is not running, it ran or will run for the same transition).
 * A transition it records that way is counted in `rescued`; events the ring
 * buffer had no room for in `lost`. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "state_ev.h"

#define RCV_SHUTDOWN 1
#define SOCK_DONE_BIT 1

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace before the program is loaded. */
const volatile struct tl_state_cfg cfg = {};
__u64 lost;
__u64 rescued;       /* recorded by on_state_nested */
__u64 nested_seen;   /* on_state_nested runs that found the mark (recorded or filtered out) */
__u64 port_hits;     /* TCP transitions on a wanted port, before the namespace filter */
__u64 netns_misses;  /* ... of those, of another namespace */
__u64 witness_hits;  /* the same count, kept by on_state_nested (a second probe on the tracepoint) */
__u32 written[TL_STATE_MAX_CPUS];   /* events written, per CPU (the last seq of each) */

/* cfg.life: each socket's lifetime so far, from its first transition the
 * recorder saw (freed with the socket, or at its CLOSE) */
struct tl_life {
    __u64 born_ns;
    __u32 pid;
    __u16 flags;    /* TL_LIFE_ACTIVE, _PASSIVE, _OWNER, _PATH_FULL, _LISTENER */
    __u8 npath;
    __u8 pad;
    __u8 path[TL_LIFE_MAX_PATH];
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct tl_life);
} lives SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

/* how many on_state runs are in progress on this CPU (0 or 1: the kernel
 * does not nest it) */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} running SEC(".maps");

static __always_inline int port_wanted(__u16 sport, __u16 dport)
{
    if (cfg.nports == 0)
        return 1;
    for (int i = 0; i < TL_STATE_MAX_PORTS; i++) {
        if (i >= cfg.nports)
            break;
        if (cfg.ports[i] == sport || cfg.ports[i] == dport)
            return 1;
    }
    return 0;
}

/* Is this X -> CLOSE tcp_time_wait() handing the connection to a
 * placeholder in TIME_WAIT? (the one place that decides it; see record()) */
static __always_inline int time_wait_handover(const struct sock *sk, int oldstate)
{
    if (oldstate != TCP_FIN_WAIT1 && oldstate != TCP_FIN_WAIT2 && oldstate != TCP_CLOSING)
        return 0;
    /* unhashed (a placeholder took its place) and the peer's FIN taken (SOCK_DONE) */
    return BPF_CORE_READ(sk, __sk_common.skc_node.pprev) == NULL && (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << SOCK_DONE_BIT));
}

/* cfg.life: the socket's lifetime, updated with this transition; NULL when
 * storage could not be had. The owner is the first task that makes a
 * transition while it holds the socket's lock (sk_lock.owned: connect(),
 * close(), shutdown(), or the backlog it processes in release_sock()): that
 * task is in a call on this very socket. A transition in a softirq (owned
 * is 0 there) runs on behalf of whatever task the CPU interrupted (on
 * loopback, often the peer), which is never taken. */
static __always_inline struct tl_life *life_update(const struct sock *sk, int oldstate, int newstate, int told)
{
    struct tl_life *l = bpf_sk_storage_get(&lives, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!l)
        return NULL;
    if (l->born_ns == 0) {
        l->born_ns = bpf_ktime_get_ns();
        if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT)
            l->flags |= TL_LIFE_ACTIVE;
        if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)
            l->flags |= TL_LIFE_PASSIVE;
        l->path[0] = (__u8)oldstate;
        l->npath = 1;
    }
    __u8 i = l->npath;
    if (i < TL_LIFE_MAX_PATH) {
        l->path[i & (TL_LIFE_MAX_PATH - 1)] = (__u8)told;
        l->npath = i + 1;
    } else
        l->flags |= TL_LIFE_PATH_FULL;
    if (newstate == TCP_LISTEN)
        l->flags |= TL_LIFE_LISTENER;
    if (!(l->flags & TL_LIFE_OWNER) && BPF_CORE_READ(sk, sk_lock.owned)) {
        l->pid = (__u32)(bpf_get_current_pid_tgid() >> 32);
        bpf_get_current_comm(l->comm, sizeof l->comm);
        l->flags |= TL_LIFE_OWNER;
    }
    return l;
}

/* The end of a lifetime into ev: the storage, and the byte counts of the
 * socket with what they count besides data (an acked SYN is known from
 * TL_LIFE_ACTIVE; our FIN was acked when it was sent, i.e. the socket left
 * a FIN-sent state, and nothing is left unacked; the peer's FIN when
 * SOCK_DONE is set). */
static __always_inline void life_end(const struct sock *sk, int oldstate, const struct tl_life *l, struct tl_state_ev *ev)
{
    const struct tcp_sock *tp = (const struct tcp_sock *)sk;
    ev->born_ns = l->born_ns;
    ev->pid = l->pid;
    ev->npath = l->npath;
    __builtin_memcpy(ev->path, l->path, sizeof ev->path);
    __builtin_memcpy(ev->comm, l->comm, sizeof ev->comm);
    __u16 flags = l->flags | TL_LIFE_END;
    ev->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
    ev->bytes_received = BPF_CORE_READ(tp, bytes_received);
    int fin_sent = oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING ||
                   oldstate == TCP_LAST_ACK;
    if (fin_sent && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
        flags |= TL_LIFE_FIN_ACKED;
    unsigned long skflags = BPF_CORE_READ(sk, __sk_common.skc_flags);
    if (skflags & (1UL << SOCK_DONE_BIT))
        flags |= TL_LIFE_FIN_RCVD;
    ev->life = flags;
}

/* One transition into the ring buffer when the filter wants it: 1 when
 * written, 0 when filtered out or the ring buffer was full. */
static __always_inline int record(const struct sock *sk, int oldstate, int newstate, __u8 flags)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return 0;
    const struct inet_sock *inet = (const struct inet_sock *)sk;
    __u16 sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
    __u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
    if (!port_wanted(sport, dport))
        return 0;
    __sync_fetch_and_add(&port_hits, 1);
    __u64 ncookie = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
    if (cfg.netns_cookie && ncookie != cfg.netns_cookie) {
        __sync_fetch_and_add(&netns_misses, 1);
        return 0;
    }
    __u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    struct tl_life *l = NULL;
    if (cfg.life)
        l = life_update(sk, oldstate, newstate, newstate == TCP_CLOSE && time_wait_handover(sk, oldstate) ?
                                                    TCP_TIME_WAIT : newstate);
    struct tl_state_ev *ev = bpf_ringbuf_reserve(&events, sizeof *ev, 0);
    if (!ev) {
        __sync_fetch_and_add(&lost, 1);
        if (l && newstate == TCP_CLOSE)
            bpf_sk_storage_delete(&lives, (void *)sk);
        return 0;
    }
    __builtin_memset(ev, 0, sizeof *ev);
    ev->ns = bpf_ktime_get_ns();
    ev->cookie = bpf_get_socket_cookie((void *)sk);
    __u16 family = sk->__sk_common.skc_family;
    ev->family = (__u8)family;
    ev->from = (__u8)oldstate;
    ev->to = (__u8)newstate;
    if (newstate == TCP_CLOSE &&
        (oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING)) {
        /* tcp_time_wait() has put its placeholder in the socket's place in
         * the hash table (the socket is unhashed before tcp_done() sets
         * CLOSE; a reset or a timeout reaches CLOSE still hashed), and the
         * peer's FIN was taken (SOCK_DONE, set by tcp_fin()) when that
         * placeholder is in TIME_WAIT rather than FIN_WAIT2. RCV_SHUTDOWN
         * alone does not tell: close() sets both shutdown bits. */
        __u8 shut = BPF_CORE_READ(sk, sk_shutdown);
        unsigned long skflags = BPF_CORE_READ(sk, __sk_common.skc_flags);
        int unhashed = BPF_CORE_READ(sk, __sk_common.skc_node.pprev) == NULL;
        if (shut & RCV_SHUTDOWN)
            flags |= TL_EV_RCV_SHUTDOWN;
        if (skflags & (1UL << SOCK_DONE_BIT))
            flags |= TL_EV_FIN_TAKEN;
        if (unhashed)
            flags |= TL_EV_UNHASHED;
        if (time_wait_handover(sk, oldstate)) {
            ev->to = TCP_TIME_WAIT;
            flags |= TL_EV_TIME_WAIT;
        }
    }
    ev->flags = flags;
    if (l && newstate == TCP_CLOSE) {   /* the full socket ends: one lifetime */
        life_end(sk, oldstate, l, ev);
        bpf_sk_storage_delete(&lives, (void *)sk);
    }
    ev->netns_cookie = ncookie;
    __u32 cpu = bpf_get_smp_processor_id();
    ev->cpu = cpu;
    if (cpu < TL_STATE_MAX_CPUS)
        ev->seq = __sync_fetch_and_add(&written[cpu], 1) + 1;   /* on_state_nested may interrupt on_state here */
    ev->sport = sport;
    ev->dport = dport;
    ev->netns = inum;
    if (family == 10) {   /* AF_INET6 */
        BPF_CORE_READ_INTO(&ev->src, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&ev->dst, sk, __sk_common.skc_v6_daddr);
    } else {
        __be32 a = BPF_CORE_READ(inet, inet_saddr), b = sk->__sk_common.skc_daddr;
        __builtin_memcpy(ev->src, &a, 4);
        __builtin_memcpy(ev->dst, &b, 4);
    }
    bpf_ringbuf_submit(ev, 0);
    return 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, const struct sock *sk, const int oldstate, const int newstate)
{
    __u32 key = 0;
    __u32 *mark = bpf_map_lookup_elem(&running, &key);
    if (mark)
        *mark += 1;
    record(sk, oldstate, newstate, 0);
    if (mark)
        *mark -= 1;
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
    __u32 key = 0;
    /* an independent witness: was the tracepoint's BPF side called at all for
     * a transition on our ports that on_state did not count? */
    if (sk->sk_protocol == IPPROTO_TCP) {
        const struct inet_sock *inet = (const struct inet_sock *)sk;
        if (port_wanted(bpf_ntohs(BPF_CORE_READ(inet, inet_sport)), bpf_ntohs(sk->__sk_common.skc_dport)))
            __sync_fetch_and_add(&witness_hits, 1);
    }
    __u32 *mark = bpf_map_lookup_elem(&running, &key);
    if (!mark || !*mark)
        return 0;   /* on_state ran, or will run, for this transition */
    __sync_fetch_and_add(&nested_seen, 1);
    if (record(sk, oldstate, newstate, TL_EV_RESCUED))
        __sync_fetch_and_add(&rescued, 1);
    return 0;
}
