// A remote "agent" made by hand for the verbs attack tests: the project's own VerbsFabric driven
// step by step, so a test chooses what goes into the REQ and which key (if any) its proof uses.
import { repMac, rtuMac, macEqual } from '../../src/agent/cluster-key.js';
import { decodeRep, encodeReq, REP_MAC_AT } from '../../src/agent/verbs-wire.js';
import { VerbsFabric, type CmEvent, type CmEventType, type ConnEvent } from '../../src/native-verbs.js';

export class ForgedAgent {
  private readonly fabric: VerbsFabric;
  private readonly cm: CmEvent[] = [];
  readonly conn: ConnEvent[] = [];
  private wake: (() => void) | null = null;
  private handle = 0;
  private req = Buffer.alloc(0);

  constructor() {
    const note = (): void => this.wake?.();
    this.fabric = new VerbsFabric({
      onCmEvent: (ev) => { this.cm.push(ev); note(); },
      onConnEvent: (ev) => { this.conn.push(ev); note(); },
    });
  }

  /** The next rdma_cm event of one of these types (earlier ones of other types are kept). */
  async next(types: CmEventType[], timeoutMs = 30_000): Promise<CmEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.cm.findIndex((e) => types.includes(e.type));
      if (i >= 0) return this.cm.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no ${types.join('/')} within ${timeoutMs} ms; saw ${this.cm.map((e) => e.type).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200); // re-check the deadline; events wake us at once
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.wake = null;
    }
  }

  /** REQ for a connection to dst:dstPort (as if from srcPort), through the agent at rdma:port. */
  async request(rdma: string, rdmaPort: number, dst: string, dstPort: number, srcPort: number, ringSize: number): Promise<CmEvent> {
    this.handle = this.fabric.resolve({ address: rdma, port: rdmaPort }, 5000);
    await this.next(['ADDRESS_RESOLVED']);
    this.fabric.resolveRoute(this.handle, 5000);
    await this.next(['ROUTE_RESOLVED']);
    const window = this.fabric.createQp(this.handle, ringSize, 1n, 0);
    this.fabric.modifyQp(this.handle, 'INIT');
    this.req = encodeReq({ ...window, sid: 1, dstAddress: dst, dstPort, srcPort, ringSize });
    this.fabric.connect(this.handle, this.req);
    return this.next(['CONNECT_RESPONSE', 'CONNECT_REJECTED', 'UNREACHABLE', 'CONNECT_ERROR']);
  }

  /** Whether the REP's proof verifies with this key. */
  repProvenBy(rep: CmEvent, key: Buffer): boolean {
    return macEqual(decodeRep(rep.privateData).mac, repMac(key, this.req, rep.privateData.subarray(0, REP_MAC_AT)));
  }

  /** RTR, RTS, RTU, and the first message: a proof made with this key. */
  establish(rep: CmEvent, key: Buffer): void {
    const r = decodeRep(rep.privateData);
    this.fabric.modifyQp(this.handle, 'RTR');
    this.fabric.modifyQp(this.handle, 'RTS');
    this.fabric.establish(this.handle);
    this.fabric.start(this.handle, r, { send: rtuMac(key, r.nonce, this.req) });
  }

  close(): void {
    this.fabric.close();
  }
}
