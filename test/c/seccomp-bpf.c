/*
 * seccomp-bpf.c - the shim's seccomp interpreter (preload/vtoe_bpf.c) against the kernel.
 * Random filters (loads of the call's number, architecture and arguments, scratch memory, ALU
 * with K and X, every jump, returns of every action) are each installed in a child that then
 * makes one call with random arguments; what the kernel did (the call ran, failed with an
 * errno, returned 0 for ERRNO(0), or the child died of SIGSYS) must be what the interpreter
 * says the filter returns.
 *
 *   seccomp-bpf COUNT SEED    one line per mismatch, then the totals
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vtoe_bpf.h"

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

#define MAX_INSNS 64
#define BODY_MAX 40

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint32_t pick(uint32_t n)
{
	return (uint32_t)(next() % n);
}

/* A value a filter would compare against: small, a word of an argument, or anything. */
static uint32_t some_k(const uint64_t args[6])
{
	switch (pick(4)) {
	case 0: return pick(8);
	case 1: { uint64_t a = args[pick(6)]; return pick(2) ? (uint32_t)a : (uint32_t)(a >> 32); }
	case 2: return 1u << pick(32);
	default: return (uint32_t)next();
	}
}

static uint32_t some_action(void)
{
	static const uint32_t actions[] = { SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
					    SECCOMP_RET_KILL_THREAD, SECCOMP_RET_TRAP, SECCOMP_RET_LOG };
	uint32_t a = actions[pick(6)];

	return a == SECCOMP_RET_ERRNO ? a | pick(5000) : a;
}

/* A forward offset from pc to somewhere in [pc + 1, last], within a jump's 8 bits. */
static uint8_t forward(int pc, int last)
{
	int span = last - pc - 1;

	return (uint8_t)pick((uint32_t)(span > 200 ? 200 : span) + 1);
}

/*
 * The filter: calls the test itself needs are allowed first, then a random body, then a tail
 * that turns A into ERRNO(A & 0xfff), then RET ALLOW (a jump target).
 */
static int generate(struct sock_filter *f, const uint64_t args[6])
{
	static const uint16_t alu[] = { BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH };
	static const uint16_t jmp[] = { BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET };
	int n = 0, body = 1 + (int)pick(BODY_MAX), last;
	bool written[BPF_MEMWORDS] = { false };

	last = 4 + body + 3; /* the index of RET ALLOW */
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, (uint8_t)(last - n - 1), 0), n++;
	f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, (uint8_t)(last - n - 1), 0), n++;
	f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, (uint8_t)(last - n - 1), 0), n++;
	while (n < 4 + body) {
		uint16_t src = pick(2) ? BPF_X : BPF_K;
		uint32_t slot = pick(BPF_MEMWORDS), k = some_k(args);

		switch (pick(12)) {
		case 0: case 1: { /* nr, arch or an argument's word: never the instruction pointer */
			static const uint32_t at[] = { 0, 4, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60 };
			f[n] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, at[pick(14)]);
			break;
		}
		case 2:
			f[n] = (struct sock_filter)BPF_STMT(pick(2) ? BPF_LD | BPF_IMM : BPF_LDX | BPF_IMM, k);
			break;
		case 3:
			written[slot] = true;
			f[n] = (struct sock_filter)BPF_STMT(pick(2) ? BPF_ST : BPF_STX, slot);
			break;
		case 4:
			if (!written[slot]) {
				f[n] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0);
				break;
			}
			f[n] = (struct sock_filter)BPF_STMT(pick(2) ? BPF_LD | BPF_MEM : BPF_LDX | BPF_MEM, slot);
			break;
		case 5:
			f[n] = (struct sock_filter)BPF_STMT(BPF_MISC | (pick(2) ? BPF_TAX : BPF_TXA), 0);
			break;
		case 6: case 7: {
			uint16_t op = alu[pick(9)];

			if (src == BPF_K && op == BPF_DIV && k == 0)
				k = 3;
			if (src == BPF_K && (op == BPF_LSH || op == BPF_RSH))
				k %= 32;
			f[n] = pick(10) ? (struct sock_filter)BPF_STMT(BPF_ALU | op | src, k)
					: (struct sock_filter)BPF_STMT(BPF_ALU | BPF_NEG, 0);
			break;
		}
		case 8: case 9: case 10:
			f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | jmp[pick(4)] | src, k, forward(n, last),
							    forward(n, last));
			break;
		default:
			f[n] = pick(3) ? (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, some_action())
				       : (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, forward(n, last));
			break;
		}
		n++;
	}
	f[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xfff);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_OR | BPF_K, SECCOMP_RET_ERRNO);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	return n;
}

