/*
 * Program-test harness, never attached: BPF_PROG_TEST_RUN hands a program a bare frame, without
 * the tunnel metadata the VXLAN device attaches on receive. This program attaches it (VNI from
 * cb[0], outer source in host order from cb[1]; a test run may set the control buffer), sets
 * skb->mark from cb[2] (what from_wireguard would have left, or 0) and then
 * tail-calls the program in slot 0 of `overlay_harness_next`, from-overlay, which reads it as it
 * would after a real decapsulation. Returns TC_ACT_UNSPEC if from-overlay was not reached.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} overlay_harness_next SEC(".maps");

SEC("tc")
int overlay_harness(struct __sk_buff *skb)
{
    struct bpf_tunnel_key key = {};

    key.tunnel_id = skb->cb[0];
    /* The receiving side reads the outer source where a sender puts its local address. */
    key.local_ipv4 = skb->cb[1];
    if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 0) < 0)
        return TC_ACT_UNSPEC;
    skb->mark = skb->cb[2];
    bpf_tail_call(skb, &overlay_harness_next, 0);
    return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
