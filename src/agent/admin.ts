// The agent's admin channel for the CLI (`vtoe ss`, `vtoe stats`, `vtoe events`): one JSON
// request line in, one JSON reply line out, over a Unix stream socket only its owner can open.
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { constants } from 'node:os';
import { AgentNotRunningError, ProtocolError } from '../errors.js';

export type AdminCommand = 'stats' | 'ss' | 'events' | 'config';
const COMMANDS: readonly AdminCommand[] = ['stats', 'ss', 'events', 'config'];
const MAX_REQUEST_BYTES = 4096;

export type AdminHandler = (cmd: AdminCommand, args: Record<string, unknown>) => unknown;

export async function startAdminServer(path: string, handler: AdminHandler): Promise<Server> {
  if (existsSync(path)) unlinkSync(path); // the control socket's owner check already ran
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: unknown;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { cmd?: unknown; args?: Record<string, unknown> };
        if (!COMMANDS.includes(req.cmd as AdminCommand)) throw new ProtocolError(`unknown command ${String(req.cmd)}`);
        reply = { ok: true, result: handler(req.cmd as AdminCommand, req.args ?? {}) };
      } catch (err) {
        reply = { ok: false, error: (err as Error).message };
      }
      sock.end(`${JSON.stringify(reply, bigintReplacer)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Made 0600 from the start (listen() binds at once): no instant where another user could
    // connect; the chmod below keeps it so whatever the bind did.
    const umask = process.umask(0o177);
    try {
      server.listen(path, () => resolve());
    } finally {
      process.umask(umask);
    }
  });
  chmodSync(path, 0o600);
  server.unref();
  return server;
}

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** Sends one admin command to the agent whose admin socket is `path`. */
export function adminRequest<T = unknown>(path: string, cmd: AdminCommand, args: Record<string, unknown> = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd, args })}\n`));
    sock.on('data', (chunk: string) => { buf += chunk; });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? err.code : undefined;
      reject(code ? new AgentNotRunningError(path, constants.errno[code]) : err);
    });
    sock.on('end', () => {
      try {
        const reply = JSON.parse(buf) as { ok: boolean; result?: T; error?: string };
        if (reply.ok) resolve(reply.result as T);
        else reject(new ProtocolError(`agent refused ${cmd}: ${reply.error}`));
      } catch {
        reject(new ProtocolError(`agent sent a malformed reply to ${cmd}`));
      }
    });
  });
}
