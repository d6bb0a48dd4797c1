import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type AuthenticateChallenge,
  bearerError,
  parseWwwAuthenticate,
} from '../src/www-authenticate.ts';

/** Challenges as plain data (the parser's parameter maps have no prototype). */
function plain(challenges: readonly AuthenticateChallenge[] | undefined) {
  return challenges?.map((c) => ({ ...c, parameters: { ...c.parameters } }));
}

describe('parseWwwAuthenticate', () => {
  it('reads the RFC 6750 §3 examples', () => {
    assert.deepEqual(plain(parseWwwAuthenticate('Bearer realm="example"')), [
      { scheme: 'bearer', parameters: { realm: 'example' } },
    ]);
    assert.deepEqual(
      plain(
        parseWwwAuthenticate(
          'Bearer realm="example", error="invalid_token", error_description="The access token expired"',
        ),
      ),
      [
        {
          scheme: 'bearer',
          parameters: {
            realm: 'example',
            error: 'invalid_token',
            error_description: 'The access token expired',
          },
        },
      ],
    );
  });

  it('reads insufficient_scope with the scope it needs', () => {
    const challenges = parseWwwAuthenticate(
      'Bearer realm="example", error="insufficient_scope", error_description="The request requires higher privileges", scope="mail.read calendars.read"',
    );
    assert.deepEqual(plain(challenges), [
      {
        scheme: 'bearer',
        parameters: {
          realm: 'example',
          error: 'insufficient_scope',
          error_description: 'The request requires higher privileges',
          scope: 'mail.read calendars.read',
        },
      },
    ]);
    assert.equal(bearerError(challenges), 'insufficient_scope');
  });

  it('reads several challenges in one header', () => {
    assert.deepEqual(plain(parseWwwAuthenticate('Basic realm="x", Bearer error="invalid_token"')), [
      { scheme: 'basic', parameters: { realm: 'x' } },
      { scheme: 'bearer', parameters: { error: 'invalid_token' } },
    ]);
    // RFC 9110 §11.6.1's own example.
    assert.deepEqual(
      plain(
        parseWwwAuthenticate(
          'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
        ),
      ),
      [
        { scheme: 'newauth', parameters: { realm: 'apps', type: '1', title: 'Login to "apps"' } },
        { scheme: 'basic', parameters: { realm: 'simple' } },
      ],
    );
    assert.deepEqual(plain(parseWwwAuthenticate('Basic, Bearer')), [
      { scheme: 'basic', parameters: {} },
      { scheme: 'bearer', parameters: {} },
    ]);
  });

  it('reads a token68', () => {
    assert.deepEqual(plain(parseWwwAuthenticate('Negotiate abc==')), [
      { scheme: 'negotiate', parameters: {}, token68: 'abc==' },
    ]);
    assert.deepEqual(plain(parseWwwAuthenticate('Negotiate a+b/c-d._~9, Basic realm="r"')), [
      { scheme: 'negotiate', parameters: {}, token68: 'a+b/c-d._~9' },
      { scheme: 'basic', parameters: { realm: 'r' } },
    ]);
  });

  // Regression: a token68 with one "=" of padding, followed by another
  // challenge, was taken for the start of an auth-param and the whole header
  // was rejected.
  it('reads a token68 with single "=" padding followed by another challenge', () => {
    assert.deepEqual(plain(parseWwwAuthenticate('Negotiate YWJjZA=, Basic realm="r"')), [
      { scheme: 'negotiate', parameters: {}, token68: 'YWJjZA=' },
      { scheme: 'basic', parameters: { realm: 'r' } },
    ]);
    assert.deepEqual(plain(parseWwwAuthenticate('Negotiate a= , Basic')), [
      { scheme: 'negotiate', parameters: {}, token68: 'a=' },
      { scheme: 'basic', parameters: {} },
    ]);
  });

  it('unescapes quoted-pairs in quoted strings', () => {
    const [challenge] = parseWwwAuthenticate(
      'Bearer error_description="say \\"hi\\", then a backslash \\\\ and \\x"',
    ) ?? [undefined];
    assert.equal(challenge?.parameters.error_description, 'say "hi", then a backslash \\ and x');
  });

  it('lowercases scheme and parameter names, not parameter values', () => {
    assert.deepEqual(plain(parseWwwAuthenticate('BEARER Realm="Example", ERROR=Invalid_Token')), [
      { scheme: 'bearer', parameters: { realm: 'Example', error: 'Invalid_Token' } },
    ]);
  });

  it('accepts optional whitespace around "=" and commas, and empty list elements', () => {
    assert.deepEqual(
      plain(parseWwwAuthenticate('  Bearer realm = "a" ,error=b,  , Basic realm="c"  ')),
      [
        { scheme: 'bearer', parameters: { realm: 'a', error: 'b' } },
        { scheme: 'basic', parameters: { realm: 'c' } },
      ],
    );
  });

  it('returns undefined for a missing or malformed header', () => {
    for (const header of [
      null,
      undefined,
      '',
      '   ',
      ',',
      ', ,',
      '=',
      '"Bearer"',
      'Bearer realm="unterminated',
      'Bearer realm="a" error="b"',
      'Bearer realm="a"b',
      'Bearer =x',
      'Bearer\u0000',
      'Bearer@realm',
      '(Bearer)',
    ]) {
      assert.equal(parseWwwAuthenticate(header), undefined, JSON.stringify(header));
    }
  });

  it('does not let parameter names reach Object.prototype', () => {
    const [challenge] = parseWwwAuthenticate('Bearer __proto__="x", constructor=y') ?? [];
    assert.ok(challenge);
    assert.equal(Object.getPrototypeOf(challenge.parameters), null);
    assert.equal(challenge.parameters.constructor, 'y');
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });
});

