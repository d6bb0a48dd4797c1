import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAuthClient } from '../src/auth-client.ts';
import { loadProviderCatalog, type ProviderCatalog } from '../src/catalog.ts';
import { ProfileError } from '../src/errors.ts';
import { isLoopbackHost, type ProviderProfile, parseProviderProfile } from '../src/profile.ts';

/** The providers the design requires, plus the generic profile. */
const REQUIRED_IDS = [
  'microsoft',
  'salesforce',
  'google',
  'github',
  'slack',
  'hubspot',
  'xero',
  'quickbooks',
  'atlassian',
  'dropbox',
  'zoom',
  'box',
  'zoho',
  'shopify',
  'notion',
  'oauth2',
];

const ENDPOINT_KEYS = ['authorizationUrl', 'tokenUrl', 'revocationUrl'] as const;

/** A realistic value for each placeholder the shipped catalog declares. */
const PLACEHOLDER_EXAMPLES: Readonly<Record<string, string>> = {
  tenant: 'contoso.onmicrosoft.com',
  loginHost: 'acme--uat.sandbox.my.salesforce.com',
  accountsHost: 'accounts.zoho.eu',
  shop: 'acme-store',
};

/** Values that would change the URL's host, path, query or fragment if substituted. */
const HOSTILE_VALUES = [
  '',
  'evil.example/x',
  'a/b',
  'a?b',
  'a#b',
  'user@evil.example',
  'evil.example:8443',
  '..',
  '.',
  'a%2Fb',
  'a b',
  'a\\b',
];

function fullMatch(pattern: string, value: string): boolean {
  // The same anchoring the auth client applies (auth-client.ts).
  return new RegExp(`^(?:${pattern})$`).test(value);
}

/** Fills every `{placeholder}` with a harmless sample, as the profile validator does. */
function sampleUrl(template: string): URL {
  return new URL(template.replace(/\{([A-Za-z0-9_]+)\}/g, 'sample'));
}

function profile(catalog: ProviderCatalog, id: string): ProviderProfile {
  const found = catalog.get(id);
  assert.ok(found, `the catalog has no profile "${id}"`);
  return found;
}

