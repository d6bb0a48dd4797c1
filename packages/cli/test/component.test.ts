// `tokenwarden component validate`, and bad components given to `run` and
// `verify`: every validation problem names its file and field, the exit code is
// 2, and nothing in the key store changes (a key file's bytes, a vault that is
// never called).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileKeyStore } from '@tokenwarden/runtime';
import { EXIT } from '../src/errors.ts';
import {
  BAD_COMPONENTS as BAD,
  brokenComponent,
  OUTLOOK_ENV as ENV,
  OUTLOOK,
} from './support/bad-components.ts';
import { runCli } from './support/run-cli.ts';
import { API_KEY, credential, type StubVault, startStubVault } from './support/stub-vault.ts';

let root: string;
let keyFile: string;
let stub: StubVault;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tokenwarden-cli-component-'));
  keyFile = join(root, 'keys.json');
  const keys = await FileKeyStore.open(keyFile);
  await keys.importKeys({
    access_token: 'at-0123456789-abcdef',
    refresh_token: 'rt-0123456789-abcdef',
    token_type: 'Bearer',
    expires_in: 3600,
    scope: 'Mail.Read',
  });
  await keys.close();
  stub = await startStubVault({
    'GET /v1/credentials/cr_1': () => ({ status: 200, body: credential('cr_1') }),
  });
});
after(async () => {
  await stub.close();
  await rm(root, { recursive: true, force: true });
});

describe('tokenwarden component validate', () => {
  it('a valid component: exit 0, its title, credential field and steps on stdout', async () => {
    const result = await runCli(['component', 'validate', OUTLOOK], { env: ENV });
    assert.equal(result.code, EXIT.ok, result.stderr);
    assert.match(result.stdout, /^component: +.*examples\/outlook: valid$/m);
    assert.match(result.stdout, /^title: +Microsoft Outlook \(example\)$/m);
    assert.match(
      result.stdout,
      /^credential: +cfg\.oauth, oauth2 token_uri https:\/\/login\.example\.com\/token$/m,
    );
    assert.match(result.stdout, /^actions: +readMail, readMailWithFetch$/m);
    assert.equal(result.stderr, '');
    assert.ok(!result.stdout.includes(ENV.MSAPP_CLIENT_SECRET));
  });

  it('--json describes it without the client secret', async () => {
    const result = await runCli(['component', 'validate', OUTLOOK, '--json'], { env: ENV });
    assert.equal(result.code, EXIT.ok, result.stderr);
    const answer = JSON.parse(result.stdout);
    assert.equal(answer.valid, true);
    assert.equal(answer.component.credentialField, 'oauth');
    assert.deepEqual(
      answer.component.steps.map((s: { name: string }) => s.name),
      ['readMail', 'readMailWithFetch'],
    );
    assert.ok(!result.stdout.includes(ENV.MSAPP_CLIENT_SECRET));
  });

  it('environment variables the component needs: a problem each, or warnings with --allow-missing-env', async () => {
    const strict = await runCli(['component', 'validate', OUTLOOK]);
    assert.equal(strict.code, EXIT.usage);
    assert.match(
      strict.stderr,
      /envVars\.MSAPP_CLIENT_ID: required, but the environment variable MSAPP_CLIENT_ID is not set/,
    );
    assert.match(strict.stderr, /credentials\.oauth2\.token_uri: uses \{\{MSAPP_TOKEN_URI\}\}/);
    const relaxed = await runCli(['component', 'validate', OUTLOOK, '--allow-missing-env']);
    assert.equal(relaxed.code, EXIT.ok, relaxed.stderr);
    assert.match(relaxed.stderr, /^warning: .*MSAPP_TOKEN_URI/m);
  });

  it('all four problems at once are all listed', async () => {
    const dir = await brokenComponent(root, 'all at once', (d) => {
      for (const [, edit] of BAD) edit(d);
    });
    const result = await runCli(['component', 'validate', dir, '--json'], { env: ENV });
    assert.equal(result.code, EXIT.usage);
    const answer = JSON.parse(result.stdout) as { valid: boolean; problems: string[] };
    assert.equal(answer.valid, false);
    assert.equal(answer.problems.length, 4, answer.problems.join('\n'));
    for (const [name, , problem] of BAD) assert.match(result.stderr, problem, name);
  });
});

describe('bad components: a clear message naming the file and the field, exit 2, no key touched', () => {
  for (const [name, edit, problem] of BAD) {
    it(name, async () => {
      const dir = await brokenComponent(root, name, edit);
      const file = join(dir, 'component.json');
      const before = await readFile(keyFile);
      const requests = stub.requests.length;
      const [validate, withKeyFile, withVault, verify] = await Promise.all([
        runCli(['component', 'validate', dir], { env: ENV }),
        runCli(['run', dir, 'readMailWithFetch', '--keys', keyFile], { env: ENV }),
        runCli(['run', dir, 'readMailWithFetch', '--credential', 'cr_1'], {
          env: { ...ENV, TOKENWARDEN_URL: stub.url, TOKENWARDEN_API_KEY: API_KEY },
        }),
        runCli(['verify', dir, '--keys', keyFile], { env: ENV }),
      ]);
      for (const [command, result] of Object.entries({
        validate,
        withKeyFile,
        withVault,
        verify,
      })) {
        assert.equal(result.code, EXIT.usage, `${command}: ${result.stderr}`);
        assert.match(result.stderr, new RegExp(`component ${dir} is invalid:`), command);
        // the file, then the field
        assert.ok(result.stderr.includes(`  - ${file}: `), `${command}: ${result.stderr}`);
        assert.match(result.stderr, problem, command);
        assert.equal(result.stdout, '', command);
      }
      assert.deepEqual(await readFile(keyFile), before, 'the key file is unchanged');
      assert.deepEqual(
        (await readdir(root)).filter((entry) => entry.endsWith('.lock')),
        [],
        'no lock was taken',
      );
      assert.equal(stub.requests.length, requests, 'the vault was never called');
    });
  }
});
