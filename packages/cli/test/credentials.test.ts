import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { runCli } from './support/run-cli.ts';
import {
  API_KEY,
  apiError,
  credential,
  type StubVault,
  startStubVault,
} from './support/stub-vault.ts';

describe('tokenwarden credentials', () => {
  let stub: StubVault;
  before(async () => {
    stub = await startStubVault({
      'GET /v1/credentials': () => ({
        status: 200,
        body: {
          credentials: [
            credential('cr_1'),
            credential('cr_2', {
              status: 'reauth_required',
              statusReason: 'invalid_grant',
              expiresAt: null,
            }),
          ],
        },
      }),
      'GET /v1/credentials/cr_1': () => ({
        status: 200,
        body: credential('cr_1', {
          lastError: {
            code: 'token_endpoint_unavailable',
            message: 'token endpoint answered 503',
            at: new Date().toISOString(),
          },
        }),
      }),
      'POST /v1/credentials/cr_1/refresh': () => ({ status: 200, body: credential('cr_1') }),
      'POST /v1/credentials/cr_2/refresh': () =>
        apiError(409, 'reauth_required', 'credential cr_2: the grant is gone'),
      'DELETE /v1/credentials/cr_1': () => ({ status: 204 }),
    });
  });
  after(() => stub.close());
  beforeEach(() => {
    stub.requests.length = 0;
  });
  const env = () => ({ TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: API_KEY });

  it('list prints a table with status and expiry', async () => {
    const result = await runCli(['credentials', 'list'], { env: env() });
    assert.equal(result.code, EXIT.ok, result.stderr);
    const [header, first, second] = result.stdout.trimEnd().split('\n');
    assert.match(
      header ?? '',
      /^ID +AUTH CLIENT +PROVIDER +STATUS +EXPIRES +LAST REFRESH +REFRESHES$/,
    );
    assert.match(
      first ?? '',
      /^cr_1 +ac_1 +microsoft +active +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in /,
    );
    assert.match(second ?? '', /^cr_2 +ac_1 +microsoft +reauth_required +- /);
  });

  it('list --json parses and forwards the filters', async () => {
    const result = await runCli(
      ['credentials', 'list', '--status', 'active', '--auth-client', 'ac_1', '--json'],
      { env: env() },
    );
    assert.equal(result.code, EXIT.ok, result.stderr);
    const parsed = JSON.parse(result.stdout) as { credentials: { id: string }[] };
    assert.deepEqual(
      parsed.credentials.map((c) => c.id),
      ['cr_1', 'cr_2'],
    );
    const query = stub.requests[0]?.query;
    assert.equal(query?.get('status'), 'active');
    assert.equal(query?.get('authClientId'), 'ac_1');
  });

  it('show prints the fields; --json parses', async () => {
    const human = await runCli(['credentials', 'show', 'cr_1'], { env: env() });
    assert.equal(human.code, EXIT.ok);
    assert.match(human.stdout, /^status: +active$/m);
    assert.match(
      human.stdout,
      /^last error: +token_endpoint_unavailable: token endpoint answered 503/m,
    );
    const json = await runCli(['credentials', 'show', 'cr_1', '--json'], { env: env() });
    assert.equal(json.code, EXIT.ok);
    assert.equal((JSON.parse(json.stdout) as { id: string }).id, 'cr_1');
  });

  it('refresh reports the new expiry; a gone grant exits 5', async () => {
    const ok = await runCli(['credentials', 'refresh', 'cr_1'], { env: env() });
    assert.equal(ok.code, EXIT.ok, ok.stderr);
    assert.match(ok.stdout, /^refreshed cr_1: active, expires /);
    const gone = await runCli(['credentials', 'refresh', 'cr_2'], { env: env() });
    assert.equal(gone.code, EXIT.reauthRequired);
    assert.match(gone.stderr, /reauth_required/);
  });

  it('delete without --yes and without a terminal refuses with exit 2 and sends nothing', async () => {
    const result = await runCli(['credentials', 'delete', 'cr_1'], { env: env() });
    assert.equal(result.code, EXIT.usage);
    assert.match(result.stderr, /--yes/);
    assert.equal(stub.requests.length, 0);
  });

  it('delete --yes deletes', async () => {
    const result = await runCli(['credentials', 'delete', 'cr_1', '--yes'], { env: env() });
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /deleted credential cr_1/);
    assert.deepEqual(
      stub.requests.map((r) => `${r.method} ${r.path}`),
      ['DELETE /v1/credentials/cr_1'],
    );
  });
});
