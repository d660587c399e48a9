// SPDX-License-Identifier: GPL-2.0
/* tcplab: per-state counts of one network namespace's TCP sockets, kept
 * by the kernel (csrc/live.c loads one copy per handle; doc/kernel-live.md).
 *
 * Full sockets: sock/inet_sock_set_state moves each socket between the
 * counters. Socket-local storage (`counted`) says which state a socket is
 * counted as (0: none), so the seed walk (iter/tcp, once, after the
 * tracepoint is attached) and the tracepoint never count one socket twice:
 * whichever sees it first marks it. Both run under the socket's lock
 * (bpf_iter_tcp_seq_show takes lock_sock and skips unhashed sockets;
 * tcp_set_state runs under the socket lock on every path), so they never
 * interleave on one socket. A child cloned from a listener starts without
 * storage (neither map is BPF_F_CLONE), whatever state the tracepoint says
 * it leaves.
 *
 * Request sockets (SYN_RECV in the dump) emit no event: every listener gets
 * storage in `listeners` (at -> LISTEN, or in the seed walk) and a walk of
 * that map (iter/bpf_sk_storage_map, listeners only) sums each one's
 * request queue length (icsk_accept_queue.qlen) into reqs.
 *
 * Time-wait placeholders emit no event either. Their total is sockstat's
 * `tw` (read by live.c); the ones in substate FIN_WAIT2 are tracked in
 * fw2_tw by address, from timer_start of their timer (tw_timer_handler,
 * whose address userspace gives in rodata) and dropped at timer_cancel;
 * a walk of that map (iter/bpf_map_elem) counts the entries whose
 * placeholder is still armed and still in FIN_WAIT2 into fw2 (a placeholder
 * that takes the peer's FIN turns TIME_WAIT; its timer is re-armed, and
 * when the new expiry lands in the same timer-wheel bucket, no event says
 * so: the walk reads the substate itself).
 *
 * The kernel skips a tracing program that is already running on the same
 * CPU (a softirq interrupting it): each tracepoint has a second program
 * that acts only when it finds the first one's mark on the CPU, as
 * state_tp.bpf.c does. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "live_rec.h"

char LICENSE[] SEC("license") = "GPL";

enum { ST_SYN_RECV = 3, ST_CLOSE = 7, ST_LISTEN = 10, ST_FIN_WAIT2 = 5, ST_TIME_WAIT = 6, ST_NEW_SYN_RECV = 12 };

const volatile __u64 target_cookie = 0;   /* the namespace's cookie (never reused) */
const volatile __u64 tw_handler = 0;      /* &tw_timer_handler (/proc/kallsyms) */

__s64 counts[TL_LIVE_NSTATES];   /* full sockets per state */
__u64 reqs;       /* set by live_read: request sockets */
__u64 fw2;        /* set by live_read: FIN_WAIT2 placeholders */
__u64 misses;     /* storage or map full: a socket or placeholder not counted */
__s64 fw2_tracked;
__u32 seeded;        /* set by userspace once the seed walk is done */   /* entries of fw2_tw (live_read walks the map only when there are some) */
__u64 rescued;    /* acted on by a second program */

struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u32);
} counted SEC(".maps");

/* the namespace's listeners, by address (a listener is freed only after it
 * left LISTEN, which removes it) */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, TL_LIVE_LISTENERS_MAX);
    __type(key, __u64);
    __type(value, __u32);
} listeners SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, TL_LIVE_FW2_MAX);
    __type(key, __u64);
    __type(value, __u32);
} fw2_tw SEC(".maps");

/* is program 0 (state) or 1 (timer) running on this CPU */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u32);
} running SEC(".maps");

static __always_inline void add(int state, __s64 n)
{
    __u64 i = (__u32)state;
    if (i == 0 || i >= TL_LIVE_NSTATES)
        return;
    asm volatile("%[i] &= 15" : [i] "+r"(i));   /* the bound, on the register the verifier sees */
    __sync_fetch_and_add(&counts[i], n);
}

