import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import {
  type AuthClient,
  type AuthClientConfig,
  createAuthClient,
  type ProviderProfileInput,
  parseProviderProfile,
  TokenwardenError,
} from '../src/index.ts';

const SECRET = 'client-secret-marker-d00d';

function profile(overrides: Partial<ProviderProfileInput> = {}) {
  return parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      rotation: 'none',
      authorizationUrl: 'https://login.example.com/oauth/authorize',
      tokenUrl: 'https://login.example.com/oauth/token',
      ...overrides,
    },
    'test',
  );
}

/** A profile with a {instance} host placeholder (Salesforce / Zoho style). */
const instanceProfile = profile({
  authorizationUrl: 'https://{instance}.example.com/oauth/authorize',
  tokenUrl: 'https://{instance}.example.com/oauth/token',
  revocationUrl: 'https://{instance}.example.com/oauth/revoke',
  placeholders: {
    instance: { description: 'your instance name', default: 'login', pattern: '[a-z0-9-]+' },
  },
});

/** The generic profile: the auth client supplies every endpoint. */
const generic = parseProviderProfile(
  {
    id: 'oauth2',
    displayName: 'Any OAuth 2.0 server',
    docs: ['https://www.rfc-editor.org/rfc/rfc6749'],
    rotation: 'rotating',
  },
  'test',
);

/** The problems an invalid configuration lists (fails the test if it does not throw). */
function problemsOf(config: AuthClientConfig): string[] {
  try {
    createAuthClient(config);
  } catch (error) {
    assert.ok(error instanceof TokenwardenError, `expected a TokenwardenError, got ${error}`);
    assert.equal(error.code, 'invalid_configuration');
    for (const form of [
      error.message,
      JSON.stringify(error),
      inspect(error),
      format('%o', error),
    ]) {
      assert.ok(!form.includes(SECRET), `the client secret leaks: ${form}`);
    }
    return error.message
      .split('\n')
      .slice(1)
      .map((line) => line.replace(/^ {2}- /, ''));
  }
  assert.fail('expected createAuthClient to throw');
}

function client(config: Partial<AuthClientConfig> = {}): AuthClient {
  return createAuthClient({
    profile: profile(),
    clientId: 'client-1',
    clientSecret: SECRET,
    ...config,
  });
}

describe('createAuthClient: placeholders', () => {
  it('uses the default value when none is given', () => {
    const c = createAuthClient({ profile: instanceProfile, clientId: 'c', clientSecret: SECRET });
    assert.equal(c.tokenUrl.href, 'https://login.example.com/oauth/token');
    assert.equal(c.authorizationUrl.href, 'https://login.example.com/oauth/authorize');
    assert.equal(c.revocationUrl?.href, 'https://login.example.com/oauth/revoke');
  });

  it('resolves a given value into every URL', () => {
    const c = createAuthClient({
      profile: instanceProfile,
      clientId: 'c',
      clientSecret: SECRET,
      placeholders: { instance: 'acme-eu' },
    });
    assert.equal(c.tokenUrl.href, 'https://acme-eu.example.com/oauth/token');
    assert.equal(c.authorizationUrl.href, 'https://acme-eu.example.com/oauth/authorize');
    assert.equal(c.revocationUrl?.href, 'https://acme-eu.example.com/oauth/revoke');
    assert.equal(c.as.token_endpoint, 'https://acme-eu.example.com/oauth/token');
  });

  for (const value of [
    'evil.com/x',
    'evil.com#',
    'acme.evil.com',
    'a b',
    '',
    'ACME',
    'x@evil.com',
  ]) {
    it(`enforces the pattern: rejects ${JSON.stringify(value)}`, () => {
      const problems = problemsOf({
        profile: instanceProfile,
        clientId: 'c',
        clientSecret: SECRET,
        placeholders: { instance: value },
      });
      assert.ok(
        problems.some(
          (p) => p.startsWith('placeholders.instance:') && p.includes('does not match'),
        ),
        problems.join('\n'),
      );
    });
  }

  it('anchors the pattern: an alternation cannot match a prefix', () => {
    const p = profile({
      tokenUrl: 'https://{region}.example.com/token',
      authorizationUrl: 'https://{region}.example.com/authorize',
      placeholders: { region: { description: 'region', pattern: 'eu|us' } },
    });
    const ok = createAuthClient({
      profile: p,
      clientId: 'c',
      clientSecret: SECRET,
      placeholders: { region: 'us' },
    });
    assert.equal(ok.tokenUrl.hostname, 'us.example.com');
    const problems = problemsOf({
      profile: p,
      clientId: 'c',
      clientSecret: SECRET,
      placeholders: { region: 'eu.evil.com/x' },
    });
    assert.ok(
      problems.some((line) => line.startsWith('placeholders.region:')),
      problems.join('\n'),
    );
  });

  it('requires a value for a placeholder without default, naming its description', () => {
    const p = profile({
      tokenUrl: 'https://{shop}.myshopify.com/admin/oauth/access_token',
      authorizationUrl: 'https://{shop}.myshopify.com/admin/oauth/authorize',
      placeholders: { shop: { description: 'the shop subdomain', pattern: '[a-z0-9-]+' } },
    });
    const problems = problemsOf({ profile: p, clientId: 'c', clientSecret: SECRET });
    assert.ok(
      problems.includes('placeholders.shop: required (the shop subdomain)'),
      problems.join('\n'),
    );
  });

  it('rejects an unknown placeholder', () => {
    const problems = problemsOf({
      profile: instanceProfile,
      clientId: 'c',
      clientSecret: SECRET,
      placeholders: { tenant: 'acme' },
    });
    assert.ok(
      problems.includes('placeholders.tenant: profile test has no such placeholder'),
      problems.join('\n'),
    );
  });

  it('regression: rejects an unknown placeholder named like an Object.prototype member', () => {
    const problems = problemsOf({
      profile: instanceProfile,
      clientId: 'c',
      clientSecret: SECRET,
      placeholders: { toString: 'x' },
    });
    assert.ok(
      problems.includes('placeholders.toString: profile test has no such placeholder'),
      problems.join('\n'),
    );
  });
});

