/* Includes and small helpers shared by every Meridian BPF program; the maps are in maps.h. */
#ifndef MERIDIAN_COMMON_H
#define MERIDIAN_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meridian/abi.h"
#include "maps.h"

#define always_inline inline __attribute__((always_inline))

/* Each program file says which side of a pod it observes before including this header. */
#ifndef MER_PROGRAM_DIRECTION
#define MER_PROGRAM_DIRECTION MER_EVENT_DIR_UNKNOWN
#endif

/* RFC 792 (linux/icmp.h would pull in libc headers). */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMP_ECHO 8

struct icmp4_hdr {
    __u8 type;
    __u8 code;
    __u16 checksum;
    __u16 id;
    __u16 sequence;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IP_DEFAULT_TTL 64

/* The addresses and ports of one IPv4 packet, as parsed. */
struct packet4 {
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 tcp_flags;
    __u8 is_fragment;      /* any fragment */
    __u8 is_later_fragment; /* a fragment without the L4 header */
    __u32 l4_off;
    __u16 frag_id;
    __u8 ttl;
    __u8 icmp_type;
    __u16 rev_nat_index;   /* set once the service LB translated the destination */
};

static always_inline const struct mer_config *node_config(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&mer_config, &zero);
}

static always_inline void count(__u32 reason, __u32 len)
{
    __u32 key = MER_PROGRAM_DIRECTION * MER_METRICS_REASONS + reason;
    struct mer_metric *m = bpf_map_lookup_elem(&mer_metrics, &key);
    if (m) {
        m->packets += 1;
        m->bytes += len;
    }
}

/* Reports one packet to the agent's flow observer. A full ring loses the event, never the
 * packet: the loss is counted under MER_METRIC_EVENTS_LOST. */
static always_inline int events_off(void)
{
    const struct mer_config *cfg = node_config();
    return cfg && (cfg->flags & MER_CONFIG_F_NO_EVENTS);
}

/* A zeroed event of `type` to fill and submit, or NULL: events are off, or the ring is full
 * (the loss is counted). */
static always_inline struct mer_event *reserve_event(__u8 type)
{
    struct mer_event *ev;

    if (events_off())
        return 0;
    ev = bpf_ringbuf_reserve(&mer_events, sizeof(*ev), 0);
    if (!ev) {
        count(MER_METRIC_EVENTS_LOST, 0);
        return 0;
    }
    __builtin_memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->timestamp_ns = bpf_ktime_get_ns();
    return ev;
}

static always_inline void emit_event_via(struct __sk_buff *skb, __u8 type, __u8 subtype, const struct packet4 *pkt,
                                         __u8 ct_state, __u32 src_identity, __u32 dst_identity, __u32 tunnel_endpoint)
{
    struct mer_event *ev = reserve_event(type);

    if (!ev)
        return;
    ev->subtype = subtype;
    ev->ct_state = ct_state;
    ev->ifindex = skb->ifindex;
    ev->direction = MER_PROGRAM_DIRECTION;
    ev->src_identity = src_identity;
    ev->dst_identity = dst_identity;
    if (pkt) {
        ev->proto = pkt->proto;
        ev->saddr = pkt->saddr;
        ev->daddr = pkt->daddr;
        ev->sport = pkt->sport;
        ev->dport = pkt->dport;
        ev->tcp_flags = pkt->proto == IPPROTO_ICMP ? pkt->icmp_type : pkt->tcp_flags;
        ev->rev_nat_index = pkt->rev_nat_index;
    }
    ev->len = skb->len;
    ev->tunnel_endpoint = tunnel_endpoint;
    bpf_ringbuf_submit(ev, 0);
}

static always_inline void emit_event(struct __sk_buff *skb, __u8 type, __u8 subtype, const struct packet4 *pkt,
                                     __u8 ct_state, __u32 src_identity, __u32 dst_identity)
{
    emit_event_via(skb, type, subtype, pkt, ct_state, src_identity, dst_identity, 0);
}

/* Whether a forwarded packet is reported (Cilium's monitor aggregation "medium"): a
 * connection's first packet and the packets that close it; the rest is only counted. */