static __always_inline void mark_listener(const void *sk)
{
    __u64 key = (__u64)sk;
    __u32 one = 1;
    if (bpf_map_update_elem(&listeners, &key, &one, BPF_ANY) != 0)
        __sync_fetch_and_add(&misses, 1);
}

/* After the seed: a socket without storage was born after it (every hashed
 * socket of before has storage), its count follows the tracepoint's
 * oldstate: CLOSE -> X counts it, X -> CLOSE takes it out, and a child
 * cloned from a listener says LISTEN -> SYN_RECV (its state was copied from
 * the listener, which never leaves LISTEN for SYN_RECV itself). No storage
 * is allocated for it: that is most of what the programs cost a connection. */
static __always_inline void by_oldstate(const struct sock *sk, int oldstate, int newstate)
{
    if (!(oldstate == ST_LISTEN && newstate == ST_SYN_RECV))
        add(oldstate == ST_CLOSE ? 0 : oldstate, -1);
    if (newstate != ST_CLOSE)
        add(newstate, 1);
    if (oldstate == ST_LISTEN && newstate != ST_SYN_RECV) {
        __u64 key = (__u64)sk;
        bpf_map_delete_elem(&listeners, &key);
    }
    if (newstate == ST_LISTEN)
        mark_listener(sk);
}

static __always_inline void on_transition(const struct sock *sk, int oldstate, int newstate)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return;
    if (BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie) != target_cookie)
        return;
    __u32 *c = bpf_sk_storage_get(&counted, (void *)sk, 0,
                                  newstate == ST_CLOSE || seeded ? 0 : BPF_SK_STORAGE_GET_F_CREATE);
    if (!c) {
        if (seeded) {
            by_oldstate(sk, oldstate, newstate);
            return;
        }
        if (newstate != ST_CLOSE)
            __sync_fetch_and_add(&misses, 1);
        return;   /* to CLOSE and never counted: nothing to take back */
    }
    __u32 was = *c;
    if (was == (__u32)newstate)
        return;
    add(was, -1);
    if (was == ST_LISTEN) {
        __u64 key = (__u64)sk;
        bpf_map_delete_elem(&listeners, &key);
    }
    if (newstate == ST_CLOSE) {
        *c = 0;
    } else {
        *c = newstate;
        add(newstate, 1);
    }
    if (newstate == ST_LISTEN)
        mark_listener(sk);
}