describe('createAuthClient: credentials and problems', () => {
  it('requires clientId and clientSecret', () => {
    const problems = problemsOf({ profile: profile(), clientId: '', clientSecret: '' });
    assert.deepEqual(problems, ['clientId: required', 'clientSecret: required']);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf({
      profile: instanceProfile,
      clientId: '',
      clientSecret: SECRET,
      placeholders: { instance: 'evil.com/x', extra: 'y' },
      endpoints: { revocationUrl: 'http://revoke.example.com/revoke' },
    });
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(problems.includes('clientId: required'));
    assert.ok(problems.some((p) => p.startsWith('placeholders.instance:')));
    assert.ok(problems.some((p) => p.startsWith('placeholders.extra:')));
    assert.ok(
      problems.some((p) => p.startsWith('endpoints.revocationUrl:') && p.includes('https')),
    );
  });

  it('names the profile in the message', () => {
    try {
      createAuthClient({ profile: profile(), clientId: '', clientSecret: SECRET });
      assert.fail('expected a throw');
    } catch (error) {
      assert.ok(error instanceof TokenwardenError);
      assert.match(error.message, /^auth client for test is invalid:\n/);
    }
  });

  it('never puts the client secret in a message, even in a bad placeholder value', () => {
    problemsOf({
      profile: instanceProfile,
      clientId: '',
      clientSecret: SECRET,
      placeholders: { instance: 'nope.' },
    });
  });

  it('keeps the client secret out of every printed form of a valid client', () => {
    const c = client();
    for (const form of [
      JSON.stringify(c),
      inspect(c, { depth: Number.POSITIVE_INFINITY, showHidden: true }),
      format('%o', c),
    ]) {
      assert.ok(!form.includes(SECRET), form);
    }
  });
});

