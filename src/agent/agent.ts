// The per-host agent: the control server every shim talks to, the core and host connection
// agents behind it, and the admin channel the CLI reads. It runs in `vtoe agent` (standing) or
// inside `vtoe run` / `vtoe demo` (embedded).
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import { VTOE_REGION_DATA_OFFSET } from '../abi.js';
import { adminSocketPath, resolveConfig, type ResolvedConfig } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { ControlServer } from '../native.js';
import { effectivePolicy } from '../profiles.js';
import { parsePolicy } from '../policy.js';
import { startAdminServer, type AdminCommand } from './admin.js';
import { CoreCA } from './core-ca.js';
import { DeviceWatch } from './device-watch.js';
import { EventLog, type TransitionRecord } from './event-log.js';
import { ShmHostCA } from './host-ca-shm.js';
import { VerbsHostCA } from './host-ca-verbs.js';
import { measureAgentStateBytes } from './memory.js';
import { startMetricsServer, stopMetricsServer } from './metrics-server.js';
import { AgentCounters, type StatsSnapshot } from './stats.js';
import { socketRows, type SocketRow } from './socket-rows.js';

export interface AgentOptions {
  socketPath?: string;
  config?: Partial<ResolvedConfig>;
  logger?: Logger;
}

export class Agent {
  readonly socketPath: string;
  readonly adminPath: string;
  readonly config: ResolvedConfig;
  readonly eventLog = new EventLog();
  private readonly counters = new AgentCounters();
  private readonly core: CoreCA;
  private readonly startedAt = Date.now();
  private admin: Server | null = null;
  /** VTOE_METRICS_PORT's HTTP server, when one is asked for. */
  private metrics: HttpServer | null = null;
  private stopped = false;
  private verbsStatus = 'off';
  /** While the verbs fabric waits for a device: see watchForDevice. */
  private deviceWatch: DeviceWatch | null = null;
  private changeWaiters: Array<() => void> = [];

  private constructor(
    config: ResolvedConfig,
    private readonly control: ControlServer,
    private readonly log: Logger,
    coreFactory: (agent: Agent) => CoreCA,
  ) {
    this.config = config;
    this.socketPath = config.agentSocket;
    this.adminPath = adminSocketPath(config.agentSocket);
    this.core = coreFactory(this);
  }

  static async start(opts: AgentOptions = {}): Promise<Agent> {
    const overrides = { ...opts.config, ...(opts.socketPath ? { agentSocket: opts.socketPath } : {}) };
    const config = resolveConfig(process.env, overrides);
    const log = opts.logger ?? createLogger({ level: config.logLevel, file: config.logFile || undefined, component: 'agent' });
    const policy = parsePolicy(effectivePolicy(config.policy, config.profile));
    let core: CoreCA | undefined;
    const control = new ControlServer(config.agentSocket, {
      onOpen: (client, cred) => core?.processOpened(client, cred),
      onMessage: (client, req) => core?.handle(client, req),
      onClose: (client, reason) => core?.processClosed(client, reason),
    });
    const agent = new Agent(config, control, log, (self) => {
      core = new CoreCA(control, new ShmHostCA(config.ringSize, config.ringMaxSize), config, policy, self.counters, self.eventLog, log,
        () => self.notifyChange());
      return core;
    });
    agent.openVerbs();
    try {
      agent.admin = await startAdminServer(agent.adminPath, (cmd, args) => agent.adminCommand(cmd, args));
    } catch (err) {
      control.close();
      throw err;
    }
    if (config.metricsPort > 0) {
      try {
        agent.metrics = await startMetricsServer(config.metricsPort, () => agent.stats());
      } catch (err) {
        await agent.stop(); // the control and admin sockets, and the verbs fabric, are open by now
        throw err;
      }
      log.info('metrics served', { url: `http://127.0.0.1:${config.metricsPort}/metrics` });
    }
    log.info('agent listening', { socket: config.agentSocket, ringSize: config.ringSize });
    return agent;
  }

