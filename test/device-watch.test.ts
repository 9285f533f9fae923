// The agent's watch for RDMA devices (src/agent/device-watch.ts), on a directory of the test's
// own standing in for /dev/infiniband: made after the watch starts, as when rdma_ucm loads, then
// given a node, as when a device registers.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeviceWatch } from '../src/agent/device-watch.js';
import { scratchPerTest } from './helpers/scratch.js';

const scratch = scratchPerTest();

/** A watch on `path` that counts its calls; `after(change)` makes the change and resolves on
 * the call it brings. */
function counted(path: string): { watch: DeviceWatch; after: (change: () => void) => Promise<void>; calls: () => number } {
  let calls = 0;
  let wake: (() => void) | null = null;
  const watch = new DeviceWatch(() => {
    calls++;
    wake?.();
    wake = null;
  }, path, 20);
  watch.start();
  return {
    watch,
    after: (change) => {
      const next = new Promise<void>((resolve) => (wake = resolve));
      change();
      return next;
    },
    calls: () => calls,
  };
}

describe('DeviceWatch', () => {
  it('calls when the directory appears, and again when a node appears in it', async () => {
    const dir = join(scratch.tempDir('vtoe-devwatch-'), 'infiniband');
    const w = counted(dir);
    try {
      await w.after(() => mkdirSync(dir));
      expect(w.calls()).toBe(1);
      await w.after(() => writeFileSync(join(dir, 'uverbs0'), ''));
      expect(w.calls()).toBe(2);
    } finally {
      w.watch.close();
    }
  });

  it('watches a directory that is already there, and one that goes and comes back', async () => {
    const dir = join(scratch.tempDir('vtoe-devwatch-'), 'infiniband');
    mkdirSync(dir);
    const w = counted(dir);
    try {
      await w.after(() => writeFileSync(join(dir, 'rdma_cm'), ''));
      await w.after(() => rmSync(dir, { recursive: true }));
      await w.after(() => mkdirSync(dir));
      await w.after(() => writeFileSync(join(dir, 'uverbs1'), '')); // hangs if the new directory is not watched
      expect(w.calls()).toBe(4);
    } finally {
      w.watch.close();
    }
  });

  it('a burst of changes is one call, and nothing comes after close', async () => {
    const root = scratch.tempDir('vtoe-devwatch-');
    const dir = join(root, 'infiniband');
    mkdirSync(dir);
    const calls: number[] = [];
    const watch = new DeviceWatch(() => calls.push(Date.now()), dir, 300);
    watch.start();
    for (const n of ['rdma_cm', 'uverbs0', 'uverbs1', 'umad0']) writeFileSync(join(dir, n), '');
    // the call comes 300 ms after the last change: wait for it through a second watch on the same
    // directory that fires on a later marker, so nothing here sleeps to order events
    await new Promise<void>((resolve) => {
      const marker = new DeviceWatch(() => resolve(), dir, 600);
      marker.start();
      writeFileSync(join(dir, 'marker'), '');
      setTimeout(() => marker.close(), 5000).unref();
    });
    expect(calls.length).toBe(1);
    watch.close();
    writeFileSync(join(dir, 'late'), '');
    await new Promise<void>((resolve) => {
      const marker = new DeviceWatch(() => { marker.close(); resolve(); }, dir, 400);
      marker.start();
      writeFileSync(join(dir, 'marker2'), '');
    });
    expect(calls.length).toBe(1);
  });
});
