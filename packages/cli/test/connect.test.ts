import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { runCli } from './support/run-cli.ts';
import {
  API_KEY,
  apiError,
  type StubAnswer,
  type StubVault,
  startStubVault,
} from './support/stub-vault.ts';

/** A connect session that answers `pending` for `pendingPolls` polls, then `final`. */
function sessionRoute(id: string, pendingPolls: number, final: Record<string, unknown>) {
  let polls = 0;
  return (): StubAnswer => {
    polls++;
    const expiresAt = new Date(Date.now() + 600_000).toISOString();
    return {
      status: 200,
      body:
        polls <= pendingPolls ? { id, status: 'pending', expiresAt } : { id, expiresAt, ...final },
    };
  };
}

describe('tokenwarden connect', () => {
  let stub: StubVault;
  before(async () => {
    const sessions: Record<string, string> = {
      ac_ok: 'cs_ok',
      ac_denied: 'cs_denied',
      ac_expired: 'cs_expired',
      ac_slow: 'cs_slow',
    };
    stub = await startStubVault({
      'POST /v1/connect-sessions': (request) => {
        const { authClientId } = request.body as { authClientId: string };
        const id = sessions[authClientId];
        if (id === undefined)
          return apiError(404, 'not_found', `auth client ${authClientId} not found`);
        return {
          status: 201,
          body: {
            id,
            url: `${stub.url}/connect/${id}`,
            expiresAt: new Date(Date.now() + 600_000).toISOString(),
            status: 'pending',
          },
        };
      },
      'GET /v1/connect-sessions/cs_ok': sessionRoute('cs_ok', 1, {
        status: 'completed',
        credentialId: 'cr_new',
      }),
      'GET /v1/connect-sessions/cs_denied': sessionRoute('cs_denied', 0, {
        status: 'failed',
        error: { code: 'access_denied', message: 'the user denied access' },
      }),
      'GET /v1/connect-sessions/cs_expired': sessionRoute('cs_expired', 0, { status: 'expired' }),
      'GET /v1/connect-sessions/cs_slow': sessionRoute('cs_slow', 1_000, {}),
    });
  });
  after(() => stub.close());
  const env = () => ({ TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: API_KEY });

  it('prints the URL on stderr, waits, then prints only the credential id on stdout', async () => {
    const result = await runCli(
      ['connect', 'ac_ok', '--return-to', 'https://app.example/done', '--scope', 'Mail.Read'],
      { env: env() },
    );
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.equal(result.stdout, 'cr_new\n');
    assert.match(
      result.stderr,
      new RegExp(`Open this URL in a browser: ${stub.url}/connect/cs_ok`),
    );
    assert.match(result.stderr, /waiting for the browser/);
    const start = stub.requests.find((r) => r.method === 'POST');
    assert.deepEqual(start?.body, {
      authClientId: 'ac_ok',
      returnTo: 'https://app.example/done',
      scopes: ['Mail.Read'],
    });
    const polls = stub.requests.filter((r) => r.path === '/v1/connect-sessions/cs_ok');
    assert.equal(polls.length, 2);
  });

  it('exits 7 with the reason when the flow fails', async () => {
    const result = await runCli(['connect', 'ac_denied'], { env: env() });
    assert.equal(result.code, EXIT.connectFailed);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /the connection failed: the user denied access \(access_denied\)/);
  });

  it('exits 7 when the session expires', async () => {
    const result = await runCli(['connect', 'ac_expired'], { env: env() });
    assert.equal(result.code, EXIT.connectFailed);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /expired/);
  });

  it('exits 7 when --timeout passes while the session is still pending', async () => {
    const started = Date.now();
    const result = await runCli(['connect', 'ac_slow', '--timeout', '2'], { env: env() });
    assert.equal(result.code, EXIT.connectFailed);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /timed out after 2s/);
    assert.ok(Date.now() - started < 6_000);
  });

  it('exits 4 for an unknown auth client, before printing any URL', async () => {
    const result = await runCli(['connect', 'ac_nope'], { env: env() });
    assert.equal(result.code, EXIT.notFound);
    assert.doesNotMatch(result.stderr, /Open this URL/);
  });
});
