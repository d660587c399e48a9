// SPDX-License-Identifier: GPL-2.0
/* tcplab: the transitions of one network namespace's TCP sockets on chosen
 * ports, from the sock/inet_sock_set_state tracepoint, into a ring buffer:
 * filtered in the kernel by namespace (the namespace's inode), protocol and
 * port, with the socket cookie and a CLOCK_MONOTONIC timestamp. Events the
 * ring buffer has no room for are counted in `lost`. What is reported
 * mirrors the tracepoint's own fields (TP_STORE_ADDRS). */
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

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

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

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, const struct sock *sk, const int oldstate, const int newstate)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return 0;
    __u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    if (inum != cfg.netns)
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
    if (family == 10) {   /* AF_INET6 */
        BPF_CORE_READ_INTO(&ev->src, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&ev->dst, sk, __sk_common.skc_v6_daddr);
    } else {
        __be32 a = BPF_CORE_READ(inet, inet_saddr), b = sk->__sk_common.skc_daddr;
        __builtin_memcpy(ev->src, &a, 4);
        __builtin_memcpy(ev->dst, &b, 4);
    }
    bpf_ringbuf_submit(ev, 0);
    return 0;
}
