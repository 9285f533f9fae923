// Offload policy in the style of libsdp's rules: which sockets go through vtoe and which stay on
// kernel TCP. First matching rule wins; with no match a socket is offloaded. Pure: no I/O.
// The grammar is POLICY_GRAMMAR below (also the vtoe-policy(5) man page).
import { ConfigError } from './errors.js';

/** The rules' grammar, term by term (rules are separated by ';' or newlines). */
export const POLICY_GRAMMAR: readonly (readonly [term: string, definition: string])[] = [
  ['rule', 'ACTION ROLE PROGRAM ADDRESS:PORTS'],
  ['ACTION', 'offload | tcp'],
  ['ROLE', 'connect | listen | both'],
  ['PROGRAM', "a glob on the program name (* ? [a-z] [!x]); without '/', matched on the basename"],
  ['ADDRESS', '* | an IPv4 or IPv6 address, with an optional /prefix; IPv6 may be bracketed: [::1], [fe80::]/10'],
  ['PORTS', '* | N | N-M'],
  ['#', 'starts a comment that runs to the end of the line'],
];

export type PolicyAction = 'offload' | 'tcp';
export type PolicyRole = 'connect' | 'listen' | 'both';

export interface CidrPattern {
  family: 4 | 6;
  bytes: readonly number[];
  prefix: number;
}

export interface PolicyRule {
  action: PolicyAction;
  role: PolicyRole;
  program: string;
  programMatch: RegExp;
  address: '*' | CidrPattern;
  ports: '*' | { lo: number; hi: number };
  /** Where the rule was written, 1-based, and its text, for diagnostics. */
  line: number;
  column: number;
  text: string;
}

export interface PolicyQuery {
  program: string;
  role: 'connect' | 'listen';
  address: string;
  port: number;
}

export interface PolicyDecision {
  action: PolicyAction;
  /** Index of the matching rule; -1 when no rule matched and the default applied. */
  rule: number;
}

const ACTIONS: readonly PolicyAction[] = ['offload', 'tcp'];
const ROLES: readonly PolicyRole[] = ['connect', 'listen', 'both'];

class At extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

// ---- addresses ----

export function parseIPv4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    // Leading zeros are refused: inet_aton would read them as octal.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

export function parseIPv6(s: string): number[] | null {
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return null;
        out.push(v4[0]! << 8 | v4[1]!, v4[2]! << 8 | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  // An embedded IPv4 tail is only allowed at the very end.
  if (halves.length === 2 && halves[0]!.includes('.')) return null;
  let words: number[];
  if (halves.length === 2) {
    if (head.length + tail.length > 7) return null;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    words = head;
  }
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

function isV4Mapped(b: readonly number[]): boolean {
  return b.length === 16 && b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

/** Parses a query address; IPv4-mapped IPv6 becomes IPv4. Null if it is not an IP address. */
export function parseQueryAddress(s: string): { family: 4 | 6; bytes: number[] } | null {
  let a = s.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const v4 = parseIPv4(a);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(a);
  if (!v6) return null;
  return isV4Mapped(v6) ? { family: 4, bytes: v6.slice(12) } : { family: 6, bytes: v6 };
}

function parseCidr(s: string): CidrPattern {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = addr.includes(':') ? 6 : 4;
  const bytes = family === 4 ? parseIPv4(addr) : parseIPv6(addr);
  if (!bytes) {
    throw new At(0, family === 4
      ? `bad IPv4 address '${addr}'`
      : `bad IPv6 address '${addr}' (write IPv6 as [addr]:PORTS when in doubt)`);
  }
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new At(slash + 1, `bad prefix length '/${p}' (0..${max} for IPv${family})`);
    }
    prefix = Number(p);
  }
  if (hostBitsSet(bytes, prefix)) {
    const masked = bytes.map((b, i) => maskByte(b, i, prefix));
    throw new At(0, `host bits set in '${s}' (did you mean ${formatAddr(family, masked)}/${prefix}?)`);
  }
  // An IPv4-mapped IPv6 prefix is an IPv4 prefix, so it matches IPv4 peers too.
  if (family === 6 && prefix >= 96 && isV4Mapped(bytes)) {
    return { family: 4, bytes: bytes.slice(12), prefix: prefix - 96 };
  }
  return { family, bytes, prefix };
}

function maskByte(b: number, i: number, prefix: number): number {
  const keep = Math.max(0, Math.min(8, prefix - i * 8));
  return b & (0xff << (8 - keep)) & 0xff;
}

function hostBitsSet(bytes: readonly number[], prefix: number): boolean {
  return bytes.some((b, i) => maskByte(b, i, prefix) !== b);
}

function prefixMatches(a: readonly number[], b: readonly number[], prefix: number): boolean {
  for (let i = 0; i * 8 < prefix; i++) {
    if (maskByte(a[i]!, i, prefix) !== maskByte(b[i]!, i, prefix)) return false;
  }
  return true;
}

function formatAddr(family: 4 | 6, b: readonly number[]): string {
  if (family === 4) return b.join('.');
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return words.join(':');
}

// ---- ports and globs ----

function parsePorts(s: string): '*' | { lo: number; hi: number } {
  if (s === '*') return '*';
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) throw new At(0, `bad ports '${s}' (expected *, N or N-M)`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535) throw new At(0, `port out of range in '${s}' (0..65535)`);
  if (lo > hi) throw new At(0, `empty port range '${s}' (N must not exceed M)`);
  return { lo, hi };
}