static always_inline int worth_tracing(const struct packet4 *pkt, __u8 ct_state)
{
    if (ct_state == MER_CT_NEW)
        return 1;
    return pkt && pkt->proto == IPPROTO_TCP && (pkt->tcp_flags & (MER_TCP_FIN | MER_TCP_RST));
}

/* Every drop goes through here: it is counted under its reason and reported. */
static always_inline int drop(struct __sk_buff *skb, __u8 reason, const struct packet4 *pkt,
                              __u32 src_identity, __u32 dst_identity)
{
    count(reason, skb->len);
    emit_event(skb, MER_EVENT_DROP, reason, pkt, 0, src_identity, dst_identity);
    return TC_ACT_SHOT;
}

static always_inline void trace(struct __sk_buff *skb, __u8 point, const struct packet4 *pkt, __u8 ct_state,
                                __u32 src_identity, __u32 dst_identity)
{
    count(0, skb->len);
    if (worth_tracing(pkt, ct_state))
        emit_event(skb, MER_EVENT_TRACE, point, pkt, ct_state, src_identity, dst_identity);
}

static always_inline __u32 mark_identity(__u32 identity)
{
    return (identity << MER_MARK_IDENTITY_SHIFT) | MER_MARK_MAGIC_IDENTITY;
}

/* The identity an earlier program of ours left in skb->mark, or 0. */
static always_inline __u32 identity_from_mark(__u32 mark)
{
    if ((mark & MER_MARK_MAGIC_MASK) != MER_MARK_MAGIC_IDENTITY)
        return 0;
    return mark >> MER_MARK_IDENTITY_SHIFT;
}

static always_inline const struct mer_ipcache_value *ipcache_lookup(__u32 ip4)
{
    struct mer_ipcache_key key = { .prefixlen = 32, .ip4 = ip4 };
    return bpf_map_lookup_elem(&mer_ipcache, &key);
}

static always_inline const struct mer_endpoint_info *endpoint_lookup(__u32 ip4)
{
    struct mer_endpoint_key key = { .ip4 = ip4 };
    return bpf_map_lookup_elem(&mer_endpoints, &key);
}

/*
 * Parses the Ethernet and IPv4 headers and the ports. Returns 0 or a drop reason.
 * Later fragments take their ports from the first fragment's record.
 */
