// Child processes for the bench scripts: started with their output piped, waited on by a line
// they print (a real signal, never a sleep), and all killed at the end.
import { spawn } from 'node:child_process';

const children = [];

export function start(cmd, args, env) {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return child;
}

/** The first match of pattern in the child's stdout or stderr; rejects if it exits first. */
export function line(child, stream, pattern) {
  return new Promise((resolve, reject) => {
    let buf = '';
    child[stream].setEncoding('utf8').on('data', (d) => {
      buf += d;
      const m = buf.match(pattern);
      if (m) resolve(m);
    });
    child.once('exit', () => reject(new Error(`${child.spawnfile} exited: ${buf}`)));
  });
}

export function killChildren() {
  for (const c of children) c.kill('SIGKILL');
}
