// ListenerPage: the page that tells a listener's processes how many offloaded connections wait
// on its port (struct vtoe_listener_page), read back here through its memfd as a shim maps it.
import { fstatSync, readSync, writeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ListenerPage } from '../src/native.js';

const MAGIC = 0x56544c50; // VTOE_LISTENER_PAGE_MAGIC, "VTLP"

function read(fd: number): { magic: number; waiting: number } {
  const buf = Buffer.alloc(8);
  expect(readSync(fd, buf, 0, 8, 0)).toBe(8);
  return { magic: buf.readUInt32LE(0), waiting: buf.readUInt32LE(4) };
}

describe('ListenerPage', () => {
  it('is a page-sized memfd with its magic, and publishes the count it is given', () => {
    const page = new ListenerPage();
    try {
      expect(fstatSync(page.fd).size).toBe(4096);
      expect(read(page.fd)).toEqual({ magic: MAGIC, waiting: 0 });
      page.setWaiting(5);
      expect(read(page.fd).waiting).toBe(5);
      page.setWaiting(0);
      expect(read(page.fd).waiting).toBe(0);
    } finally {
      page.close();
    }
  });

  it('cannot be written through its descriptor, only by the agent', () => {
    const page = new ListenerPage();
    try {
      page.setWaiting(3);
      expect(() => writeSync(page.fd, Buffer.from([0, 0, 0, 0]), 0, 4, 4)).toThrow(/EPERM/);
      expect(read(page.fd).waiting).toBe(3);
    } finally {
      page.close();
    }
  });

  it('refuses counts that are not one, and use once closed', () => {
    const page = new ListenerPage();
    expect(() => page.setWaiting(-1)).toThrow(RangeError);
    expect(() => page.setWaiting(2 ** 32)).toThrow(RangeError);
    page.close();
    page.close(); // idempotent
    expect(page.fd).toBe(-1);
    expect(() => page.setWaiting(1)).toThrow(/closed/);
  });
});
