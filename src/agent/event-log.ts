// The agent's own log of state transitions, a bounded ring that tests and `vtoe events` read.
export interface TransitionRecord {
  at: number; // ms since the epoch
  cid: string;
  side: 0 | 1;
  sid: number | null;
  machine: 'tcp' | 'ib_cm' | 'qp';
  from: string;
  event: string;
  to: string;
}

export class EventLog {
  private readonly entries: TransitionRecord[] = [];
  private dropped = 0;

  constructor(private readonly capacity = 4096) {}

  record(entry: Omit<TransitionRecord, 'at'>): void {
    if (this.entries.length === this.capacity) {
      this.entries.shift();
      this.dropped++;
    }
    // One object per record, built whole (a spread copies property by property).
    const { cid, side, sid, machine, from, event, to } = entry;
    this.entries.push({ at: Date.now(), cid, side, sid, machine, from, event, to });
  }

  list(cid?: string): TransitionRecord[] {
    return cid === undefined ? [...this.entries] : this.entries.filter((e) => e.cid === cid);
  }

  get droppedCount(): number {
    return this.dropped;
  }
}