describe('bearerError', () => {
  it('names the error of the first Bearer or DPoP challenge that has one', () => {
    assert.equal(
      bearerError(parseWwwAuthenticate('Bearer error="invalid_token"')),
      'invalid_token',
    );
    assert.equal(
      bearerError(
        parseWwwAuthenticate(
          'Basic error="not-bearer", Bearer realm="x", DPoP error="use_dpop_nonce"',
        ),
      ),
      'use_dpop_nonce',
    );
    assert.equal(
      bearerError(
        parseWwwAuthenticate('bearer error=insufficient_scope, Bearer error=invalid_token'),
      ),
      'insufficient_scope',
    );
  });

  it('is undefined without a Bearer error', () => {
    assert.equal(bearerError(undefined), undefined);
    assert.equal(bearerError([]), undefined);
    assert.equal(bearerError(parseWwwAuthenticate('Bearer realm="example"')), undefined);
    assert.equal(bearerError(parseWwwAuthenticate('Basic error="invalid_token"')), undefined);
    assert.equal(bearerError(parseWwwAuthenticate('Negotiate abc==')), undefined);
  });
});

// --- properties -------------------------------------------------------------

const RUNS = { numRuns: 1000 };

const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TOKEN68_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/';

const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 10 });
const token68 = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...TOKEN68_CHARS), minLength: 1, maxLength: 16 }),
    fc.integer({ min: 0, max: 2 }),
  )
  .map(([body, padding]) => body + '='.repeat(padding));
/** Quoted-string content: printable ASCII, tabs, and text beyond ASCII. */
const quotedContent = fc.string({
  unit: fc.oneof(
    fc.constantFrom(...' \t"\\,;=()'),
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
    fc.constantFrom('é', 'ß', '€', '日本', '🙂'),
  ),
  maxLength: 20,
});

interface GeneratedChallenge {
  scheme: string;
  params: { name: string; value: string; quoted: boolean }[];
  token68?: string;
}

const challenge: fc.Arbitrary<GeneratedChallenge> = fc.oneof(
  fc.record({
    scheme: token,
    params: fc.uniqueArray(
      fc.oneof(
        fc.record({ name: token, value: token, quoted: fc.boolean() }),
        fc.record({ name: token, value: quotedContent, quoted: fc.constant(true) }),
      ),
      { selector: (p) => p.name.toLowerCase(), maxLength: 4 },
    ),
  }),
  fc.record({ scheme: token, params: fc.constant<GeneratedChallenge['params']>([]), token68 }),
);

