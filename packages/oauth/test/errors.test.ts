import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import {
  createAuthClient,
  ERROR_CODES,
  type ErrorCode,
  isTokenwardenError,
  ProfileError,
  parseProviderProfile,
  processRefreshResponse,
  TokenEndpointError,
  TokenwardenError,
} from '../src/index.ts';

const DOC = new URL('../../../docs/errors.md', import.meta.url);

interface DocRow {
  code: string;
  status: number;
  retried: string;
  meaning: string;
}

/** The rows of the `| code | HTTP status | retried | meaning |` table. */
function docTable(text: string): DocRow[] {
  const lines = text.split('\n');
  const header = lines.findIndex((line) => /^\|\s*code\s*\|\s*HTTP status\s*\|/.test(line));
  assert.ok(
    header >= 0,
    'docs/errors.md has no "| code | HTTP status | retried | meaning |" table',
  );
  const rows: DocRow[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line
      .slice(1, line.trimEnd().endsWith('|') ? line.trimEnd().length - 1 : undefined)
      .split('|')
      .map((cell) => cell.trim());
    assert.equal(cells.length, 4, `malformed table row: ${line}`);
    const [code = '', status = '', retried = '', meaning = ''] = cells;
    rows.push({ code: code.replace(/^`|`$/g, ''), status: Number(status), retried, meaning });
  }
  return rows;
}

describe('ERROR_CODES and docs/errors.md', () => {
  const text = readFileSync(DOC, 'utf8');
  const rows = docTable(text);
  const registry = Object.keys(ERROR_CODES) as ErrorCode[];

  it('list the same codes, each once', () => {
    const documented = rows.map((row) => row.code);
    assert.equal(new Set(documented).size, documented.length, 'a code is listed twice');
    assert.deepEqual([...documented].sort(), [...registry].sort());
  });

  it('agree on HTTP status, retried and meaning', () => {
    for (const row of rows) {
      const entry = ERROR_CODES[row.code as ErrorCode];
      assert.ok(entry !== undefined, `${row.code} is not in ERROR_CODES`);
      assert.equal(row.status, entry.status, `${row.code}: HTTP status`);
      assert.equal(row.retried, entry.transient ? 'yes' : 'no', `${row.code}: retried`);
      assert.equal(row.meaning, entry.summary, `${row.code}: meaning`);
    }
  });

  it('explain what to do for every code, in a section of its own', () => {
    for (const code of registry) {
      assert.match(text, new RegExp(`^### \`${code}\`$`, 'm'), `no section for ${code}`);
    }
  });

  it('use HTTP error statuses and one-line summaries', () => {
    for (const [code, entry] of Object.entries(ERROR_CODES)) {
      assert.ok(entry.status >= 400 && entry.status <= 599, `${code}: status ${entry.status}`);
      assert.ok(entry.summary.length > 0 && !entry.summary.includes('\n'), code);
      assert.ok(!entry.summary.includes('|'), `${code}: a summary cannot hold a table pipe`);
    }
  });

  it('retry only outages and store conflicts, never a lost grant', () => {
    assert.equal(ERROR_CODES.token_endpoint_unavailable.transient, true);
    assert.equal(ERROR_CODES.reauth_required.transient, false);
    assert.equal(ERROR_CODES.client_misconfigured.transient, false);
    assert.equal(ERROR_CODES.invalid_token_response.transient, false);
  });
});

