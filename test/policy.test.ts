import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.js';
import { decide, parseIPv4, parseIPv6, parsePolicy, parseQueryAddress, type PolicyQuery } from '../src/policy.js';

const q = (over: Partial<PolicyQuery> = {}): PolicyQuery =>
  ({ program: 'app', role: 'connect', address: '10.1.2.3', port: 5000, ...over });

function action(text: string, over: Partial<PolicyQuery> = {}): string {
  return decide(parsePolicy(text), q(over)).action;
}

function parseError(text: string): string {
  try {
    parsePolicy(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('EINVAL');
    return (err as Error).message;
  }
  throw new Error(`no error for ${JSON.stringify(text)}`);
}

describe('parsePolicy', () => {
  it('parses the documented example', () => {
    const rules = parsePolicy('tcp both sshd *:*; offload connect * 127.0.0.0/8:1024-65535');
    expect(rules).toHaveLength(2);
    expect(rules[0]).toMatchObject({ action: 'tcp', role: 'both', program: 'sshd', address: '*', ports: '*', line: 1, column: 1 });
    expect(rules[1]).toMatchObject({
      action: 'offload', role: 'connect', program: '*',
      address: { family: 4, bytes: [127, 0, 0, 0], prefix: 8 }, ports: { lo: 1024, hi: 65535 }, line: 1, column: 20,
    });
  });

  it('allows empty text, blank rules, comments, newlines and CRLF', () => {
    expect(parsePolicy('')).toEqual([]);
    expect(parsePolicy(' ;; \n # only a comment\n')).toEqual([]);
    const rules = parsePolicy('# header\r\ntcp listen * *:22 # ssh\r\n\r\n  offload BOTH mpi* *:*;tcp connect * *:80\n');
    expect(rules.map((r) => [r.line, r.column, r.text])).toEqual([
      [2, 1, 'tcp listen * *:22'], [4, 3, 'offload BOTH mpi* *:*'], [4, 25, 'tcp connect * *:80'],
    ]);
    expect(rules[1]!.role).toBe('both');
  });

  it('parses IPv6 forms', () => {
    expect(parsePolicy('tcp both * [::1]:*')[0]!.address).toEqual({ family: 6, bytes: [...new Array(15).fill(0), 1], prefix: 128 });
    expect(parsePolicy('tcp both * ::1:*')[0]!.address).toMatchObject({ family: 6, prefix: 128 });
    expect(parsePolicy('tcp both * [fe80::]/10:*')[0]!.address).toMatchObject({ family: 6, prefix: 10 });
    expect(parsePolicy('tcp both * [fe80::/10]:1-2')[0]!.address).toMatchObject({ family: 6, prefix: 10 });
    expect(parsePolicy('tcp both * fe80::/10:*')[0]!.address).toMatchObject({ family: 6, prefix: 10 });
    // A mapped IPv6 prefix becomes the IPv4 prefix it denotes.
    expect(parsePolicy('tcp both * [::ffff:10.0.0.0]/104:*')[0]!.address).toEqual({ family: 4, bytes: [10, 0, 0, 0], prefix: 8 });
  });

  describe('syntax errors name line, column and the problem', () => {
    it.each([
      ['offlod both * *:*', /line 1, column 1: unknown action 'offlod' \(expected offload or tcp\)/],
      ['tcp bth * *:*', /line 1, column 5: unknown role 'bth' \(expected connect, listen or both\)/],
      ['tcp', /line 1, column 4: missing ROLE PROGRAM ADDRESS:PORTS/],
      ['\n\n  tcp both *', /line 3, column 13: missing ADDRESS:PORTS/],
      ['tcp both * *:* extra', /line 1, column 16: unexpected 'extra' after ADDRESS:PORTS/],
      ['tcp both * 10.0.0.0', /column 20: expected ADDRESS:PORTS, got '10.0.0.0'/],
      ['tcp both * :80', /column 12: empty address/],
      ['tcp both * *:', /column 14: empty ports/],
      ['tcp both * 10.0.0.256:*', /column 12: bad IPv4 address '10.0.0.256'/],
      ['tcp both * 10.0.0:*', /bad IPv4 address '10.0.0'/],
      ['tcp both * 010.0.0.1:*', /bad IPv4 address '010.0.0.1'/],
      ['tcp both * host.example:*', /bad IPv4 address/],
      ['tcp both * 10.0.0.0/33:*', /column 21: bad prefix length '\/33' \(0..32 for IPv4\)/],
      ['tcp both * 10.0.0.0/:*', /bad prefix length '\/'/],
      ['tcp both * 10.0.0.0/x:*', /bad prefix length '\/x'/],
      ['tcp both * [::]/129:*', /bad prefix length '\/129' \(0..128 for IPv6\)/],
      ['tcp both * 10.0.0.1/8:*', /host bits set in '10.0.0.1\/8' \(did you mean 10.0.0.0\/8\?\)/],
      ['tcp both * [fe80::1]/10:*', /host bits set .*did you mean fe80:0:0:0:0:0:0:0\/10/],
      ['tcp both * 1:2:3:4:5:6:7:8:9:*', /bad IPv6 address/],
      ['tcp both * 1::2::3:*', /bad IPv6 address/],
      ['tcp both * ::1', /bad IPv6 address ':'.*\[addr\]:PORTS/],
      ['tcp both * [::1:*', /column 12: unclosed '\['/],
      ['tcp both * [::1]', /missing ':PORTS'/],
      ['tcp both * [::1]80', /column 17: expected ':PORTS'/],
      ['tcp both * [1.2.3.4]:*', /brackets are for IPv6/],
      ['tcp both * [gg::1]:*', /bad IPv6 address 'gg::1'/],
      ['tcp both * *:http', /column 14: bad ports 'http'/],
      ['tcp both * *:70000', /port out of range in '70000'/],
      ['tcp both * *:1-65536', /port out of range/],
      ['tcp both * *:9-3', /empty port range '9-3'/],
      ['tcp both * *:1-', /bad ports '1-'/],
      ['tcp both * *:-1', /bad ports '-1'/],
      ['tcp both mpi[ *:*', /column 13: unclosed '\[' in program pattern/],
      // As in fnmatch, a ']' first in a class is a member, so these never close.
      ['tcp both a[]b *:*', /column 11: unclosed '\['/],
      ['tcp both a[!] *:*', /column 11: unclosed '\['/],
      ['tcp both a[z-a] *:*', /bad character class/],
      ['tcp both ab\\ *:*', /trailing '\\'/],
      ['tcp both * *:*\ntcp both * *:*;tcp both * *:* # ok\ntcp nope * *:*', /line 3, column 5: unknown role 'nope'/],
    ])('%j', (text, pattern) => {
      expect(parseError(text)).toMatch(pattern);
    });

    it('quotes the rule in the message', () => {
      expect(parseError('tcp both * *:*; tcp bth x *:*')).toMatch(/in rule 'tcp bth x \*:\*'/);
    });
  });
});

describe('decide', () => {
  it('defaults to offload with rule -1', () => {
    expect(decide([], q())).toEqual({ action: 'offload', rule: -1 });
    expect(decide(parsePolicy('tcp both nomatch *:*'), q())).toEqual({ action: 'offload', rule: -1 });
  });

  it('first match wins', () => {
    const rules = parsePolicy('offload connect app 10.0.0.0/8:*; tcp both * *:*');
    expect(decide(rules, q())).toEqual({ action: 'offload', rule: 0 });
    expect(decide(rules, q({ address: '11.0.0.1' }))).toEqual({ action: 'tcp', rule: 1 });
    expect(decide(rules, q({ role: 'listen' }))).toEqual({ action: 'tcp', rule: 1 });
  });

  it('matches roles', () => {
    expect(action('tcp connect * *:*', { role: 'connect' })).toBe('tcp');
    expect(action('tcp connect * *:*', { role: 'listen' })).toBe('offload');
    expect(action('tcp listen * *:*', { role: 'listen' })).toBe('tcp');
    expect(action('tcp both * *:*', { role: 'listen' })).toBe('tcp');
  });

  it('matches program globs on the basename', () => {
    expect(action('tcp both mpi* *:*', { program: 'mpirun' })).toBe('tcp');
    expect(action('tcp both mpi* *:*', { program: '/usr/bin/mpirun' })).toBe('tcp');
    expect(action('tcp both mpi* *:*', { program: 'ompi' })).toBe('offload');
    expect(action('tcp both iperf? *:*', { program: 'iperf3' })).toBe('tcp');
    expect(action('tcp both iperf? *:*', { program: 'iperf' })).toBe('offload');
    expect(action('tcp both iperf[0-9] *:*', { program: 'iperf3' })).toBe('tcp');
    expect(action('tcp both iperf[!3] *:*', { program: 'iperf3' })).toBe('offload');
    expect(action('tcp both a[]] *:*', { program: 'a]' })).toBe('tcp');
    expect(action('tcp both a.b *:*', { program: 'axb' })).toBe('offload');
    expect(action('tcp both a+b *:*', { program: 'a+b' })).toBe('tcp');
    expect(action('tcp both x\\* *:*', { program: 'x*' })).toBe('tcp');
    expect(action('tcp both x\\* *:*', { program: 'xy' })).toBe('offload');
    expect(action('tcp both /opt/*/sshd *:*', { program: '/opt/ssh/sshd' })).toBe('tcp');
    expect(action('tcp both /opt/*/sshd *:*', { program: 'sshd' })).toBe('offload');
  });

  it('matches ports and ranges inclusively', () => {
    const text = 'tcp both * *:1024-2048';
    expect(action(text, { port: 1023 })).toBe('offload');
    expect(action(text, { port: 1024 })).toBe('tcp');
    expect(action(text, { port: 2048 })).toBe('tcp');
    expect(action(text, { port: 2049 })).toBe('offload');
    expect(action('tcp both * *:22', { port: 22 })).toBe('tcp');
    expect(action('tcp both * *:22', { port: 23 })).toBe('offload');
    expect(action('tcp both * *:0-65535', { port: 65535 })).toBe('tcp');
  });

  it('matches IPv4 CIDR edges', () => {
    const net = 'tcp both * 192.168.4.0/22:*';
    expect(action(net, { address: '192.168.3.255' })).toBe('offload');
    expect(action(net, { address: '192.168.4.0' })).toBe('tcp');
    expect(action(net, { address: '192.168.7.255' })).toBe('tcp');
    expect(action(net, { address: '192.168.8.0' })).toBe('offload');
    expect(action('tcp both * 0.0.0.0/0:*', { address: '255.255.255.255' })).toBe('tcp');
    expect(action('tcp both * 10.0.0.1:*', { address: '10.0.0.1' })).toBe('tcp');
    expect(action('tcp both * 10.0.0.1/32:*', { address: '10.0.0.2' })).toBe('offload');
    expect(action('tcp both * 10.0.0.2/31:*', { address: '10.0.0.3' })).toBe('tcp');
    expect(action('tcp both * 10.0.0.2/31:*', { address: '10.0.0.4' })).toBe('offload');
    expect(action('tcp both * 128.0.0.0/1:*', { address: '127.255.255.255' })).toBe('offload');
  });

  it('matches IPv6 prefixes and keeps families apart', () => {
    expect(action('tcp both * [::1]:*', { address: '::1' })).toBe('tcp');
    expect(action('tcp both * [::1]:*', { address: '0:0:0:0:0:0:0:1' })).toBe('tcp');
    expect(action('tcp both * [::1]:*', { address: '127.0.0.1' })).toBe('offload');
    expect(action('tcp both * [fe80::]/10:*', { address: 'febf:ffff::1' })).toBe('tcp');
    expect(action('tcp both * [fe80::]/10:*', { address: 'fec0::1' })).toBe('offload');
    expect(action('tcp both * [fe80::]/10:*', { address: 'fe80::1%eth0' })).toBe('tcp');
    expect(action('tcp both * [2001:db8::]/64:*', { address: '[2001:db8::ffff:1]' })).toBe('tcp');
    expect(action('tcp both * [2001:db8::]/64:*', { address: '2001:db8:0:1::1' })).toBe('offload');
    expect(action('tcp both * [::]/0:*', { address: '10.0.0.1' })).toBe('offload');
    expect(action('tcp both * 0.0.0.0/0:*', { address: '::2' })).toBe('offload');
  });

  it('matches IPv4-mapped IPv6 addresses against IPv4 rules', () => {
    expect(action('tcp both * 127.0.0.0/8:*', { address: '::ffff:127.0.0.1' })).toBe('tcp');
    expect(action('tcp both * 127.0.0.0/8:*', { address: '::FFFF:7f00:1' })).toBe('tcp');
    expect(action('tcp both * 127.0.0.0/8:*', { address: '::ffff:128.0.0.1' })).toBe('offload');
    expect(action('tcp both * [::ffff:10.0.0.0]/104:*', { address: '10.9.9.9' })).toBe('tcp');
    // Only ::ffff:0:0/96 is the mapped range; other embeddings stay IPv6.
    expect(action('tcp both * 127.0.0.0/8:*', { address: '::127.0.0.1' })).toBe('offload');
  });

  it('lets a non-IP address match only wildcard address rules', () => {
    expect(action('tcp both * 10.0.0.0/8:*', { address: 'not-an-ip' })).toBe('offload');
    expect(action('tcp both * *:*', { address: 'not-an-ip' })).toBe('tcp');
  });
});

describe('address parsers', () => {
  it('parse IPv4 strictly', () => {
    expect(parseIPv4('0.0.0.0')).toEqual([0, 0, 0, 0]);
    expect(parseIPv4('255.255.255.255')).toEqual([255, 255, 255, 255]);
    for (const bad of ['256.0.0.0', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.-4', '', '1..2.3']) {
      expect(parseIPv4(bad), bad).toBeNull();
    }
  });

  it('parse IPv6 with compression and IPv4 tails', () => {
    expect(parseIPv6('::')).toEqual(new Array(16).fill(0));
    expect(parseIPv6('1::')).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(parseIPv6('1:2:3:4:5:6:7::')).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]);
    expect(parseIPv6('::ffff:1.2.3.4')?.slice(10)).toEqual([0xff, 0xff, 1, 2, 3, 4]);
    for (const bad of [':', ':::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2::3', '12345::', '1.2.3.4::', '::1.2.3', 'g::']) {
      expect(parseIPv6(bad), bad).toBeNull();
    }
  });

  it('parseQueryAddress unwraps mapped addresses, brackets and zones', () => {
    expect(parseQueryAddress('::ffff:1.2.3.4')).toEqual({ family: 4, bytes: [1, 2, 3, 4] });
    expect(parseQueryAddress('[::1]')).toMatchObject({ family: 6 });
    expect(parseQueryAddress('fe80::1%2')).toMatchObject({ family: 6 });
    expect(parseQueryAddress('nope')).toBeNull();
  });
});