function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '\\') {
      if (i + 1 >= glob.length) throw new At(i, `trailing '\\' in program pattern '${glob}'`);
      re += escapeRe(glob[++i]!);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '';
      if (glob[j] === '!' || glob[j] === '^') { cls += '^'; j++; }
      // A ']' right after the opening is a literal member, as in fnmatch.
      if (glob[j] === ']') { cls += '\\]'; j++; }
      while (j < glob.length && glob[j] !== ']') {
        const d = glob[j]!;
        cls += d === '\\' || d === '^' || d === '[' ? `\\${d}` : d;
        j++;
      }
      if (j >= glob.length) throw new At(i, `unclosed '[' in program pattern '${glob}'`);
      try {
        new RegExp(`[${cls}]`);
      } catch {
        throw new At(i, `bad character class in program pattern '${glob}'`);
      }
      re += `[${cls}]`;
      i = j;
    } else re += escapeRe(c);
  }
  return new RegExp(`${re}$`, 's');
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|]/.test(c) ? `\\${c}` : c;
}

// ---- rules ----

function parseAddressPorts(tok: string): { address: '*' | CidrPattern; ports: '*' | { lo: number; hi: number } } {
  let addr: string;
  let portsAt: number;
  if (tok.startsWith('[')) {
    const close = tok.indexOf(']');
    if (close < 0) throw new At(0, `unclosed '[' in '${tok}'`);
    addr = tok.slice(1, close);
    let rest = tok.slice(close + 1);
    const prefix = /^\/[^:]*/.exec(rest);
    if (prefix) { addr += prefix[0]; rest = rest.slice(prefix[0].length); }
    if (rest === '') throw new At(tok.length, `missing ':PORTS' after '${tok}' (use :* for every port)`);
    if (!rest.startsWith(':')) throw new At(tok.length - rest.length, `expected ':PORTS' after the address in '${tok}'`);
    portsAt = tok.length - rest.length + 1;
    if (!addr.includes(':')) throw new At(1, `brackets are for IPv6 addresses, in '${tok}'`);
  } else {
    const colon = tok.lastIndexOf(':');
    if (colon < 0) throw new At(tok.length, `expected ADDRESS:PORTS, got '${tok}' (e.g. 10.0.0.0/8:* or *:*)`);
    addr = tok.slice(0, colon);
    portsAt = colon + 1;
    if (addr === '') throw new At(0, `empty address in '${tok}'`);
  }
  const portText = tok.slice(portsAt);
  if (portText === '') throw new At(portsAt, `empty ports in '${tok}' (use * for every port)`);
  let address: '*' | CidrPattern;
  const addrAt = tok.startsWith('[') ? 1 : 0;
  try {
    address = addr === '*' ? '*' : parseCidr(addr);
  } catch (e) {
    throw e instanceof At ? new At(addrAt + e.offset, e.message) : e;
  }
  try {
    return { address, ports: parsePorts(portText) };
  } catch (e) {
    throw e instanceof At ? new At(portsAt + e.offset, e.message) : e;
  }
}