const WS = fc.constantFrom('', ' ', '  ', '\t');
const SPACE = fc.constantFrom(' ', '  ', '\t', ' \t');

/** Serializes with randomly chosen (but valid) whitespace. */
const serialized = fc.array(challenge, { minLength: 1, maxLength: 4 }).chain((challenges) =>
  fc
    .array(fc.tuple(WS, WS, SPACE), {
      minLength: 32,
      maxLength: 32,
    })
    .map((spaces) => {
      let i = 0;
      const next = () => spaces[i++ % spaces.length] ?? ['', '', ' '];
      const text = challenges
        .map((c) => {
          const [, , sp] = next();
          if (c.token68 !== undefined) return `${c.scheme}${sp}${c.token68}`;
          if (c.params.length === 0) return c.scheme;
          const params = c.params
            .map((p) => {
              const [before, after] = next();
              const value = p.quoted ? `"${p.value.replace(/(["\\])/g, '\\$1')}"` : p.value;
              return `${p.name}${before}=${after}${value}`;
            })
            .join(`${next()[0]},${next()[1]}`);
          return `${c.scheme}${sp}${params}`;
        })
        .join(`${next()[0]},${next()[1]}`);
      return { challenges, text };
    }),
);

/** Strings made from the pieces of the header grammar, valid or not. */
const grammarSoup = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        'Bearer',
        'Basic',
        'DPoP',
        'Negotiate',
        'realm',
        'error',
        'scope',
        '"invalid_token"',
        'insufficient_scope',
        'abc==',
        'x=',
        ' ',
        '\t',
        ',',
        ', ',
        '=',
        '==',
        '"',
        '\\',
        '\\"',
        '""',
        '/',
        '+',
        '\u0000',
        '\r\n',
        '\u00a0',
        '\u2028',
        '🙂',
      ),
      token,
      token68,
    ),
    { maxLength: 30 },
  )
  .map((pieces) => pieces.join(''));

function assertWellFormed(result: AuthenticateChallenge[] | undefined): void {
  if (result === undefined) return;
  assert.ok(Array.isArray(result) && result.length > 0);
  for (const c of result) {
    assert.equal(typeof c.scheme, 'string');
    assert.ok(c.scheme.length > 0);
    assert.equal(c.scheme, c.scheme.toLowerCase());
    assert.equal(typeof c.parameters, 'object');
    for (const [name, value] of Object.entries(c.parameters)) {
      assert.equal(name, name.toLowerCase());
      assert.equal(typeof value, 'string');
    }
    if (c.token68 !== undefined) assert.equal(typeof c.token68, 'string');
  }
}

describe('parseWwwAuthenticate, properties', () => {
  it('never throws on arbitrary unicode strings, and answers undefined or challenges', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (header) => {
        assertWellFormed(parseWwwAuthenticate(header));
      }),
      RUNS,
    );
  });

  it('never throws on strings made from the grammar’s pieces', () => {
    fc.assert(
      fc.property(grammarSoup, (header) => {
        assertWellFormed(parseWwwAuthenticate(header));
        const [challenges] = [parseWwwAuthenticate(header)];
        const error = bearerError(challenges);
        assert.ok(error === undefined || typeof error === 'string');
      }),
      RUNS,
    );
  });

  it('parses serialized challenges back to the same schemes, parameters and token68s', () => {
    fc.assert(
      fc.property(serialized, ({ challenges, text }) => {
        const parsed = parseWwwAuthenticate(text);
        assert.ok(parsed !== undefined, `could not parse ${JSON.stringify(text)}`);
        assert.deepEqual(
          plain(parsed),
          challenges.map((c) => ({
            scheme: c.scheme.toLowerCase(),
            parameters: Object.fromEntries(c.params.map((p) => [p.name.toLowerCase(), p.value])),
            ...(c.token68 === undefined ? {} : { token68: c.token68 }),
          })),
          JSON.stringify(text),
        );
      }),
      RUNS,
    );
  });
});
