import { ibCmMachine } from './ib-cm-state.js';
import type { Machine } from './machine.js';
import { qpMachine } from './qp-state.js';
import { tcpMachine } from './tcp-state.js';

export * from './machine.js';
export * from './tcp-state.js';
export * from './ib-cm-state.js';
export * from './qp-state.js';
export { toDot } from './dot.js';

/** The three machines in the order the diagram shows them. */
export const allMachines: readonly Machine<any, any>[] = [tcpMachine, ibCmMachine, qpMachine];
