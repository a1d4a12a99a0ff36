/* Connection tracking: one LRU map, entries per direction, lifetimes per the facts sheet defaults. */
#ifndef MERIDIAN_CONNTRACK_H
#define MERIDIAN_CONNTRACK_H

#include "common.h"

#define TCP_FLAG_FIN MER_TCP_FIN
#define TCP_FLAG_SYN MER_TCP_SYN
#define TCP_FLAG_RST MER_TCP_RST
#define TCP_FLAG_ACK MER_TCP_ACK

static always_inline __u32 ct_now(void)
{
    return (__u32)(bpf_ktime_get_ns() / 1000000000ULL);
}

static always_inline __u32 ct_timeout(const struct mer_ct_entry *e, __u8 proto)
{
    if (proto != IPPROTO_TCP)
        return MER_CT_TIMEOUT_NON_TCP;
    if ((e->flags & (MER_CT_F_TX_CLOSING | MER_CT_F_RX_CLOSING)) == (MER_CT_F_TX_CLOSING | MER_CT_F_RX_CLOSING))
        return MER_CT_TIMEOUT_TCP_CLOSE;
    if (e->flags & MER_CT_F_SEEN_NON_SYN)
        return MER_CT_TIMEOUT_TCP_ESTABLISHED;
    return MER_CT_TIMEOUT_TCP_SYN;
}

static always_inline void ct_account(struct mer_ct_entry *e, const struct packet4 *pkt, int reply, __u32 len, __u32 now)
{
    __u8 flags = pkt->tcp_flags;

    e->packets += 1;
    e->bytes += len;
    if (pkt->proto == IPPROTO_TCP) {
        if (reply)
            e->rx_flags_seen |= flags;
        else
            e->tx_flags_seen |= flags;
        if (flags & TCP_FLAG_RST)
            e->flags |= MER_CT_F_TX_CLOSING | MER_CT_F_RX_CLOSING;
        else if (flags & TCP_FLAG_FIN)
            e->flags |= reply ? MER_CT_F_RX_CLOSING : MER_CT_F_TX_CLOSING;
        if (!(flags & TCP_FLAG_SYN))
            e->flags |= MER_CT_F_SEEN_NON_SYN;
    }
    e->lifetime = now + ct_timeout(e, pkt->proto);
}

/* An entry that expired, or a closed TCP connection whose ports a new SYN reuses, counts as absent. */
static always_inline int ct_entry_usable(const struct mer_ct_entry *e, const struct packet4 *pkt, __u32 now)
{
    if (e->lifetime < now)
        return 0;
    if (pkt->proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
        (e->flags & (MER_CT_F_TX_CLOSING | MER_CT_F_RX_CLOSING)))
        return 0;
    return 1;
}

/*
 * Looks the packet up as seen at one end of a local pod: `dir` is MER_CT_DIR_OUT for packets the
 * pod sends and MER_CT_DIR_IN for packets it receives. A reply matches the entry of the other
 * direction with the tuple reversed. Returns MER_CT_NEW, _ESTABLISHED or _REPLY; `entry` is set
 * to the matching entry (the reply's own entry for replies).
 */
static always_inline __u8 ct_lookup(const struct packet4 *pkt, __u8 dir, __u32 len, struct mer_ct_entry **entry)
{
    __u32 now = ct_now();
    struct mer_ct_key rev = {
        .saddr = pkt->daddr, .daddr = pkt->saddr, .sport = pkt->dport, .dport = pkt->sport,
        .proto = pkt->proto, .dir = dir == MER_CT_DIR_OUT ? MER_CT_DIR_IN : MER_CT_DIR_OUT,
    };
    struct mer_ct_key fwd = {
        .saddr = pkt->saddr, .daddr = pkt->daddr, .sport = pkt->sport, .dport = pkt->dport,
        .proto = pkt->proto, .dir = dir,
    };
    struct mer_ct_entry *e;

    *entry = 0;
    e = bpf_map_lookup_elem(&mer_ct4, &rev);
    if (e && ct_entry_usable(e, pkt, now)) {
        ct_account(e, pkt, 1, len, now);
        *entry = e;
        return MER_CT_REPLY;
    }
    e = bpf_map_lookup_elem(&mer_ct4, &fwd);
    if (e && ct_entry_usable(e, pkt, now)) {
        ct_account(e, pkt, 0, len, now);
        *entry = e;
        return MER_CT_ESTABLISHED;
    }
    return MER_CT_NEW;
}

/* Creates the entry for a new connection; returns 0 or a drop reason. */
static always_inline int ct_create(const struct packet4 *pkt, __u8 dir, __u32 len, __u16 rev_nat_index,
                                   __u32 src_identity)
{
    __u32 now = ct_now();
    struct mer_ct_key key = {
        .saddr = pkt->saddr, .daddr = pkt->daddr, .sport = pkt->sport, .dport = pkt->dport,
        .proto = pkt->proto, .dir = dir,
    };
    struct mer_ct_entry entry = {
        .rev_nat_index = rev_nat_index,
        .src_identity = src_identity,
    };

    ct_account(&entry, pkt, 0, len, now);
    if (bpf_map_update_elem(&mer_ct4, &key, &entry, BPF_ANY) < 0)
        return MER_DROP_CT_CREATE_FAILED;
    return 0;
}

#endif
