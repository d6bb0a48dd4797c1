import { join } from 'node:path';
import { type AuthClient, loadProviderCatalog } from '@tokenwarden/oauth';
import type { FakeProvider } from '@tokenwarden/testing';
import { sql } from 'kysely';
import type { DestinationStream, Logger } from 'pino';
import { ConfigError, type VaultConfig } from './config.ts';
import { ConnectFlow } from './connect-flow.ts';
import { CredentialService } from './credential-service.ts';
import { KEY_FILE_NAME, KeyringHolder, loadKeyring } from './crypto/keyring.ts';
import { openDatabase, type VaultDatabase } from './db/database.ts';
import { LIVENESS_APPLICATION_NAME } from './db/holder-liveness.ts';
import { ALLOW_LOOPBACK_ENDPOINTS, endpointPolicyProblems } from './endpoint-policy.ts';
import { buildApp } from './http/app.ts';
import { createMetrics, type VaultMetrics } from './http/metrics.ts';
import { createLogger } from './logger.ts';
import { ProviderLimiter, unknownProviders } from './refresher/provider-limits.ts';
import { BackgroundRefresher } from './refresher.ts';
import type { AuthClientEndpoints } from './store/auth-clients.ts';
import { VaultStore } from './store/store.ts';
import { DEFAULT_TENANT_ID } from './store/tenants.ts';
import { TokenCache } from './store/token-cache.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';

export interface StartOptions {
  /** Where log lines go (tests capture them). Default: stdout. */
  logDestination?: DestinationStream;
  /** Replaces the global fetch for calls to providers (tests). */
  fetch?: typeof fetch;
}

export interface RunningVault {
  /** Where the vault listens, e.g. http://127.0.0.1:8080. */
  url: string;
  /** The public URL (redirect URI base). */
  publicUrl: string;
  /** Set only at the very first start without TOKENWARDEN_ADMIN_KEY: shown once, never stored. */
  firstAdminKey: string | undefined;
  /** The built-in demo provider, when enabled. */
  demoProvider: FakeProvider | undefined;
  /** The demo auth client's id, when enabled. */
  demoAuthClientId: string | undefined;
  store: VaultStore;
  logger: Logger;
  close(): Promise<void>;
}

export const DEMO_AUTH_CLIENT_ID = 'ac_demo';

