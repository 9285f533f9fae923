// The short-connection rule on its own: which listeners' connections go to kernel TCP, for how
// long, and when one is offloaded again to look. Pure: every time is given.
import { describe, expect, it } from 'vitest';
import { ShortConnections, wireMs, type ShortConnectionRules } from '../src/agent/short-connections.js';

const RULES: ShortConnectionRules = { maxBytes: 1000, maxLifetimeMs: 10, window: 3, holdMs: 100 };
const L = 7; // a listener's SID

/** n connections to L, each offloaded, moving `bytes` and living `lifetime` ms, ending at t. */
function run(s: ShortConnections, n: number, t: number, bytes = 100, lifetime = 1): void {
  for (let i = 0; i < n; i++) {
    expect(s.decide(L, t)).toEqual({ offload: true });
    s.ended(L, bytes, lifetime, t);
  }
}

describe('short connections', () => {
  it('offloads until `window` short ones in a row, then keeps the listener on kernel TCP for the hold', () => {
    const s = new ShortConnections(RULES);
    run(s, 2, 1000);
    expect(s.quietUntil(L, 1000)).toBe(0);
    run(s, 1, 1000);
    expect(s.decide(L, 1001)).toEqual({ offload: false, skipUntil: 1100 });
    expect(s.quietUntil(L, 1001)).toBe(1100);
    expect(s.decide(L, 1099)).toEqual({ offload: false, skipUntil: 1100 });
    expect(s.decide(8, 1001)).toEqual({ offload: true }); // other listeners are not touched
  });

  it('a connection that moved more, or lived longer, breaks the run', () => {
    for (const [bytes, lifetime] of [[1001, 1], [100, 11]]) {
      const s = new ShortConnections(RULES);
      run(s, 2, 0);
      run(s, 1, 0, bytes, lifetime);
      run(s, 2, 0);
      expect(s.quietUntil(L, 0)).toBe(0);
      run(s, 1, 0);
      expect(s.quietUntil(L, 0)).toBe(100);
    }
    // exactly at the limits is still short
    const s = new ShortConnections(RULES);
    run(s, 3, 0, 1000, 10);
    expect(s.quietUntil(L, 0)).toBe(100);
  });

  it('after the hold offloads one probe at a time; a short probe starts the hold again', () => {
    const s = new ShortConnections(RULES);
    run(s, 3, 0);
    expect(s.decide(L, 100)).toEqual({ offload: true }); // the probe
    // while the probe lives, others stay on kernel TCP but get no promise (the probe may end it)
    expect(s.decide(L, 105)).toEqual({ offload: false, skipUntil: 0 });
    expect(s.quietUntil(L, 105)).toBe(0);
    s.ended(L, 100, 5, 105);
    expect(s.decide(L, 106)).toEqual({ offload: false, skipUntil: 205 });
  });

  it('a long probe, or one that outlives the rule without a word, gives the listener back to offload', () => {
    const ended = new ShortConnections(RULES);
    run(ended, 3, 0);
    expect(ended.decide(L, 100).offload).toBe(true);
    ended.ended(L, 5000, 5, 105);
    expect(ended.decide(L, 106)).toEqual({ offload: true });
    expect(ended.decide(L, 107)).toEqual({ offload: true }); // no probe: offloaded as before
    expect(ended.quietUntil(L, 106)).toBe(0);

    const silent = new ShortConnections(RULES);
    run(silent, 3, 0);
    expect(silent.decide(L, 100).offload).toBe(true);
    expect(silent.decide(L, 110)).toEqual({ offload: false, skipUntil: 0 });
    expect(silent.decide(L, 111)).toEqual({ offload: true });
    expect(silent.decide(L, 112)).toEqual({ offload: true });
  });

  it('keeps a promise made, even when a long connection from before the hold ends during it', () => {
    const s = new ShortConnections(RULES);
    run(s, 3, 0);
    s.ended(L, 1 << 20, 500, 50); // began before the hold, ends inside it
    expect(s.decide(L, 60)).toEqual({ offload: false, skipUntil: 100 });
    expect(s.quietUntil(L, 60)).toBe(100);
    expect(s.decide(L, 100)).toEqual({ offload: true }); // and no longer short after it:
    expect(s.decide(L, 101)).toEqual({ offload: true }); // that was no probe
  });

  it('forgets a closed listener, and does nothing when switched off', () => {
    const s = new ShortConnections(RULES);
    run(s, 3, 0);
    s.forget(L);
    expect(s.size).toBe(0);
    expect(s.decide(L, 1)).toEqual({ offload: true });
    for (const off of [{ ...RULES, maxBytes: 0 }, { ...RULES, window: 0 }]) {
      const none = new ShortConnections(off);
      expect(none.enabled).toBe(false);
      run(none, 10, 0);
      expect(none.size).toBe(0);
      expect(none.quietUntil(L, 0)).toBe(0);
    }
  });

  it('puts times on the wire as the low 32 bits, never 0 for a real time', () => {
    expect(wireMs(0)).toBe(0);
    expect(wireMs(1234)).toBe(1234);
    expect(wireMs(2 ** 32 + 5)).toBe(5);
    expect(wireMs(2 ** 33)).toBe(1);
  });
});
