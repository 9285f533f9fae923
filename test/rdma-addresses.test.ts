// Which network devices back this host's RDMA ports (src/agent/rdma-addresses.ts), read from a
// sysfs tree of the test's own: only active ports count, and empty GID slots are skipped.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rdmaNetdevs } from '../src/agent/rdma-addresses.js';
import { scratchPerTest } from './helpers/scratch.js';

const scratch = scratchPerTest();

function port(root: string, dev: string, n: number, state: string | null, ndevs: Record<string, string>): void {
  const dir = join(root, dev, 'ports', String(n));
  mkdirSync(join(dir, 'gid_attrs', 'ndevs'), { recursive: true });
  if (state !== null) writeFileSync(join(dir, 'state'), `${state}\n`);
  for (const [idx, name] of Object.entries(ndevs)) writeFileSync(join(dir, 'gid_attrs', 'ndevs', idx), name ? `${name}\n` : '');
}

describe('rdmaNetdevs', () => {
  it('lists the netdevs of active ports only', () => {
    const root = scratch.tempDir('vtoe-sysfs-');
    port(root, 'rxe0', 1, '4: ACTIVE', { 0: 'eth0', 1: 'eth0', 2: '' });
    port(root, 'mlx5_0', 1, '1: DOWN', { 0: 'ens1f0' });
    port(root, 'mlx5_1', 1, '4: ACTIVE', { 0: 'ens1f1' });
    port(root, 'odd0', 1, null, { 0: 'odd' }); // no state file: not counted
    expect(rdmaNetdevs(root).filter((n) => !n.startsWith('ib'))).toEqual(['ens1f1', 'eth0']);
  });

  it('is empty without devices', () => {
    expect(rdmaNetdevs(join(scratch.tempDir('vtoe-sysfs-'), 'none')).filter((n) => !n.startsWith('ib'))).toEqual([]);
  });
});
