// The core CA under random request sequences from several processes (fast-check): real clients
// connecting, a server accepting what the kernel gave it, and a bystander passing whatever
// sockets it holds (its own, on the ports of the real clients, or made in a network namespace of
// its own) with whatever claims.  Whatever the order, no process is ever given the descriptors of
// a connection it is not party to, and no connection is claimed twice.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ABI } from '../src/abi.js';
import type { TcpSocketIdentity } from '../src/native.js';
import { acceptedFd, addr, CLIENT, clientFd, SERVER, setup } from './helpers/fake-core.js';

const BYSTANDER = 3;
const PORTS = [40001, 40002];
/** Sockets of the bystander: in the agent's namespace on ports no client uses, or twins of the
 * real rendezvous made in a namespace of its own. */
const bystanderFd = (k: number) => 7_500_000 + k;
function bystanderSocket(k: number): TcpSocketIdentity {
  const port = PORTS[k % PORTS.length]!;
  switch (k % 3) {
    case 0: return { local: addr(41000 + k), remote: addr(5000), listening: false, inAgentNetns: true };
    case 1: return { local: addr(5000), remote: addr(port), listening: false, inAgentNetns: false };
    default: return { local: addr(port), remote: addr(5000), listening: false, inAgentNetns: false };
  }
}

type Action =
  | { kind: 'connect'; port: number }
  | { kind: 'establish'; port: number }
  | { kind: 'server-accept'; port: number }
  | { kind: 'close'; who: number; port: number }
  | { kind: 'bystander-accept'; k: number | null; claim: number }
  | { kind: 'bystander-connect'; k: number | null; claim: number };

const port = fc.constantFrom(...PORTS);
const k = fc.option(fc.integer({ min: 0, max: 8 }), { nil: null });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('connect' as const), port }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('establish' as const), port }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('server-accept' as const), port }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), who: fc.constantFrom(CLIENT, SERVER), port }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bystander-accept' as const), k, claim: port }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bystander-connect' as const), k, claim: port }) },
);

describe('core CA under random request sequences', () => {
  it('gives no process the descriptors of a connection it is not party to', () => {
    let claims = 0; // passive ends handed out over all runs: the property was exercised
    fc.assert(fc.property(fc.array(action, { minLength: 20, maxLength: 60 }), (actions) => {
      const t = setup({ shortBytes: 0 }); // random closes are not a short-connection workload
      for (let i = 0; i < 9; i++) t.extraSockets.set(bystanderFd(i), bystanderSocket(i));
      t.core.processOpened(BYSTANDER, { pid: 300, uid: 0 });
      t.send(BYSTANDER, 1 /* HELLO */, { name: 'bystander' });

      // What the model knows: each client port's connection, and what the server holds.
      const client = new Map<number, { sid: number; cid: bigint; established: boolean }>();
      const serverHolds = new Set<number>(); // accepted sockets the server took (accept() once each)
      const serverSid = new Map<number, number>();
      /** cid -> the process whose CONNECT made it, and the accepted socket that may claim it */
      const party = new Map<bigint, { creator: number; acceptedBy: number | null }>();
      const claimed = new Set<bigint>();

      for (const a of actions) {
        const before = t.replies.length;
        let sentFd: number | undefined;
        switch (a.kind) {
          case 'connect': {
            if (client.has(a.port)) break; // one socket per port at a time, as the kernel has it
            const rep = t.send(CLIENT, ABI.op.CONNECT, { sid: 0, local: addr(a.port), remote: addr(5000), fd: clientFd(a.port) });
            if (rep?.event === ABI.ev.CONNECT_RESPONSE) {
              client.set(a.port, { sid: rep.sid!, cid: rep.cid!, established: false });
              party.set(rep.cid!, { creator: CLIENT, acceptedBy: acceptedFd(a.port) });
            }
            break;
          }
          case 'establish': {
            const c = client.get(a.port);
            if (c && !c.established) {
              c.established = true;
              t.send(CLIENT, ABI.op.ESTABLISH, { sid: c.sid, cid: c.cid });
            }
            break;
          }
          case 'server-accept':
            // accept() returns the kernel connection once the client's connect completed (its
            // CONNECT was answered), whether or not the agent has read its ESTABLISH yet.
            if (!client.has(a.port) || serverHolds.has(acceptedFd(a.port))) break;
            serverHolds.add(acceptedFd(a.port));
            sentFd = acceptedFd(a.port);
            {
              const rep = t.send(SERVER, ABI.op.ACCEPT, { sid: t.listenSid, fd: sentFd });
              if (rep?.event === ABI.ev.CONNECT_ESTABLISHED) serverSid.set(a.port, rep.sid!);
            }
            break;
          case 'close': {
            if (a.who === CLIENT) {
              const c = client.get(a.port);
              if (c) t.send(CLIENT, ABI.op.CLOSE, { sid: c.sid });
              client.delete(a.port);
              serverHolds.delete(acceptedFd(a.port)); // a new connection on the port may come
            } else {
              const sid = serverSid.get(a.port);
              if (sid) t.send(SERVER, ABI.op.CLOSE, { sid });
              serverSid.delete(a.port);
            }
            break;
          }
          case 'bystander-accept':
            sentFd = a.k === null ? undefined : bystanderFd(a.k);
            t.send(BYSTANDER, ABI.op.ACCEPT, { sid: t.listenSid, local: addr(5000), remote: addr(a.claim), fd: sentFd });
            break;
          case 'bystander-connect': {
            sentFd = a.k === null ? undefined : bystanderFd(a.k);
            const rep = t.send(BYSTANDER, ABI.op.CONNECT, { sid: 0, local: addr(a.claim), remote: addr(5000), fd: sentFd });
            if (rep?.event === ABI.ev.CONNECT_RESPONSE) party.set(rep.cid!, { creator: BYSTANDER, acceptedBy: null });
            break;
          }
        }
        for (const { client: to, rep, fds } of t.replies.slice(before)) {
          if (!fds?.length) continue;
          const p = party.get(rep.cid!);
          expect(p, `fds of unknown connection ${rep.cid} to ${to}`).toBeDefined();
          if (rep.side === 0) {
            expect(to).toBe(p!.creator);
          } else {
            // The passive end: only for the accepted socket of that very rendezvous, once.
            expect(to).toBe(SERVER);
            expect(sentFd).toBe(p!.acceptedBy);
            expect(claimed.has(rep.cid!)).toBe(false);
            claimed.add(rep.cid!);
            claims++;
          }
        }
      }
      // The bystander never got a passive end, whatever it sent.
      expect(t.replies.filter((r) => r.client === BYSTANDER && r.rep.side === 1 && r.fds?.length)).toEqual([]);
    }), { numRuns: 400 });
    expect(claims).toBeGreaterThan(100);
  });
});
