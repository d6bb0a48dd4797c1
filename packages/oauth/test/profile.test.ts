import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  endpointProblem,
  isLoopbackHost,
  ProfileError,
  parseProviderProfile,
} from '../src/index.ts';

const minimal = {
  id: 'acme',
  displayName: 'Acme',
  docs: ['https://acme.example.com/docs/oauth'],
  rotation: 'none',
  authorizationUrl: 'https://acme.example.com/oauth/authorize',
  tokenUrl: 'https://acme.example.com/oauth/token',
};

/** The problems a profile is rejected with (fails the test when it is accepted). */
function problemsOf(data: unknown): readonly string[] {
  try {
    parseProviderProfile(data, 'providers/acme.json');
  } catch (error) {
    assert.ok(error instanceof ProfileError, `expected a ProfileError, got ${error}`);
    assert.equal(error.code, 'invalid_profile');
    assert.equal(error.source, 'providers/acme.json');
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
    return error.problems;
  }
  assert.fail('expected the profile to be rejected');
}

function hasProblem(problems: readonly string[], path: string, pattern?: RegExp): boolean {
  return problems.some(
    (p) => p.startsWith(`${path}: `) && (pattern === undefined || pattern.test(p)),
  );
}

describe('parseProviderProfile: defaults', () => {
  it('fills in every default and freezes the result', () => {
    const profile = parseProviderProfile(minimal, 'test');
    assert.deepEqual(profile, {
      ...minimal,
      placeholders: {},
      scopes: { default: [], required: [], separator: ' ' },
      clientAuthentication: 'client_secret_post',
      pkce: true,
      parameters: { authorization: {}, codeExchange: {}, refresh: {} },
      sendScopeOnRefresh: false,
      rotation: 'none',
      refreshTokenExpected: true,
      expiredStatuses: [401],
      expiryMarginSeconds: 300,
      tokenResponse: { extraTokenTypes: [], errorAliases: {}, idToken: 'ignore' },
    });
    assert.ok(Object.isFrozen(profile));
  });

  it('fills defaults inside partly given objects', () => {
    const profile = parseProviderProfile(
      {
        ...minimal,
        scopes: { separator: ',' },
        parameters: { refresh: { format: 'json' } },
        tokenResponse: { defaultTokenType: 'bearer' },
      },
      'test',
    );
    assert.deepEqual(profile.scopes, { default: [], required: [], separator: ',' });
    assert.deepEqual(profile.parameters, {
      authorization: {},
      codeExchange: {},
      refresh: { format: 'json' },
    });
    assert.deepEqual(profile.tokenResponse, {
      defaultTokenType: 'bearer',
      extraTokenTypes: [],
      errorAliases: {},
      idToken: 'ignore',
    });
  });

  it('accepts the generic profile, whose URLs come from the auth client', () => {
    const { authorizationUrl: _a, tokenUrl: _t, ...generic } = minimal;
    const profile = parseProviderProfile({ ...generic, id: 'oauth2' }, 'test');
    assert.equal(profile.tokenUrl, undefined);
    assert.equal(profile.authorizationUrl, undefined);
  });

  it('accepts declared placeholders in URLs', () => {
    const profile = parseProviderProfile(
      {
        ...minimal,
        tokenUrl: 'https://{instance}.example.com/token',
        authorizationUrl: 'https://{instance}.example.com/authorize',
        placeholders: { instance: { description: 'instance', pattern: '[a-z]+' } },
      },
      'test',
    );
    assert.equal(profile.placeholders.instance?.pattern, '[a-z]+');
  });

  it('accepts http on loopback (the demo provider)', () => {
    const profile = parseProviderProfile(
      {
        ...minimal,
        authorizationUrl: 'http://127.0.0.1:4000/authorize',
        tokenUrl: 'http://localhost:4000/token',
      },
      'test',
    );
    assert.equal(profile.tokenUrl, 'http://localhost:4000/token');
  });
});

