// A state machine as data: every (state, event) pair is either a transition or a named error,
// checked once at construction so the agent never meets an undefined pair at run time.
import { ProtocolError } from '../errors.js';

export type Outcome<S extends string> =
  | { kind: 'transition'; to: S }
  | { kind: 'error'; reason: string };

export type TransitionTable<S extends string, E extends string> = {
  readonly [s in S]?: { readonly [e in E]?: S };
};
export type ErrorTable<S extends string, E extends string> = {
  readonly [s in S]?: { readonly [e in E]?: string };
};

export interface MachineSpec<S extends string, E extends string> {
  name: string;
  title: string;
  states: readonly S[];
  events: readonly E[];
  initial: S;
  transitions: TransitionTable<S, E>;
  /** Every pair not in `transitions`, with the reason it is refused. */
  errors: ErrorTable<S, E>;
}

/** An event arrived in a state where the machine does not allow it. */
export class TransitionError extends ProtocolError {
  readonly machine: string;
  readonly state: string;
  readonly event: string;
  readonly reason: string;
  constructor(machine: string, state: string, event: string, reason: string) {
    super(`${machine}: event ${event} in state ${state}: ${reason}`);
    this.machine = machine;
    this.state = state;
    this.event = event;
    this.reason = reason;
  }
}

/** One rule of an error table: the listed events in the listed states ('*' = all) get `reason`. */
export interface ErrorRule<S extends string, E extends string> {
  states: readonly S[] | '*';
  events: readonly E[] | '*';
  reason: string;
}

/**
 * Builds a total error table: each pair without a transition takes the reason of the first rule
 * that covers it, else the generic "`event` is not valid in `state`".
 */
export function totalErrors<S extends string, E extends string>(
  states: readonly S[],
  events: readonly E[],
  transitions: TransitionTable<S, E>,
  rules: readonly ErrorRule<S, E>[],
): ErrorTable<S, E> {
  const out: Partial<Record<S, Partial<Record<E, string>>>> = {};
  for (const s of states) {
    const row: Partial<Record<E, string>> = {};
    for (const e of events) {
      if (lookup<S>(transitions, s, e) !== undefined) continue;
      const rule = rules.find(
        (r) => (r.states === '*' || r.states.includes(s)) && (r.events === '*' || r.events.includes(e)),
      );
      row[e] = rule ? rule.reason : `${e} is not valid in ${s}`;
    }
    out[s] = row;
  }
  return out as ErrorTable<S, E>;
}

// Own-property lookup, so a state named like an Object.prototype member cannot leak in.
function lookup<V>(table: object, s: string, e: string): V | undefined {
  if (!Object.hasOwn(table, s)) return undefined;
  const row = (table as Record<string, Record<string, V> | undefined>)[s];
  return row !== undefined && Object.hasOwn(row, e) ? row[e] : undefined;
}

export class Machine<S extends string, E extends string> {
  readonly spec: MachineSpec<S, E>;
  /** Outcomes by state, then event: a lookup allocates nothing (next() runs per transition). */
  private readonly table = new Map<string, Map<string, Outcome<S>>>();
  private readonly stateSet: ReadonlySet<string>;
  private readonly eventSet: ReadonlySet<string>;

  constructor(spec: MachineSpec<S, E>) {
    const problems: string[] = [];
    const stateSet = new Set<string>(spec.states);
    const eventSet = new Set<string>(spec.events);
    if (stateSet.size !== spec.states.length) problems.push('duplicate state name');
    if (eventSet.size !== spec.events.length) problems.push('duplicate event name');
    if (spec.states.length === 0 || spec.events.length === 0) problems.push('no states or no events');
    if (!stateSet.has(spec.initial)) problems.push(`initial state ${spec.initial} is not a state`);

    // Keys naming unknown states or events would be silently ignored; refuse them instead.
    for (const [what, table] of [['transitions', spec.transitions], ['errors', spec.errors]] as const) {
      for (const s of Object.keys(table)) {
        if (!stateSet.has(s)) { problems.push(`${what} names unknown state ${s}`); continue; }
        for (const e of Object.keys((table as Record<string, object>)[s]!)) {
          if (!eventSet.has(e)) problems.push(`${what} ${s} names unknown event ${e}`);
        }
      }
    }

    for (const s of spec.states) {
      for (const e of spec.events) {
        const to = lookup<S>(spec.transitions, s, e);
        const reason = lookup<string>(spec.errors, s, e);
        if (to !== undefined && reason !== undefined) {
          problems.push(`${s}/${e} is both a transition and an error`);
        } else if (to !== undefined) {
          if (!stateSet.has(to)) problems.push(`${s}/${e} goes to unknown state ${to}`);
          else this.row(s).set(e, { kind: 'transition', to });
        } else if (reason !== undefined) {
          if (typeof reason !== 'string' || reason === '') problems.push(`${s}/${e} has an empty reason`);
          else this.row(s).set(e, { kind: 'error', reason });
        } else {
          problems.push(`${s}/${e} is neither a transition nor an error`);
        }
      }
    }
    if (problems.length > 0) {
      throw new Error(`state machine ${spec.name} is invalid: ${problems.join('; ')}`);
    }
    this.spec = spec;
    this.stateSet = stateSet;
    this.eventSet = eventSet;
  }

  private row(s: string): Map<string, Outcome<S>> {
    let row = this.table.get(s);
    if (!row) this.table.set(s, (row = new Map()));
    return row;
  }

  get name(): string {
    return this.spec.name;
  }

  get initial(): S {
    return this.spec.initial;
  }

  isState(x: string): x is S {
    return this.stateSet.has(x);
  }

  isEvent(x: string): x is E {
    return this.eventSet.has(x);
  }

  outcome(state: S, event: E): Outcome<S> {
    const o = this.table.get(state)?.get(event);
    if (o !== undefined) return o;
    // Only reachable when a caller passes an unchecked string.
    return { kind: 'error', reason: `unknown state ${state} or event ${event}` };
  }

  next(state: S, event: E): S {
    const o = this.outcome(state, event);
    if (o.kind === 'error') throw new TransitionError(this.spec.name, state, event, o.reason);
    return o.to;
  }

  /** All |S|×|E| pairs, states then events in declaration order. */
  pairs(): Array<{ state: S; event: E; outcome: Outcome<S> }> {
    const out: Array<{ state: S; event: E; outcome: Outcome<S> }> = [];
    for (const state of this.spec.states) {
      for (const event of this.spec.events) out.push({ state, event, outcome: this.outcome(state, event) });
    }
    return out;
  }

  /** States reachable from the initial state through transitions. */
  reachable(): Set<S> {
    const seen = new Set<S>([this.spec.initial]);
    const todo: S[] = [this.spec.initial];
    while (todo.length > 0) {
      const s = todo.pop()!;
      for (const e of this.spec.events) {
        const o = this.outcome(s, e);
        if (o.kind === 'transition' && !seen.has(o.to)) { seen.add(o.to); todo.push(o.to); }
      }
    }
    return seen;
  }
}
