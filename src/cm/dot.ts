// Graphviz rendering of the state machines, for comparison with Figure 5.7 of the dissertation.
// Only transitions are drawn; error pairs would swamp the picture.
import type { Machine } from './machine.js';

function esc(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

function quote(s: string): string {
  return `"${esc(s)}"`;
}

// Plain identifiers stay bare so the output reads (and greps) as `tcp_CLOSED -> tcp_LISTEN`.
function ident(s: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? s : quote(s);
}

export function toDot(machines: Machine<any, any>[]): string {
  const out: string[] = [
    'digraph vtoe_cm {',
    '  rankdir=LR;',
    '  graph [fontname="Helvetica"];',
    '  node [shape=ellipse, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10];',
  ];
  for (const m of machines) {
    const { name, title, states, events, initial } = m.spec;
    const id = (s: string): string => ident(`${name}_${s}`);
    out.push(`  subgraph ${ident(`cluster_${name}`)} {`, `    label=${quote(title)};`);
    for (const s of states as readonly string[]) {
      const shape = s === initial ? ', shape=doublecircle' : '';
      out.push(`    ${id(s)} [label=${quote(s)}${shape}];`);
    }
    // Parallel edges merge into one, labels in event order; edges in first-seen order.
    const edges = new Map<string, { from: string; to: string; labels: string[] }>();
    for (const s of states as readonly string[]) {
      for (const e of events as readonly string[]) {
        const o = m.outcome(s, e);
        if (o.kind !== 'transition') continue;
        const k = `${s}\u0000${o.to}`;
        const edge = edges.get(k) ?? { from: s, to: o.to as string, labels: [] };
        edge.labels.push(e);
        edges.set(k, edge);
      }
    }
    for (const { from, to, labels } of edges.values()) {
      // DOT's \n escape inside a quoted label is a line break.
      out.push(`    ${id(from)} -> ${id(to)} [label="${labels.map(esc).join('\\n')}"];`);
    }
    out.push('  }');
  }
  out.push('}');
  return out.join('\n') + '\n';
}
