import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from './support/run-cli.ts';
import { API_KEY, type StubVault, startStubVault } from './support/stub-vault.ts';

const ACCESS_TOKEN = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyIn0.sig';

describe('tokenwarden token', () => {
  let stub: StubVault;
  before(async () => {
    stub = await startStubVault({
      'POST /v1/credentials/cr_1/access-token': () => ({
        status: 200,
        body: {
          access_token: ACCESS_TOKEN,
          token_type: 'Bearer',
          expires_at: Math.floor(Date.now() / 1000) + 3600,
          extra: { scope: 'Mail.Read', instance_url: 'https://example.my.salesforce.com' },
        },
      }),
      'POST /v1/credentials/cr_empty/access-token': () => ({
        status: 200,
        body: { token_type: 'Bearer', expires_at: null, extra: {} },
      }),
    });
  });
  after(() => stub.close());
  const env = () => ({ TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: API_KEY });

  it('prints the access token and a newline on stdout, and nothing else anywhere', async () => {
    const result = await runCli(['token', 'cr_1'], { env: env() });
    assert.equal(result.code, 0);
    assert.equal(result.stdout, `${ACCESS_TOKEN}\n`);
    assert.equal(result.stderr, '');
    const request = stub.requests.at(-1);
    assert.equal(request?.method, 'POST');
    assert.equal(request?.path, '/v1/credentials/cr_1/access-token');
    assert.deepEqual(request?.body, {});
  });

  it('sends --min-validity as minValiditySeconds', async () => {
    const result = await runCli(['token', 'cr_1', '--min-validity', '300'], { env: env() });
    assert.equal(result.code, 0);
    assert.deepEqual(stub.requests.at(-1)?.body, { minValiditySeconds: 300 });
  });

  it('takes --url and --api-key before the command as well as after it', async () => {
    const before = await runCli(['--url', stub.url, '--api-key', API_KEY, 'token', 'cr_1']);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(before.stdout, `${ACCESS_TOKEN}\n`);
    const afterwards = await runCli(['token', 'cr_1', `--url=${stub.url}`, `--api-key=${API_KEY}`]);
    assert.equal(afterwards.code, 0, afterwards.stderr);
    assert.equal(afterwards.stdout, `${ACCESS_TOKEN}\n`);
  });

  it('fails (exit 1, empty stdout) when the answer holds no access token', async () => {
    const result = await runCli(['token', 'cr_empty'], { env: env() });
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /no usable access_token/);
  });
});
