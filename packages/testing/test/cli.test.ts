import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

function run(args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function finish(
  child: ChildProcess,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Resolves with the first stdout line. */
async function firstLine(child: ChildProcess): Promise<string> {
  let buffered = '';
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    buffered += chunk.toString();
    const newline = buffered.indexOf('\n');
    if (newline !== -1) return buffered.slice(0, newline);
  }
  throw new Error('the CLI exited without printing its URLs');
}

describe('CLI', () => {
  it('prints one JSON line with the URLs and no secret, serves, and exits 0 on SIGTERM', async () => {
    const child = run([
      '--port',
      '0',
      '--personality',
      'microsoft',
      '--client',
      'app:top:secret',
      '--auto-approve',
      '--token-lifetime',
      '1',
    ]);
    const exited = finish(child);
    const line = await firstLine(child);
    assert.doesNotMatch(line, /secret/);
    const info = JSON.parse(line) as Record<string, unknown>;
    assert.equal(info.personality, 'microsoft');
    assert.deepEqual(info.clientIds, ['app']);
    const url = String(info.url);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(info.tokenEndpoint, `${url}/token`);
    assert.equal(info.resourceUrl, `${url}/api/me`);

    const res = await fetch(`${url}/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: 'x',
        client_id: 'app',
        client_secret: 'top:secret',
      }),
    });
    assert.equal(res.status, 400, 'the client with a colon in its secret is registered');
    const counters = (await (await fetch(`${url}/_control/counters`)).json()) as {
      tokenRequests: { refresh_token: number };
    };
    assert.equal(counters.tokenRequests.refresh_token, 1);

    child.kill('SIGTERM');
    const { code, stderr } = await exited;
    assert.equal(code, 0);
    assert.equal(stderr, '');
  });

  it('stops cleanly on SIGINT too', async () => {
    const child = run(['--port', '0']);
    const exited = finish(child);
    JSON.parse(await firstLine(child));
    child.kill('SIGINT');
    assert.equal((await exited).code, 0);
  });

  it('prints usage for --help', async () => {
    const { code, stdout } = await finish(run(['--help']));
    assert.equal(code, 0);
    assert.match(stdout, /^Usage: tokenwarden-fake-provider/);
    for (const flag of [
      '--personality',
      '--port',
      '--host',
      '--token-lifetime',
      '--grace',
      '--client',
      '--auto-approve',
    ]) {
      assert.ok(stdout.includes(flag), flag);
    }
  });

  it('exits 2 naming the flag at fault', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--bogus'], /--bogus/],
      [['--personality', 'okta'], /--personality must be one of/],
      [['--port', 'http'], /--port/],
      [['--token-lifetime', '0'], /--token-lifetime/],
      [['--grace', '-1'], /--grace/],
      [['--client', 'no-secret'], /--client must be <id>:<secret>/],
      [['--port'], /--port/],
      [['extra'], /extra/],
    ];
    await Promise.all(
      cases.map(async ([args, message]) => {
        const { code, stderr, stdout } = await finish(run(args));
        assert.equal(code, 2, args.join(' '));
        assert.match(stderr, message);
        assert.equal(stdout, '');
      }),
    );
  });
});
