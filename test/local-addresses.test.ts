// Addresses as the agent compares them (src/agent/local-addresses.ts).
import { describe, expect, it } from 'vitest';
import { canonical, isLocalAddress, isLoopback, isWildcard } from '../src/agent/local-addresses.js';

describe('canonical', () => {
  it('leaves dotted IPv4 as it is, and writes IPv6 in lower case without its scope', () => {
    expect(canonical('127.0.0.1')).toBe('127.0.0.1');
    expect(canonical('10.1.2.3')).toBe('10.1.2.3');
    expect(canonical('FE80::1%eth0')).toBe('fe80::1');
    expect(canonical('2001:DB8::A')).toBe('2001:db8::a');
    expect(canonical('::1')).toBe('::1');
  });

  it('compares an IPv4-mapped IPv6 address as its IPv4 form', () => {
    expect(canonical('::ffff:192.168.0.7')).toBe('192.168.0.7');
    expect(canonical('::FFFF:127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('address classes', () => {
  it('knows the wildcards, loopback in both families, and this host', () => {
    for (const a of ['0.0.0.0', '::', '::ffff:0.0.0.0']) expect(isWildcard(a), a).toBe(true);
    expect(isWildcard('127.0.0.1')).toBe(false);
    for (const a of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
    for (const a of ['128.0.0.1', '::2', '10.0.0.1']) expect(isLoopback(a), a).toBe(false);
    expect(isLocalAddress('127.0.0.1')).toBe(true);
    expect(isLocalAddress('192.0.2.1')).toBe(false); // TEST-NET-1: never a host's own
  });
});
