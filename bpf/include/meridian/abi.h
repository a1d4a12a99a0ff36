/*
 * The ABI between Meridian's BPF programs and the Swift agent: map key and value layouts,
 * constants and event records. This header is the single source of truth for both sides:
 * the programs in bpf/ include it, and Swift imports it through the CMeridianBPF target, so a
 * layout cannot drift between the kernel and userspace. Multi-byte fields marked "be" hold
 * network byte order; everything else is host order.
 */
#ifndef MERIDIAN_ABI_H
#define MERIDIAN_ABI_H

#include <linux/types.h>

/* Map names. libbpf pins them by these names under the node's pin directory. */
#define MER_MAP_ENDPOINTS "mer_endpoints"
#define MER_MAP_IPCACHE "mer_ipcache"
#define MER_MAP_SERVICES "mer_lb4_svc"
#define MER_MAP_BACKENDS "mer_lb4_be"
#define MER_MAP_REVNAT "mer_lb4_revnat"
#define MER_MAP_CT "mer_ct4"
#define MER_MAP_FRAG "mer_frag4"
#define MER_MAP_EVENTS "mer_events"
#define MER_MAP_CONFIG "mer_config"
#define MER_MAP_METRICS "mer_metrics"
#define MER_MAP_POLICY "mer_policy"
#define MER_MAP_SOCK_REVNAT "mer_sock_rnat4"
#define MER_MAP_IPBLOCK "mer_ipblock4"
#define MER_MAP_ENCRYPT "mer_encrypt4"

/* Map sizes. */
enum {
    MER_ENDPOINTS_MAX = 65536,
    MER_IPCACHE_MAX = 512000,
    MER_SERVICES_MAX = 262144,
    MER_BACKENDS_MAX = 262144,
    MER_REVNAT_MAX = 65536,
    MER_CT_MAX = 524288,
    MER_FRAG_MAX = 8192,
    MER_EVENTS_BYTES = 1 << 20,
    MER_METRICS_REASONS = 256,
    MER_METRICS_MAX = 3 * MER_METRICS_REASONS, /* one block of reasons per MER_EVENT_DIR_* */
    MER_POLICY_MAX = 262144,
    MER_SOCK_REVNAT_MAX = 131072,
    MER_IPBLOCK_MAX = 65536,
    MER_ENCRYPT_MAX = 65536,
};

/* Reserved security identities (Cilium's numbering); Swift's ReservedIdentity reads these. */
enum {
    MER_ID_UNKNOWN = 0,
    MER_ID_HOST = 1,
    MER_ID_WORLD = 2,
    MER_ID_UNMANAGED = 3,
    MER_ID_HEALTH = 4,
    MER_ID_INIT = 5,
    MER_ID_REMOTE_NODE = 6,
    MER_ID_KUBE_APISERVER = 7,
    MER_ID_INGRESS = 8,
    MER_ID_WORLD_IPV4 = 9,
    MER_ID_WORLD_IPV6 = 10,
    MER_FIRST_CLUSTER_IDENTITY = 256, /* below: reserved identities shared by every cluster */
    MER_IDENTITY_BITS = 24,           /* an identity as it travels in the VNI */
};

/* ---- local endpoints: pod IPv4 (be) -> endpoint ---- */
struct mer_endpoint_key {
    __u32 ip4; /* be */
};

enum {
    MER_ENDPOINT_F_NONE = 0,
    MER_ENDPOINT_F_INGRESS_ENFORCED = 1 << 0, /* a policy selects the pod for ingress: default deny */
    MER_ENDPOINT_F_EGRESS_ENFORCED = 1 << 1,  /* likewise for egress */
};

struct mer_endpoint_info {
    __u32 ifindex;       /* host-side veth */
    __u32 identity;      /* the pod's security identity (cluster ID in bits 16-23) */
    __u16 endpoint_id;
    __u16 flags;
    __u8 mac[6];         /* pod-side MAC */
    __u8 node_mac[6];    /* host-side veth MAC: the pod's gateway MAC */
};

/* ---- ipcache: LPM over IPv4 prefixes -> identity and tunnel endpoint ---- */
struct mer_ipcache_key {
    __u32 prefixlen;     /* 0..32, bits of ip4 that count */
    __u32 ip4;           /* be */
};

enum {
    MER_IPCACHE_F_TUNNEL = 1 << 0,        /* tunnel_endpoint is valid */
    MER_IPCACHE_F_REMOTE_CLUSTER = 1 << 1,
    MER_IPCACHE_F_LOCAL_NODE = 1 << 2,    /* this node's own addresses: hand to the stack */
};

struct mer_ipcache_value {
    __u32 identity;
    __u32 tunnel_endpoint; /* be; the node that owns the prefix */
    __u16 cluster_id;
    __u8 flags;
    __u8 pad;
};

