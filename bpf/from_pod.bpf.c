/*
 * from-pod: tc ingress on a pod's host-side veth, i.e. every packet the pod sends.
 * Order: ARP responder; source check; service LB (sticky backend, DNAT); conntrack; ipcache of
 * the destination; egress policy for new connections; then local delivery, VXLAN encapsulation
 * with the source identity as VNI (in strict encryption mode only to nodes with a tunnel), or
 * the node's stack.
 */
#define MER_PROGRAM_DIRECTION MER_EVENT_DIR_EGRESS
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/lb.h"
#include "lib/arp.h"
#include "lib/policy.h"

/* In strict mode a pod's packet leaves for another node only when the agent has marked that node
 * as reached through WireGuard (mer_encrypt4); otherwise it would cross the underlay in the clear. */
static always_inline int tunnel_allowed(const struct mer_config *cfg, __u32 tunnel_endpoint)
{
    struct mer_encrypt_key key = { .ip4 = tunnel_endpoint };
    const struct mer_encrypt_value *value;

    if (!(cfg->flags & MER_CONFIG_F_ENCRYPTION_STRICT))
        return 1;
    value = bpf_map_lookup_elem(&mer_encrypt4, &key);
    return value && (value->flags & MER_ENCRYPT_F_WIREGUARD);
}

static always_inline int encap_and_redirect(struct __sk_buff *skb, const struct mer_config *cfg,
                                            const struct packet4 *pkt, __u32 src_identity,
                                            const struct mer_ipcache_value *dst, __u8 ct_state)
{
    struct bpf_tunnel_key key = {};

    if (!tunnel_allowed(cfg, dst->tunnel_endpoint))
        return drop(skb, MER_DROP_UNENCRYPTED_TRAFFIC, pkt, src_identity, dst->identity);
    key.tunnel_id = src_identity;
    key.remote_ipv4 = bpf_ntohl(dst->tunnel_endpoint);
    key.tunnel_ttl = IP_DEFAULT_TTL;
    if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
        return drop(skb, MER_DROP_WRITE_ERROR, pkt, src_identity, dst->identity);
    count(0, skb->len);
    if (worth_tracing(pkt, ct_state))
        emit_event_via(skb, MER_EVENT_TRACE, MER_TRACE_TO_OVERLAY, pkt, ct_state, src_identity, dst->identity,
                       dst->tunnel_endpoint);
    return bpf_redirect(cfg->vxlan_ifindex, 0);
}

static always_inline int handle_ipv4(struct __sk_buff *skb)
{
    struct packet4 pkt = {};
    const struct mer_endpoint_info *src_ep, *dst_ep;
    const struct mer_lb4_service *svc;
    const struct mer_ipcache_value *dst;
    const struct mer_config *cfg;
    struct mer_ct_entry *entry;
    __u32 src_identity, dst_identity = MER_ID_WORLD;
    __u16 rev_nat_index = 0;
    __u8 ct_state;
    int reason;

    reason = parse_ipv4(skb, &pkt);
    if (reason)
        return drop(skb, reason, &pkt, 0, 0);

    src_ep = endpoint_lookup(pkt.saddr);
    if (!src_ep || src_ep->ifindex != skb->ifindex)
        return drop(skb, MER_DROP_INVALID_SIP, &pkt, 0, 0);
    src_identity = src_ep->identity;

    cfg = node_config();
    if (!cfg)
        return drop(skb, MER_DROP_HOST_NOT_READY, &pkt, src_identity, 0);

    svc = lb4_lookup_service(&pkt);
    if (svc) {
        rev_nat_index = svc->rev_nat_index;
        pkt.rev_nat_index = rev_nat_index;
        reason = lb4_local(skb, &pkt, svc);
        if (reason == MER_DROP_NO_SERVICE && svc->count == 0) {
            reason = lb4_reject(skb, &pkt, src_ep);
            if (reason)
                return drop(skb, reason, &pkt, src_identity, 0);
            count(MER_DROP_NO_SERVICE, skb->len);
            emit_event(skb, MER_EVENT_DROP, MER_DROP_NO_SERVICE, &pkt, MER_CT_NEW, src_identity, 0);
            return bpf_redirect(skb->ifindex, 0);
        }
        if (reason)
            return drop(skb, reason, &pkt, src_identity, 0);
    }

    ct_state = ct_lookup(&pkt, MER_CT_DIR_OUT, skb->len, &entry);

    dst = ipcache_lookup(pkt.daddr);
    if (dst)
        dst_identity = dst->identity;

    if (ct_state == MER_CT_NEW && !is_icmp_error(&pkt)) {
        /* Egress policy is decided once, on the connection's first packet, against the
         * destination's identity (after DNAT: the backend's). */
        reason = policy_verdict(src_ep, MER_POLICY_EGRESS, dst_identity, &pkt);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, dst_identity);
        reason = ct_create(&pkt, MER_CT_DIR_OUT, skb->len, rev_nat_index, src_identity);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, dst_identity);
    } else if (ct_state == MER_CT_ESTABLISHED && entry && entry->rev_nat_index != rev_nat_index) {
        /* The same tuple now goes (or no longer goes) through a service: replies follow suit. */
        entry->rev_nat_index = rev_nat_index;
    }

    /* The node's own addresses (gateway, DNS) are served by its stack. */
    if (pkt.daddr == cfg->gateway_ip || pkt.daddr == cfg->node_ip || (dst && (dst->flags & MER_IPCACHE_F_LOCAL_NODE))) {
        trace(skb, MER_TRACE_TO_STACK, &pkt, ct_state, src_identity, MER_ID_HOST);
        return TC_ACT_OK;
    }

    dst_ep = endpoint_lookup(pkt.daddr);
    if (dst_ep) {
        reason = decrement_ttl(skb, &pkt);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, dst_ep->identity);
        skb->mark = mark_identity(src_identity);
        trace(skb, MER_TRACE_TO_POD, &pkt, ct_state, src_identity, dst_ep->identity);
        if (redirect_to_endpoint(skb, dst_ep) < 0)
            return drop(skb, MER_DROP_WRITE_ERROR, &pkt, src_identity, dst_ep->identity);
        return TC_ACT_REDIRECT;
    }

    if (dst && (dst->flags & MER_IPCACHE_F_TUNNEL) && dst->tunnel_endpoint != 0 && dst->tunnel_endpoint != cfg->node_ip) {
        reason = decrement_ttl(skb, &pkt);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, dst_identity);
        return encap_and_redirect(skb, cfg, &pkt, src_identity, dst, ct_state);
    }

    if (dst && (dst->flags & MER_IPCACHE_F_TUNNEL))
        /* A prefix of this node whose address has no endpoint: stale or not yet set up. */
        return drop(skb, MER_DROP_UNROUTABLE, &pkt, src_identity, dst_identity);

    trace(skb, MER_TRACE_TO_STACK, &pkt, ct_state, src_identity, dst_identity);
    return TC_ACT_OK;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
    switch (skb->protocol) {
    case bpf_htons(ETH_P_IP):
        return handle_ipv4(skb);
    case bpf_htons(ETH_P_ARP):
        return arp_respond(skb);
    default:
        return drop(skb, MER_DROP_UNKNOWN_L3, 0, 0, 0);
    }
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
