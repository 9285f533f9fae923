// The elastic rings' arithmetic in include/vtoe_abi.h, checked exhaustively by a C program
// (test/c/ring-geometry.c) that includes the header as the shim and the agent do.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildC } from './helpers/cc.js';

describe('ring geometry (vtoe_abi.h)', () => {
  it('fills a large area to the two ends\' buffers, indexes a stay by the span that holds that, and encodes the span in geo', () => {
    const bin = buildC('ring-geometry', ['test/c/ring-geometry.c']);
    const out = execFileSync(bin, { encoding: 'utf8' });
    expect(out).toMatch(/^ok \d+\n$/);
    expect(Number(out.split(' ')[1])).toBeGreaterThan(10_000);
  });
});
