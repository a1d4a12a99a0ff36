/*
 * to-pod: tc egress on a pod's host-side veth, i.e. every packet about to enter the pod, whether
 * it came from a local pod or from the node's stack (packets from the overlay are delivered by
 * from-overlay itself, straight into the pod). `pod_ingress` does conntrack, ingress policy and
 * reverse NAT. The source identity arrives in skb->mark from from-pod, else from the ipcache.
 */
#define MER_PROGRAM_DIRECTION MER_EVENT_DIR_INGRESS
#include "lib/deliver.h"

static always_inline int handle_ipv4(struct __sk_buff *skb)
{
    struct packet4 pkt = {};
    const struct mer_endpoint_info *ep;
    const struct mer_ipcache_value *src;
    __u32 src_identity;
    __u8 ct_state;
    int reason;

    reason = parse_ipv4(skb, &pkt);
    if (reason)
        return drop(skb, reason, &pkt, 0, 0);

    ep = endpoint_lookup(pkt.daddr);
    if (!ep)
        return drop(skb, MER_DROP_UNROUTABLE, &pkt, 0, 0);

    src_identity = identity_from_mark(skb->mark);
    if (!src_identity) {
        src = ipcache_lookup(pkt.saddr);
        src_identity = src ? src->identity : MER_ID_WORLD;
        if (src && (src->flags & MER_IPCACHE_F_LOCAL_NODE))
            src_identity = MER_ID_HOST;
    }
    skb->mark = 0;

    reason = pod_ingress(skb, &pkt, ep, src_identity, &ct_state);
    if (reason)
        return drop(skb, reason, &pkt, src_identity, ep->identity);
    trace(skb, MER_TRACE_TO_POD, &pkt, ct_state, src_identity, ep->identity);
    return TC_ACT_OK;
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
    if (skb->protocol == bpf_htons(ETH_P_IP))
        return handle_ipv4(skb);
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
