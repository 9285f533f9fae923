// Closing a descriptor the agent was given (or kept) when nobody needs it any more.
import { closeSync } from 'node:fs';

/** Closes fd; one already gone is no error: there is nothing left to release. */
export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already gone: nothing to release
  }
}