describe('shipped provider catalog', () => {
  let catalog: ProviderCatalog;
  before(async () => {
    catalog = await loadProviderCatalog();
  });

  it('loads and contains every required provider', () => {
    for (const id of REQUIRED_IDS) assert.ok(catalog.has(id), `missing profile "${id}"`);
  });

  it('links every profile to https documentation', () => {
    for (const [id, p] of catalog) {
      assert.ok(p.docs.length > 0, `${id}: no docs`);
      for (const link of p.docs) {
        assert.equal(new URL(link).protocol, 'https:', `${id}: docs link ${link} is not https`);
      }
    }
  });

  it('gives every provider https endpoints on public hosts', () => {
    for (const [id, p] of catalog) {
      if (id === 'oauth2') continue;
      assert.ok(p.authorizationUrl, `${id}: no authorizationUrl`);
      assert.ok(p.tokenUrl, `${id}: no tokenUrl`);
      for (const key of ENDPOINT_KEYS) {
        const template = p[key];
        if (template === undefined) continue;
        const url = sampleUrl(template);
        assert.equal(url.protocol, 'https:', `${id}: ${key} is not https`);
        assert.ok(!isLoopbackHost(url.hostname), `${id}: ${key} points at a loopback host`);
        assert.equal(url.username + url.password, '', `${id}: ${key} carries credentials`);
      }
    }
  });

  it('leaves the generic oauth2 profile without endpoints, assuming rotation', () => {
    const p = profile(catalog, 'oauth2');
    for (const key of ENDPOINT_KEYS) assert.equal(p[key], undefined, `oauth2 defines ${key}`);
    assert.deepEqual(p.placeholders, {});
    assert.equal(p.rotation, 'rotating');
  });

  it('declares strict placeholders that keep values inside one URL segment', () => {
    for (const [id, p] of catalog) {
      for (const [name, spec] of Object.entries(p.placeholders)) {
        assert.ok(spec.description.length > 0, `${id}.${name}: no description`);
        if (spec.default !== undefined) {
          assert.ok(fullMatch(spec.pattern, spec.default), `${id}.${name}: default rejected`);
        }
        const example = PLACEHOLDER_EXAMPLES[name];
        assert.ok(example, `${id}.${name}: add an example to PLACEHOLDER_EXAMPLES`);
        assert.ok(fullMatch(spec.pattern, example), `${id}.${name}: "${example}" rejected`);
        for (const value of HOSTILE_VALUES) {
          assert.ok(!fullMatch(spec.pattern, value), `${id}.${name}: accepts "${value}"`);
        }
      }
    }
  });

  it('turns every profile into an auth client with resolved https endpoints', () => {
    for (const [id, p] of catalog) {
      const placeholders: Record<string, string> = {};
      for (const name of Object.keys(p.placeholders)) {
        placeholders[name] = PLACEHOLDER_EXAMPLES[name] ?? '';
      }
      const client = createAuthClient({
        profile: p,
        clientId: 'client-id',
        clientSecret: 'client-secret',
        placeholders,
        ...(id === 'oauth2'
          ? {
              endpoints: {
                authorizationUrl: 'https://auth.example.com/authorize',
                tokenUrl: 'https://auth.example.com/token',
              },
            }
          : {}),
      });
      for (const url of [client.authorizationUrl, client.tokenUrl, client.revocationUrl]) {
        if (url === undefined) continue;
        assert.equal(url.protocol, 'https:', `${id}: ${url.href}`);
        assert.ok(!url.href.includes('{'), `${id}: unresolved placeholder in ${url.href}`);
      }
    }
  });

  it('encodes the Microsoft identity platform quirks', () => {
    const p = profile(catalog, 'microsoft');
    assert.equal(p.sendScopeOnRefresh, true);
    assert.equal(p.rotation, 'rotating');
    assert.ok(p.scopes.default.includes('offline_access'));
    assert.equal(p.placeholders.tenant?.default, 'common');
    assert.ok(p.tokenUrl?.includes('/{tenant}/oauth2/v2.0/token'));
    assert.ok(p.keepAliveIntervalSeconds !== undefined && p.keepAliveIntervalSeconds < 90 * 86400);
  });

  it('encodes the Salesforce quirks', () => {
    const p = profile(catalog, 'salesforce');
    assert.equal(p.defaultAccessTokenLifetimeSeconds, 7200);
    assert.equal(p.parameters.refresh.format, 'json');
    assert.equal(p.placeholders.loginHost?.default, 'login.salesforce.com');
    assert.ok(p.revocationUrl?.endsWith('/services/oauth2/revoke'));
    const pattern = p.placeholders.loginHost?.pattern ?? '';
    for (const host of ['test.salesforce.com', 'acme.my.salesforce.com', 'acme.my.site.com']) {
      assert.ok(fullMatch(pattern, host), host);
    }
    for (const host of ['evil.example', 'acme.my.salesforce.com.evil.example', 'salesforce.com']) {
      assert.ok(!fullMatch(pattern, host), host);
    }
  });

  it('encodes the Google quirks', () => {
    const p = profile(catalog, 'google');
    assert.equal(p.parameters.authorization.access_type, 'offline');
    assert.equal(p.parameters.authorization.prompt, 'consent');
    assert.equal(p.issuer, 'https://accounts.google.com');
    assert.equal(p.tokenResponse.idToken, 'validate');
    assert.equal(p.revocationUrl, 'https://oauth2.googleapis.com/revoke');
  });

  it('marks single-use refresh tokens where the provider documents them', () => {
    assert.equal(profile(catalog, 'box').rotation, 'single-use');
    assert.equal(profile(catalog, 'github').rotation, 'single-use');
  });

  it('treats a 403 from Atlassian as a possibly expired token', () => {
    const p = profile(catalog, 'atlassian');
    assert.deepEqual([...p.expiredStatuses].sort(), [401, 403]);
    assert.equal(p.parameters.authorization.audience, 'api.atlassian.com');
    assert.equal(p.parameters.authorization.prompt, 'consent');
    assert.ok(p.scopes.default.includes('offline_access'));
  });

  it('encodes the token-response quirks of Shopify, Slack, GitHub and Zoho', () => {
    assert.equal(profile(catalog, 'shopify').tokenResponse.defaultTokenType, 'bearer');
    assert.equal(profile(catalog, 'shopify').parameters.codeExchange.expiring, '1');
    const slack = profile(catalog, 'slack');
    assert.deepEqual(slack.tokenResponse.extraTokenTypes, ['bot', 'user']);
    assert.equal(slack.tokenResponse.errorAliases.invalid_refresh_token, 'invalid_grant');
    assert.equal(slack.scopes.separator, ',');
    const github = profile(catalog, 'github');
    assert.equal(github.tokenResponse.errorAliases.bad_refresh_token, 'invalid_grant');
    assert.equal(github.tokenResponse.errorAliases.bad_verification_code, 'invalid_grant');
    assert.equal(profile(catalog, 'zoho').tokenResponse.errorAliases.invalid_code, 'invalid_grant');
    assert.equal(profile(catalog, 'dropbox').parameters.authorization.token_access_type, 'offline');
  });

  it('keeps idle grants alive well inside the provider limits', () => {
    const days = 86400;
    const idleLimits: Record<string, number> = {
      microsoft: 90 * days,
      google: 180 * days,
      xero: 60 * days,
      box: 60 * days,
      atlassian: 90 * days,
      github: 180 * days,
    };
    for (const [id, limit] of Object.entries(idleLimits)) {
      const interval = profile(catalog, id).keepAliveIntervalSeconds;
      assert.ok(interval !== undefined, `${id}: no keepAliveIntervalSeconds`);
      assert.ok(interval <= limit / 3, `${id}: ${interval}s is not well inside ${limit}s`);
    }
  });
});

