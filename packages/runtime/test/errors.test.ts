import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  ComponentError,
  isRuntimeError,
  RUNTIME_ERROR_CODES,
  RuntimeError,
  type RuntimeErrorCode,
} from '../src/index.ts';

const DOC = new URL('../../../docs/runtime.md', import.meta.url);
const SRC = new URL('../src/', import.meta.url).pathname;

/** The rows of the `| code | exit code | meaning |` table in docs/runtime.md. */
function docTable(): { code: string; exitCode: number; meaning: string }[] {
  const lines = readFileSync(DOC, 'utf8').split('\n');
  const header = lines.findIndex((line) =>
    /^\|\s*code\s*\|\s*exit code\s*\|\s*meaning\s*\|/.test(line),
  );
  assert.ok(header >= 0, 'docs/runtime.md has no "| code | exit code | meaning |" table');
  const rows = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [code = '', exitCode = '', meaning = ''] = line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim());
    rows.push({ code: code.replace(/`/g, ''), exitCode: Number(exitCode), meaning });
  }
  return rows;
}

function sources(dir: string): string {
  return readdirSync(dir, { withFileTypes: true })
    .map((entry) =>
      entry.isDirectory()
        ? sources(join(dir, entry.name))
        : readFileSync(join(dir, entry.name), 'utf8'),
    )
    .join('\n');
}

describe('the runtime error registry', () => {
  it('docs/runtime.md lists the same codes, exit codes and meanings as RUNTIME_ERROR_CODES', () => {
    const documented = docTable();
    assert.deepEqual(
      documented.map((row) => row.code),
      Object.keys(RUNTIME_ERROR_CODES),
    );
    for (const row of documented) {
      const entry = RUNTIME_ERROR_CODES[row.code as RuntimeErrorCode];
      assert.equal(row.exitCode, entry.exitCode, row.code);
      assert.equal(row.meaning, entry.summary, row.code);
    }
  });

  it('every code is raised somewhere in the source (no dead entries)', () => {
    const text = sources(SRC).replace(
      /export const RUNTIME_ERROR_CODES = \{[\s\S]*?\n\} as const/,
      '',
    );
    for (const code of Object.keys(RUNTIME_ERROR_CODES)) {
      assert.ok(text.includes(`'${code}'`), `${code} is never raised`);
    }
  });

  it('errors carry code, exitCode and credentialId; ComponentError lists its problems', () => {
    const error = new RuntimeError('keys_not_stored', 'x', { credentialId: 'cr_1' });
    assert.equal(error.code, 'keys_not_stored');
    assert.equal(error.exitCode, 1);
    assert.equal(error.credentialId, 'cr_1');
    assert.ok(isRuntimeError(error));
    assert.ok(!isRuntimeError(new Error('x')));
    const invalid = new ComponentError('/c', ['/c/component.json: title: required', 'b']);
    assert.equal(invalid.code, 'invalid_component');
    assert.equal(
      invalid.message,
      'component /c is invalid:\n  - /c/component.json: title: required\n  - b',
    );
    assert.throws(() => (invalid.problems as string[]).push('c'));
  });
});