/** Opens storage, brings the schema up to date, and serves the API, the connect flow and the UI. */
export async function startVault(
  config: VaultConfig,
  options: StartOptions = {},
): Promise<RunningVault> {
  const logger = createLogger(config.logLevel, options.logDestination);
  const catalog = await loadProviderCatalog();
  const unknownLimits = unknownProviders(config.providerLimits, (id) => catalog.has(id));
  if (unknownLimits.length > 0) {
    throw new ConfigError(
      unknownLimits.map(
        (id) =>
          `TOKENWARDEN_PROVIDER_LIMITS: "${id}" is not a provider of the catalog (GET /v1/providers lists them)`,
      ),
    );
  }
  const keys = await loadKeyring({ masterKeys: config.masterKeys, dataDir: config.dataDir });
  const cipher = new KeyringHolder(
    keys.keyring,
    keys.source === 'file' ? join(config.dataDir, KEY_FILE_NAME) : undefined,
  );
  if (keys.generated)
    logger.info(
      { path: join(config.dataDir, KEY_FILE_NAME) },
      'generated a master key (mode 0600); back it up with the database',
    );

  const database = await openDatabase({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    databaseSchema: config.databaseSchema,
  });
  const closers: Array<() => Promise<void>> = [() => database.close()];
  try {
    let tokenCache: TokenCache | undefined;
    if (config.tokenCacheSize > 0) {
      const cache = new TokenCache({
        maxEntries: config.tokenCacheSize,
        maxAgeMs: config.tokenCacheMaxAgeMs,
      });
      let wasLive = false;
      cache.attach(
        database.changeFeed({
          applicationName: `tokenwarden-change-feed ${config.instanceId}`,
          onState: (live, error) => {
            if (live) {
              logger.info(
                wasLive
                  ? 'credential change listener back; token cache on again'
                  : 'credential change listener live; token cache on',
              );
            } else {
              logger.warn(
                { err: error },
                'credential change listener down; token cache off until it is back',
              );
            }
            wasLive ||= live;
          },
        }),
      );
      closers.unshift(() => cache.stop());
      tokenCache = cache;
    }
    let refresher: BackgroundRefresher | undefined;
    let metrics: VaultMetrics | undefined;
    const liveness = config.holderLiveness
      ? database.holderLiveness({
          applicationName: `${LIVENESS_APPLICATION_NAME} ${config.instanceId}`,
          endLeases: (holder, namespaceKey) =>
            store.credentials.endLeasesOfHolder(holder, namespaceKey, Date.now()),
          onEnded: (holder, owners) => {
            if (owners.length === 0) return;
            metrics?.holderLeasesEnded.inc(owners.length);
            logger.info(
              { holder, leases: owners.length, owners: [...new Set(owners)] },
              'a vault process ended (its liveness lock was released); its refresh leases were ended for takeover',
            );
            refresher?.nudge();
          },
          onPollFailed: (error) =>
            logger.warn({ err: error }, 'liveness poll failed; polling again'),
          onEndFailed: (holder, error) =>
            logger.warn(
              { holder, err: error },
              'could not end the leases of a vault process that ended; trying again',
            ),
          onState: (live, error) => {
            if (live) logger.info('liveness lock held: this process’s leases end with it');
            else
              logger.warn(
                { err: error },
                'liveness lock not held: leases this process takes now only expire',
              );
          },
        })
      : undefined;
    const store = new VaultStore(database.db, cipher, catalog, {
      ...(tokenCache === undefined ? {} : { tokenCache }),
      ...(liveness === undefined ? {} : { leaseHolder: () => liveness.holder() }),
    });
    if (liveness !== undefined) {
      liveness.start();
      closers.unshift(() => liveness.stop());
    }
    const now = Date.now();
    await store.tenants.ensureDefaultTenant(now);
    let firstAdminKey: string | undefined;
    if (config.adminKey !== undefined) {
      await store.tenants.ensureApiKey(
        config.adminKey,
        DEFAULT_TENANT_ID,
        'admin (TOKENWARDEN_ADMIN_KEY)',
        true,
        now,
      );
    } else if (!(await store.tenants.hasAdminKey())) {
      firstAdminKey = (
        await store.tenants.createApiKey(DEFAULT_TENANT_ID, 'admin (first start)', true, now)
      ).key;
    }

    let publicUrl = config.publicUrl ?? '';
    metrics = createMetrics(store, Date.now, liveness);
    const limits = new ProviderLimiter(config.providerLimits);
    const service = new CredentialService({
      metrics,
      store,
      logger,
      instanceId: config.instanceId,
      leaseMs: config.leaseSeconds * 1000,
      tokenRequestTimeoutMs: config.tokenRequestTimeoutMs,
      limits,
      backoff: { baseMs: config.refreshBackoffMs, maxMs: config.refreshBackoffMaxMs },
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    });
    const connect = new ConnectFlow({
      store,
      service,
      keyring: cipher,
      logger,
      publicUrl: () => publicUrl,
      returnToAllowlist: config.returnToAllowlist,
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    });
    const app = await buildApp({
      store,
      service,
      connect,
      catalog,
      logger,
      metrics,
      publicUrl: config.publicUrl ?? 'http://127.0.0.1',
      ready: () => ping(database),
      webhookUrlPolicy: { allowInsecureHttp: config.webhookAllowInsecureHttp },
      endpointPolicy: { allowLoopback: config.allowLoopbackEndpoints },
    });
    closers.unshift(() => app.close());
    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : config.port;
    const url = `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host}:${port}`;
    publicUrl = config.publicUrl ?? url;

    let demoProvider: FakeProvider | undefined;
    if (config.demoProvider) {
      demoProvider = await startDemoProvider(store, config, publicUrl);
      const provider = demoProvider;
      closers.unshift(() => provider.close());
    }
    if (liveness !== undefined) {
      // The refresher's first claims (abandoned leases first) should carry the stamp.
      await liveness.ready(5_000).catch(() => undefined);
    }
    if (config.backgroundRefresh) {
      const started = new BackgroundRefresher({
        store,
        service,
        logger,
        metrics,
        limits,
        instanceId: config.instanceId,
        leaseMs: config.leaseSeconds * 1000,
        intervalMs: config.refreshIntervalMs,
        claimSize: config.refreshClaimSize,
      });
      started.start();
      refresher = started;
      closers.unshift(() => started.stop());
    }
    if (config.webhookDelivery) {
      const dispatcher = new WebhookDispatcher({
        store,
        logger,
        metrics,
        instanceId: config.instanceId,
        intervalMs: config.webhookIntervalMs,
        timeoutMs: config.webhookTimeoutMs,
        retryScheduleMs: config.webhookRetryScheduleMs,
        concurrency: config.webhookConcurrency,
        // Only a process that died mid-request loses its claim.
        leaseMs: config.webhookTimeoutMs + 30_000,
        retentionMs: config.webhookRetentionDays * 86_400_000,
        urlPolicy: { allowInsecureHttp: config.webhookAllowInsecureHttp },
      });
      dispatcher.start();
      closers.unshift(() => dispatcher.stop());
    }
    if (!config.allowLoopbackEndpoints) await warnOfLoopbackAuthClients(store, logger);
    logger.info(
      {
        url,
        publicUrl,
        database: database.description,
        instance: config.instanceId,
        // A setting that weakens security is said out loud, with where it came from.
        ...(config.allowLoopbackEndpoints
          ? {
              loopbackEndpoints: config.demoProvider
                ? `allowed: demo mode turns on ${ALLOW_LOOPBACK_ENDPOINTS}`
                : `allowed: ${ALLOW_LOOPBACK_ENDPOINTS} is on`,
            }
          : {}),
      },
      'vault listening',
    );
    return {
      url,
      publicUrl,
      firstAdminKey,
      demoProvider,
      demoAuthClientId: demoProvider === undefined ? undefined : DEMO_AUTH_CLIENT_ID,
      store,
      logger,
      close: async () => {
        for (const close of closers) await close().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const close of closers) await close().catch(() => undefined);
    throw error;
  }
}

async function ping(database: VaultDatabase): Promise<void> {
  await sql`select 1`.execute(database.db);
}

/**
 * Auth clients stored with endpoints on a loopback host while that was allowed
 * (before the setting existed, or in demo mode) stay in use: the API refuses only
 * new ones. The operator hears of them at start-up, to review, fix or delete them.
 */
async function warnOfLoopbackAuthClients(store: VaultStore, logger: Logger): Promise<void> {
  const rows = await store.db
    .selectFrom('auth_clients')
    .select(['id', 'tenant_id', 'name', 'provider_id', 'client_id', 'placeholders', 'endpoints'])
    .execute();
  const found = rows.filter((row) => {
    let client: AuthClient;
    try {
      // Resolved as a refresh would (placeholders, the profile's defaults); the secret
      // is not needed to know where the requests would go.
      client = store.authClients.validate({
        name: row.name,
        providerId: row.provider_id,
        clientId: row.client_id,
        clientSecret: 'unused',
        placeholders: JSON.parse(row.placeholders) as Record<string, string>,
        endpoints: JSON.parse(row.endpoints) as AuthClientEndpoints,
      });
    } catch {
      return false; // unusable anyway: its refreshes fail with the reason
    }
    return endpointPolicyProblems(client, { allowLoopback: false }).length > 0;
  });
  if (found.length === 0) return;
  logger.warn(
    { authClients: found.map((row) => ({ id: row.id, tenantId: row.tenant_id })) },
    `auth clients with endpoints on a loopback host, which the API refuses without ${ALLOW_LOOPBACK_ENDPOINTS}: they are still used; review them (GET /v1/auth-clients), then fix or delete them`,
  );
}

/**
 * The built-in demo provider: the fake provider with Microsoft's behaviour,
 * registered as the auth client "Demo provider" of the default tenant, so a
 * newcomer can connect an account with no client id or secret of their own.
 * It keeps its grants in memory: credentials from an earlier run cannot refresh
 * after a restart and turn `reauth_required`, as with a provider that forgot them.
 */
async function startDemoProvider(
  store: VaultStore,
  config: VaultConfig,
  publicUrl: string,
): Promise<FakeProvider> {
  // Loaded only for --demo: a production vault never runs the fake provider.
  const { startFakeProvider } = await import('@tokenwarden/testing');
  const provider = await startFakeProvider({
    personality: 'microsoft',
    accessTokenLifetimeSeconds: config.demoTokenLifetimeSeconds,
    clients: [
      {
        clientId: 'demo-client',
        clientSecret: 'demo-secret',
        redirectUris: [`${publicUrl}/oauth/callback`],
      },
    ],
  });
  const input = {
    name: 'Demo provider',
    providerId: 'microsoft',
    clientId: 'demo-client',
    clientSecret: 'demo-secret',
    scopes: ['offline_access', 'User.Read'],
    endpoints: {
      authorizationUrl: provider.authorizationEndpoint,
      tokenUrl: provider.tokenEndpoint,
      revocationUrl: provider.revocationEndpoint,
    },
  };
  const now = Date.now();
  const existing = await store.authClients.get(DEFAULT_TENANT_ID, DEMO_AUTH_CLIENT_ID);
  if (existing === undefined)
    await store.authClients.create(DEFAULT_TENANT_ID, input, now, DEMO_AUTH_CLIENT_ID);
  else await store.authClients.update(DEFAULT_TENANT_ID, DEMO_AUTH_CLIENT_ID, input, now);
  return provider;
}
