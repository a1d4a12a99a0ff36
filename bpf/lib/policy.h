/* Identity-aware policy: one LPM lookup per identity (exact, then any), decided on a connection's first packet. */
#ifndef MERIDIAN_POLICY_H
#define MERIDIAN_POLICY_H

#include "common.h"

static always_inline const struct mer_policy_entry *policy_lookup(__u16 endpoint_id, __u8 direction, __u32 identity,
                                                                  const struct packet4 *pkt)
{
    struct mer_policy_key key = {
        .prefixlen = MER_POLICY_FULL_PREFIX,
        .endpoint_id = bpf_htons(endpoint_id),
        .direction = direction,
        .identity = bpf_htonl(identity),
        .proto = pkt->proto,
        .dport = pkt->dport,
    };
    return bpf_map_lookup_elem(&mer_policy, &key);
}

/*
 * The verdict for a new connection of a local endpoint in one direction against the remote
 * identity: 0 to allow, or a drop reason. A direction no policy selects is not enforced.
 * The exact identity and the any-identity entries are both consulted, so a deny for one
 * identity and a wildcard allow resolve to the deny.
 */
static always_inline int policy_verdict(const struct mer_endpoint_info *ep, __u8 direction, __u32 remote_identity,
                                        const struct packet4 *pkt)
{
    const struct mer_policy_entry *exact, *any;
    __u16 enforced = direction == MER_POLICY_INGRESS ? MER_ENDPOINT_F_INGRESS_ENFORCED : MER_ENDPOINT_F_EGRESS_ENFORCED;

    if (!(ep->flags & enforced))
        return 0;
    exact = policy_lookup(ep->endpoint_id, direction, remote_identity, pkt);
    any = policy_lookup(ep->endpoint_id, direction, 0, pkt);
    if ((exact && exact->deny) || (any && any->deny))
        return MER_DROP_POLICY_DENY;
    if (exact || any)
        return 0;
    return MER_DROP_POLICY;
}

#endif
