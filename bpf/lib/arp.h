/* The gateway ARP responder on a pod's host-side veth. */
#ifndef MERIDIAN_ARP_H
#define MERIDIAN_ARP_H

#include "common.h"

/* RFC 826 values (linux/if_arp.h would pull in libc headers). */
#define ARP_HRD_ETHER 1
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2

struct arp_frame {
    __u8 eth_dst[6];
    __u8 eth_src[6];
    __u16 eth_proto;
    __u16 hrd;
    __u16 pro;
    __u8 hln;
    __u8 pln;
    __u16 op;
    __u8 sha[6];
    __u32 sip;
    __u8 tha[6];
    __u32 tip;
} __attribute__((packed));

/*
 * Answers the pod's ARP requests for any address but its own with the host-side veth MAC, so the
 * pod needs no proxy_arp and its gateway can move. Returns TC_ACT_REDIRECT when it answered,
 * TC_ACT_OK to let other ARP traffic pass.
 */
static always_inline int arp_respond(struct __sk_buff *skb)
{
    struct arp_frame f;
    const struct mer_endpoint_info *ep;
    __u32 target;

    if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
        return TC_ACT_OK;
    if (f.hrd != bpf_htons(ARP_HRD_ETHER) || f.pro != bpf_htons(ETH_P_IP) || f.op != bpf_htons(ARP_OP_REQUEST) ||
        f.hln != 6 || f.pln != 4)
        return TC_ACT_OK;
    if (f.tip == f.sip)
        return TC_ACT_OK;
    ep = endpoint_lookup(f.sip);
    if (!ep || ep->ifindex != skb->ifindex)
        return TC_ACT_OK;

    target = f.tip;
    __builtin_memcpy(f.eth_dst, f.sha, 6);
    __builtin_memcpy(f.eth_src, ep->node_mac, 6);
    f.op = bpf_htons(ARP_OP_REPLY);
    __builtin_memcpy(f.tha, f.sha, 6);
    f.tip = f.sip;
    __builtin_memcpy(f.sha, ep->node_mac, 6);
    f.sip = target;
    if (bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
        return TC_ACT_OK;
    count(0, skb->len);
    return bpf_redirect(skb->ifindex, 0);
}

#endif