/* What the kernel did, as text: "allowed", "errno N", "zero" (ERRNO 0), "killed", "refused". */
static void kernel_outcome(struct sock_filter *f, int len, long nr, const uint64_t args[6], char *out, size_t sz)
{
	struct { char tag; long r; int err; } rec = { 0 };
	int p[2], st;
	pid_t pid;

	if (pipe(p) != 0) {
		snprintf(out, sz, "pipe failed");
		return;
	}
	pid = fork();
	if (pid == 0) {
		struct sock_fprog prog = { .len = (unsigned short)len, .filter = f };

		close(p[0]);
		rec.tag = 'R';
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
			(void)!write(p[1], &rec, sizeof(rec));
			_exit(0);
		}
		rec.tag = 'C';
		rec.r = syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
		rec.err = errno;
		(void)!write(p[1], &rec, sizeof(rec));
		_exit(0);
	}
	close(p[1]);
	ssize_t got = read(p[0], &rec, sizeof(rec));
	close(p[0]);
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st))
		snprintf(out, sz, WTERMSIG(st) == SIGSYS ? "killed" : "signal %d", WTERMSIG(st));
	else if (got != (ssize_t)sizeof(rec))
		snprintf(out, sz, "no record");
	else if (rec.tag == 'R')
		snprintf(out, sz, "refused");
	else if (rec.r > 0)
		snprintf(out, sz, "allowed");
	else if (rec.r == 0)
		snprintf(out, sz, "zero");
	else
		snprintf(out, sz, "errno %d", rec.err);
}

/* What the interpreter says the kernel will do. */
static void predicted_outcome(uint32_t ret, char *out, size_t sz)
{
	uint32_t data = ret & SECCOMP_RET_DATA;

	switch (ret & SECCOMP_RET_ACTION_FULL) {
	case SECCOMP_RET_ALLOW:
	case SECCOMP_RET_LOG:
		snprintf(out, sz, "allowed");
		break;
	case SECCOMP_RET_ERRNO:
		data = data > 4095 ? 4095 : data;
		if (data)
			snprintf(out, sz, "errno %u", data);
		else
			snprintf(out, sz, "zero");
		break;
	case SECCOMP_RET_TRAP: /* SIGSYS, which the child does not catch */
	default: /* the kills, and any action the kernel does not know, which it takes for one */
		snprintf(out, sz, "killed");
	}
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 1000, accepted = 0, mismatches = 0;
	int seen_allowed = 0, seen_errno = 0, seen_killed = 0;

	rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ull;
	if (!rng)
		rng = 1;
	for (int t = 0; t < count; t++) {
		static const long calls[] = { SYS_getpid, SYS_getppid };
		struct sock_filter f[MAX_INSNS];
		uint64_t args[6];
		char kernel[64], predicted[64];
		long nr = calls[pick(2)];

		for (int i = 0; i < 6; i++)
			args[i] = pick(3) ? next() : pick(16);
		int len = generate(f, args);
		kernel_outcome(f, len, nr, args, kernel, sizeof(kernel));
		if (!strcmp(kernel, "refused"))
			continue;
		struct seccomp_data d = { .nr = (int)nr, .arch = ARCH };
		for (int i = 0; i < 6; i++)
			d.args[i] = args[i];
		predicted_outcome(vtoe_bpf_run(f, (unsigned int)len, &d), predicted, sizeof(predicted));
		accepted++;
		seen_allowed += !strcmp(kernel, "allowed");
		seen_errno += !strncmp(kernel, "errno", 5);
		seen_killed += !strcmp(kernel, "killed");
		if (strcmp(kernel, predicted)) {
			mismatches++;
			printf("mismatch: filter %d: kernel %s, interpreter %s\n", t, kernel, predicted);
		}
	}
	printf("filters %d accepted %d allowed %d errno %d killed %d mismatches %d\n", count, accepted,
	       seen_allowed, seen_errno, seen_killed, mismatches);
	return mismatches ? 1 : 0;
}