  /** The verbs fabric, unless VTOE_FABRIC=shm; without RDMA the agent carries on without it. */
  private openVerbs(retry = false): void {
    if (this.config.fabric === 'shm') {
      this.verbsStatus = 'off (VTOE_FABRIC=shm)';
      return;
    }
    const core = this.core;
    const verbs = VerbsHostCA.open(this.config, {
      findListener: (family, address, port) => core.offloadableListener(family, address, port),
      allocateCid: () => core.allocateCid(),
      hasCapacity: () => core.connectionCount < this.config.maxConnections,
      waitingChanged: (port, delta) => core.waitingChanged(port, delta),
      changed: () => this.notifyChange(),
      fabricLost: () => this.watchForDevice(),
    }, this.eventLog, this.counters, this.log);
    if ('error' in verbs) {
      // A device that is not there yet (the agent started before the driver or `rdma link
      // add`) may come: the agent takes it then.  Other reasons need the operator.
      const waiting = verbs.noDevice && this.watchForDevice();
      if (!waiting) this.stopDeviceWatch(); // a device came, and something else is wrong
      this.verbsStatus = `down: ${verbs.error}`;
      if (!retry || !waiting) {
        const level = this.config.fabric === 'verbs' ? 'warn' : 'info';
        this.log[level]('no verbs fabric; connections to other hosts use kernel TCP', { reason: verbs.error, waiting });
      }
      return;
    }
    this.stopDeviceWatch();
    core.verbs = verbs;
    this.log.info('verbs fabric up', { rdmaPort: this.config.rdmaPort, rdmaAddress: verbs.rdmaAddress });
    this.notifyChange();
  }

  /** Try the verbs fabric again whenever /dev/infiniband changes.  False if inotify fails. */
  private watchForDevice(): boolean {
    if (this.deviceWatch) return true;
    const watch = new DeviceWatch(() => this.deviceAppeared());
    try {
      watch.start();
    } catch (err) {
      this.log.warn('cannot watch for RDMA devices: restart the agent once one is there', { error: String(err) });
      return false;
    }
    this.deviceWatch = watch;
    return true;
  }

  private stopDeviceWatch(): void {
    this.deviceWatch?.close();
    this.deviceWatch = null;
  }

  private deviceAppeared(): void {
    if (this.stopped) return;
    const verbs = this.core.verbs;
    if (!verbs) return this.openVerbs(true);
    const why = verbs.reopen(); // after DEVICE_REMOVAL
    if (why !== null) {
      this.log.debug('verbs fabric still down', { reason: why });
      return;
    }
    this.stopDeviceWatch();
    this.log.info('verbs fabric up again', { rdmaPort: this.config.rdmaPort, rdmaAddress: verbs.rdmaAddress });
    this.notifyChange();
  }

  /** 'up on ...', 'down: why', or 'off (...)'. */
  get verbsFabricStatus(): string {
    const status = this.core.verbs?.status ?? this.verbsStatus;
    return this.deviceWatch ? `${status}; the agent takes a device as soon as one appears` : status;
  }

