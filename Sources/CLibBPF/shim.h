/*
 * libbpf for Swift: the headers, plus static inline wrappers for the calls that take
 * LIBBPF_OPTS structures (a macro Swift cannot import). Declarations only; no storage.
 */
#ifndef MERIDIAN_CLIBBPF_SHIM_H
#define MERIDIAN_CLIBBPF_SHIM_H

#include <errno.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

static inline struct bpf_object *meridian_bpf_open_mem(const void *bytes, size_t size, const char *name,
                                                       const char *pin_root_path)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name, .pin_root_path = pin_root_path);
    return bpf_object__open_mem(bytes, size, &opts);
}

/* Runs a program once over `packet` (BPF_PROG_TEST_RUN); the packet as the program left it goes to `out`.
 * `cb`, unless NULL, holds the five words of skb->cb the program starts with. */
static inline int meridian_bpf_test_run(int prog_fd, const void *packet, unsigned int size, void *out,
                                        unsigned int out_capacity, unsigned int *out_size, unsigned int *retval,
                                        const unsigned int *cb)
{
    struct __sk_buff context = {};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet, .data_size_in = size, .data_out = out,
                .data_size_out = out_capacity, .repeat = 1);
    if (cb) {
        for (int i = 0; i < 5; i++)
            context.cb[i] = cb[i];
        opts.ctx_in = &context;
        opts.ctx_size_in = sizeof(context);
    }
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    if (out_size)
        *out_size = opts.data_size_out;
    if (retval)
        *retval = opts.retval;
    return err;
}

/* Runs a program `repeat` times over `packet`; the kernel's average duration per run in ns. */
static inline int meridian_bpf_test_run_timed(int prog_fd, const void *packet, unsigned int size, unsigned int repeat,
                                              unsigned int *duration_ns, unsigned int *retval)
{
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet, .data_size_in = size, .repeat = repeat);
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    if (duration_ns)
        *duration_ns = opts.duration;
    if (retval)
        *retval = opts.retval;
    return err;
}

/* Attaches a program to the clsact hook of a device, replacing what holds the same handle and priority. */
static inline int meridian_tc_attach(int ifindex, int egress, int prog_fd, unsigned int handle, unsigned int priority)
{
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST)
        return err;
    return bpf_tc_attach(&hook, &opts);
}

/* The id of the program attached at handle/priority, or a negative errno. */
static inline int meridian_tc_query(int ifindex, int egress, unsigned int handle, unsigned int priority,
                                    unsigned int *prog_id)
{
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
    int err = bpf_tc_query(&hook, &opts);
    if (!err && prog_id)
        *prog_id = opts.prog_id;
    return err;
}
#endif
