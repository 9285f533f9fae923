// One trial of short connections for the bench scripts: a fresh vtoe-pingpong server and
// client, each with its own environment; connect, 64 B each way, close, `iters` times after a
// warm-up.  Returns the client's result line (conn_us, and per_conn: its CPU, page faults and
// context switches per connection).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { line, start } from './children.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const shimPath = join(root, 'preload/libvtoe.so');

/** A standing agent with these settings, on a socket in dir; resolves once it listens. */
export async function standingAgent(dir, name, extraEnv) {
  const socket = join(dir, `${name}.sock`);
  const env = { ...process.env, ...extraEnv, VTOE_AGENT_SOCKET: socket };
  const agent = start(process.execPath, [join(root, 'bin/vtoe.js'), 'agent'], env);
  await line(agent, 'stderr', /listening on/);
  return { socket, pid: agent.pid };
}

/**
 * CPU time (user + system) a live process has used, in microseconds: all its threads, or with
 * `thread`, only that one (its pid for the main thread, which runs the event loop).
 */
export function cpuUs(pid, thread) {
  // /proc/PID/stat: fields 14 and 15 after the parenthesised name, in clock ticks (USER_HZ, 100)
  const path = thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`;
  const fields = readFileSync(path, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Its exit status, watched from the start (it may exit before anyone waits). */
function exited(child) {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
}

export async function connectTrial({ iters, warmup = 200, client: clientEnv, server: serverEnv = {} }) {
  const tool = join(root, 'tools/bin/vtoe-pingpong');
  const server = start(tool, ['server', '--port', '0', '--count', String(iters + warmup)], { ...process.env, ...serverEnv });
  const serverDone = exited(server);
  const port = (await line(server, 'stdout', /READY (\d+)/))[1];
  const client = start(tool, ['client', '--port', port, '--mode', 'connect', '--size', '64',
    '--iters', String(iters), '--warmup', String(warmup)], { ...process.env, ...clientEnv });
  const clientDone = exited(client);
  const result = JSON.parse((await line(client, 'stdout', /\{.*"mode":"connect".*\}/))[0]);
  const [c, s] = await Promise.all([clientDone, serverDone]);
  if (c !== 0 || s !== 0) throw new Error(`client exited ${c}, server ${s}`);
  return result;
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
