import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { runCli } from './support/run-cli.ts';
import {
  API_KEY,
  apiError,
  credential,
  type StubVault,
  startStubVault,
} from './support/stub-vault.ts';

describe('exit codes for the answers of the vault', () => {
  let stub: StubVault;
  before(async () => {
    stub = await startStubVault({
      'GET /v1/credentials/cr_ok': () => ({ status: 200, body: credential('cr_ok') }),
      'GET /v1/credentials/cr_forbidden': () => apiError(403, 'forbidden', 'admin key required'),
      'GET /v1/credentials/cr_boom': () => apiError(500, 'internal_error', 'something broke'),
      'GET /v1/credentials/cr_proxy': () => ({ status: 502, text: '<html>Bad Gateway</html>' }),
      'GET /v1/credentials/cr_notjson': () => ({ status: 200, text: '<html>hello</html>' }),
      'POST /v1/credentials/cr_gone/access-token': () =>
        apiError(
          409,
          'reauth_required',
          'credential cr_gone: the grant was revoked (invalid_grant)',
        ),
      'POST /v1/credentials/cr_down/access-token': () =>
        apiError(
          503,
          'token_endpoint_unavailable',
          'credential cr_down: token endpoint answered 502',
        ),
      'POST /v1/credentials/cr_busy/access-token': () => ({ status: 503 }),
      'POST /v1/connect-sessions': () =>
        apiError(400, 'validation_failed', 'returnTo is not in the allowlist'),
    });
  });
  after(() => stub.close());
  const env = () => ({ TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: API_KEY });

  it('0 on success', async () => {
    const result = await runCli(['credentials', 'show', 'cr_ok'], { env: env() });
    assert.equal(result.code, EXIT.ok, result.stderr);
  });

  it('3 without an API key, saying to set TOKENWARDEN_API_KEY; nothing is sent', async () => {
    const before = stub.requests.length;
    const result = await runCli(['credentials', 'list'], { env: { TOKENWARDEN_URL: stub.url } });
    assert.equal(result.code, EXIT.unauthorized);
    assert.match(result.stderr, /set TOKENWARDEN_API_KEY/);
    assert.match(result.stderr, /tokenwarden serve/);
    assert.equal(stub.requests.length, before);
  });

  it('3 when the vault answers 401, and the rejected key is never printed', async () => {
    const wrongKey = 'twk_wrong_abcdefghijklmnopqrstuvwxyz012345';
    const result = await runCli(['credentials', 'list'], {
      env: { TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: wrongKey },
    });
    assert.equal(result.code, EXIT.unauthorized);
    assert.match(result.stderr, /unauthorized/);
    assert.ok(!`${result.stdout}${result.stderr}`.includes(wrongKey));
    assert.ok(!`${result.stdout}${result.stderr}`.includes('abcdefghijklmnop'));
  });

  it('3 for a key given with --api-key before the command, also never printed', async () => {
    const result = await runCli([
      '--url',
      stub.url,
      '--api-key',
      'twk_flag_secretsecretsecretsecretsecret',
      'credentials',
      'list',
    ]);
    assert.equal(result.code, EXIT.unauthorized);
    assert.ok(!`${result.stdout}${result.stderr}`.includes('secretsecret'));
  });

  it('3 when the vault answers 403', async () => {
    const result = await runCli(['credentials', 'show', 'cr_forbidden'], { env: env() });
    assert.equal(result.code, EXIT.unauthorized);
    assert.match(result.stderr, /forbidden/);
  });

  it('4 when the vault answers 404', async () => {
    const result = await runCli(['credentials', 'show', 'cr_missing'], { env: env() });
    assert.equal(result.code, EXIT.notFound);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /not_found/);
  });

  it('5 when the credential needs reconnecting (409 reauth_required)', async () => {
    const result = await runCli(['token', 'cr_gone'], { env: env() });
    assert.equal(result.code, EXIT.reauthRequired);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /reauth_required/);
    assert.match(result.stderr, /tokenwarden connect/);
  });

  it('6 when the provider is unavailable (503 token_endpoint_unavailable)', async () => {
    const result = await runCli(['token', 'cr_down'], { env: env() });
    assert.equal(result.code, EXIT.unavailable);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /token_endpoint_unavailable/);
  });

  it('6 for a bare 503 and for a proxy 502 without a vault error body', async () => {
    const busy = await runCli(['token', 'cr_busy'], { env: env() });
    assert.equal(busy.code, EXIT.unavailable);
    assert.match(busy.stderr, /HTTP 503/);
    const proxy = await runCli(['credentials', 'show', 'cr_proxy'], { env: env() });
    assert.equal(proxy.code, EXIT.unavailable);
    assert.match(proxy.stderr, /HTTP 502/);
  });

  it('6 when nothing listens at the URL (connection refused)', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const result = await runCli(['credentials', 'list'], {
      env: { TOKENWARDEN_URL: `http://127.0.0.1:${port}`, TOKENWARDEN_API_KEY: API_KEY },
    });
    assert.equal(result.code, EXIT.unavailable);
    assert.match(
      result.stderr,
      /cannot reach the vault at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    assert.match(result.stderr, /tokenwarden serve/);
  });

  it('1 for other refusals (500, 400) and for an answer that is not JSON', async () => {
    const boom = await runCli(['credentials', 'show', 'cr_boom'], { env: env() });
    assert.equal(boom.code, EXIT.failure);
    assert.match(boom.stderr, /something broke \(internal_error\)/);
    const invalid = await runCli(['connect', 'ac_1', '--return-to', 'https://evil.example'], {
      env: env(),
    });
    assert.equal(invalid.code, EXIT.failure);
    assert.match(invalid.stderr, /validation_failed/);
    const notJson = await runCli(['credentials', 'show', 'cr_notjson'], { env: env() });
    assert.equal(notJson.code, EXIT.failure);
    assert.match(notJson.stderr, /unexpected answer/);
  });
});
