/* Service load balancing: frontend lookup, backend choice sticky per connection, DNAT and reverse NAT. */
#ifndef MERIDIAN_LB_H
#define MERIDIAN_LB_H

#include "common.h"
#include "conntrack.h"

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

static always_inline const struct mer_lb4_service *lb4_lookup_service(const struct packet4 *pkt)
{
    struct mer_lb4_key key = { .address = pkt->daddr, .dport = pkt->dport, .backend_slot = 0, .proto = pkt->proto };
    if (pkt->proto != IPPROTO_TCP && pkt->proto != IPPROTO_UDP)
        return 0;
    return bpf_map_lookup_elem(&mer_lb4_svc, &key);
}

static always_inline __u32 l4_csum_off(const struct packet4 *pkt)
{
    return pkt->l4_off + (pkt->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check));
}

/*
 * Rewrites one address and port of the packet, fixing the IPv4 and L4 checksums.
 * `src` selects the source fields (reverse NAT) over the destination (DNAT). Returns 0 or a drop reason.
 */
static always_inline int nat4_rewrite(struct __sk_buff *skb, struct packet4 *pkt, int src, __u32 new_addr, __u16 new_port)
{
    __u32 old_addr = src ? pkt->saddr : pkt->daddr;
    __u16 old_port = src ? pkt->sport : pkt->dport;
    __u32 addr_off = src ? IP_SADDR_OFF : IP_DADDR_OFF;
    int has_l4 = !pkt->is_later_fragment && (pkt->proto == IPPROTO_TCP || pkt->proto == IPPROTO_UDP);
    __u64 mangled = pkt->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

    if (has_l4) {
        __u32 csum_off = l4_csum_off(pkt);
        __u32 port_off = pkt->l4_off + (src ? 0 : 2);
        if (old_addr != new_addr &&
            bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, BPF_F_PSEUDO_HDR | mangled | 4) < 0)
            return MER_DROP_CSUM_L4;
        if (old_port != new_port) {
            if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2) < 0)
                return MER_DROP_CSUM_L4;
            if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
                return MER_DROP_WRITE_ERROR;
        }
    }
    if (old_addr != new_addr) {
        if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
            return MER_DROP_CSUM_L3;
        if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
            return MER_DROP_WRITE_ERROR;
    }
    if (src) {
        pkt->saddr = new_addr;
        pkt->sport = new_port;
    } else {
        pkt->daddr = new_addr;
        pkt->dport = new_port;
    }
    return 0;
}

/*
 * A random backend among the `count` slots of the service at `address`:`port`, or 0 when it
 * has none. Both balancers choose through here: at the socket (sock.bpf.c; per connect(), or
 * per datagram for unconnected UDP), and per flow in the packet path otherwise.
 */
static always_inline const struct mer_lb4_backend *lb4_pick_backend(__u32 address, __u16 port, __u8 proto, __u16 count,
                                                                    __u32 *backend_id)
{
    struct mer_lb4_key slot = { .address = address, .dport = port, .proto = proto };
    const struct mer_lb4_service *chosen;

    if (count == 0)
        return 0;
    slot.backend_slot = (bpf_get_prandom_u32() % count) + 1;
    chosen = bpf_map_lookup_elem(&mer_lb4_svc, &slot);
    if (!chosen)
        return 0;
    *backend_id = chosen->backend_id;
    return bpf_map_lookup_elem(&mer_lb4_be, backend_id);
}

/*
 * Chooses the backend for a packet to `svc`: the one this connection already uses when it is
 * still there, otherwise a random slot, remembered in a service conntrack entry. Then DNATs.
 * Returns 0 or a drop reason.
 */
