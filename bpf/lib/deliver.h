/* Delivery into a local pod, shared by to-pod and from-overlay. */
#ifndef MERIDIAN_DELIVER_H
#define MERIDIAN_DELIVER_H

#include "common.h"
#include "conntrack.h"
#include "lb.h"
#include "policy.h"

/*
 * What a packet for a local pod goes through before it enters the pod: conntrack in the
 * receiving direction, ingress policy for new connections (replies of allowed connections pass
 * through conntrack), and reverse NAT of replies to connections through a service. ICMP errors
 * pass as related. Returns 0 to deliver, or a drop reason; `ct_state` says what conntrack found.
 */
static always_inline int pod_ingress(struct __sk_buff *skb, struct packet4 *pkt, const struct mer_endpoint_info *ep,
                                     __u32 src_identity, __u8 *ct_state)
{
    struct mer_ct_entry *entry;
    int reason;

    if (is_icmp_error(pkt)) {
        *ct_state = MER_CT_RELATED;
        return 0;
    }
    *ct_state = ct_lookup(pkt, MER_CT_DIR_IN, skb->len, &entry);
    if (*ct_state == MER_CT_REPLY && entry)
        return lb4_rev_nat(skb, pkt, entry->rev_nat_index);
    if (*ct_state == MER_CT_NEW) {
        reason = policy_verdict(ep, MER_POLICY_INGRESS, src_identity, pkt);
        if (reason)
            return reason;
        return ct_create(pkt, MER_CT_DIR_IN, skb->len, 0, src_identity);
    }
    return 0;
}

#endif
