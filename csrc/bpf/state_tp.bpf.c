// SPDX-License-Identifier: GPL-2.0
/* tcplab: the transitions of one network namespace's TCP sockets on chosen
 * ports, from the sock/inet_sock_set_state tracepoint, into a ring buffer:
 * filtered in the kernel by namespace (the namespace's inode; 0: all),
 * protocol and port, with the socket cookie, the namespace and a
 * CLOCK_MONOTONIC timestamp. What is reported mirrors the tracepoint's own
 * fields (TP_STORE_ADDRS).
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

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace before the program is loaded. */
const volatile struct tl_state_cfg cfg = {};
__u64 lost;
__u64 rescued;       /* recorded by on_state_nested */
__u64 nested_seen;   /* on_state_nested runs that found the mark (recorded or filtered out) */

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

/* One transition into the ring buffer when the filter wants it: 1 when
 * written, 0 when filtered out or the ring buffer was full. */
static __always_inline int record(const struct sock *sk, int oldstate, int newstate)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return 0;
    __u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    if (cfg.netns && inum != cfg.netns)
        return 0;
    const struct inet_sock *inet = (const struct inet_sock *)sk;
    __u16 sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
    __u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
    if (!port_wanted(sport, dport))
        return 0;
    struct tl_state_ev *ev = bpf_ringbuf_reserve(&events, sizeof *ev, 0);
    if (!ev) {
        __sync_fetch_and_add(&lost, 1);
        return 0;
    }
    __builtin_memset(ev, 0, sizeof *ev);
    ev->ns = bpf_ktime_get_ns();
    ev->cookie = bpf_get_socket_cookie((void *)sk);
    __u16 family = sk->__sk_common.skc_family;
    ev->family = (__u8)family;
    ev->from = (__u8)oldstate;
    ev->to = (__u8)newstate;
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
    record(sk, oldstate, newstate);
    if (mark)
        *mark -= 1;
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
    __u32 key = 0;
    __u32 *mark = bpf_map_lookup_elem(&running, &key);
    if (!mark || !*mark)
        return 0;   /* on_state ran, or will run, for this transition */
    __sync_fetch_and_add(&nested_seen, 1);
    if (record(sk, oldstate, newstate))
        __sync_fetch_and_add(&rescued, 1);
    return 0;
}
