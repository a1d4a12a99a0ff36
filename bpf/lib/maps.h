/*
 * Every map of the datapath, declared once. Each program file includes this (through common.h),
 * so every object declares every map; they are pinned by name, so all programs of a node share
 * one instance of each and it outlives the agent. Key and value layouts are abi.h's, which Swift
 * imports too. Names are abi.h's MER_MAP_* strings.
 */
#ifndef MERIDIAN_MAPS_H
#define MERIDIAN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "meridian/abi.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MER_ENDPOINTS_MAX);
    __type(key, struct mer_endpoint_key);
    __type(value, struct mer_endpoint_info);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_endpoints SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, MER_IPCACHE_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct mer_ipcache_key);
    __type(value, struct mer_ipcache_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_ipcache SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MER_SERVICES_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct mer_lb4_key);
    __type(value, struct mer_lb4_service);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_lb4_svc SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MER_BACKENDS_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, struct mer_lb4_backend);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_lb4_be SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MER_REVNAT_MAX);
    __type(key, __u16);
    __type(value, struct mer_lb4_revnat);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_lb4_revnat SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MER_CT_MAX);
    __type(key, struct mer_ct_key);
    __type(value, struct mer_ct_entry);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_ct4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MER_FRAG_MAX);
    __type(key, struct mer_frag_key);
    __type(value, struct mer_frag_ports);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_frag4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, MER_EVENTS_BYTES);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct mer_config);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MER_METRICS_MAX);
    __type(key, __u32);
    __type(value, struct mer_metric);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_metrics SEC(".maps");

/* Identity-aware policy per endpoint (see abi.h for the key). */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, MER_POLICY_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct mer_policy_key);
    __type(value, struct mer_policy_entry);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_policy SEC(".maps");

/* NetworkPolicy ipBlock prefixes of the node -> ipBlock number (see abi.h). */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, MER_IPBLOCK_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct mer_ipblock_key);
    __type(value, struct mer_ipblock_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_ipblock4 SEC(".maps");

/* Nodes reached through an encrypted tunnel (see abi.h). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MER_ENCRYPT_MAX);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct mer_encrypt_key);
    __type(value, struct mer_encrypt_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_encrypt4 SEC(".maps");

/* Socket LB: what a socket asked for, by (socket cookie, backend). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MER_SOCK_REVNAT_MAX);
    __type(key, struct mer_sock_revnat_key);
    __type(value, struct mer_sock_revnat_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} mer_sock_rnat4 SEC(".maps");

#endif
