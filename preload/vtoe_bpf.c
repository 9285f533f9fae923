/*
 * vtoe_bpf.c - classic BPF as seccomp runs it, to ask a program's filter about a call before
 * making it (vtoe_seccomp.c).  No dependency on the rest of the library, so that a test can
 * run it beside the kernel's own verdicts (test/c/seccomp-bpf.c).
 */
#include "vtoe_bpf.h"

#include <stdbool.h>
#include <string.h>

static bool vtoe_bpf_jump(uint16_t op, uint32_t a, uint32_t v, bool *taken)
{
	switch (op) {
	case BPF_JEQ: *taken = a == v; return true;
	case BPF_JGT: *taken = a > v; return true;
	case BPF_JGE: *taken = a >= v; return true;
	case BPF_JSET: *taken = (a & v) != 0; return true;
	default: return false;
	}
}

/* False for an operation seccomp does not accept (the kernel refused such a filter anyway). */
static bool vtoe_bpf_alu(uint16_t op, uint32_t *a, uint32_t v)
{
	switch (op) {
	case BPF_ADD: *a += v; return true;
	case BPF_SUB: *a -= v; return true;
	case BPF_MUL: *a *= v; return true;
	case BPF_DIV: *a = v ? *a / v : 0; return v != 0;
	case BPF_MOD: *a = v ? *a % v : 0; return v != 0;
	case BPF_AND: *a &= v; return true;
	case BPF_OR: *a |= v; return true;
	case BPF_XOR: *a ^= v; return true;
	case BPF_LSH: *a <<= v & 31; return true; /* a K >= 32 is refused; an X is masked */
	case BPF_RSH: *a >>= v & 31; return true;
	case BPF_NEG: *a = -*a; return true;
	default: return false;
	}
}

uint32_t vtoe_bpf_run(const struct sock_filter *insns, unsigned int len, const struct seccomp_data *d)
{
	uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = { 0 };
	uint32_t words[sizeof(*d) / 4];

	memcpy(words, d, sizeof(words));
	for (unsigned int pc = 0; pc < len; pc++) {
		const struct sock_filter *i = &insns[pc];
		uint32_t k = i->k, v = BPF_SRC(i->code) == BPF_X ? x : k;
		bool taken;

		switch (i->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			if (k >= sizeof(*d) || (k & 3))
				return SECCOMP_RET_KILL_PROCESS;
			a = words[k / 4];
			continue;
		case BPF_LD | BPF_W | BPF_LEN: a = sizeof(*d); continue;
		case BPF_LDX | BPF_W | BPF_LEN: x = sizeof(*d); continue;
		case BPF_LD | BPF_IMM: a = k; continue;
		case BPF_LDX | BPF_IMM: x = k; continue;
		case BPF_LD | BPF_MEM: a = mem[k % BPF_MEMWORDS]; continue;
		case BPF_LDX | BPF_MEM: x = mem[k % BPF_MEMWORDS]; continue;
		case BPF_ST: mem[k % BPF_MEMWORDS] = a; continue;
		case BPF_STX: mem[k % BPF_MEMWORDS] = x; continue;
		case BPF_MISC | BPF_TAX: x = a; continue;
		case BPF_MISC | BPF_TXA: a = x; continue;
		case BPF_RET | BPF_K: return k;
		case BPF_RET | BPF_A: return a;
		case BPF_JMP | BPF_JA: pc += k; continue;
		}
		if (BPF_CLASS(i->code) == BPF_JMP && vtoe_bpf_jump(BPF_OP(i->code), a, v, &taken)) {
			pc += taken ? i->jt : i->jf;
			continue;
		}
		if (BPF_CLASS(i->code) == BPF_ALU && vtoe_bpf_alu(BPF_OP(i->code), &a, v))
			continue;
		return BPF_CLASS(i->code) == BPF_ALU ? 0 : SECCOMP_RET_KILL_PROCESS;
	}
	return SECCOMP_RET_KILL_PROCESS; /* ran off the end: the kernel's checker forbids it */
}
