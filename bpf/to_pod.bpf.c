/*
 * to-pod: tc egress on a pod's host-side veth, i.e. every packet about to enter the pod, whether
 * it came from a local pod, from the overlay or from the node's stack. Conntrack in the
 * receiving direction; ingress policy for new connections (replies of allowed connections pass
 * through conntrack); replies to connections through a service get their frontend back as
 * source (reverse NAT). The source identity arrives in skb->mark from our other programs, else
 * from the ipcache.
 */
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/lb.h"
#include "lib/policy.h"

static always_inline int handle_ipv4(struct __sk_buff *skb)
{
    struct packet4 pkt = {};
    const struct mer_endpoint_info *ep;
    const struct mer_ipcache_value *src;
    struct mer_ct_entry *entry;
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

    if (is_icmp_error(&pkt)) {
        trace(skb, MER_TRACE_TO_POD, &pkt, MER_CT_RELATED, src_identity, ep->identity);
        return TC_ACT_OK;
    }

    ct_state = ct_lookup(&pkt, MER_CT_DIR_IN, skb->len, &entry);
    if (ct_state == MER_CT_REPLY && entry) {
        reason = lb4_rev_nat(skb, &pkt, entry->rev_nat_index);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, ep->identity);
    } else if (ct_state == MER_CT_NEW) {
        reason = policy_verdict(ep, MER_POLICY_INGRESS, src_identity, &pkt);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, ep->identity);
        reason = ct_create(&pkt, MER_CT_DIR_IN, skb->len, 0, src_identity);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, ep->identity);
    }

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
