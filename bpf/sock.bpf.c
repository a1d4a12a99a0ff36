/*
 * sock: the node's cgroup, i.e. every socket its pods open. Socket-level load balancing: a
 * connect() (or an unconnected UDP send) to a service is rewritten to one backend before the
 * kernel picks a source port, so the socket is connected to the backend itself and no packet of
 * it is ever NATed. The kernel's port choice, TIME_WAIT and timestamps then see the tuple the
 * backend sees; with packet-level DNAT a new connection can reuse a port whose backend tuple is
 * still in TIME_WAIT on the server and have its SYN dropped there. getpeername() and the source
 * of UDP replies show the service again, from the record kept per (socket, backend).
 * Services without backends are left to the packet path, which refuses them. An unconnected UDP
 * socket is balanced per datagram (each sendmsg picks a backend; replies from any of them show the
 * service), a connected one once, at connect().
 */
#include "lib/lb.h"

#define SOCK_ALLOW 1
/* socket(2) types (the libc headers are not available to BPF programs). */
#define SOCK_STREAM_TYPE 1
#define SOCK_DGRAM_TYPE 2

/* The port (network order, in the low 16 bits). Read as the 32-bit field it is: kernels before
 * 5.17 refuse narrower loads of user_port, which a plain cast lets the compiler emit. */
static always_inline __u16 sock_user_port(const struct bpf_sock_addr *ctx)
{
    return (__u16)*(volatile const __u32 *)&ctx->user_port;
}

static always_inline __u8 sock_l4_protocol(const struct bpf_sock_addr *ctx)
{
    if (ctx->type == SOCK_STREAM_TYPE)
        return IPPROTO_TCP;
    if (ctx->type == SOCK_DGRAM_TYPE)
        return IPPROTO_UDP;
    return 0;
}

/* Tells the flow observer which service a connect() went to: the socket's packets carry only
 * the backend, and the observer names the service of the first packet from this record. */
static always_inline void report_translation(__u8 proto, const struct mer_lb4_backend *be, __u16 rev_nat_index)
{
    struct mer_event *ev = reserve_event(MER_EVENT_SOCK_TRANSLATE);

    if (!ev)
        return;
    ev->proto = proto;
    ev->daddr = be->address;
    ev->dport = be->port;
    ev->rev_nat_index = rev_nat_index;
    bpf_ringbuf_submit(ev, 0);
}

/* Rewrites the destination of `ctx` from a service to one of its backends; a connect() is
 * reported (a datagram sent unconnected is not: that would be one event per datagram). */
static always_inline void sock4_translate(struct bpf_sock_addr *ctx, int report)
{
    __u8 proto = sock_l4_protocol(ctx);
    __u32 address = ctx->user_ip4;
    __u16 port = sock_user_port(ctx);
    struct mer_lb4_key key = { .address = address, .dport = port, .proto = proto };
    const struct mer_lb4_service *svc;
    const struct mer_lb4_backend *be;
    struct mer_sock_revnat_key rkey = {};
    struct mer_sock_revnat_value rval = {};
    __u32 backend_id = 0;

    if (!proto)
        return;
    svc = bpf_map_lookup_elem(&mer_lb4_svc, &key);
    if (!svc)
        return;
    be = lb4_pick_backend(address, port, proto, svc->count, &backend_id);
    if (!be)
        return;
    rkey.cookie = bpf_get_socket_cookie(ctx);
    rkey.address = be->address;
    rkey.port = be->port;
    rval.address = address;
    rval.port = port;
    rval.rev_nat_index = svc->rev_nat_index;
    /* Without the record getpeername() would show the backend; the connection itself works. */
    bpf_map_update_elem(&mer_sock_rnat4, &rkey, &rval, BPF_ANY);
    if (report)
        report_translation(proto, be, svc->rev_nat_index);
    ctx->user_ip4 = be->address;
    ctx->user_port = (__u32)be->port;
}

/* Shows the service instead of the backend the socket talks to, if it asked for a service. */
static always_inline void sock4_restore(struct bpf_sock_addr *ctx)
{
    struct mer_sock_revnat_key rkey = {
        .cookie = bpf_get_socket_cookie(ctx),
        .address = ctx->user_ip4,
        .port = sock_user_port(ctx),
    };
    const struct mer_sock_revnat_value *rval = bpf_map_lookup_elem(&mer_sock_rnat4, &rkey);

    if (!rval)
        return;
    ctx->user_ip4 = rval->address;
    ctx->user_port = (__u32)rval->port;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
    sock4_translate(ctx, 1);
    return SOCK_ALLOW;
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
    sock4_translate(ctx, 0);
    return SOCK_ALLOW;
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
    sock4_restore(ctx);
    return SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
    sock4_restore(ctx);
    return SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
