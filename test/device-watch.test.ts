// The agent's watch for RDMA devices (src/agent/device-watch.ts), on a directory of the test's
// own standing in for /dev/infiniband: made after the watch starts, as when rdma_ucm loads, then
// given a node, as when a device registers.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeviceWatch } from '../src/agent/device-watch.js';
import { scratchPerTest } from './helpers/scratch.js';

const scratch = scratchPerTest();

/** Resolves on the watch's next call. */
function nextChange(): { watch: (path: string) => DeviceWatch; changed: () => Promise<void>; calls: () => number } {
  let calls = 0;
  let wake: (() => void) | null = null;
  return {
    watch: (path) => new DeviceWatch(() => {
      calls++;
      wake?.();
      wake = null;
    }, path, 20),
    changed: () => new Promise<void>((resolve) => (wake = resolve)),
    calls: () => calls,
  };
}

describe('DeviceWatch', () => {
  it('calls when the directory appears, and again when a node appears in it', async () => {
    const root = scratch.tempDir('vtoe-devwatch-');
    const dir = join(root, 'infiniband');
    const w = nextChange();
    const watch = w.watch(dir);
    watch.start();
    try {
      let next = w.changed();
      mkdirSync(dir);
      await next;
      expect(w.calls()).toBe(1);
      next = w.changed();
      writeFileSync(join(dir, 'uverbs0'), '');
      await next;
      expect(w.calls()).toBe(2);
    } finally {
      watch.close();
    }
  });

  it('watches a directory that is already there, and one that goes and comes back', async () => {
    const root = scratch.tempDir('vtoe-devwatch-');
    const dir = join(root, 'infiniband');
    mkdirSync(dir);
    const w = nextChange();
    const watch = w.watch(dir);
    watch.start();
    try {
      let next = w.changed();
      writeFileSync(join(dir, 'rdma_cm'), '');
      await next;
      next = w.changed();
      rmSync(dir, { recursive: true });
      await next;
      next = w.changed();
      mkdirSync(dir);
      await next;
      next = w.changed();
      writeFileSync(join(dir, 'uverbs1'), '');
      await next;
      expect(w.calls()).toBe(4);
    } finally {
      watch.close();
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
