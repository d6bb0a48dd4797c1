import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { loadComponent } from '../src/component.ts';
import { ComponentError, RuntimeError } from '../src/errors.ts';
import { resolveTemplates, templateVariables } from '../src/internal/templating.ts';
import { CONTRACT_ENV, FIXTURES, tempFolder } from './support/helpers.ts';

async function problemsOf(dir: string, options = {}): Promise<readonly string[]> {
  try {
    await loadComponent(dir, options);
  } catch (error) {
    assert.ok(error instanceof ComponentError, String(error));
    assert.equal(error.code, 'invalid_component');
    assert.equal(error.exitCode, 2);
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
    return error.problems;
  }
  assert.fail('the component loaded');
}

/** A component folder in a temporary directory. */
async function folder(descriptor: unknown, files: Record<string, string> = {}): Promise<string> {
  const dir = await tempFolder();
  await writeFile(
    join(dir, 'component.json'),
    typeof descriptor === 'string' ? descriptor : JSON.stringify(descriptor, null, 2),
  );
  await writeFile(join(dir, 'package.json'), '{"private": true}');
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

const PROCESS = 'exports.process = async function p() { return { body: {} }; };\n';

describe('loadComponent', () => {
  it('loads a valid component: steps, credential field, oauth2 block with templates resolved', async () => {
    const component = await loadComponent(join(FIXTURES, 'contract'), { env: CONTRACT_ENV });
    assert.equal(component.title, 'Contract fixture');
    assert.equal(component.credentialField, 'oauth');
    assert.equal(component.step('poll').kind, 'trigger');
    assert.equal(component.step('returnValue').kind, 'action');
    assert.ok(component.step('returnValue').main.endsWith('/lib/actions/returnValue.js'));
    assert.ok(component.verifyCredentialsPath?.endsWith('verifyCredentials.js'));
    assert.equal(component.oauth2?.clientId, 'demo-client');
    assert.equal(component.oauth2?.clientSecret, 'demo-secret-value');
    assert.equal(component.oauth2?.tokenUri, 'http://127.0.0.1:9/token');
    assert.deepEqual(component.oauth2?.scopes, ['profile']);
    assert.deepEqual(component.warnings, []);
  });

  it('never shows the client secret when the component or its oauth2 block is printed', async () => {
    const component = await loadComponent(join(FIXTURES, 'contract'), { env: CONTRACT_ENV });
    for (const text of [
      JSON.stringify(component.oauth2),
      inspect(component.oauth2),
      inspect(component),
      JSON.stringify(component.descriptor),
    ]) {
      assert.ok(!text.includes('demo-secret-value'), text);
    }
    assert.ok(!Object.keys(component.oauth2 ?? {}).includes('clientSecret'));
  });

  it('reports every problem at once, each naming the file and the field', async () => {
    const dir = join(FIXTURES, 'invalid');
    const file = join(dir, 'component.json');
    const problems = await problemsOf(dir, { env: {} });
    const expect = (field: string, pattern: RegExp) => {
      const found = problems.find((p) => p.startsWith(`${file}: ${field}: `));
      assert.ok(found, `no problem for ${field} in:\n${problems.join('\n')}`);
      assert.match(found, pattern);
    };
    expect('title', /required/);
    expect('actions.noMain.main', /required/);
    expect('actions.missingFile.main', /"\.\/lib\/nothing-here\.js" does not exist/);
    expect('triggers.outside.main', /outside the component folder/);
    expect('credentials.oauth2.client_id', /required/);
    expect('credentials.oauth2.auth_uri', /required/);
    expect('credentials.oauth2.token_uri', /required/);
    expect(
      'credentials.fields.oauth.viewClass',
      /unknown view class "OauthFieldView" \(did you mean "OAuthFieldView"\?\)/,
    );
    expect('credentials.fields.region.viewClass', /required/);
    expect('actions.fine.fields.q.viewClass', /"TextFieldVeiw" \(did you mean "TextFieldView"\?\)/);
    assert.equal(problems.length, 10, problems.join('\n'));
    // the secret written in the file is not repeated in any message
    assert.ok(!problems.join('\n').includes('s3cr3t-in-the-file'));
  });

  it('reports modules that do not load, lack process, or are bare generators, with file and field', async () => {
    const dir = join(FIXTURES, 'bad-modules');
    const file = join(dir, 'component.json');
    const problems = await problemsOf(dir);
    assert.equal(problems.length, 4, problems.join('\n'));
    const find = (pattern: RegExp) => problems.find((p) => pattern.test(p));
    assert.match(
      find(/noProcess\.js/) ?? '',
      new RegExp(`exports no process function \\(actions\\.noProcess\\.main in ${file}\\)`),
    );
    assert.match(
      find(/throwsOnLoad\.js/) ?? '',
      /failed to load \(actions\.throwsOnLoad\.main in .*\): Cannot find module 'a-module-that-is-not-installed'/,
    );
    assert.match(find(/generator\.js/) ?? '', /generator function .*wrap its body in co/);
    assert.match(find(/verifyCredentials\.js/) ?? '', /exports no function/);
  });

  it('loadModules: false checks component.json only, and a step fails when it is loaded', async () => {
    const component = await loadComponent(join(FIXTURES, 'bad-modules'), { loadModules: false });
    await assert.rejects(component.loadStep('noProcess'), /exports no process function/);
  });

  it('a folder without component.json, and a component.json that is not JSON', async () => {
    const empty = await tempFolder();
    assert.match((await problemsOf(empty))[0] ?? '', /component\.json: not found/);
    const broken = await folder('{ "title": ');
    assert.match((await problemsOf(broken))[0] ?? '', /component\.json: not valid JSON/);
    const array = await folder('[]');
    assert.match((await problemsOf(array))[0] ?? '', /\(root\): must be a JSON object/);
  });

  it('a component with no steps, a name used twice, and two OAuthFieldView fields', async () => {
    const none = await folder({ title: 'x', description: 'x' });
    assert.match((await problemsOf(none)).join('\n'), /declares no action and no trigger/);
    const twice = await folder(
      {
        title: 'x',
        description: 'x',
        credentials: {
          fields: {
            a: { label: 'a', viewClass: 'OAuthFieldView' },
            b: { label: 'b', viewClass: 'OAuthFieldView' },
          },
        },
        actions: { same: { title: 's', main: './a.js' } },
        triggers: { same: { title: 's', main: './a.js' } },
      },
      { 'a.js': PROCESS },
    );
    const problems = (await problemsOf(twice)).join('\n');
    assert.match(problems, /triggers\.same: the name is also used by actions\.same/);
    assert.match(problems, /credentials\.fields: 2 fields use OAuthFieldView \(a, b\)/);
  });

  it('the credential field is the OAuthFieldView field, whatever its name', async () => {
    const dir = await folder(
      {
        title: 'x',
        description: 'x',
        credentials: { fields: { account: { label: 'A', viewClass: 'OAuthFieldView' } } },
        actions: { a: { title: 'a', main: 'a.js' } },
      },
      { 'a.js': PROCESS },
    );
    assert.equal((await loadComponent(dir)).credentialField, 'account');
  });

  it('oauth2 endpoints must be https, or http on a loopback address; client_auth is checked', async () => {
    const dir = await folder(
      {
        title: 'x',
        description: 'x',
        credentials: {
          fields: { oauth: { label: 'A', viewClass: 'OAuthFieldView' } },
          oauth2: {
            client_id: 'id',
            client_secret: 'secret',
            auth_uri: 'http://login.example.com/authorize',
            token_uri: 'not a url',
            client_auth: 'basic',
          },
        },
        actions: { a: { title: 'a', main: 'a.js' } },
      },
      { 'a.js': PROCESS },
    );
    const problems = (await problemsOf(dir)).join('\n');
    assert.match(problems, /credentials\.oauth2\.auth_uri: .*must use https/);
    assert.match(problems, /credentials\.oauth2\.token_uri: "not a url" is not an absolute URL/);
    assert.match(
      problems,
      /credentials\.oauth2\.client_auth: must be "client_secret_post" or "client_secret_basic"/,
    );
  });

  it('warnings: no description, a step without title, an oauth2 block without an OAuthFieldView field', async () => {
    const dir = await folder(
      {
        title: 'x',
        credentials: {
          oauth2: {
            client_id: 'id',
            client_secret: 'secret',
            auth_uri: 'https://login.example.com/authorize',
            token_uri: 'https://login.example.com/token',
          },
        },
        actions: { a: { main: 'a.js' } },
      },
      { 'a.js': PROCESS },
    );
    const component = await loadComponent(dir);
    const warnings = component.warnings.join('\n');
    assert.match(warnings, /description: missing/);
    assert.match(warnings, /actions\.a\.title: missing/);
    assert.match(warnings, /no OAuthFieldView field/);
    assert.match(warnings, /credentials\.oauth2\.scopes: no scopes/);
    assert.equal(component.credentialField, 'oauth');
  });
});

describe('{{ENV}} templating', () => {
  it('resolves every {{NAME}} in the strings of a JSON value, spaces allowed', () => {
    const { value, missing } = resolveTemplates(
      { a: '{{A}}', b: ['x-{{ B }}-y', 3], c: { d: '{{A}}{{A}}' }, e: null },
      { A: 'one', B: 'two' },
    );
    assert.deepEqual(value, { a: 'one', b: ['x-two-y', 3], c: { d: 'oneone' }, e: null });
    assert.deepEqual(missing, []);
  });

  it('reports each missing variable once, and leaves it as written; an empty value counts', () => {
    const { value, missing } = resolveTemplates({ a: '{{A}} {{B}} {{A}}', c: '{{C}}' }, { C: '' });
    assert.deepEqual(missing, ['A', 'B']);
    assert.deepEqual(value, { a: '{{A}} {{B}} {{A}}', c: '' });
    assert.deepEqual(templateVariables({ x: '{{X}}', y: ['{{Y}}'] }), ['X', 'Y']);
  });

  it('a variable not set is a problem naming the variable, the field and the file', async () => {
    const dir = join(FIXTURES, 'contract');
    const problems = await problemsOf(dir, {
      env: { FIXTURE_CLIENT_ID: 'id', FIXTURE_PROVIDER: 'http://127.0.0.1:9' },
    });
    assert.deepEqual(problems, [
      `${join(dir, 'component.json')}: credentials.oauth2.client_secret: uses {{FIXTURE_CLIENT_SECRET}}, but the environment variable FIXTURE_CLIENT_SECRET is not set`,
    ]);
  });

  it('requireEnv: false turns a missing variable into a warning, and an offline refresh then fails clearly', async () => {
    const component = await loadComponent(join(FIXTURES, 'contract'), {
      env: {},
      requireEnv: false,
    });
    assert.equal(component.warnings.length, 3, component.warnings.join('\n'));
    assert.match(component.warnings.join('\n'), /FIXTURE_PROVIDER/);
    const { createComponentAuthClient } = await import('../src/auth-client.ts');
    await assert.rejects(createComponentAuthClient(component), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, 'missing_env_variable');
      assert.match(error.message, /credentials\.oauth2\.client_id/);
      return true;
    });
  });

  it('a required envVars entry must be set', async () => {
    const dir = await folder(
      {
        title: 'x',
        description: 'x',
        envVars: { API_HOST: { required: true, description: 'host' }, OPTIONAL: {} },
        actions: { a: { title: 'a', main: 'a.js' } },
      },
      { 'a.js': PROCESS },
    );
    assert.match(
      (await problemsOf(dir, { env: {} })).join('\n'),
      /envVars\.API_HOST: required, but the environment variable API_HOST is not set/,
    );
    await loadComponent(dir, { env: { API_HOST: 'h' } });
  });
});