/* ---- policy: (endpoint, direction, remote identity, protocol, port) -> verdict ----
 * An LPM trie whose prefix always covers endpoint, direction and identity (64 bits), and then
 * as much of protocol (8) and port (16) as the rule names: prefix 64 is "any protocol, any
 * port", 72 "this protocol, any port", 72+n "this protocol, ports sharing the top n bits".
 * Identity 0 means any identity; the datapath looks up the exact identity, then 0, and a deny
 * in either wins. */
struct mer_policy_key {
    __u32 prefixlen;
    __u16 endpoint_id;   /* big-endian, so the trie orders it */
    __u8 direction;      /* MER_POLICY_INGRESS / _EGRESS */
    __u8 pad;
    __u32 identity;      /* big-endian */
    __u8 proto;
    __u16 dport;         /* be */
} __attribute__((packed));

enum {
    MER_POLICY_INGRESS = 0,
    MER_POLICY_EGRESS = 1,
    MER_POLICY_STATIC_PREFIX = 64,
    MER_POLICY_FULL_PREFIX = 88,
};

struct mer_policy_entry {
    __u8 deny;
    __u8 pad[3];
    __u32 pad2;
};

/* ---- NetworkPolicy ipBlock prefixes: LPM over IPv4 prefixes -> ipBlock number ----
 * Kubernetes' ipBlock matches every address inside it, pods' included, so it cannot be an
 * identity in the ipcache (a pod's address has the pod's identity, and two pods of one identity
 * may lie on either side of a block). Every prefix and hole of the node's ipBlock rules is here
 * instead, with a number; a new connection's peer address (the destination for egress, the
 * source for ingress) is looked up, and the number of the longest prefix holding it is looked
 * up in the endpoint's policy map as the identity. Numbers are MER_IPBLOCK_FIRST_IDENTITY and
 * up, apart from cluster identities (< 1 << 24) and CIDR identities (1 << 24 and up). */
struct mer_ipblock_key {
    __u32 prefixlen;     /* 0..32, bits of ip4 that count */
    __u32 ip4;           /* be */
};

struct mer_ipblock_value {
    __u32 identity;      /* the ipBlock number, MER_IPBLOCK_FIRST_IDENTITY and up */
    __u32 pad;
};

enum {
    MER_IPBLOCK_FIRST_IDENTITY = 1 << 30,
};

/* ---- nodes reached through an encrypted tunnel: underlay IPv4 (be) -> flags ----
 * Written by the agent's WireGuard reconciler: a node is here once the device holds a peer for
 * it (its key, its underlay /32 as allowed IP) and the route into the device; it leaves before
 * the peer does. In strict mode (MER_CONFIG_F_ENCRYPTION_STRICT) from_pod encapsulates only to
 * tunnel endpoints found here, and from_overlay drops VXLAN from a sender found here unless it
 * came through the WireGuard device (MER_MARK_MAGIC_DECRYPTED). */
struct mer_encrypt_key {
    __u32 ip4;           /* be; the tunnel endpoint, a node's underlay address */
};

enum {
    MER_ENCRYPT_F_WIREGUARD = 1 << 0, /* a WireGuard peer and its route are in place */
};

struct mer_encrypt_value {
    __u32 flags;         /* MER_ENCRYPT_F_* */
};

/* ---- services: frontend slot table ---- */
struct mer_lb4_key {
    __u32 address;       /* be; the service IP */
    __u16 dport;         /* be */
    __u16 backend_slot;  /* 0 = the service entry; 1..count = backend slots */
    __u8 proto;          /* IPPROTO_TCP / IPPROTO_UDP */
    __u8 pad[3];
};

/*
 * Slots 1..count hold the backends new connections choose among: the active ones, or the
 * terminating ones when none is active. A terminating backend that is not slotted stays in
 * mer_lb4_be (flag MER_BACKEND_TERMINATING) for the connections that already chose it.
 */
struct mer_lb4_service {
    __u32 backend_id;    /* slots > 0 only */
    __u16 count;         /* service entry: number of backend slots new connections choose among */
    __u16 rev_nat_index;
    __u8 flags;
    __u8 pad[3];
};

enum {
    MER_BACKEND_ACTIVE = 0,       /* takes new connections */
    MER_BACKEND_TERMINATING = 1,  /* its pod is deleted: keeps its connections, takes new ones only if none is active */
};

struct mer_lb4_backend {
    __u32 address;       /* be */
    __u16 port;          /* be */
    __u8 proto;
    __u8 flags;          /* MER_BACKEND_* */
    __u16 cluster_id;
    __u16 pad;
};

struct mer_lb4_revnat {
    __u32 address;       /* be; the frontend to restore on replies */
    __u16 port;          /* be */
    __u16 pad;
};