describe('createAuthClient: endpoints', () => {
  it('rejects plain http on a non-loopback host', () => {
    const problems = problemsOf({
      profile: generic,
      clientId: 'c',
      clientSecret: SECRET,
      endpoints: {
        authorizationUrl: 'http://auth.example.com/authorize',
        tokenUrl: 'http://auth.example.com/token',
      },
    });
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.ok(problems.every((p) => p.includes('must use https')));
  });

  for (const origin of [
    'http://127.0.0.1:8080',
    'http://localhost:3000',
    'http://[::1]:9000',
    'http://127.0.0.2',
  ]) {
    it(`accepts plain http on loopback: ${origin}`, () => {
      const c = createAuthClient({
        profile: generic,
        clientId: 'c',
        clientSecret: SECRET,
        endpoints: { authorizationUrl: `${origin}/authorize`, tokenUrl: `${origin}/token` },
      });
      assert.equal(c.tokenUrl.href, `${origin}/token`);
      assert.equal(c.loopbackHttp, true);
    });
  }

  it('does not allow insecure requests for https endpoints', () => {
    assert.equal(client().loopbackHttp, false);
  });

  it('the generic profile needs the endpoints from the auth client', () => {
    const problems = problemsOf({ profile: generic, clientId: 'c', clientSecret: SECRET });
    assert.deepEqual(problems, [
      'endpoints.authorizationUrl: required, profile oauth2 does not define it',
      'endpoints.tokenUrl: required, profile oauth2 does not define it',
    ]);
  });

  it('the generic profile takes the endpoints override', () => {
    const c = createAuthClient({
      profile: generic,
      clientId: 'c',
      clientSecret: SECRET,
      endpoints: {
        authorizationUrl: 'https://sso.company.example/oauth2/authorize',
        tokenUrl: 'https://sso.company.example/oauth2/token',
        revocationUrl: 'https://sso.company.example/oauth2/revoke',
      },
    });
    assert.equal(c.authorizationUrl.href, 'https://sso.company.example/oauth2/authorize');
    assert.equal(c.tokenUrl.href, 'https://sso.company.example/oauth2/token');
    assert.equal(c.revocationUrl?.href, 'https://sso.company.example/oauth2/revoke');
    assert.equal(c.as.issuer, 'https://sso.company.example');
    assert.equal(c.as.revocation_endpoint, 'https://sso.company.example/oauth2/revoke');
  });

  it('the generic profile takes an issuer override, kept exactly as given', () => {
    const c = createAuthClient({
      profile: generic,
      clientId: 'c',
      clientSecret: SECRET,
      endpoints: {
        authorizationUrl: 'http://127.0.0.1:3000/auth',
        tokenUrl: 'http://127.0.0.1:3000/token',
        issuer: 'http://127.0.0.1:3000/oidc',
      },
    });
    assert.equal(c.as.issuer, 'http://127.0.0.1:3000/oidc');
    const problems = problemsOf({
      profile: generic,
      clientId: 'c',
      clientSecret: SECRET,
      endpoints: {
        authorizationUrl: 'https://auth.example.com/authorize',
        tokenUrl: 'https://auth.example.com/token',
        issuer: 'http://auth.example.com',
      },
    });
    assert.deepEqual(problems.length, 1);
    assert.match(problems[0] ?? '', /^endpoints\.issuer: .*must use https/);
  });

  it('an override replaces a profile endpoint', () => {
    const c = client({ endpoints: { tokenUrl: 'https://proxy.example.com/token' } });
    assert.equal(c.tokenUrl.href, 'https://proxy.example.com/token');
    assert.equal(c.authorizationUrl.href, 'https://login.example.com/oauth/authorize');
  });

  it('a revocation endpoint is optional', () => {
    const c = client();
    assert.equal(c.revocationUrl, undefined);
    assert.equal('revocation_endpoint' in c.as, false);
  });

  it('rejects an endpoint that is not an absolute URL', () => {
    const problems = problemsOf({
      profile: generic,
      clientId: 'c',
      clientSecret: SECRET,
      endpoints: { authorizationUrl: '/authorize', tokenUrl: 'https://auth.example.com/token' },
    });
    assert.equal(problems.length, 1);
    assert.match(
      problems[0] ?? '',
      /^endpoints\.authorizationUrl: "\/authorize" is not an absolute URL$/,
    );
  });

  it('uses the profile issuer when it has one', () => {
    const c = client({ profile: profile({ issuer: 'https://login.example.com/v2' }) });
    assert.equal(c.as.issuer, 'https://login.example.com/v2');
  });
});

describe('createAuthClient: the result', () => {
  it('takes the profile default scopes, or the given ones, frozen', () => {
    const withDefaults = client({ profile: profile({ scopes: { default: ['a', 'b'] } }) });
    assert.deepEqual(withDefaults.scopes, ['a', 'b']);
    const given = client({ scopes: ['x'] });
    assert.deepEqual(given.scopes, ['x']);
    assert.ok(Object.isFrozen(given.scopes));
    assert.ok(Object.isFrozen(given));
  });

  it('copies the scopes it was given', () => {
    const scopes = ['x'];
    const c = client({ scopes });
    scopes.push('y');
    assert.deepEqual(c.scopes, ['x']);
  });
});

it('always requests the profile’s required scopes, whatever the auth client chose', () => {
  const profile = parseProviderProfile(
    {
      id: 'needs-offline',
      displayName: 'Needs offline',
      docs: ['https://example.com/docs'],
      authorizationUrl: 'https://example.com/authorize',
      tokenUrl: 'https://example.com/token',
      rotation: 'rotating',
      scopes: { default: ['read'], required: ['offline_access'] },
    },
    'test',
  );
  const chosen = createAuthClient({
    profile,
    clientId: 'id',
    clientSecret: 'secret',
    scopes: ['mail.read', 'offline_access'],
  });
  assert.deepEqual(chosen.scopes, ['offline_access', 'mail.read']);
  const defaults = createAuthClient({ profile, clientId: 'id', clientSecret: 'secret' });
  assert.deepEqual(defaults.scopes, ['offline_access', 'read']);
});
