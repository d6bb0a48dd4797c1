/**
 * The auth-client endpoint policy (src/endpoint-policy.ts): which hosts count as
 * the vault's own machine, and which endpoints of a checked auth client are
 * refused without TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS. No network.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  type AuthClientConfig,
  createAuthClient,
  loadProviderCatalog,
  type ProviderCatalog,
} from '@tokenwarden/oauth';
import {
  ALLOW_LOOPBACK_ENDPOINTS,
  endpointPolicyProblems,
  endpointPolicyViolation,
  isLoopbackHost,
} from '../src/endpoint-policy.ts';

const strict = { allowLoopback: false };
const allowing = { allowLoopback: true };

describe('isLoopbackHost', () => {
  test('names and addresses of this machine, as new URL() spells them', () => {
    for (const url of [
      'http://127.0.0.1:8080/',
      'http://127.1/',
      'http://2130706433/',
      'http://0x7f.0.0.1/',
      'http://127.255.255.254/',
      'http://0.0.0.0/',
      'http://0/',
      'http://localhost/',
      'http://LOCALHOST./',
      'http://app.localhost/',
      'http://[::1]/',
      'http://[0:0:0:0:0:0:0:1]/',
      'http://[::]/',
      'http://[::ffff:127.0.0.1]/',
    ])
      assert.ok(isLoopbackHost(new URL(url).hostname), url);
  });

  test('other hosts', () => {
    for (const url of [
      'https://login.microsoftonline.com/',
      'https://127.example.com/',
      'https://localhost.example.com/',
      'https://mylocalhost/',
      'http://10.0.0.1/',
      'http://128.0.0.1/',
      'http://[::2]/',
      'http://[2001:db8::1]/',
      'http://[::ffff:10.0.0.1]/',
    ])
      assert.ok(!isLoopbackHost(new URL(url).hostname), url);
  });
});

describe('endpointPolicyProblems', () => {
  let catalog: ProviderCatalog;
  before(async () => {
    catalog = await loadProviderCatalog();
  });
  const client = (providerId: string, rest: Omit<AuthClientConfig, 'profile' | 'clientSecret'>) => {
    const profile = catalog.get(providerId);
    assert.ok(profile, providerId);
    return createAuthClient({ profile, clientSecret: 'not-a-real-secret', ...rest });
  };

  test('a catalog provider and https endpoints elsewhere pass', () => {
    assert.deepEqual(endpointPolicyProblems(client('google', { clientId: 'id' }), strict), []);
    const generic = client('oauth2', {
      clientId: 'id',
      endpoints: {
        authorizationUrl: 'https://idp.example.com/authorize',
        tokenUrl: 'https://idp.example.com/token',
        revocationUrl: 'https://idp.example.com/revoke',
        issuer: 'https://idp.example.com/realms/acme',
      },
    });
    assert.deepEqual(endpointPolicyProblems(generic, strict), []);
    assert.equal(endpointPolicyViolation(generic, strict), undefined);
  });

  test('every endpoint on a loopback host is named, whatever the scheme; only origins are shown', () => {
    const local = client('oauth2', {
      clientId: 'id',
      endpoints: {
        authorizationUrl: 'http://127.0.0.1:9/authorize?x=secret-looking',
        tokenUrl: 'https://localhost:8443/token',
        revocationUrl: 'http://[::1]:9/revoke',
        issuer: 'http://localhost:9/issuer',
      },
    });
    assert.deepEqual(endpointPolicyProblems(local, strict), [
      'endpoints.authorizationUrl: "http://127.0.0.1:9" is on a loopback host',
      'endpoints.tokenUrl: "https://localhost:8443" is on a loopback host',
      'endpoints.revocationUrl: "http://[::1]:9" is on a loopback host',
      'endpoints.issuer: "http://localhost:9" is on a loopback host',
    ]);
    const message = endpointPolicyViolation(local, strict);
    assert.ok(message?.includes(`${ALLOW_LOOPBACK_ENDPOINTS}=1`), message);
    assert.ok(!message?.includes('secret-looking'), 'no path or query echoed');
    assert.deepEqual(endpointPolicyProblems(local, allowing), []);
    assert.equal(endpointPolicyViolation(local, allowing), undefined);
  });

  test('the default issuer (the token URL origin) is reported once, as tokenUrl', () => {
    const local = client('oauth2', {
      clientId: 'id',
      endpoints: {
        authorizationUrl: 'https://idp.example.com/authorize',
        tokenUrl: 'http://127.0.0.1:9/token',
      },
    });
    assert.deepEqual(endpointPolicyProblems(local, strict), [
      'endpoints.tokenUrl: "http://127.0.0.1:9" is on a loopback host',
    ]);
  });

  test('regression: a placeholder that makes a host loopback is caught (the resolved URL is checked)', () => {
    const shop = client('shopify', {
      clientId: 'id',
      placeholders: { shop: 'localhost' },
      endpoints: {
        authorizationUrl: 'https://{shop}/admin/oauth/authorize',
        tokenUrl: 'https://{shop}/admin/oauth/access_token',
      },
    });
    assert.equal(endpointPolicyProblems(shop, strict).length, 2);
  });
});
