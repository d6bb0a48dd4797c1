import { BlockList, isIP } from 'node:net';
import type { AuthClient } from '@tokenwarden/oauth';

/** The operator setting that lets auth clients use endpoints on the vault's own host. */
export const ALLOW_LOOPBACK_ENDPOINTS = 'TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS';

/**
 * Which auth-client endpoints the vault's API accepts, on top of the provider
 * profile's own checks (https, or http on loopback: @tokenwarden/oauth).
 */
export interface EndpointPolicy {
  /**
   * Accept endpoints and issuers on a host that reaches the vault's own machine
   * (see {@link isLoopbackHost}), whatever the scheme. Off by default: the vault
   * sends the client secret and refresh tokens to the token and revocation
   * endpoints, so any tenant API key could aim them at a service that listens
   * only locally. The demo provider and tests need it.
   */
  readonly allowLoopback: boolean;
}

const loopbackAddresses = new BlockList();
loopbackAddresses.addSubnet('127.0.0.0', 8, 'ipv4');
// 0.0.0.0 ("this host"): connecting to it reaches the local machine on Linux.
loopbackAddresses.addSubnet('0.0.0.0', 8, 'ipv4');
loopbackAddresses.addAddress('::1', 'ipv6');
loopbackAddresses.addAddress('::', 'ipv6');

/**
 * True for a URL hostname (as `new URL()` normalizes it) that names this
 * machine: 127.0.0.0/8, 0.0.0.0/8, [::1], [::], those IPv4 ranges mapped into
 * IPv6, `localhost` and `*.localhost` (RFC 6761), with or without a final dot.
 * A DNS name that merely resolves to 127.0.0.1 is not caught: plain http to
 * such a name is refused anyway, and https to it fails certificate checks.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  const family = isIP(host);
  if (family === 4) return loopbackAddresses.check(host, 'ipv4');
  if (family === 6) return loopbackAddresses.check(host, 'ipv6');
  return false;
}

/**
 * The endpoints (and issuer) of a checked auth client that the policy refuses,
 * one problem each; empty when it is acceptable. Only origins are shown.
 */
export function endpointPolicyProblems(client: AuthClient, policy: EndpointPolicy): string[] {
  if (policy.allowLoopback) return [];
  const named: Array<[string, string | undefined]> = [
    ['authorizationUrl', client.authorizationUrl.href],
    ['tokenUrl', client.tokenUrl.href],
    ['revocationUrl', client.revocationUrl?.href],
  ];
  // Without an issuer of its own the token URL's origin stands in: reported once, as tokenUrl.
  if (client.as.issuer !== client.tokenUrl.origin) named.push(['issuer', client.as.issuer]);
  const problems: string[] = [];
  for (const [key, value] of named) {
    if (value === undefined || !URL.canParse(value)) continue;
    const url = new URL(value);
    if (isLoopbackHost(url.hostname))
      problems.push(`endpoints.${key}: "${url.origin}" is on a loopback host`);
  }
  return problems;
}

/**
 * The message of the 400 answer to an auth client the policy refuses, naming the
 * setting that allows it; undefined when the auth client is acceptable.
 */
export function endpointPolicyViolation(
  client: AuthClient,
  policy: EndpointPolicy,
): string | undefined {
  const problems = endpointPolicyProblems(client, policy);
  if (problems.length === 0) return undefined;
  return [
    `auth client endpoints on a loopback host are refused: the vault would send the client secret and refresh tokens to a service on its own machine. The operator allows them with ${ALLOW_LOOPBACK_ENDPOINTS}=1 (development and tests only; --demo sets it):`,
    ...problems.map((problem) => `  - ${problem}`),
  ].join('\n');
}
