/*
 * What the shim's control and ring code need from the rest of libvtoe.so, for a fuzzer that
 * links only vtoe_real.c, vtoe_log.c, vtoe_ctl.c and vtoe_ring.c: the rest wraps libc calls
 * (the fuzzer's own would go through them) or tracks the application's descriptors, which a
 * harness does not have.  Each stands in for the part that cannot run here, no more.
 */
#include "vtoe.h"

/* No descriptor table: internal descriptors stay where they are, nothing is tracked. */
_Atomic(vtoe_slot_t *) *vtoe_fdtab;
unsigned int vtoe_fdtab_max;
void vtoe_fdtab_init(void) {}
void vtoe_fdtab_atfork_child(void) {}
void vtoe_rcu_atfork_child(void) {}
void vtoe_fd_set_internal(int fd, bool internal) { (void)fd, (void)internal; }
int vtoe_fd_move_high(int fd) { return fd; }
bool vtoe_fd_swap(int *holder, int from, int to) { (void)holder, (void)from, (void)to; return false; }

/* Nothing inherited over exec, no stdio streams, no epoll, no parked rendezvous. */
void vtoe_exec_adopt(void) {}
void vtoe_stdio_adopt(void) {}
void vtoe_ep_atfork_prepare(void) {}
void vtoe_ep_atfork_parent(void) {}
void vtoe_ep_atfork_child(void) {}
void vtoe_park_atfork_child(void) {}
void vtoe_held_atfork_child(void) {}
void vtoe_listen_reregister(void) {}
void vtoe_conns_take_bells(void) {}

/* vtoe_poll.c: no spinning (nothing runs beside a harness to publish while it spins), and
 * the kernel is asked about a hang-up whenever the ring code wants to. */
uint32_t vtoe_spin_begin(uint32_t budget_us) { (void)budget_us; return 0; }
void vtoe_spin_end(bool found) { (void)found; }
bool vtoe_kernel_due_at(uint64_t *at_ns) { (void)at_ns; return true; }