/*
 * ---- socket LB: what a socket asked for, by (socket cookie, backend) ----
 * connect() to a service is rewritten to one backend, so the socket is connected to the backend
 * itself; this record lets getpeername() and a UDP reply's source show the service again.
 */
struct mer_sock_revnat_key {
    __u64 cookie;
    __u32 address;       /* be; the backend */
    __u16 port;          /* be */
    __u16 pad;
};

struct mer_sock_revnat_value {
    __u32 address;       /* be; the service frontend */
    __u16 port;          /* be */
    __u16 rev_nat_index;
};

/* ---- conntrack ---- */
enum {
    MER_CT_DIR_OUT = 0,      /* connection opened by the local pod */
    MER_CT_DIR_IN = 1,       /* connection accepted by the local pod */
    MER_CT_DIR_SERVICE = 2,  /* service leg: frontend tuple -> chosen backend */
};

/* A connection from saddr:sport to daddr:dport, as first seen. */
struct mer_ct_key {
    __u32 saddr;         /* be */
    __u32 daddr;         /* be */
    __u16 sport;         /* be */
    __u16 dport;         /* be */
    __u8 proto;
    __u8 dir;            /* MER_CT_DIR_* */
    __u16 pad;
};

enum {
    MER_CT_F_TX_CLOSING = 1 << 0,
    MER_CT_F_RX_CLOSING = 1 << 1,
    MER_CT_F_SEEN_NON_SYN = 1 << 2,
};

struct mer_ct_entry {
    __u64 packets;
    __u64 bytes;
    __u32 lifetime;      /* expiry, seconds of bpf_ktime_get_ns */
    __u32 backend_id;    /* service entries */
    __u16 rev_nat_index; /* outbound entries of service connections */
    __u8 tx_flags_seen;  /* TCP flags seen from the opener */
    __u8 rx_flags_seen;  /* TCP flags seen from the peer */
    __u8 flags;          /* MER_CT_F_* */
    __u8 pad[3];
    __u32 src_identity;
    __u32 pad2;
};

/* Timeouts, seconds (Cilium agent defaults). */
enum {
    MER_CT_TIMEOUT_TCP_ESTABLISHED = 8000,
    MER_CT_TIMEOUT_TCP_SYN = 60,
    MER_CT_TIMEOUT_TCP_CLOSE = 10,
    MER_CT_TIMEOUT_NON_TCP = 60,
    MER_CT_TIMEOUT_SERVICE_TCP = 8000,
    MER_CT_TIMEOUT_SERVICE_NON_TCP = 60,
};

/* Connection states a lookup reports (also the trace reason). */
enum {
    MER_CT_NEW = 0,
    MER_CT_ESTABLISHED = 1,
    MER_CT_REPLY = 2,
    MER_CT_RELATED = 3,
};

/* ---- IPv4 fragments: the first fragment's ports, for the ones that follow ---- */
struct mer_frag_key {
    __u32 saddr;         /* be */
    __u32 daddr;         /* be */
    __u16 id;            /* be */
    __u8 proto;
    __u8 pad;
};

struct mer_frag_ports {
    __u16 sport;         /* be */
    __u16 dport;         /* be */
};

/* ---- node configuration: a one-entry array ---- */
struct mer_config {
    __u32 vxlan_ifindex;
    __u32 node_ip;       /* be; underlay address, the tunnel source */
    __u32 gateway_ip;    /* be; the pods' gateway on this node */
    __u16 cluster_id;
    __u16 flags;         /* MER_CONFIG_F_* */
    __u32 identity_cluster_shift; /* 16, or 15 with 511 clusters: identity >> shift = cluster ID */
};

/* mer_config.flags */
enum {
    MER_CONFIG_F_NO_EVENTS = 1 << 0, /* nobody reads the ring: report nothing (drops are still counted) */
    MER_CONFIG_F_ENCRYPTION_STRICT = 1 << 1, /* encapsulate only to tunnel endpoints in mer_encrypt4, and take
                                              * VXLAN from them only through the tunnel */
};

/* ---- events ring buffer ---- */
enum {
    MER_EVENT_DROP = 1,
    MER_EVENT_TRACE = 4,
    MER_EVENT_SOCK_TRANSLATE = 7, /* a connect() to a service rewritten to a backend: daddr/dport are the backend's */
};

/* Trace observation points. */
enum {
    MER_TRACE_TO_POD = 0,
    MER_TRACE_TO_STACK = 3,
    MER_TRACE_TO_OVERLAY = 4,
    MER_TRACE_FROM_POD = 5,
    MER_TRACE_FROM_OVERLAY = 9,
};

