import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { ERROR_CODES, TokenwardenError } from '@tokenwarden/oauth';
import { toHttpError, VAULT_ERROR_CODES, VaultError } from '../src/errors.ts';

const DOC = new URL('../../../docs/errors.md', import.meta.url);

describe('vault error registry', () => {
  it('lists the same codes, statuses and meanings as docs/errors.md', async () => {
    const text = await readFile(DOC, 'utf8');
    const section = text.slice(text.indexOf("## The vault's own codes"));
    const rows = [...section.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|\s*(.+?)\s*\|$/gm)].map(
      (m) => ({
        code: m[1],
        status: Number(m[2]),
        summary: m[3],
      }),
    );
    assert.deepEqual(
      rows,
      Object.entries(VAULT_ERROR_CODES).map(([code, entry]) => ({
        code,
        status: entry.status,
        summary: entry.summary,
      })),
    );
  });

  it('has no code that the oauth registry also defines', () => {
    for (const code of Object.keys(VAULT_ERROR_CODES))
      assert.equal(code in ERROR_CODES, false, code);
  });

  it('maps vault and oauth errors to their status and code, and hides unknown errors', () => {
    assert.deepEqual(toHttpError(new VaultError('forbidden', 'no')), {
      status: 403,
      code: 'forbidden',
      message: 'no',
    });
    assert.deepEqual(toHttpError(new TokenwardenError('reauth_required', 'gone')), {
      status: 409,
      code: 'reauth_required',
      message: 'gone',
    });
    const hidden = toHttpError(new Error('db password is hunter2'));
    assert.equal(hidden.status, 500);
    assert.equal(hidden.code, 'internal_error');
    assert.doesNotMatch(hidden.message, /hunter2/);
    assert.equal(
      toHttpError(Object.assign(new Error('down'), { code: 'ECONNREFUSED' })).code,
      'database_unavailable',
    );
  });
});
