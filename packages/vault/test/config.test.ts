/**
 * The vault's configuration: defaults, every problem listed at once, and no
 * secret echoed back in a problem. No network, no files.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../src/config.ts';

const GOOD_KEY = `k1:${randomBytes(32).toString('base64')}`;
const GOOD_ADMIN_KEY = `twk_admin1_${randomBytes(32).toString('base64url')}`;

/** Runs loadConfig and returns the ConfigError it must throw. */
function configError(source: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(source);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('loadConfig accepted a bad configuration');
}

/** Everything an error could show: message, stack, problems, inspect and JSON forms. */
function everyRendering(error: ConfigError): string {
  return [
    error.message,
    String(error.stack),
    error.problems.join('\n'),
    inspect(error, { depth: 10 }),
    JSON.stringify(error),
    JSON.stringify(Object.getOwnPropertyDescriptors(error)),
  ].join('\n');
}

describe('loadConfig', () => {
  test('defaults', () => {
    const config = loadConfig({});
    assert.equal(config.dataDir, resolve('.data/vault'));
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.databaseSchema, 'public');
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.equal(config.publicUrl, undefined);
    assert.equal(config.masterKeys, undefined);
    assert.equal(config.adminKey, undefined);
    assert.deepEqual(config.returnToAllowlist, []);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.demoProvider, false);
    assert.equal(config.demoTokenLifetimeSeconds, 60);
    assert.match(config.instanceId, /^\d+-[a-z0-9]+$/);
    assert.equal(config.leaseSeconds, 30);
    assert.equal(config.tokenRequestTimeoutMs, 10_000);
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.returnToAllowlist));
  });

  test('the demo provider default comes from the caller; the environment wins', () => {
    assert.equal(loadConfig({}, { demoProvider: true }).demoProvider, true);
    assert.equal(
      loadConfig({ TOKENWARDEN_DEMO_PROVIDER: 'no' }, { demoProvider: true }).demoProvider,
      false,
    );
    assert.equal(loadConfig({ TOKENWARDEN_DEMO_PROVIDER: '1' }).demoProvider, true);
  });

  test('loopback auth-client endpoints: off by default, on with the demo provider, the environment wins', () => {
    assert.equal(loadConfig({}).allowLoopbackEndpoints, false);
    assert.equal(
      loadConfig({ TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1' }).allowLoopbackEndpoints,
      true,
    );
    assert.equal(loadConfig({ TOKENWARDEN_DEMO_PROVIDER: '1' }).allowLoopbackEndpoints, true);
    assert.equal(loadConfig({}, { demoProvider: true }).allowLoopbackEndpoints, true);
    assert.equal(
      loadConfig({ TOKENWARDEN_DEMO_PROVIDER: '0' }, { demoProvider: true }).allowLoopbackEndpoints,
      false,
    );
    assert.equal(
      loadConfig({ TOKENWARDEN_DEMO_PROVIDER: '1', TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: 'no' })
        .allowLoopbackEndpoints,
      false,
    );
    assert.match(
      configError({ TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: 'maybe' }).problems.join('\n'),
      /TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS/,
    );
  });

  test('reads every setting', () => {
    const config = loadConfig({
      TOKENWARDEN_DATA_DIR: '/var/lib/tokenwarden',
      DATABASE_URL: 'postgresql://vault:pw@db.internal:5432/vault',
      TOKENWARDEN_DATABASE_SCHEMA: 'tw_prod',
      HOST: '0.0.0.0',
      PORT: '0',
      TOKENWARDEN_PUBLIC_URL: 'https://vault.example.com/',
      TOKENWARDEN_MASTER_KEYS: `${GOOD_KEY},old:${randomBytes(32).toString('base64')}`,
      TOKENWARDEN_ADMIN_KEY: GOOD_ADMIN_KEY,
      TOKENWARDEN_RETURN_TO_ALLOWLIST:
        ' https://app.example.com/after/connect , http://localhost:3000 ',
      LOG_LEVEL: 'silent',
      TOKENWARDEN_DEMO_TOKEN_LIFETIME: '5',
      TOKENWARDEN_INSTANCE_ID: 'replica-1',
      TOKENWARDEN_LEASE_SECONDS: '12',
      TOKENWARDEN_TOKEN_TIMEOUT_MS: '2500',
    });
    assert.equal(config.dataDir, '/var/lib/tokenwarden');
    assert.equal(config.databaseUrl, 'postgresql://vault:pw@db.internal:5432/vault');
    assert.equal(config.databaseSchema, 'tw_prod');
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.port, 0);
    assert.equal(config.publicUrl, 'https://vault.example.com', 'trailing slash dropped');
    assert.ok(config.masterKeys?.startsWith(GOOD_KEY));
    assert.equal(config.adminKey, GOOD_ADMIN_KEY);
    assert.deepEqual(config.returnToAllowlist, [
      'https://app.example.com',
      'http://localhost:3000',
    ]);
    assert.equal(config.logLevel, 'silent');
    assert.equal(config.demoTokenLifetimeSeconds, 5);
    assert.equal(config.instanceId, 'replica-1');
    assert.equal(config.leaseSeconds, 12);
    assert.equal(config.tokenRequestTimeoutMs, 2500);
  });

  test('every problem is listed at once, each naming its variable', () => {
    const error = configError({
      PORT: '70000',
      DATABASE_URL: 'mysql://root@db/vault',
      TOKENWARDEN_MASTER_KEYS: 'not-a-key-list',
      TOKENWARDEN_ADMIN_KEY: 'admin',
      TOKENWARDEN_RETURN_TO_ALLOWLIST: 'https://ok.example.com,not a url',
      LOG_LEVEL: 'loud',
    });
    const expected = [
      'PORT',
      'DATABASE_URL',
      'TOKENWARDEN_MASTER_KEYS',
      'TOKENWARDEN_ADMIN_KEY',
      'TOKENWARDEN_RETURN_TO_ALLOWLIST',
      'LOG_LEVEL',
    ];
    assert.equal(error.problems.length, expected.length, error.problems.join('\n'));
    for (const name of expected) {
      assert.equal(
        error.problems.filter((problem) => problem.startsWith(`${name}`)).length,
        1,
        `one problem for ${name} in:\n${error.problems.join('\n')}`,
      );
      assert.ok(error.message.includes(name), `the message names ${name}`);
    }
    assert.match(error.message, /^invalid configuration:\n {2}- /);
    assert.ok(error.problems.some((p) => /DATABASE_URL: .*postgres:\/\//.test(p)));
    assert.ok(error.problems.some((p) => /TOKENWARDEN_RETURN_TO_ALLOWLIST.*"not a url"/.test(p)));
  });

  test('other bad values are problems too', () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ PORT: 'eighty' }, 'PORT'],
      [{ PORT: '-1' }, 'PORT'],
      [{ PORT: '80.5' }, 'PORT'],
      [{ TOKENWARDEN_DATABASE_SCHEMA: 'Robert"; DROP' }, 'TOKENWARDEN_DATABASE_SCHEMA'],
      [{ TOKENWARDEN_PUBLIC_URL: 'vault.example.com' }, 'TOKENWARDEN_PUBLIC_URL'],
      [{ TOKENWARDEN_DEMO_PROVIDER: 'maybe' }, 'TOKENWARDEN_DEMO_PROVIDER'],
      [{ TOKENWARDEN_LEASE_SECONDS: '0' }, 'TOKENWARDEN_LEASE_SECONDS'],
      [{ TOKENWARDEN_LEASE_SECONDS: '601' }, 'TOKENWARDEN_LEASE_SECONDS'],
      [{ TOKENWARDEN_INSTANCE_ID: 'has space' }, 'TOKENWARDEN_INSTANCE_ID'],
      [{ TOKENWARDEN_MASTER_KEYS: `${GOOD_KEY},` }, 'TOKENWARDEN_MASTER_KEYS'],
      [
        { TOKENWARDEN_MASTER_KEYS: `k.1:${randomBytes(32).toString('base64')}` },
        'TOKENWARDEN_MASTER_KEYS',
      ],
    ];
    for (const [source, name] of cases) {
      const error = configError(source);
      assert.equal(
        error.problems.length,
        1,
        `${JSON.stringify(source)}: ${error.problems.join('; ')}`,
      );
      assert.ok(error.problems[0]?.startsWith(`${name}:`), error.problems[0]);
    }
  });

  test('secrets are never echoed in problems', () => {
    const marker = `SECRETMARKER${randomBytes(16).toString('hex')}`;
    const error = configError({
      // wrong format: no kid, a marker for a key
      TOKENWARDEN_MASTER_KEYS: `${marker}${randomBytes(32).toString('base64')}`,
      // an admin key whose secret part is too short
      TOKENWARDEN_ADMIN_KEY: `twk_${marker}`,
      DATABASE_URL: `mysql://vault:${marker}@db.internal/vault`,
      PORT: 'x',
    });
    assert.equal(error.problems.length, 4, error.problems.join('\n'));
    const rendered = everyRendering(error);
    assert.ok(!rendered.includes(marker), `a secret was echoed:\n${rendered}`);
    assert.ok(!rendered.includes(marker.slice(0, 16)), 'not even a part of it');
    assert.ok(!rendered.includes(Buffer.from(marker).toString('base64')));
  });

  test('a key list with a marker in a key of the wrong length is refused without echoing it', () => {
    const marker = `MARK${randomBytes(8).toString('hex')}`;
    const error = configError({
      TOKENWARDEN_MASTER_KEYS: `${GOOD_KEY},old:${marker}`,
    });
    const rendered = everyRendering(error);
    assert.ok(!rendered.includes(marker), rendered);
    assert.ok(!rendered.includes(GOOD_KEY.slice(3)), 'the good key is not echoed either');
  });
});

describe('loadConfig: the refresh lease outlives a token request', () => {
  test('refuses a lease shorter than twice the token-request timeout', () => {
    assert.throws(
      () => loadConfig({ TOKENWARDEN_LEASE_SECONDS: '5', TOKENWARDEN_TOKEN_TIMEOUT_MS: '10000' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some((problem) => problem.includes('TOKENWARDEN_LEASE_SECONDS')),
    );
    assert.equal(
      loadConfig({ TOKENWARDEN_LEASE_SECONDS: '2', TOKENWARDEN_TOKEN_TIMEOUT_MS: '1000' })
        .leaseSeconds,
      2,
    );
  });
});