describe('parseProviderProfile: problems', () => {
  it('lists every schema problem at once, each with its path', () => {
    const problems = problemsOf({
      id: 'Bad_Id',
      docs: [],
      rotation: 'sometimes',
      clientAuthentication: 'private_key_jwt',
      expiredStatuses: [200],
      expiryMarginSeconds: -1,
      parameters: { refresh: { 'bad name': 'x' } },
    });
    for (const path of [
      'id',
      'displayName',
      'docs',
      'rotation',
      'clientAuthentication',
      'expiredStatuses.0',
      'expiryMarginSeconds',
      'parameters.refresh.bad name',
    ]) {
      assert.ok(hasProblem(problems, path), `no problem for ${path}:\n${problems.join('\n')}`);
    }
  });

  it('puts the source and each problem on its own line in the message', () => {
    try {
      parseProviderProfile({ ...minimal, id: 'Bad' }, 'providers/acme.json');
      assert.fail('expected a throw');
    } catch (error) {
      assert.ok(error instanceof ProfileError);
      assert.match(
        error.message,
        /^provider profile providers\/acme\.json is invalid:\n {2}- id: /,
      );
    }
  });

  it('rejects a non-object', () => {
    for (const data of [null, 'acme', 42, []]) {
      assert.ok(hasProblem(problemsOf(data), '(root)'), JSON.stringify(data));
    }
  });

  it('rejects an unknown member, at the top and nested', () => {
    const top = problemsOf({ ...minimal, tokenEndpoint: 'https://x.example.com/token' });
    assert.ok(
      top.some((p) => p.includes('tokenEndpoint')),
      top.join('\n'),
    );
    const nested = problemsOf({ ...minimal, tokenResponse: { idTokens: 'validate' } });
    assert.ok(
      nested.some((p) => p.startsWith('tokenResponse') && p.includes('idTokens')),
      nested.join('\n'),
    );
    const placeholder = problemsOf({
      ...minimal,
      placeholders: { x: { description: 'd', pattern: 'p', regex: 'p' } },
    });
    assert.ok(
      placeholder.some((p) => p.includes('regex')),
      placeholder.join('\n'),
    );
  });

  it('requires an issuer when id_tokens are validated', () => {
    const problems = problemsOf({ ...minimal, tokenResponse: { idToken: 'validate' } });
    assert.ok(hasProblem(problems, 'issuer', /validate/), problems.join('\n'));
    const ok = parseProviderProfile(
      { ...minimal, issuer: 'https://acme.example.com', tokenResponse: { idToken: 'validate' } },
      'test',
    );
    assert.equal(ok.tokenResponse.idToken, 'validate');
  });

  it('lists every semantic problem at once', () => {
    const problems = problemsOf({
      ...minimal,
      authorizationUrl: 'http://acme.example.com/authorize',
      tokenUrl: 'https://{tenant}.example.com/token',
      revocationUrl: 'ftp://acme.example.com/revoke',
      placeholders: { region: { description: 'region', pattern: '([a-z' } },
      tokenResponse: { idToken: 'validate' },
    });
    assert.ok(hasProblem(problems, 'authorizationUrl', /must use https/), problems.join('\n'));
    assert.ok(hasProblem(problems, 'tokenUrl', /\{tenant\}/), problems.join('\n'));
    assert.ok(hasProblem(problems, 'revocationUrl', /must use https/), problems.join('\n'));
    assert.ok(hasProblem(problems, 'placeholders.region.pattern', /regular expression/));
    assert.ok(hasProblem(problems, 'issuer'));
    assert.equal(problems.length, 5, problems.join('\n'));
  });

  it('regression: a URL placeholder named like an Object.prototype member must be declared too', () => {
    const problems = problemsOf({
      ...minimal,
      tokenUrl: 'https://{constructor}.example.com/token',
    });
    assert.ok(
      problems.includes('tokenUrl: uses {constructor}, which placeholders does not declare'),
      problems.join('\n'),
    );
  });

  it('wants both authorizationUrl and tokenUrl, or neither', () => {
    const { tokenUrl: _t, ...onlyAuthorization } = minimal;
    const problems = problemsOf(onlyAuthorization);
    assert.ok(
      problems.some((p) => p.startsWith('authorizationUrl and tokenUrl')),
      problems.join('\n'),
    );
  });

  it('rejects an error alias to a code that is not an RFC 6749 §5.2 code', () => {
    const problems = problemsOf({
      ...minimal,
      tokenResponse: { errorAliases: { bad_refresh_token: 'expired' } },
    });
    assert.ok(problems.some((p) => p.startsWith('tokenResponse.errorAliases.bad_refresh_token')));
  });

  it('rejects non-integer or non-positive lifetimes', () => {
    for (const value of [0, -5, 1.5, '3600']) {
      const problems = problemsOf({ ...minimal, defaultAccessTokenLifetimeSeconds: value });
      assert.ok(hasProblem(problems, 'defaultAccessTokenLifetimeSeconds'), String(value));
    }
  });

  it('rejects an empty expiredStatuses list and non-4xx statuses', () => {
    assert.ok(hasProblem(problemsOf({ ...minimal, expiredStatuses: [] }), 'expiredStatuses'));
    assert.ok(
      hasProblem(problemsOf({ ...minimal, expiredStatuses: [401, 500] }), 'expiredStatuses.1'),
    );
  });
});

describe('endpointProblem', () => {
  for (const url of [
    'https://login.example.com/oauth/token',
    'https://127.0.0.1/token',
    'http://127.0.0.1:8080/token',
    'http://127.1.2.3/token',
    'http://localhost/token',
    'http://LOCALHOST:3000/token',
    'http://[::1]:9000/token',
  ]) {
    it(`accepts ${url}`, () => {
      assert.equal(endpointProblem(url), undefined);
    });
  }

  for (const url of [
    'http://login.example.com/token',
    'http://localhost.evil.com/token',
    'http://127.0.0.1.nip.io/token',
    'http://0.0.0.0/token',
    'http://10.0.0.1/token',
    'ftp://127.0.0.1/token',
    'javascript:alert(1)',
    'file:///etc/passwd',
  ]) {
    it(`rejects ${url}, asking for https`, () => {
      assert.match(endpointProblem(url) ?? '', /must use https/);
    });
  }

  for (const value of ['', '/oauth/token', 'login.example.com/token', 'https://']) {
    it(`rejects ${JSON.stringify(value)}: not an absolute URL`, () => {
      assert.match(endpointProblem(value) ?? '', /is not an absolute URL/);
    });
  }

  it('names only the origin of a rejected URL, not its path or query', () => {
    const problem = endpointProblem('http://login.example.com/token?client_secret=abc');
    assert.equal(
      problem,
      '"http://login.example.com" must use https (plain http is allowed only on loopback addresses)',
    );
  });
});

describe('isLoopbackHost', () => {
  for (const host of ['127.0.0.1', '127.0.0.53', '127.255.255.254', 'localhost', '[::1]']) {
    it(`${host} is loopback`, () => {
      assert.equal(isLoopbackHost(host), true);
    });
  }
  for (const host of [
    'example.com',
    '128.0.0.1',
    '10.0.0.1',
    '0.0.0.0',
    '::1',
    'localhost.evil.com',
    '127.0.0.1.nip.io',
    'evil127.0.0.1',
    '127.0.0',
    '',
  ]) {
    it(`${JSON.stringify(host)} is not loopback`, () => {
      assert.equal(isLoopbackHost(host), false);
    });
  }
});