describe('TokenEndpointError', () => {
  const BODY_MARKER = 'body-secret-marker-9d1e';

  function endpointError(): TokenEndpointError {
    return new TokenEndpointError('reauth_required', 'token endpoint answered invalid_grant', {
      oauthError: 'invalid_grant',
      errorDescription: 'Token has been expired or revoked.',
      status: 400,
      retryAfterSeconds: 5,
      response: new Response(JSON.stringify({ refresh_token: BODY_MARKER }), { status: 400 }),
    });
  }

  it('keeps the response, non-enumerable', () => {
    const error = endpointError();
    assert.ok(error.response instanceof Response);
    assert.equal(error.response.status, 400);
    assert.equal(Object.prototype.propertyIsEnumerable.call(error, 'response'), false);
    assert.ok(!Object.keys(error).includes('response'));
  });

  it('carries the classification in enumerable fields', () => {
    const error = endpointError();
    assert.equal(error.code, 'reauth_required');
    assert.equal(error.oauthError, 'invalid_grant');
    assert.equal(error.errorDescription, 'Token has been expired or revoked.');
    assert.equal(error.status, 400);
    assert.equal(error.retryAfterSeconds, 5);
    assert.equal(error.transient, false);
    assert.equal(error.name, 'TokenEndpointError');
    assert.ok(error instanceof TokenwardenError);
    assert.ok(error instanceof Error);
    assert.ok(isTokenwardenError(error));
  });

  it('never shows a body through JSON.stringify, inspect or console formatting', () => {
    const error = endpointError();
    const json = JSON.stringify(error);
    assert.ok(!json.includes(BODY_MARKER), json);
    assert.ok(!json.includes('"response"'), json);
    assert.deepEqual(JSON.parse(json), {
      code: 'reauth_required',
      name: 'TokenEndpointError',
      oauthError: 'invalid_grant',
      errorDescription: 'Token has been expired or revoked.',
      status: 400,
      retryAfterSeconds: 5,
      inDoubt: false,
    });
    for (const text of [
      inspect(error),
      inspect(error, { showHidden: true, depth: Number.POSITIVE_INFINITY }),
      format('%o', error),
      format('%O', error),
      String(error),
      error.stack ?? '',
    ]) {
      assert.ok(!text.includes(BODY_MARKER), text);
    }
  });

  it('from a real classification: the body stays out of every printed form', async () => {
    const client = createAuthClient({
      profile: parseProviderProfile(
        {
          id: 'test',
          displayName: 'Test',
          docs: ['https://example.com/docs'],
          rotation: 'none',
          authorizationUrl: 'http://127.0.0.1:1/authorize',
          tokenUrl: 'http://127.0.0.1:1/token',
        },
        'test',
      ),
      clientId: 'client-1',
      clientSecret: 'client-secret-1',
    });
    const response = Response.json(
      { error: 'invalid_grant', stray_refresh_token: BODY_MARKER },
      { status: 400 },
    );
    const error = await processRefreshResponse(client, response).then(
      () => assert.fail('expected a TokenEndpointError'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof TokenEndpointError);
    assert.equal(error.response, response);
    for (const text of [JSON.stringify(error), inspect(error), format('%o', error)]) {
      assert.ok(!text.includes(BODY_MARKER), text);
    }
  });

  it('defaults every optional field to undefined', () => {
    const error = new TokenEndpointError('token_endpoint_unavailable', 'down');
    assert.equal(error.response, undefined);
    assert.equal(error.oauthError, undefined);
    assert.equal(error.status, undefined);
    assert.equal(error.retryAfterSeconds, undefined);
    assert.equal(error.cause, undefined);
    assert.equal(error.transient, true);
  });

  it('chains a cause when given one', () => {
    const cause = new TypeError('fetch failed');
    const error = new TokenEndpointError('token_endpoint_unavailable', 'down', { cause });
    assert.equal(error.cause, cause);
  });
});

describe('TokenwardenError.forCredential', () => {
  it('names the credential in the field and the message, and returns the same error', () => {
    const error = new TokenwardenError('reauth_required', 'the grant is gone');
    const named = error.forCredential('cred-42');
    assert.equal(named, error);
    assert.equal(error.credentialId, 'cred-42');
    assert.equal(error.message, 'credential cred-42: the grant is gone');
  });

  it('names it once: a second call changes nothing', () => {
    const error = new TokenwardenError('reauth_required', 'the grant is gone');
    error.forCredential('cred-42').forCredential('cred-99');
    assert.equal(error.credentialId, 'cred-42');
    assert.equal(error.message, 'credential cred-42: the grant is gone');
  });

  it('keeps a credential given at construction', () => {
    const error = new TokenwardenError('credential_not_found', 'no such credential', {
      credentialId: 'cred-1',
    });
    error.forCredential('cred-2');
    assert.equal(error.credentialId, 'cred-1');
    assert.equal(error.message, 'no such credential');
  });

  it('works on subclasses and keeps their fields', () => {
    const error = new TokenEndpointError('token_endpoint_unavailable', 'HTTP 503', { status: 503 });
    const named = error.forCredential('cred-7');
    assert.ok(named instanceof TokenEndpointError);
    assert.equal(named.status, 503);
    assert.match(named.message, /^credential cred-7: HTTP 503$/);
  });
});

describe('ProfileError', () => {
  it('lists every problem in the message and freezes the list', () => {
    const error = new ProfileError('providers/x.json', ['id: bad', 'docs: required']);
    assert.equal(error.code, 'invalid_profile');
    assert.equal(error.name, 'ProfileError');
    assert.equal(error.source, 'providers/x.json');
    assert.deepEqual(error.problems, ['id: bad', 'docs: required']);
    assert.ok(Object.isFrozen(error.problems));
    assert.match(error.message, /providers\/x\.json/);
    assert.match(error.message, /\n {2}- id: bad\n {2}- docs: required$/);
  });
});

describe('isTokenwardenError', () => {
  it('tells our errors from others', () => {
    assert.equal(isTokenwardenError(new TokenwardenError('store_conflict', 'x')), true);
    assert.equal(isTokenwardenError(new Error('x')), false);
    assert.equal(isTokenwardenError({ code: 'store_conflict', message: 'x' }), false);
    assert.equal(isTokenwardenError(undefined), false);
  });
});