/* Drop reasons: Cilium's numbers and meanings (bpf/lib/drop_reasons.h), positive, so `cilium
 * monitor` users read them as they know them. Meridian's own reasons, for checks Cilium has no
 * reason for, start at 240, clear of Cilium's numbers (which end in the low 200s). */
enum {
    MER_DROP_INVALID_SIP = 132,
    MER_DROP_POLICY = 133,
    MER_DROP_INVALID = 134,
    MER_DROP_CT_INVALID_HDR = 135,
    MER_DROP_UNKNOWN_L3 = 139,
    MER_DROP_WRITE_ERROR = 141,
    MER_DROP_UNKNOWN_L4 = 142,
    MER_DROP_NO_TUNNEL_KEY = 147,
    MER_DROP_UNROUTABLE = 151,
    MER_DROP_CSUM_L3 = 153,
    MER_DROP_CSUM_L4 = 154,
    MER_DROP_CT_CREATE_FAILED = 155,
    MER_DROP_FRAG_NOSUPPORT = 157,
    MER_DROP_NO_SERVICE = 158,
    MER_DROP_NO_TUNNEL_ENDPOINT = 160,
    MER_DROP_UNSUPPORTED_L2 = 166,
    MER_DROP_INVALID_IDENTITY = 171,
    MER_DROP_UNKNOWN_SENDER = 172,
    MER_DROP_POLICY_DENY = 181,
    MER_DROP_UNENCRYPTED_TRAFFIC = 195, /* strict encryption: no tunnel to the destination's node */
    MER_DROP_TTL_EXCEEDED = 196,
    MER_DROP_HOST_NOT_READY = 202, /* the node's configuration is not written yet */
    MER_DROP_RESERVED_IDENTITY_FROM_NODE = 240, /* a VNI below MER_FIRST_CLUSTER_IDENTITY: no node sends one */
    MER_DROP_SOURCE_NOT_OWNED_BY_SENDER = 241,  /* an inner source the ipcache does not place on the sending node */
    MER_DROP_UNENCRYPTED_INGRESS = 242, /* strict encryption: VXLAN from a node with a tunnel that did not come through it */
};

struct mer_event {
    __u8 type;           /* MER_EVENT_* */
    __u8 subtype;        /* trace point or drop reason */
    __u8 ct_state;       /* MER_CT_* */
    __u8 proto;
    __u32 ifindex;
    __u32 src_identity;
    __u32 dst_identity;
    __u32 saddr;         /* be */
    __u32 daddr;         /* be */
    __u16 sport;         /* be */
    __u16 dport;         /* be */
    __u32 len;
    __u32 tunnel_endpoint; /* be; set on MER_TRACE_TO_OVERLAY, whose VNI is src_identity */
    __u16 rev_nat_index; /* the service frontend the packet was translated from, 0 if none */
    __u8 tcp_flags;      /* MER_TCP_* of a TCP packet; the ICMP type of an ICMP one */
    __u8 direction;      /* MER_EVENT_DIR_*: which side of a pod the program that reported it sits on */
    __u64 timestamp_ns;
};

/* TCP flags as event.tcp_flags carries them (the header's own bit order). */
enum {
    MER_TCP_FIN = 0x01,
    MER_TCP_SYN = 0x02,
    MER_TCP_RST = 0x04,
    MER_TCP_PSH = 0x08,
    MER_TCP_ACK = 0x10,
};

/* The direction of an event: what a pod sends (egress) or what reaches a pod (ingress). */
enum {
    MER_EVENT_DIR_UNKNOWN = 0,
    MER_EVENT_DIR_INGRESS = 1,
    MER_EVENT_DIR_EGRESS = 2,
};

/* mer_metrics index counting events the ring buffer had no room for (no drop reason uses it). */
#define MER_METRIC_EVENTS_LOST 255

/* ---- metrics: per-CPU counters indexed by direction × MER_METRICS_REASONS + reason (reason 0 =
 * forwarded, else a drop reason; direction is the MER_EVENT_DIR_* of the program that counted) ---- */
struct mer_metric {
    __u64 packets;
    __u64 bytes;
};

/* skb->mark while a packet moves between our programs inside a node. */
#define MER_MARK_MAGIC_MASK 0xFFu
#define MER_MARK_MAGIC_IDENTITY 0xA5u
#define MER_MARK_IDENTITY_SHIFT 8
/* Set by from_wireguard on everything the WireGuard device hands the node (decrypted), read
 * and cleared by from_overlay: the VXLAN device keeps an skb's mark through decapsulation
 * within one namespace, so it tells tunnelled VXLAN from VXLAN that came in the clear. */
#define MER_MARK_MAGIC_DECRYPTED 0x5Au

#define MER_VXLAN_PORT 8472
#define MER_VXLAN_OVERHEAD 50

#endif