interface Token { text: string; column: number }

function parseRule(tokens: Token[], line: number, text: string): PolicyRule {
  const fail = (tok: Token, offset: number, what: string): never => {
    throw new ConfigError(`policy line ${line}, column ${tok.column + offset}: ${what} in rule '${text}'`);
  };
  const [a, r, p, ap] = tokens;
  const names = ['ACTION', 'ROLE', 'PROGRAM', 'ADDRESS:PORTS'];
  if (tokens.length < 4) {
    const last = tokens[tokens.length - 1]!;
    fail(last, last.text.length, `missing ${names.slice(tokens.length).join(' ')} (a rule is ACTION ROLE PROGRAM ADDRESS:PORTS)`);
  }
  if (tokens.length > 4) fail(tokens[4]!, 0, `unexpected '${tokens[4]!.text}' after ADDRESS:PORTS`);
  const action = a!.text.toLowerCase();
  if (!(ACTIONS as readonly string[]).includes(action)) fail(a!, 0, `unknown action '${a!.text}' (expected offload or tcp)`);
  const role = r!.text.toLowerCase();
  if (!(ROLES as readonly string[]).includes(role)) fail(r!, 0, `unknown role '${r!.text}' (expected connect, listen or both)`);
  let programMatch: RegExp;
  let where: '*' | CidrPattern;
  let ports: '*' | { lo: number; hi: number };
  try {
    programMatch = globToRegExp(p!.text);
  } catch (e) {
    if (e instanceof At) return fail(p!, e.offset, e.message);
    throw e;
  }
  try {
    ({ address: where, ports } = parseAddressPorts(ap!.text));
  } catch (e) {
    if (e instanceof At) return fail(ap!, e.offset, e.message);
    throw e;
  }
  return {
    action: action as PolicyAction, role: role as PolicyRole, program: p!.text, programMatch,
    address: where, ports, line, column: a!.column, text,
  };
}

/** Parses policy text; throws ConfigError naming the line, column and what is wrong. */
export function parsePolicy(text: string): PolicyRule[] {
  const rules: PolicyRule[] = [];
  const lines = text.split(/\r?\n/);
  for (let li = 0; li < lines.length; li++) {
    const raw = lines[li]!;
    const hash = raw.indexOf('#');
    const body = hash < 0 ? raw : raw.slice(0, hash);
    let start = 0;
    for (const segment of body.split(';')) {
      const tokens: Token[] = [];
      for (const m of segment.matchAll(/\S+/g)) tokens.push({ text: m[0], column: start + m.index! + 1 });
      if (tokens.length > 0) rules.push(parseRule(tokens, li + 1, tokens.map((t) => t.text).join(' ')));
      start += segment.length + 1;
    }
  }
  return rules;
}

function basename(program: string): string {
  return program.slice(program.lastIndexOf('/') + 1);
}

type QueryAddress = ReturnType<typeof parseQueryAddress>;

function ruleMatches(rule: PolicyRule, q: PolicyQuery, address: () => QueryAddress): boolean {
  if (rule.role !== 'both' && rule.role !== q.role) return false;
  const name = rule.program.includes('/') ? q.program : basename(q.program);
  if (!rule.programMatch.test(name)) return false;
  if (rule.address !== '*') {
    const addr = address();
    if (!addr || addr.family !== rule.address.family) return false;
    if (!prefixMatches(addr.bytes, rule.address.bytes, rule.address.prefix)) return false;
  }
  if (rule.ports !== '*') {
    if (!Number.isInteger(q.port) || q.port < rule.ports.lo || q.port > rule.ports.hi) return false;
  }
  return true;
}

/**
 * First matching rule wins; default offload. An address that is not an IP matches only rules
 * whose address is '*'.
 */
export function decide(rules: readonly PolicyRule[], q: PolicyQuery): PolicyDecision {
  // Parsed only for a rule that names addresses: a CONNECT pays nothing for the others.
  let parsed: QueryAddress | undefined;
  const address = (): QueryAddress => (parsed === undefined ? (parsed = parseQueryAddress(q.address)) : parsed);
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (ruleMatches(rule, q, address)) return { action: rule.action, rule: i };
  }
  return { action: 'offload', rule: -1 };
}