static __always_inline __u32 *mark(__u32 which)
{
    return bpf_map_lookup_elem(&running, &which);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(live_state, const struct sock *sk, const int oldstate, const int newstate)
{
    __u32 *m = mark(0);
    if (m)
        *m += 1;
    on_transition(sk, oldstate, newstate);
    if (m)
        *m -= 1;
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(live_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
    __u32 *m = mark(0);
    if (!m || !*m)
        return 0;   /* live_state ran, or will run, for this one */
    __sync_fetch_and_add(&rescued, 1);
    on_transition(sk, oldstate, newstate);
    return 0;
}

/* ---- time-wait placeholders in FIN_WAIT2 ---- */
#define EEXIST 17

static __always_inline void track(__u64 key)
{
    __u32 one = 1;
    long rc = bpf_map_update_elem(&fw2_tw, &key, &one, BPF_NOEXIST);
    if (rc == 0)
        __sync_fetch_and_add(&fw2_tracked, 1);
    else if (rc != -EEXIST)
        __sync_fetch_and_add(&misses, 1);   /* the map is full */
}

static __always_inline void untrack(__u64 key)
{
    if (bpf_map_delete_elem(&fw2_tw, &key) == 0)
        __sync_fetch_and_add(&fw2_tracked, -1);
}

static __always_inline void tw_armed(struct timer_list *timer)
{
    struct inet_timewait_sock *tw =
        (void *)((char *)timer - bpf_core_field_offset(struct inet_timewait_sock, tw_timer));
    if (BPF_CORE_READ(tw, __tw_common.skc_net.net, net_cookie) != target_cookie)
        return;
    __u64 key = (__u64)tw;
    if (BPF_CORE_READ(tw, tw_substate) == ST_FIN_WAIT2)
        track(key);
    else
        untrack(key);
}

SEC("tp_btf/timer_start")
int BPF_PROG(live_timer, struct timer_list *timer, unsigned long bucket_expiry)
{
    if ((__u64)timer->function != tw_handler)
        return 0;
    __u32 *m = mark(1);
    if (m)
        *m += 1;
    tw_armed(timer);
    if (m)
        *m -= 1;
    return 0;
}

SEC("tp_btf/timer_start")
int BPF_PROG(live_timer_nested, struct timer_list *timer, unsigned long bucket_expiry)
{
    if ((__u64)timer->function != tw_handler)
        return 0;
    __u32 *m = mark(1);
    if (!m || !*m)
        return 0;
    __sync_fetch_and_add(&rescued, 1);
    tw_armed(timer);
    return 0;
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(live_timer_cancel, struct timer_list *timer)
{
    if ((__u64)timer->function != tw_handler)
        return 0;
    untrack((__u64)((char *)timer - bpf_core_field_offset(struct inet_timewait_sock, tw_timer)));
    return 0;
}

/* ---- the seed walk (once, after the programs above are attached) ---- */
SEC("iter/tcp")
int live_seed(struct bpf_iter__tcp *ctx)
{
    struct sock_common *skc = ctx->sk_common;
    if (!skc)
        return 0;
    __u8 state = skc->skc_state;
    if (state == ST_NEW_SYN_RECV)
        return 0;   /* counted from the listeners' queues */
    if (state == ST_TIME_WAIT) {
        struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
        if (!tw || tw->tw_sk.tw_substate != ST_FIN_WAIT2 || !tw->tw_sk.tw_timer.entry.pprev)
            return 0;
        if (BPF_CORE_READ(&tw->tw_sk, __tw_common.skc_net.net, net_cookie) != target_cookie)
            return 0;
        track((__u64)&tw->tw_sk);
        return 0;
    }
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
    if (!tp)
        return 0;
    struct sock *sk = &tp->inet_conn.icsk_inet.sk;
    if (BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie) != target_cookie)
        return 0;
    __u32 *c = bpf_sk_storage_get(&counted, tp, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!c) {
        __sync_fetch_and_add(&misses, 1);
        return 0;
    }
    if (*c == 0 && state != ST_CLOSE) {   /* not seen by the tracepoint yet */
        *c = state;
        add(state, 1);
    }
    if (state == ST_LISTEN)
        mark_listener(tp);
    return 0;
}

/* ---- a read: run once per h:counts() by BPF_PROG_TEST_RUN ---- */
static long sum_queue(struct bpf_map *map, __u64 *key, __u32 *val, void *ctx)
{
    struct inet_connection_sock *icsk = (void *)*key;
    int q = BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
    if (q > 0)
        reqs += q;
    return 0;
}

/* A placeholder still in FIN_WAIT2 counts; one that took the peer's FIN
 * (TIME_WAIT now, re-armed without an event) or is disarmed (dying) leaves
 * the map, so the map holds about the placeholders in FIN_WAIT2. */
static long count_fw2(struct bpf_map *map, __u64 *key, __u32 *val, void *ctx)
{
    struct inet_timewait_sock *tw = (void *)*key;
    if (BPF_CORE_READ(tw, tw_substate) == ST_FIN_WAIT2 && BPF_CORE_READ(tw, tw_timer.entry.pprev) &&
        BPF_CORE_READ(tw, __tw_common.skc_net.net, net_cookie) == target_cookie) {
        fw2++;
        return 0;
    }
    untrack(*key);
    return 0;
}

SEC("raw_tp")
int live_read(void *ctx)
{
    reqs = 0;
    fw2 = 0;
    bpf_for_each_map_elem(&listeners, sum_queue, NULL, 0);
    if (fw2_tracked > 0)
        bpf_for_each_map_elem(&fw2_tw, count_fw2, NULL, 0);
    return 0;
}
