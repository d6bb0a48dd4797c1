// `tokenwarden run` and `verify` against a stub of the vault's API: the exit
// codes when the credential cannot be used, and what reaches stdout. The end to
// end runs against a real vault and provider are in test-integration/.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { OUTLOOK, OUTLOOK_ENV } from './support/bad-components.ts';
import { runCli } from './support/run-cli.ts';
import {
  API_KEY,
  apiError,
  credential,
  type StubVault,
  startStubVault,
} from './support/stub-vault.ts';

let stub: StubVault;
before(async () => {
  stub = await startStubVault({
    'GET /v1/credentials/cr_gone': () => ({
      status: 200,
      body: credential('cr_gone', { status: 'reauth_required' }),
    }),
    'POST /v1/credentials/cr_gone/access-token': () =>
      apiError(409, 'reauth_required', 'credential cr_gone: the grant was revoked (invalid_grant)'),
    'GET /v1/credentials/cr_down': () => ({ status: 200, body: credential('cr_down') }),
    'POST /v1/credentials/cr_down/access-token': () =>
      apiError(
        503,
        'token_endpoint_unavailable',
        'credential cr_down: token endpoint answered 502',
      ),
  });
});
after(() => stub.close());

const env = (key = API_KEY) => ({
  ...OUTLOOK_ENV,
  TOKENWARDEN_URL: stub.url,
  TOKENWARDEN_API_KEY: key,
});

function events(stdout: string): { event: string; data?: { code?: string } }[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));
}

describe('tokenwarden run with a vault credential that cannot be used', () => {
  it('3 when the vault refuses the API key, before the step runs; the key is never printed', async () => {
    const wrongKey = 'twk_wrong_abcdefghijklmnopqrstuvwxyz012345';
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--credential', 'cr_1'], {
      env: env(wrongKey),
    });
    assert.equal(result.code, EXIT.unauthorized, result.stderr);
    assert.equal(result.stdout, '');
    assert.ok(!result.stderr.includes(wrongKey));
  });

  it('3 without an API key, nothing sent', async () => {
    const before = stub.requests.length;
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--credential', 'cr_1'], {
      env: { ...OUTLOOK_ENV, TOKENWARDEN_URL: stub.url },
    });
    assert.equal(result.code, EXIT.unauthorized);
    assert.match(result.stderr, /set TOKENWARDEN_API_KEY/);
    assert.equal(stub.requests.length, before);
  });

  it('4 for an unknown credential', async () => {
    const result = await runCli(['verify', OUTLOOK, '--credential', 'cr_missing'], { env: env() });
    assert.equal(result.code, EXIT.notFound, result.stderr);
    assert.equal(result.stdout, '');
  });

  it('5 when the credential needs reconnecting: the step is not run, error and end are printed', async () => {
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--credential', 'cr_gone'], {
      env: env(),
    });
    assert.equal(result.code, EXIT.reauthRequired, result.stderr);
    const printed = events(result.stdout);
    assert.deepEqual(
      printed.map((e) => e.event),
      ['error', 'end'],
    );
    assert.equal(printed[0]?.data?.code, 'reauth_required');
    assert.match(result.stderr, /the step emitted an error \(reauth_required\)/);
  });

  it('6 when the provider is unavailable', async () => {
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--credential', 'cr_down'], {
      env: env(),
    });
    assert.equal(result.code, EXIT.unavailable, result.stderr);
    assert.equal(events(result.stdout)[0]?.data?.code, 'token_endpoint_unavailable');
  });

  it('1 for a step without a credential that needs one (no_credential)', async () => {
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch'], { env: OUTLOOK_ENV });
    assert.equal(result.code, EXIT.failure, result.stderr);
    assert.deepEqual(
      events(result.stdout).map((e) => [e.event, e.data?.code]),
      [
        ['error', 'no_credential'],
        ['end', undefined],
      ],
    );
  });
});
