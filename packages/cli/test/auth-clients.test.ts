import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { runCli } from './support/run-cli.ts';
import {
  API_KEY,
  apiError,
  authClient,
  type StubVault,
  startStubVault,
} from './support/stub-vault.ts';

const SECRET = 'cs~Very-Secret-Value_0123456789';

describe('tokenwarden auth-clients', () => {
  let stub: StubVault;
  before(async () => {
    stub = await startStubVault({
      'POST /v1/auth-clients': (request) => {
        const body = request.body as Record<string, unknown>;
        if (body.name === 'echo')
          // A misbehaving server that quotes the secret: the CLI must still not print it.
          return apiError(400, 'invalid_configuration', `bad secret ${String(body.clientSecret)}`);
        return {
          status: 201,
          body: authClient('ac_new', {
            name: body.name,
            providerId: body.providerId,
            clientId: body.clientId,
            hasClientSecret: typeof body.clientSecret === 'string',
          }),
        };
      },
      'GET /v1/auth-clients': () => ({
        status: 200,
        body: { authClients: [authClient('ac_1'), authClient('ac_2', { name: 'Sales' })] },
      }),
      'GET /v1/auth-clients/ac_1': () => ({ status: 200, body: authClient('ac_1') }),
      'DELETE /v1/auth-clients/ac_1': () => ({ status: 204 }),
      'DELETE /v1/auth-clients/ac_used': () =>
        apiError(409, 'conflict', 'auth client ac_used is used by 2 credentials'),
    });
  });
  after(() => stub.close());
  beforeEach(() => {
    stub.requests.length = 0;
  });
  const env = (extra: Record<string, string> = {}) => ({
    TOKENWARDEN_URL: stub.url,
    TOKENWARDEN_API_KEY: API_KEY,
    ...extra,
  });
  const addArgs = [
    'auth-clients',
    'add',
    '--name',
    'Outlook',
    '--provider',
    'microsoft',
    '--client-id',
    'client-123',
  ];

  it('add reads the secret from stdin, sends it, prints the id, and never prints the secret', async () => {
    const result = await runCli(
      [
        ...addArgs,
        '--client-secret-stdin',
        '--scope',
        'offline_access',
        '--scope',
        'Mail.Read',
        '--placeholder',
        'tenant=contoso.onmicrosoft.com',
        '--token-url',
        'https://login.example/token',
      ],
      { env: env(), stdin: `${SECRET}\n` },
    );
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.equal(result.stdout, 'ac_new\n');
    assert.match(result.stderr, /created auth client ac_new/);
    assert.ok(!`${result.stdout}${result.stderr}`.includes(SECRET));
    assert.deepEqual(stub.requests[0]?.body, {
      name: 'Outlook',
      providerId: 'microsoft',
      clientId: 'client-123',
      clientSecret: SECRET,
      scopes: ['offline_access', 'Mail.Read'],
      placeholders: { tenant: 'contoso.onmicrosoft.com' },
      endpoints: { tokenUrl: 'https://login.example/token' },
    });
  });

  it('add reads the secret from the named environment variable', async () => {
    const result = await runCli([...addArgs, '--client-secret-env', 'OUTLOOK_SECRET', '--json'], {
      env: env({ OUTLOOK_SECRET: SECRET }),
    });
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { id: string }).id, 'ac_new');
    assert.ok(!`${result.stdout}${result.stderr}`.includes(SECRET));
    const sent = stub.requests[0]?.body as { clientSecret?: string } | undefined;
    assert.equal(sent?.clientSecret, SECRET);
  });

  it('add refuses a secret given as a flag value, without echoing it or sending anything', async () => {
    for (const args of [
      [...addArgs, '--client-secret', SECRET],
      [...addArgs, `--client-secret=${SECRET}`],
    ]) {
      const result = await runCli(args, { env: env() });
      assert.equal(result.code, EXIT.usage);
      assert.match(result.stderr, /--client-secret-stdin or --client-secret-env/);
      assert.ok(!`${result.stdout}${result.stderr}`.includes(SECRET));
    }
    assert.equal(stub.requests.length, 0);
  });

  it('add redacts the secret even from an error message of the vault', async () => {
    const result = await runCli(
      [
        'auth-clients',
        'add',
        '--name',
        'echo',
        '--provider',
        'p',
        '--client-id',
        'c',
        '--client-secret-stdin',
      ],
      { env: env(), stdin: SECRET },
    );
    assert.equal(result.code, EXIT.failure);
    assert.match(result.stderr, /bad secret \[redacted\]/);
    assert.ok(!`${result.stdout}${result.stderr}`.includes(SECRET));
  });

  it('add: usage errors for missing options, an empty secret, an unset variable, a bad placeholder', async () => {
    const cases: [string[], RegExp, string?][] = [
      [['auth-clients', 'add', '--provider', 'microsoft'], /missing --name, --client-id/],
      [[...addArgs, '--client-secret-stdin'], /stdin held no secret/, ''],
      [[...addArgs, '--client-secret-env', 'NOPE'], /NOPE is not set/],
      [[...addArgs, '--placeholder', 'tenant'], /--placeholder must be <name>=<value>/],
      [[...addArgs, 'stray-value'], /no positional arguments/],
    ];
    for (const [args, message, stdin] of cases) {
      const result = await runCli(args, { env: env(), stdin: stdin ?? '' });
      assert.equal(result.code, EXIT.usage, args.join(' '));
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /stray-value/);
    }
    assert.equal(stub.requests.length, 0);
  });

  it('list prints a table, and --json output parses', async () => {
    const table = await runCli(['auth-clients', 'list'], { env: env() });
    assert.equal(table.code, EXIT.ok, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID +NAME +PROVIDER +CLIENT ID +SECRET +SCOPES +STATUS$/);
    assert.match(
      lines[1] ?? '',
      /^ac_1 +Outlook +microsoft +client-123 +yes +offline_access Mail\.Read +ok$/,
    );
    assert.equal(lines.length, 3);

    const json = await runCli(['auth-clients', 'list', '--json'], { env: env() });
    assert.equal(json.code, EXIT.ok);
    const parsed = JSON.parse(json.stdout) as { authClients: { id: string }[] };
    assert.deepEqual(
      parsed.authClients.map((c) => c.id),
      ['ac_1', 'ac_2'],
    );
  });

  it('show prints the fields and says the secret is write-only', async () => {
    const result = await runCli(['auth-clients', 'show', 'ac_1'], { env: env() });
    assert.equal(result.code, EXIT.ok);
    assert.match(result.stdout, /^client secret: +set \(write-only\)$/m);
    assert.match(result.stdout, /^placeholders: +tenant=common$/m);
  });

  it('remove deletes; a conflict exits 1 with a hint', async () => {
    const removed = await runCli(['auth-clients', 'remove', 'ac_1'], { env: env() });
    assert.equal(removed.code, EXIT.ok, removed.stderr);
    assert.equal(removed.stdout, '');
    assert.equal(stub.requests[0]?.method, 'DELETE');
    const used = await runCli(['auth-clients', 'remove', 'ac_used'], { env: env() });
    assert.equal(used.code, EXIT.failure);
    assert.match(used.stderr, /used by 2 credentials \(conflict\)/);
    assert.match(used.stderr, /credentials list --auth-client ac_used/);
  });
});
