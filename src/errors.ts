// One error vocabulary for the TypeScript layer: every error has `code`, the errno name
// where one applies, and a message that says what to do.
import { constants } from 'node:os';

const errnoNames: Map<number, string> = new Map(
  Object.entries(constants.errno).map(([name, value]) => [value as number, name]),
);

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E#${errno}`;
}

export class VtoeError extends Error {
  readonly code: string;
  readonly errno?: number;
  constructor(code: string, message: string, errno?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    if (errno !== undefined) this.errno = errno;
  }
}

/** A system call failed; `code` is its errno name. */
export class VtoeSystemError extends VtoeError {
  constructor(errno: number, message: string, options?: { cause?: unknown }) {
    super(errnoName(errno), message, errno, options);
  }
}

/** A peer sent something the protocol does not allow. */
export class ProtocolError extends VtoeError {
  constructor(message: string) {
    super('EPROTO', message, constants.errno.EPROTO);
  }
}

/** A configuration value is malformed. */
export class ConfigError extends VtoeError {
  constructor(message: string) {
    super('EINVAL', message, constants.errno.EINVAL);
  }
}

/** No agent answers at the control socket. */
export class AgentNotRunningError extends VtoeError {
  constructor(socketPath: string, errno: number) {
    super(
      errnoName(errno),
      `no vtoe agent at ${socketPath}: start one with 'vtoe agent', or use 'vtoe run' which embeds one`,
      errno,
    );
  }
}