describe('loading a broken catalog', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenwarden-catalog-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const valid = {
    displayName: 'Acme',
    docs: ['https://docs.acme.example/oauth'],
    authorizationUrl: 'https://auth.acme.example/authorize',
    tokenUrl: 'https://auth.acme.example/token',
    rotation: 'none',
  };

  async function folder(name: string, files: Record<string, unknown>): Promise<string> {
    const path = await mkdtemp(join(dir, `${name}-`));
    for (const [file, data] of Object.entries(files)) {
      await writeFile(join(path, file), JSON.stringify(data, null, 2));
    }
    return path;
  }

  it('fails with a ProfileError that lists every problem of every file', async () => {
    const path = await folder('broken', {
      // Endpoint problems: plain http on a public host, an undeclared placeholder.
      'acme.json': {
        ...valid,
        id: 'acme',
        authorizationUrl: 'https://{region}.acme.example/authorize',
        tokenUrl: 'http://auth.acme.example/token',
      },
      // Schema problems: a field the schema does not know, a bad rotation value.
      'globex.json': { ...valid, id: 'globex', refreshWindow: 60, rotation: 'sometimes' },
      // A valid profile whose id does not match its file name.
      'initech.json': { ...valid, id: 'initrode' },
      // A valid profile: loading still fails, the catalog is never half loaded.
      'umbrella.json': { ...valid, id: 'umbrella' },
    });
    const error = await loadProviderCatalog(path).then(
      () => assert.fail('the broken catalog loaded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ProfileError, String(error));
    assert.equal(error.code, 'invalid_profile');
    assert.equal(error.source, path);
    const problems = [...error.problems];
    const expected: [string, RegExp][] = [
      ['acme.json', /^authorizationUrl: uses \{region\}, which placeholders does not declare$/],
      ['acme.json', /^tokenUrl: "http:\/\/auth\.acme\.example" must use https/],
      ['globex.json', /^\(root\): .*refreshWindow/],
      ['globex.json', /^rotation: /],
      ['initech.json', /^id "initrode" must match the file name$/],
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    for (const [file, pattern] of expected) {
      const hits = problems.filter(
        (p) => p.startsWith(`${file}: `) && pattern.test(p.slice(file.length + 2)),
      );
      assert.equal(hits.length, 1, `${file}: ${pattern} in\n${problems.join('\n')}`);
    }
    assert.ok(!problems.some((p) => p.startsWith('umbrella.json')));
    for (const problem of problems) assert.ok(error.message.includes(problem));
  });

  it('accepts plain http on loopback hosts', async () => {
    const path = await folder('loopback', {
      'demo.json': {
        ...valid,
        id: 'demo',
        authorizationUrl: 'http://127.0.0.1:4000/authorize',
        tokenUrl: 'http://localhost:4000/token',
        revocationUrl: 'http://[::1]:4000/revoke',
      },
    });
    const catalog = await loadProviderCatalog(path);
    assert.deepEqual([...catalog.keys()], ['demo']);
    assert.equal(catalog.get('demo')?.tokenUrl, 'http://localhost:4000/token');
  });

  it('rejects plain http on hosts that only look like loopback', () => {
    for (const tokenUrl of [
      'http://localhost.evil.example/token',
      'http://127.0.0.1.evil.example/token',
      'http://10.0.0.1/token',
    ]) {
      assert.throws(
        () => parseProviderProfile({ ...valid, id: 'lookalike', tokenUrl }, 'lookalike.json'),
        (e: unknown) =>
          e instanceof ProfileError && e.problems.some((p) => p.startsWith('tokenUrl: ')),
        tokenUrl,
      );
    }
  });
});
