// Waits for RDMA devices to appear. The kernel makes /dev/infiniband and its nodes (rdma_cm,
// uverbsN) when rdma_ucm loads or a device registers (a driver binds, `rdma link add` runs), so
// inotify on those directories tells the agent when to try its verbs fabric again, at no cost
// while nothing happens: no timer, no polling.
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export const RDMA_DEVICE_DIR = '/dev/infiniband';

export class DeviceWatch {
  private parent: FSWatcher | null = null;
  private dir: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** onChange runs once per burst of changes, debounceMs after the last. */
  constructor(private readonly onChange: () => void, private readonly path = RDMA_DEVICE_DIR,
    private readonly debounceMs = 200) {}

  /** Throws when even the parent directory cannot be watched (no inotify). */
  start(): void {
    const name = basename(this.path);
    this.parent = watch(dirname(this.path), { persistent: false }, (_event, file) => {
      if (file === name) this.dirChanged();
    });
    this.parent.on('error', () => this.parent?.close());
    if (existsSync(this.path)) this.watchDir();
  }

  close(): void {
    this.parent?.close();
    this.dir?.close();
    this.parent = this.dir = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The directory itself came or went: watch the one that is there now, if any. */
  private dirChanged(): void {
    this.dir?.close();
    this.dir = null;
    if (existsSync(this.path)) this.watchDir();
    this.schedule();
  }

  private watchDir(): void {
    try {
      const dir = watch(this.path, { persistent: false }, () => this.schedule());
      dir.on('error', () => {
        dir.close();
        if (this.dir === dir) this.dir = null; // its parent's watch sees the directory return
      });
      this.dir = dir;
    } catch {
      this.dir = null;
    }
  }

  private schedule(): void {
    if (!this.parent) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onChange();
    }, this.debounceMs);
    this.timer.unref();
  }
}
