// Levelled logger: one line per record, to stderr or a file, never stdout (stdout belongs to the
// CLI's output and to programs run under `vtoe run`).
import { appendFileSync } from 'node:fs';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export function isLogLevel(x: unknown): x is LogLevel {
  return typeof x === 'string' && (LOG_LEVELS as readonly string[]).includes(x);
}

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  readonly level: LogLevel;
  readonly component: string;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** True when records of `level` are written; lets callers skip building costly fields. */
  enabled(level: LogLevel): boolean;
  /** Same level and destination, another component name. */
  child(component: string): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Append to this file; '' or absent means stderr. */
  file?: string;
  component: string;
  /** Clock, for tests. */
  now?: () => Date;
}

// Keep every record on one line so the log stays greppable.
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=\\\u0000-\u001f\u007f]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === null) return 'null';
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return JSON.stringify(typeof code === 'string' ? `${code}: ${v.message}` : v.message);
  }
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return '"[unserialisable]"';
  }
}

export function formatRecord(time: Date, level: LogLevel, component: string, msg: string, fields?: LogFields): string {
  let line = `${time.toISOString()} ${level} ${component}: ${oneLine(msg)}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined) line += ` ${oneLine(k)}=${formatValue(v)}`;
    }
  }
  return line + '\n';
}

export function createLogger(opts: LoggerOptions): Logger {
  const rank = LOG_LEVELS.indexOf(opts.level);
  if (rank < 0) throw new RangeError(`unknown log level ${String(opts.level)}`);
  const now = opts.now ?? (() => new Date());
  const file = opts.file ?? '';
  let fileFailed = false;

  const write = (line: string): void => {
    if (file !== '' && !fileFailed) {
      try {
        appendFileSync(file, line);
        return;
      } catch (err) {
        // A broken log file must not take the agent down: say so once, then use stderr.
        fileFailed = true;
        process.stderr.write(formatRecord(now(), 'error', 'log', `cannot append to ${file}; logging to stderr`, { err }));
      }
    }
    process.stderr.write(line);
  };

  const make = (component: string): Logger => {
    const emit = (level: LogLevel) => (msg: string, fields?: LogFields): void => {
      if (LOG_LEVELS.indexOf(level) <= rank) write(formatRecord(now(), level, component, msg, fields));
    };
    return {
      level: opts.level,
      component,
      error: emit('error'),
      warn: emit('warn'),
      info: emit('info'),
      debug: emit('debug'),
      enabled: (level) => LOG_LEVELS.indexOf(level) <= rank,
      child: (c) => make(c),
    };
  };
  return make(opts.component);
}