static always_inline int lb4_local(struct __sk_buff *skb, struct packet4 *pkt, const struct mer_lb4_service *svc)
{
    struct mer_ct_key skey = {
        .saddr = pkt->saddr, .daddr = pkt->daddr, .sport = pkt->sport, .dport = pkt->dport,
        .proto = pkt->proto, .dir = MER_CT_DIR_SERVICE,
    };
    __u32 now = ct_now();
    struct mer_ct_entry *se = bpf_map_lookup_elem(&mer_ct4, &skey);
    const struct mer_lb4_backend *be = 0;
    __u32 backend_id = 0;
    __u16 count = svc->count;

    if (se && ct_entry_usable(se, pkt, now)) {
        backend_id = se->backend_id;
        be = bpf_map_lookup_elem(&mer_lb4_be, &backend_id);
        /* A backend going away keeps its connections but takes no new ones. */
        if (be && be->flags != MER_BACKEND_ACTIVE && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
            be = 0;
    }
    if (!be) {
        struct mer_ct_entry fresh = { .rev_nat_index = svc->rev_nat_index };

        be = lb4_pick_backend(pkt->daddr, pkt->dport, pkt->proto, count, &backend_id);
        if (!be)
            return MER_DROP_NO_SERVICE;
        fresh.backend_id = backend_id;
        ct_account(&fresh, pkt, 0, skb->len, now);
        if (bpf_map_update_elem(&mer_ct4, &skey, &fresh, BPF_ANY) < 0)
            return MER_DROP_CT_CREATE_FAILED;
    } else if (se) {
        ct_account(se, pkt, 0, skb->len, now);
        /* Only the client's flags reach this entry; once it closes, the backend choice need not
         * outlive the connection's own close timeout. */
        if (se->flags & (MER_CT_F_TX_CLOSING | MER_CT_F_RX_CLOSING))
            se->lifetime = now + MER_CT_TIMEOUT_TCP_CLOSE;
    }
    return nat4_rewrite(skb, pkt, 0, be->address, be->port);
}

/* Restores the frontend as the source of a reply. Returns 0 or a drop reason. */
static always_inline int lb4_rev_nat(struct __sk_buff *skb, struct packet4 *pkt, __u16 rev_nat_index)
{
    const struct mer_lb4_revnat *rn;

    if (rev_nat_index == 0)
        return 0;
    rn = bpf_map_lookup_elem(&mer_lb4_revnat, &rev_nat_index);
    if (!rn)
        return 0;
    return nat4_rewrite(skb, pkt, 1, rn->address, rn->port);
}

struct reject_frame {
    __u8 align[2]; /* puts the IPv4 header on a 4-byte boundary for bpf_csum_diff */
    __u8 eth_dst[6];
    __u8 eth_src[6];
    __u16 eth_proto;
    struct iphdr ip;
    struct icmp4_hdr icmp;
    __u8 quoted[28]; /* the offending IPv4 header and the first 8 bytes after it */
} __attribute__((packed));

static always_inline __u16 csum_fold32(__u32 sum)
{
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    return (__u16)~sum;
}

/*
 * Turns a packet to a service without backends into an ICMP port-unreachable from the service
 * address, sent straight back to the pod, so the client is refused at once instead of hanging.
 * Returns 0 when the frame is ready to be redirected, or a drop reason.
 */
static always_inline int lb4_reject(struct __sk_buff *skb, const struct packet4 *pkt, const struct mer_endpoint_info *ep)
{
    struct reject_frame f = {};
    __s64 sum;

    if (pkt->l4_off != ETH_HLEN + sizeof(struct iphdr) || pkt->is_later_fragment)
        return MER_DROP_NO_SERVICE;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, f.quoted, sizeof(f.quoted)) < 0)
        return MER_DROP_NO_SERVICE;
    if (bpf_skb_change_tail(skb, sizeof(f) - sizeof(f.align), 0) < 0)
        return MER_DROP_WRITE_ERROR;

    __builtin_memcpy(f.eth_dst, ep->mac, 6);
    __builtin_memcpy(f.eth_src, ep->node_mac, 6);
    f.eth_proto = bpf_htons(ETH_P_IP);
    f.ip.version = 4;
    f.ip.ihl = 5;
    f.ip.tot_len = bpf_htons(sizeof(f) - sizeof(f.align) - ETH_HLEN);
    f.ip.ttl = IP_DEFAULT_TTL;
    f.ip.protocol = IPPROTO_ICMP;
    f.ip.saddr = pkt->daddr;
    f.ip.daddr = pkt->saddr;
    sum = bpf_csum_diff(0, 0, (void *)&f + offsetof(struct reject_frame, ip), sizeof(f.ip), 0);
    if (sum < 0)
        return MER_DROP_CSUM_L3;
    f.ip.check = csum_fold32((__u32)sum);
    f.icmp.type = ICMP_DEST_UNREACH;
    f.icmp.code = ICMP_PORT_UNREACH;
    sum = bpf_csum_diff(0, 0, (void *)&f + offsetof(struct reject_frame, icmp), sizeof(f.icmp) + sizeof(f.quoted), 0);
    if (sum < 0)
        return MER_DROP_CSUM_L4;
    f.icmp.checksum = csum_fold32((__u32)sum);
    if (bpf_skb_store_bytes(skb, 0, f.eth_dst, sizeof(f) - sizeof(f.align), 0) < 0)
        return MER_DROP_WRITE_ERROR;
    return 0;
}

#endif
