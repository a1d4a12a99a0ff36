/*
 * from-overlay: tc ingress on the node's collect-metadata VXLAN device, after the kernel has
 * decapsulated. The VNI is the sender's security identity. Before anything trusts it, the
 * packet must be one a node of the mesh could have sent:
 *  - the VNI is a cluster-scoped identity. Nodes encapsulate only their pods' packets (from-pod
 *    is the one program that sets a tunnel key, and only for a source that is one of its pods),
 *    with the pod's identity; the nodes' own traffic crosses the underlay, never the overlay.
 *    So no reserved identity is ever sent, the host's included;
 *  - the sender (outer source) is a known node, and the identity belongs to its cluster (a node
 *    cannot speak for another cluster's pods);
 *  - the inner source is an address the ipcache places on that node, in its cluster: one of
 *    its pods, or failing a pod's entry, its pod CIDR (a node cannot speak for addresses it
 *    does not hold: other nodes' pods, this node's pods, the nodes themselves, CIDR prefixes).
 * In strict encryption mode a sender the node reaches through WireGuard (marked in mer_encrypt4)
 * must also have sent through WireGuard: its VXLAN must carry the mark from_wireguard puts on
 * what the WireGuard device delivers, or it came over the underlay in the clear (forged, or
 * sent around the tunnel) and is dropped as UNENCRYPTED_INGRESS.
 * Packets for local pods then go through `pod_ingress` (conntrack, ingress policy, reverse
 * NAT) here and are handed straight into the pod's namespace with bpf_redirect_peer, skipping
 * the host veth and a backlog queue; packets for the node itself go to its stack.
 */
#define MER_PROGRAM_DIRECTION MER_EVENT_DIR_INGRESS
#include "lib/deliver.h"

/*
 * Whether the ipcache places `saddr` on the sending node: its longest prefix (a pod's /32, else
 * a pod CIDR) has the sender as tunnel endpoint and the sender's cluster. Entries that no node
 * owns (node addresses, CIDR-rule prefixes) have no tunnel endpoint, so they never match.
 */
static always_inline int sender_owns_source(__u32 saddr, __u32 sender_ip, __u16 sender_cluster)
{
    const struct mer_ipcache_value *src = ipcache_lookup(saddr);

    return src && src->tunnel_endpoint == sender_ip && src->cluster_id == sender_cluster;
}

/* Whether strict mode lets VXLAN from `sender_ip` in: always when the node has no tunnel to the
 * sender (it publishes no key, or its peer is not configured yet), else only through the tunnel. */
static always_inline int ingress_allowed(const struct mer_config *cfg, __u32 sender_ip, int decrypted)
{
    struct mer_encrypt_key key = { .ip4 = sender_ip };
    const struct mer_encrypt_value *value;

    if (!(cfg->flags & MER_CONFIG_F_ENCRYPTION_STRICT) || decrypted)
        return 1;
    value = bpf_map_lookup_elem(&mer_encrypt4, &key);
    return !value || !(value->flags & MER_ENCRYPT_F_WIREGUARD);
}

static always_inline int drop_unencrypted(struct __sk_buff *skb, __u32 src_identity)
{
    struct packet4 pkt = {};

    if (skb->protocol == bpf_htons(ETH_P_IP) && parse_ipv4(skb, &pkt) == 0)
        return drop(skb, MER_DROP_UNENCRYPTED_INGRESS, &pkt, src_identity, 0);
    return drop(skb, MER_DROP_UNENCRYPTED_INGRESS, 0, src_identity, 0);
}

static always_inline int handle_ipv4(struct __sk_buff *skb, __u32 src_identity, __u32 sender_ip, __u16 sender_cluster)
{
    struct packet4 pkt = {};
    const struct mer_endpoint_info *ep;
    const struct mer_config *cfg;
    int reason;

    reason = parse_ipv4(skb, &pkt);
    if (reason)
        return drop(skb, reason, &pkt, src_identity, 0);
    if (!sender_owns_source(pkt.saddr, sender_ip, sender_cluster))
        return drop(skb, MER_DROP_SOURCE_NOT_OWNED_BY_SENDER, &pkt, src_identity, 0);

    ep = endpoint_lookup(pkt.daddr);
    if (ep) {
        __u8 ct_state;

        reason = pod_ingress(skb, &pkt, ep, src_identity, &ct_state);
        if (reason)
            return drop(skb, reason, &pkt, src_identity, ep->identity);
        trace(skb, MER_TRACE_FROM_OVERLAY, &pkt, ct_state, src_identity, ep->identity);
        if (redirect_into_endpoint(skb, ep) < 0)
            return drop(skb, MER_DROP_WRITE_ERROR, &pkt, src_identity, ep->identity);
        return TC_ACT_REDIRECT;
    }
    cfg = node_config();
    if (cfg && (pkt.daddr == cfg->gateway_ip || pkt.daddr == cfg->node_ip)) {
        trace(skb, MER_TRACE_TO_STACK, &pkt, MER_CT_NEW, src_identity, MER_ID_HOST);
        return TC_ACT_OK;
    }
    return drop(skb, MER_DROP_UNROUTABLE, &pkt, src_identity, 0);
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
    struct bpf_tunnel_key key = {};
    const struct mer_ipcache_value *sender;
    const struct mer_config *cfg;
    __u32 src_identity, sender_ip;
    int decrypted = (skb->mark & MER_MARK_MAGIC_MASK) == MER_MARK_MAGIC_DECRYPTED;

    if (decrypted)
        skb->mark = 0;
    if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
        return drop(skb, MER_DROP_NO_TUNNEL_KEY, 0, 0, 0);
    src_identity = key.tunnel_id & 0xFFFFFF;
    if (src_identity == MER_ID_UNKNOWN)
        return drop(skb, MER_DROP_INVALID_IDENTITY, 0, src_identity, 0);
    if (src_identity < MER_FIRST_CLUSTER_IDENTITY)
        return drop(skb, MER_DROP_RESERVED_IDENTITY_FROM_NODE, 0, src_identity, 0);

    cfg = node_config();
    if (!cfg)
        return drop(skb, MER_DROP_HOST_NOT_READY, 0, src_identity, 0);
    sender_ip = bpf_htonl(key.remote_ipv4);
    if (!ingress_allowed(cfg, sender_ip, decrypted))
        return drop_unencrypted(skb, src_identity);
    sender = ipcache_lookup(sender_ip);
    if (!sender || sender->identity != MER_ID_REMOTE_NODE)
        return drop(skb, MER_DROP_UNKNOWN_SENDER, 0, src_identity, 0);
    if (cfg->identity_cluster_shift < 32 && (src_identity >> cfg->identity_cluster_shift) != sender->cluster_id)
        return drop(skb, MER_DROP_INVALID_IDENTITY, 0, src_identity, 0);

    if (skb->protocol == bpf_htons(ETH_P_IP))
        return handle_ipv4(skb, src_identity, sender_ip, sender->cluster_id);
    return drop(skb, MER_DROP_UNKNOWN_L3, 0, src_identity, 0);
}

/*
 * from-wireguard: tc ingress on the node's WireGuard device. Everything the device hands the
 * node was decrypted from a peer; the mark travels with the VXLAN datagram inside through the
 * stack and the VXLAN device's decapsulation to from_overlay.
 */
SEC("tc")
int from_wireguard(struct __sk_buff *skb)
{
    skb->mark = MER_MARK_MAGIC_DECRYPTED;
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
