// Hosts that leave a verbs REQ unanswered, on their own: when their connections go straight to
// kernel TCP, when one tries the fabric again, how the hold grows and what ends it. Pure: every
// time is given.
import { describe, expect, it } from 'vitest';
import { SILENT_HOLD_GROWTH_MAX, SilentHosts, type SilentHostRules } from '../src/agent/silent-hosts.js';
import { formatStats } from '../src/format.js';
import { idleStats } from './helpers/idle-stats.js';

const RULES: SilentHostRules = { holdMs: 100, probeMs: 40, maxHosts: 3 };
const H = '192.0.2.2';

describe('silent hosts', () => {
  it('a host is tried until a REQ goes unanswered, then held on kernel TCP for the hold', () => {
    const s = new SilentHosts(RULES);
    expect(s.decide(H, 0)).toEqual({ tryFabric: true });
    expect(s.decide(H, 1)).toEqual({ tryFabric: true }); // nothing known yet: no probe limit
    s.unanswered(H, 10);
    expect(s.decide(H, 11)).toEqual({ tryFabric: false, until: 110 });
    expect(s.decide(H, 109)).toEqual({ tryFabric: false, until: 110 });
    expect(s.decide('192.0.2.3', 11)).toEqual({ tryFabric: true }); // other hosts are not touched
    expect(s.held(50)).toEqual([{ host: H, forMs: 60 }]);
    expect(s.held(110)).toEqual([]);
  });

  it('after the hold one connection probes; the others fall back until it ends or its deadline passes', () => {
    const s = new SilentHosts(RULES);
    s.unanswered(H, 0);
    expect(s.decide(H, 100)).toEqual({ tryFabric: true }); // the probe
    expect(s.decide(H, 101)).toEqual({ tryFabric: false, until: 0 });
    expect(s.decide(H, 139)).toEqual({ tryFabric: false, until: 0 });
    // a probe that never reported (its connection went another way) frees the next at its deadline
    expect(s.decide(H, 140)).toEqual({ tryFabric: true });
  });

  it('each unanswered probe doubles the hold, up to the cap', () => {
    const s = new SilentHosts(RULES);
    let t = 0;
    const holds: number[] = [];
    for (let i = 0; i < 8; i++) {
      s.unanswered(H, t);
      const v = s.decide(H, t);
      expect(v.tryFabric).toBe(false);
      const until = v.tryFabric ? 0 : v.until;
      holds.push(until - t);
      t = until;
      expect(s.decide(H, t)).toEqual({ tryFabric: true });
    }
    expect(holds).toEqual([100, 200, 400, 800, 1600, 1600, 1600, 1600]);
    expect(RULES.holdMs * SILENT_HOLD_GROWTH_MAX).toBe(1600);
  });

  it('an answer (REP or REJ) forgets the host: the next hold starts from the first again', () => {
    const s = new SilentHosts(RULES);
    s.unanswered(H, 0);
    expect(s.decide(H, 100).tryFabric).toBe(true);
    s.unanswered(H, 100);
    expect(s.decide(H, 101)).toEqual({ tryFabric: false, until: 300 });
    s.answered(H);
    expect(s.decide(H, 102)).toEqual({ tryFabric: true });
    expect(s.decide(H, 103)).toEqual({ tryFabric: true });
    s.unanswered(H, 200);
    expect(s.decide(H, 201)).toEqual({ tryFabric: false, until: 300 });
  });

  it('remembers at most maxHosts; the one silent longest ago is forgotten first', () => {
    const s = new SilentHosts(RULES);
    for (const [i, h] of ['a', 'b', 'c'].entries()) s.unanswered(h, i);
    s.unanswered('a', 3); // silent again: now the most recent
    s.unanswered('d', 4);
    expect(s.size).toBe(3);
    expect(s.decide('b', 5)).toEqual({ tryFabric: true });
    for (const h of ['a', 'c', 'd']) expect(s.decide(h, 5).tryFabric).toBe(false);
  });

  it('holdMs 0 turns the rule off', () => {
    const s = new SilentHosts({ ...RULES, holdMs: 0 });
    s.unanswered(H, 0);
    expect(s.decide(H, 1)).toEqual({ tryFabric: true });
    expect(s.size).toBe(0);
  });
});

describe('vtoe stats', () => {
  const stats = (silentHosts: { host: string; forMs: number }[]) => idleStats({ silentHosts });

  it('lists the hosts held, with the seconds left of each hold, at most 8 by name', () => {
    expect(formatStats(stats([{ host: H, forMs: 29_001 }]))).toContain(
      `hosts that left a verbs REQ unanswered, on kernel TCP for now: ${H} (30 s)`);
    const many = Array.from({ length: 10 }, (_, i) => ({ host: `10.0.0.${i}`, forMs: 1000 }));
    expect(formatStats(stats(many))).toMatch(/10\.0\.0\.7 \(1 s\), and 2 more$/m);
    expect(formatStats(stats([]))).not.toMatch(/unanswered/);
  });
});