  stats(): StatsSnapshot {
    const c = this.counters;
    let sent = c.closedBytesSent;
    let received = c.closedBytesReceived;
    let doorbells = c.closedDoorbells;
    let ringGrowths = c.closedRingGrowths;
    let timewait = 0;
    let ringBytes = 0;
    for (const conn of this.core.connections.values()) {
      const rings = conn.link.counters().rings;
      sent += rings[0].head + rings[1].head;
      received += rings[0].tail + rings[1].tail;
      doorbells += rings[0].wakes + rings[1].wakes;
      ringGrowths += rings[0].grows + rings[1].grows;
      ringBytes += conn.link.residentBytes;
      if (conn.shadow.inTimewait) timewait++;
    }
    const verbs = this.core.verbs;
    if (verbs) {
      sent += verbs.closedBytesSent;
      received += verbs.closedBytesReceived;
      doorbells += verbs.closedDoorbells;
      for (const end of verbs.ends.values()) {
        const c = verbs.connCounters(end);
        if (c) {
          sent += c.rings[end.side].head;
          received += c.rings[1 - end.side]!.tail;
          doorbells += c.rings[1 - end.side]!.wakes;
          ringBytes += VTOE_REGION_DATA_OFFSET + 2 * this.config.ringSize;
        }
        if (end.cm === 'TIMEWAIT' || end.cm === 'DREQ_SENT') timewait++;
      }
    }
    return {
      agent: { pid: process.pid, socket: this.socketPath, uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000) },
      processes: { connected: this.core.processes.size, seen: c.processesSeen, protocolErrors: c.protocolErrors + this.control.protocolErrors },
      offloaded: c.offloaded,
      connections: { open: this.core.connectionCount - this.core.pendingCount - timewait, pendingAccept: this.core.pendingCount, timewait },
      fabrics: { shm: 'up', verbs: this.verbsFabricStatus },
      listeners: this.core.listeners.size,
      kernelAccepted: c.kernelAccepted,
      rejected: c.rejected,
      peerTimeouts: c.peerTimeouts,
      resumes: c.resumes,
      fallback: { total: c.fallbackTotal, reasons: Object.fromEntries(c.fallbackReasons) },
      refused: Object.fromEntries(c.refusals),
      programs: Object.fromEntries([...c.programs].map(([name, p]) => [name, { offloaded: p.offloaded, fallback: { ...p.fallback } }])),
      bytes: { sent, received },
      doorbells,
      ringGrowths,
      events: Object.fromEntries(c.events),
      memory: { ringBytes, agentStateBytes: this.core.connectionCount * measureAgentStateBytes() },
      pinned: verbs?.pinnedMemory ?? null,
      silentHosts: verbs?.silentHosts ?? [],
      verbsPolling: verbs?.polling ?? null,
    };
  }

  sockets(): SocketRow[] {
    return socketRows(this.core);
  }

  events(cid?: string): TransitionRecord[] {
    return this.eventLog.list(cid);
  }

  memoryPerConnection(): { ringBytes: number; agentStateBytes: number; totalBytes: number } {
    const ringBytes = VTOE_REGION_DATA_OFFSET + 2 * this.config.ringSize;
    const agentStateBytes = measureAgentStateBytes();
    return { ringBytes, agentStateBytes, totalBytes: ringBytes + agentStateBytes };
  }

  /** Resolves at the agent's next state change (a request handled, a channel closed, a timer). */
  nextChange(): Promise<void> {
    return new Promise((resolve) => this.changeWaiters.push(resolve));
  }

  /** Resolves once `cond` holds, re-checking it at each state change. */
  async until(cond: (agent: Agent) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('agent state not reached in time');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.nextChange(), new Promise((r) => { timer = setTimeout(r, left); })]);
      clearTimeout(timer);
    }
  }

  private notifyChange(): void {
    const waiters = this.changeWaiters;
    this.changeWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Stops: new connections fall back at once, the open ones get up to drainMs to close (their
   * CLOSE notes still arrive), then the agent lets go of what is left and closes its sockets.
   * Bounded, so a service manager's stop never waits on a program's idle connection.
   */
  async stop(drainMs = 0): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.core.draining = true;
    if (drainMs > 0 && this.core.connectionCount > 0) {
      this.log.info('draining', { connections: this.core.connectionCount, drainMs });
      await this.until((a) => a.core.connectionCount === 0, drainMs).catch(() => undefined);
    }
    const left = this.core.connectionCount;
    if (left > 0) this.log.info('letting go of the connections still open', { connections: left });
    this.control.close();
    this.core.releaseAll();
    this.core.verbs?.close();
    this.stopDeviceWatch();
    await new Promise<void>((resolve) => (this.admin ? this.admin.close(() => resolve()) : resolve()));
    if (this.metrics) await stopMetricsServer(this.metrics);
    this.log.info('agent stopped');
  }

  private adminCommand(cmd: AdminCommand, args: Record<string, unknown>): unknown {
    switch (cmd) {
      case 'stats': return this.stats();
      case 'ss': return this.sockets();
      case 'events': return this.events(typeof args.cid === 'string' ? args.cid : undefined);
      case 'config': return this.config;
    }
  }
}
