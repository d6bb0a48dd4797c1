import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type AuthClient,
  codeExchangeRequest,
  createAuthClient,
  createAuthorizationRequest,
  isTokenwardenError,
  JsonFileTokenStore,
  loadProviderCatalog,
  processCodeExchangeResponse,
  type RefreshStrategy,
  TokenManager,
  type TokenSet,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import { DEMO_HELP as HELP } from './demo-help.ts';

const PROFILE_FOR: Record<string, string> = {
  microsoft: 'microsoft',
  salesforce: 'salesforce',
  google: 'google',
  strict: 'oauth2',
  generic: 'oauth2',
};

const STRATEGIES: readonly RefreshStrategy[] = ['before-expiry', 'every-access', 'on-demand'];

function fingerprint(secret: string | undefined): string {
  return secret === undefined
    ? 'none'
    : `#${createHash('sha256').update(secret).digest('hex').slice(0, 8)}`;
}

function positive(name: string, value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0)
    throw new UsageError(`--${name} must be a positive number, got "${value}"`);
  return number;
}

class UsageError extends Error {}

export async function runDemo(argv: string[]): Promise<number> {
  let options: ReturnType<typeof parseDemoArgs>;
  try {
    options = parseDemoArgs(argv);
  } catch (error) {
    process.stderr.write(
      `tokenwarden demo: ${(error as Error).message}\nRun "tokenwarden demo --help" for usage.\n`,
    );
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const provider = await startFakeProvider({
    personality: options.personality,
    accessTokenLifetimeSeconds: options.tokenLifetime,
    autoApprove: true,
  });
  try {
    say(`fake provider (${options.personality}) listening on ${provider.url}`);
    const catalog = await loadProviderCatalog();
    const profileId = PROFILE_FOR[options.personality] ?? 'oauth2';
    const profile = catalog.get(profileId);
    if (profile === undefined)
      throw new Error(`provider profile ${profileId} is missing from the catalog`);
    const client = createAuthClient({
      profile,
      clientId: 'demo-client',
      clientSecret: 'demo-secret',
      endpoints: {
        authorizationUrl: provider.authorizationEndpoint,
        tokenUrl: provider.tokenEndpoint,
        revocationUrl: provider.revocationEndpoint,
      },
    });
    say(
      `auth client uses profile "${profile.id}" (rotation: ${profile.rotation}, scope on refresh: ${profile.sendScopeOnRefresh})`,
    );

    const first = await connect(client, provider);
    say(
      `connected: access token ${fingerprint(first.accessToken)}, refresh token ${fingerprint(first.refreshToken)}, valid ${first.lifetimeSeconds ?? '?'} s`,
    );

    await mkdir(options.dataDir, { recursive: true });
    const tokenFile = join(options.dataDir, 'tokens.json');
    await rm(tokenFile, { force: true });
    const store = await JsonFileTokenStore.open(tokenFile);
    say(`token file: ${tokenFile} (mode 0600, atomic replace)`);

    let failures = 0;
    for (const strategy of options.strategies) {
      failures += await runStrategy(strategy, client, provider, store, first, options, say);
    }
    const counters = provider.counters();
    say('');
    say(
      `provider counters: ${counters.refreshes} refreshes, ${counters.invalidGrants} invalid_grant, ${counters.reusedRefreshTokens} reused refresh tokens, ${counters.revokedGrants} revoked grants, ${counters.unauthorized} 401s served`,
    );
    say(failures === 0 ? 'every request succeeded.' : `${failures} requests failed.`);
    return failures === 0 ? 0 : 1;
  } finally {
    await provider.close();
  }
}

async function runStrategy(
  strategy: RefreshStrategy,
  client: AuthClient,
  provider: FakeProvider,
  store: JsonFileTokenStore,
  first: TokenSet,
  options: DemoOptions,
  say: (line: string) => void,
): Promise<number> {
  const credentialId = `demo-${strategy}`;
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s`;
  let refreshes = 0;
  let lastRefreshToken = first.refreshToken;
  const manager = new TokenManager({
    store,
    authClient: client,
    onTokens: ({ tokenSet, trigger, reason }) => {
      if (reason !== 'refreshed') {
        say(`  ${elapsed()}  stored the connected token set (${reason})`);
        return;
      }
      refreshes++;
      const rotated = tokenSet.refreshToken !== lastRefreshToken;
      lastRefreshToken = tokenSet.refreshToken;
      say(
        `  ${elapsed()}  refreshed (${trigger ?? 'requested'}): access ${fingerprint(tokenSet.accessToken)}, refresh ${fingerprint(tokenSet.refreshToken)}${rotated ? ' (rotated, stored before use)' : ' (kept)'}`,
      );
    },
  });
  // Each strategy starts from a fresh connection so that the runs are comparable.
  const tokenSet = strategy === STRATEGIES[0] ? first : await connect(client, provider);
  lastRefreshToken = tokenSet.refreshToken;
  await manager.save(credentialId, tokenSet);
  const fetchAuthorized = manager.authorizedFetch(credentialId, { strategy, marginSeconds: 1 });

  say('');
  say(`strategy ${strategy}: ${options.callers} callers for ${options.seconds} s`);
  const before = provider.counters();
  let ok = 0;
  let failed = 0;
  const deadline = started + options.seconds * 1000;
  const caller = async () => {
    while (Date.now() < deadline) {
      try {
        const response = await fetchAuthorized(provider.resourceUrl);
        await response.body?.cancel();
        if (response.ok) ok++;
        else {
          failed++;
          say(`  ${elapsed()}  request failed: HTTP ${response.status}`);
        }
      } catch (error) {
        failed++;
        say(
          `  ${elapsed()}  request failed: ${isTokenwardenError(error) ? `${error.code}: ${error.message}` : String(error)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  await Promise.all(Array.from({ length: options.callers }, caller));
  const after = provider.counters();
  say(
    `  => ${ok} requests ok, ${failed} failed; ${refreshes} refreshes (${after.refreshes - before.refreshes} at the provider), ${after.unauthorized - before.unauthorized} 401s answered by the resource and recovered`,
  );
  return failed;
}

/** The authorization-code flow with the fake provider's auto-approve mode standing in for the user. */
async function connect(client: AuthClient, provider: FakeProvider): Promise<TokenSet> {
  const redirectUri = `${provider.url}/demo-callback`;
  const pending = await createAuthorizationRequest(client, { redirectUri });
  const response = await fetch(pending.url, { redirect: 'manual' });
  const location = response.headers.get('location');
  await response.body?.cancel();
  if (response.status !== 302 || location === null) {
    throw new Error(`the fake provider did not redirect back (HTTP ${response.status})`);
  }
  const params = validateAuthorizationResponse(client, new URL(location), pending.state);
  const exchange = await codeExchangeRequest(client, params, pending);
  return processCodeExchangeResponse(client, exchange);
}

interface DemoOptions {
  personality: 'microsoft' | 'salesforce' | 'google' | 'strict' | 'generic';
  tokenLifetime: number;
  seconds: number;
  callers: number;
  strategies: readonly RefreshStrategy[];
  dataDir: string;
}

function parseDemoArgs(argv: string[]): DemoOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      personality: { type: 'string', default: 'microsoft' },
      'token-lifetime': { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      callers: { type: 'string', default: '5' },
      strategy: { type: 'string' },
      'data-dir': { type: 'string', default: join('.data', 'demo') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const personality = values.personality;
  if (!(personality in PROFILE_FOR)) {
    throw new UsageError(
      `--personality must be one of ${Object.keys(PROFILE_FOR).join(', ')}, got "${personality}"`,
    );
  }
  const strategy = values.strategy;
  if (strategy !== undefined && !STRATEGIES.includes(strategy as RefreshStrategy)) {
    throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`);
  }
  return {
    personality: personality as DemoOptions['personality'],
    tokenLifetime: positive('token-lifetime', values['token-lifetime']),
    seconds: positive('seconds', values.seconds),
    callers: Math.floor(positive('callers', values.callers)),
    strategies: strategy === undefined ? STRATEGIES : [strategy as RefreshStrategy],
    dataDir: values['data-dir'],
  };
}
