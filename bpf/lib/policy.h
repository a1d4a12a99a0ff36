/*
 * Identity-aware policy, decided on a connection's first packet: one LPM lookup per identity
 * (exact, then any), and one by the peer's address for NetworkPolicy ipBlock rules.
 */
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

/* The peer's address in a direction: the destination of what the endpoint sends (after DNAT,
 * the backend), the source of what it receives. */
static always_inline __u32 policy_peer_address(__u8 direction, const struct packet4 *pkt)
{
    return direction == MER_POLICY_EGRESS ? pkt->daddr : pkt->saddr;
}

/*
 * The endpoint's entry for the peer's address under NetworkPolicy ipBlock rules, which match
 * any address in their block, pods' included: the longest ipBlock prefix of the node holding
 * the address gives its number, looked up as the identity. NULL when no prefix holds it.
 */
static always_inline const struct mer_policy_entry *policy_ipblock_lookup(__u16 endpoint_id, __u8 direction,
                                                                          const struct packet4 *pkt)
{
    struct mer_ipblock_key key = { .prefixlen = 32, .ip4 = policy_peer_address(direction, pkt) };
    const struct mer_ipblock_value *block = bpf_map_lookup_elem(&mer_ipblock4, &key);

    if (!block)
        return 0;
    return policy_lookup(endpoint_id, direction, block->identity, pkt);
}

/*
 * The verdict for a new connection of a local endpoint in one direction against the remote
 * identity and address: 0 to allow, or a drop reason. A direction no policy selects is not
 * enforced. The exact identity, the any-identity and the address (ipBlock) entries are all
 * consulted, so a deny for one identity and a wildcard allow resolve to the deny, and a deny
 * wins over an ipBlock allow.
 */
static always_inline int policy_verdict(const struct mer_endpoint_info *ep, __u8 direction, __u32 remote_identity,
                                        const struct packet4 *pkt)
{
    const struct mer_policy_entry *entry;
    __u16 enforced = direction == MER_POLICY_INGRESS ? MER_ENDPOINT_F_INGRESS_ENFORCED : MER_ENDPOINT_F_EGRESS_ENFORCED;
    int allowed = 0;

    if (!(ep->flags & enforced))
        return 0;
    /* Each lookup is judged on its own (the verifier refuses combining map pointers). */
    entry = policy_lookup(ep->endpoint_id, direction, remote_identity, pkt);
    if (entry) {
        if (entry->deny)
            return MER_DROP_POLICY_DENY;
        allowed = 1;
    }
    entry = policy_lookup(ep->endpoint_id, direction, 0, pkt);
    if (entry) {
        if (entry->deny)
            return MER_DROP_POLICY_DENY;
        allowed = 1;
    }
    entry = policy_ipblock_lookup(ep->endpoint_id, direction, pkt);
    if (entry) {
        if (entry->deny)
            return MER_DROP_POLICY_DENY;
        allowed = 1;
    }
    return allowed ? 0 : MER_DROP_POLICY;
}

#endif
