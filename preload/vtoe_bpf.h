/* vtoe_bpf.h - a seccomp filter's verdict on one call (vtoe_bpf.c). */
#ifndef VTOE_BPF_H
#define VTOE_BPF_H

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>

/* What the filter insns[0..len) returns for d, as the kernel computes it: loads from
 * seccomp_data, scratch memory, 32-bit ALU (shift counts from X masked to 5 bits), jumps; a
 * division by zero returns 0 (kill), and an instruction seccomp does not accept (the kernel
 * refused such a filter) SECCOMP_RET_KILL_PROCESS. */
uint32_t vtoe_bpf_run(const struct sock_filter *insns, unsigned int len, const struct seccomp_data *d);

#endif /* VTOE_BPF_H */
