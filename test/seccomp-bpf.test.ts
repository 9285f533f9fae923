// The shim runs a program's seccomp filter itself before each call of its own
// (preload/vtoe_bpf.c): here its verdicts are checked against the kernel's, filter by filter.
// test/c/seccomp-bpf.c makes random filters (every load, ALU op and jump seccomp accepts,
// scratch memory, returns of every action), installs each in a child that makes one call, and
// compares what the kernel did with what the interpreter predicted.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildC, repoRoot } from './helpers/cc.js';

const seccomp = /^Seccomp:/m.test(readFileSync('/proc/self/status', 'utf8'));

describe('the shim\'s seccomp interpreter', () => {
  it.skipIf(!seccomp)(`gives the kernel's verdict on 5000 random filters${seccomp ? '' : ' [the kernel has no seccomp]'}`, async () => {
    const bin = buildC('seccomp-bpf', ['test/c/seccomp-bpf.c', 'preload/vtoe_bpf.c', 'preload/vtoe_bpf.h'],
      ['-I', join(repoRoot, 'preload')]);
    const { stdout } = await promisify(execFile)(bin, ['5000', '0x5eccbbf']).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    const totals = /filters (\d+) accepted (\d+) allowed (\d+) errno (\d+) killed (\d+) mismatches (\d+)/.exec(stdout);
    expect(totals, stdout).not.toBeNull();
    const [, , accepted, allowed, errnos, killed, mismatches] = totals!.map(Number);
    expect(stdout.split('\n').filter((l) => l.startsWith('mismatch')), 'filters judged otherwise than the kernel').toEqual([]);
    expect(mismatches).toBe(0);
    // the kernel took most filters, and each kind of outcome happened often
    expect(accepted).toBeGreaterThan(4500);
    for (const n of [allowed, errnos, killed]) expect(n).toBeGreaterThan(500);
  });
});