/* Protocols whose first four bytes are the source and destination ports, which policy and conntrack key on. */
static always_inline int has_ports(__u8 proto)
{
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

static always_inline int parse_ipv4(struct __sk_buff *skb, struct packet4 *pkt)
{
    struct iphdr header;
    struct iphdr *ip = &header;
    __u32 ihl;
    __u16 frag;

    /* Copied out rather than pulled: no program writes through packet pointers, and pulling
     * would make every packet's head writable (a copy for cloned skbs) on the hot path. */
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &header, sizeof(header)) < 0)
        return MER_DROP_INVALID;
    if (ip->version != 4)
        return MER_DROP_INVALID;
    ihl = ip->ihl * 4;
    if (ihl < sizeof(struct iphdr))
        return MER_DROP_INVALID;
    pkt->saddr = ip->saddr;
    pkt->daddr = ip->daddr;
    pkt->proto = ip->protocol;
    pkt->ttl = ip->ttl;
    pkt->l4_off = ETH_HLEN + ihl;
    pkt->frag_id = ip->id;
    pkt->sport = 0;
    pkt->dport = 0;
    pkt->tcp_flags = 0;
    pkt->icmp_type = 0;
    frag = bpf_ntohs(ip->frag_off);
    pkt->is_fragment = (frag & (IP_MF | IP_OFFSET)) != 0;
    pkt->is_later_fragment = (frag & IP_OFFSET) != 0;

    if (pkt->is_later_fragment) {
        struct mer_frag_key fk = { .saddr = pkt->saddr, .daddr = pkt->daddr, .id = pkt->frag_id, .proto = pkt->proto };
        struct mer_frag_ports *ports;
        if (!has_ports(pkt->proto))
            return 0;
        ports = bpf_map_lookup_elem(&mer_frag4, &fk);
        if (!ports)
            return MER_DROP_FRAG_NOSUPPORT;
        pkt->sport = ports->sport;
        pkt->dport = ports->dport;
        return 0;
    }

    switch (pkt->proto) {
    case IPPROTO_TCP: {
        struct tcphdr tcp;
        if (bpf_skb_load_bytes(skb, pkt->l4_off, &tcp, sizeof(tcp)) < 0)
            return MER_DROP_CT_INVALID_HDR;
        pkt->sport = tcp.source;
        pkt->dport = tcp.dest;
        pkt->tcp_flags = ((__u8 *)&tcp)[13];
        break;
    }
    case IPPROTO_UDP: {
        struct udphdr udp;
        if (bpf_skb_load_bytes(skb, pkt->l4_off, &udp, sizeof(udp)) < 0)
            return MER_DROP_CT_INVALID_HDR;
        pkt->sport = udp.source;
        pkt->dport = udp.dest;
        break;
    }
    case IPPROTO_SCTP: {
        /* The common header starts with the two ports, as UDP's does; tracked like UDP. */
        __be16 ports[2];
        if (bpf_skb_load_bytes(skb, pkt->l4_off, ports, sizeof(ports)) < 0)
            return MER_DROP_CT_INVALID_HDR;
        pkt->sport = ports[0];
        pkt->dport = ports[1];
        break;
    }
    case IPPROTO_ICMP: {
        struct icmp4_hdr icmp;
        if (bpf_skb_load_bytes(skb, pkt->l4_off, &icmp, sizeof(icmp)) < 0)
            return MER_DROP_CT_INVALID_HDR;
        pkt->icmp_type = icmp.type;
        /* Echo requests and replies are tracked by their identifier, like ports. */
        if (icmp.type == ICMP_ECHO)
            pkt->sport = icmp.id;
        else if (icmp.type == ICMP_ECHOREPLY)
            pkt->dport = icmp.id;
        break;
    }
    default:
        break;
    }

    if (pkt->is_fragment && has_ports(pkt->proto)) {
        struct mer_frag_key fk = { .saddr = pkt->saddr, .daddr = pkt->daddr, .id = pkt->frag_id, .proto = pkt->proto };
        struct mer_frag_ports ports = { .sport = pkt->sport, .dport = pkt->dport };
        bpf_map_update_elem(&mer_frag4, &fk, &ports, BPF_ANY);
    }
    return 0;
}

static always_inline int is_icmp_error(const struct packet4 *pkt)
{
    return pkt->proto == IPPROTO_ICMP && pkt->icmp_type != ICMP_ECHO && pkt->icmp_type != ICMP_ECHOREPLY;
}

/* Writes the MACs and sends the frame out of the host-side veth, where to-pod runs. */
static always_inline int redirect_to_endpoint(struct __sk_buff *skb, const struct mer_endpoint_info *ep)
{
    if (bpf_skb_store_bytes(skb, 0, ep->mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->node_mac, 6, 0) < 0)
        return -1;
    return bpf_redirect(ep->ifindex, 0);
}

/*
 * Hands a packet from a tc ingress hook straight to the pod's side of its veth (the peer of the
 * host interface), as if the pod had received it: no host veth transmit, no backlog queue.
 */
static always_inline int redirect_into_endpoint(struct __sk_buff *skb, const struct mer_endpoint_info *ep)
{
    if (bpf_skb_store_bytes(skb, 0, ep->mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->node_mac, 6, 0) < 0)
        return -1;
    return bpf_redirect_peer(ep->ifindex, 0);
}

/* Decrements the TTL when the packet is routed; returns 0, or a drop reason. */
static always_inline int decrement_ttl(struct __sk_buff *skb, struct packet4 *pkt)
{
    __u16 old_word, new_word;
    __u8 buf[2];

    if (pkt->ttl <= 1)
        return MER_DROP_TTL_EXCEEDED;
    if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), buf, 2) < 0)
        return MER_DROP_INVALID;
    __builtin_memcpy(&old_word, buf, 2);
    buf[0] -= 1;
    __builtin_memcpy(&new_word, buf, 2);
    if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_word, new_word, 2) < 0)
        return MER_DROP_CSUM_L3;
    if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), buf, 1, 0) < 0)
        return MER_DROP_WRITE_ERROR;
    pkt->ttl -= 1;
    return 0;
}

#endif
