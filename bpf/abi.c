/*
 * Compiled into the CMeridianBPF target only to check, at build time, that the layouts Swift
 * imports from abi.h have the sizes the BPF programs were written against.
 */
#include "meridian/abi.h"

_Static_assert(sizeof(struct mer_endpoint_key) == 4, "endpoint key");
_Static_assert(sizeof(struct mer_endpoint_info) == 24, "endpoint info");
_Static_assert(sizeof(struct mer_ipcache_key) == 8, "ipcache key");
_Static_assert(sizeof(struct mer_ipcache_value) == 12, "ipcache value");
_Static_assert(sizeof(struct mer_lb4_key) == 12, "lb4 key");
_Static_assert(sizeof(struct mer_lb4_service) == 12, "lb4 service");
_Static_assert(sizeof(struct mer_lb4_backend) == 12, "lb4 backend");
_Static_assert(sizeof(struct mer_lb4_revnat) == 8, "lb4 revnat");
_Static_assert(sizeof(struct mer_sock_revnat_key) == 16, "sock revnat key");
_Static_assert(sizeof(struct mer_sock_revnat_value) == 8, "sock revnat value");
_Static_assert(sizeof(struct mer_ct_key) == 16, "ct key");
_Static_assert(sizeof(struct mer_ct_entry) == 40, "ct entry");
_Static_assert(sizeof(struct mer_frag_key) == 12, "frag key");
_Static_assert(sizeof(struct mer_config) == 20, "config");
_Static_assert(sizeof(struct mer_event) == 48, "event");
_Static_assert(sizeof(struct mer_metric) == 16, "metric");
_Static_assert(sizeof(struct mer_policy_key) == 15, "policy key");
_Static_assert(sizeof(struct mer_policy_entry) == 8, "policy entry");
_Static_assert(sizeof(struct mer_ipblock_key) == 8, "ipblock key");
_Static_assert(sizeof(struct mer_ipblock_value) == 8, "ipblock value");
_Static_assert(sizeof(struct mer_encrypt_key) == 4, "encrypt key");
_Static_assert(sizeof(struct mer_encrypt_value) == 4, "encrypt value");
