import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { runCli } from './support/run-cli.ts';

const GROUPS = ['auth-clients', 'credentials', 'keys', 'component'];
const LEAVES = [
  ['serve'],
  ['auth-clients', 'add'],
  ['auth-clients', 'list'],
  ['auth-clients', 'show'],
  ['auth-clients', 'remove'],
  ['connect'],
  ['credentials', 'list'],
  ['credentials', 'show'],
  ['credentials', 'refresh'],
  ['credentials', 'delete'],
  ['token'],
  ['keys', 'rotate'],
  ['run'],
  ['verify'],
  ['component', 'validate'],
  ['demo'],
];

describe('help', () => {
  it('tokenwarden --help lists every command and the exit codes', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    assert.equal(result.stderr, '');
    for (const name of [
      'serve',
      'auth-clients',
      'connect',
      'credentials',
      'token',
      'keys',
      'run',
      'verify',
      'component',
      'demo',
    ])
      assert.match(result.stdout, new RegExp(`^  ${name} `, 'm'));
    for (const code of Object.values(EXIT))
      assert.match(result.stdout, new RegExp(`^  ${code} +\\S`, 'm'), `exit code ${code}`);
    assert.match(result.stdout, /TOKENWARDEN_API_KEY/);
    assert.deepEqual(await runCli(['-h']), result);
    assert.deepEqual(await runCli(['help']), result);
  });

  it('every command and subcommand has --help, -h and "help <command>" with usage, options and an example', async () => {
    await Promise.all(
      LEAVES.map(async (path) => {
        const result = await runCli([...path, '--help']);
        assert.equal(result.code, 0, path.join(' '));
        assert.equal(result.stderr, '');
        assert.match(result.stdout, new RegExp(`^tokenwarden ${path.join(' ')}`), path.join(' '));
        assert.match(result.stdout, /^Usage:/m, path.join(' '));
        assert.match(result.stdout, /^Options:/m, path.join(' '));
        assert.match(result.stdout, /^Examples?:/m, path.join(' '));
        assert.deepEqual(await runCli([...path, '-h']), result);
        assert.deepEqual(await runCli(['help', ...path]), result);
      }),
    );
  });

  it('help wins over other arguments, even invalid ones', async () => {
    const result = await runCli(['credentials', 'delete', '--bogus', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^tokenwarden credentials delete/);
  });

  it('each command group lists its subcommands', async () => {
    await Promise.all(
      GROUPS.map(async (group) => {
        const result = await runCli([group, '--help']);
        assert.equal(result.code, 0);
        assert.match(result.stdout, /^Subcommands:/m);
        for (const [, sub] of LEAVES.filter(([first]) => first === group))
          assert.match(result.stdout, new RegExp(`^  ${sub} `, 'm'), `${group} ${sub}`);
        assert.deepEqual(await runCli(['help', group]), result);
      }),
    );
  });

  it('docs/cli.md lists the same exit codes', async () => {
    const docs = await readFile(new URL('../../../docs/cli.md', import.meta.url), 'utf8');
    for (const code of Object.values(EXIT))
      assert.match(docs, new RegExp(`^\\| ${code} +\\|`, 'm'), `exit code ${code} in docs/cli.md`);
  });

  it('--version prints the version', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

describe('usage errors exit 2 with a pointer to the help', () => {
  const cases: [string, string[], RegExp][] = [
    ['no command', [], /^tokenwarden: keeps/],
    ['an unknown command', ['frobnicate'], /unknown command "frobnicate"/],
    ['a group without a subcommand', ['credentials'], /^tokenwarden credentials:/],
    ['an unknown subcommand', ['credentials', 'frob'], /unknown subcommand "frob"/],
    ['an unknown option', ['credentials', 'list', '--bogus'], /Unknown option '--bogus'/],
    ['a missing argument', ['token'], /missing <credential-id>/],
    ['an extra argument', ['credentials', 'show', 'cr_1', 'cr_2'], /unexpected argument: "cr_2"/],
    ['an option without its value', ['token', 'cr_1', '--min-validity'], /argument missing/],
    ['a malformed number', ['token', 'cr_1', '--min-validity', 'soon'], /--min-validity must be/],
    ['an unknown status', ['credentials', 'list', '--status', 'zombie'], /--status must be one of/],
    ['a zero timeout', ['connect', 'ac_1', '--timeout', '0'], /--timeout must be/],
    ['a URL that is not http', ['--url', 'ftp://x', 'credentials', 'list'], /http or https/],
    ['help for an unknown command', ['help', 'frobnicate'], /unknown command/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const result = await runCli(args, { env: { TOKENWARDEN_API_KEY: 'twk_x_y' } });
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, message);
      assert.match(result.stderr, /--help|^Usage:/m);
    });
  }
});
