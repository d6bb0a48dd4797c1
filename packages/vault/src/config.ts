import { resolve } from 'node:path';
import { z } from 'zod';
import {
  DEFAULT_PROVIDER_LIMIT,
  type ProviderLimits,
  parseProviderLimits,
} from './refresher/provider-limits.ts';
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from './webhooks/retry.ts';

/**
 * The vault's settings, from the environment and command-line flags (flags win),
 * validated once at start-up: a bad setting stops start-up with every problem
 * listed, then the result is frozen.
 */
export interface VaultConfig {
  /** Where SQLite, the generated master key and the generated admin key live. */
  readonly dataDir: string;
  /** PostgreSQL connection string; SQLite in dataDir when absent. */
  readonly databaseUrl: string | undefined;
  /** PostgreSQL schema (tests give each run its own). */
  readonly databaseSchema: string;
  readonly host: string;
  readonly port: number;
  /**
   * The URL users and providers reach this vault at (redirect URI base). Absent:
   * http://<host>:<port>, with the port the server really got when PORT is 0.
   */
  readonly publicUrl: string | undefined;
  /** Encryption keys from the environment: `kid:base64key,…`, the first encrypts. */
  readonly masterKeys: string | undefined;
  /** The admin API key from the environment. */
  readonly adminKey: string | undefined;
  /** Origins `returnTo` may point at, besides publicUrl (always allowed). */
  readonly returnToAllowlist: readonly string[];
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Start the built-in demo provider and register it as an auth client. */
  readonly demoProvider: boolean;
  /** The demo provider's access-token lifetime. */
  readonly demoTokenLifetimeSeconds: number;
  /** Identifies this process in leases and logs. */
  readonly instanceId: string;
  /** How long a refresh lease lives before another process may take it over. */
  readonly leaseSeconds: number;
  /** Timeout of one request to a token endpoint. */
  readonly tokenRequestTimeoutMs: number;
  /**
   * PostgreSQL: hold a liveness lock, and end at once the leases of a process whose
   * lock is released (db/holder-liveness.ts). No effect on SQLite.
   */
  readonly holderLiveness: boolean;
  /** Decrypted credentials the token endpoint keeps in memory (0: no token cache). */
  readonly tokenCacheSize: number;
  /** A cached credential is read from the database again after this long at most. */
  readonly tokenCacheMaxAgeMs: number;
  /** Refresh credentials before they expire, with no caller asking. */
  readonly backgroundRefresh: boolean;
  /** How often the background refresher looks for due credentials when it has no backlog. */
  readonly refreshIntervalMs: number;
  /** At most this many credentials per claim statement of the background refresher. */
  readonly refreshClaimSize: number;
  /** Backoff after failed refreshes: the first ceiling, doubling up to the max (jittered). */
  readonly refreshBackoffMs: number;
  readonly refreshBackoffMaxMs: number;
  /** Per-provider concurrency and rate of token-endpoint calls, per process. */
  readonly providerLimits: ProviderLimits;
  /** Run the webhook delivery worker in this process (deliveries are queued either way). */
  readonly webhookDelivery: boolean;
  /** How often the delivery worker looks for due deliveries. */
  readonly webhookIntervalMs: number;
  /** Timeout of one delivery request. */
  readonly webhookTimeoutMs: number;
  /** Delays before the 2nd, 3rd, … attempt, in ms; after the last one, a delivery is given up. */
  readonly webhookRetryScheduleMs: readonly number[];
  /** Deliveries one process sends at once. */
  readonly webhookConcurrency: number;
  /** Allow `http://` webhook URLs to hosts other than loopback. */
  readonly webhookAllowInsecureHttp: boolean;
  /**
   * Accept auth clients whose endpoints are on a loopback host (the vault's own
   * machine), through the API. Default: on with the demo provider, else off.
   */
  readonly allowLoopbackEndpoints: boolean;
  /** Delivered and given-up deliveries are deleted after this many days. */
  readonly webhookRetentionDays: number;
}

export type ConfigSource = Readonly<Record<string, string | undefined>>;

const booleanText = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no'])
  .transform((value) => value === '1' || value === 'true' || value === 'yes');

const origin = z.string().transform((value, ctx) => {
  try {
    const url = new URL(value);
    return url.origin;
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not an absolute URL` });
    return z.NEVER;
  }
});

const retrySchedule = z.string().transform((value, ctx) => {
  try {
    return parseRetrySchedule(value);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

const schema = z.object({
  TOKENWARDEN_DATA_DIR: z.string().min(1).default('.data/vault'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  TOKENWARDEN_DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
    .default('public'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  TOKENWARDEN_PUBLIC_URL: z.url().optional(),
  TOKENWARDEN_MASTER_KEYS: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/=_-]{43,44}(,[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/=_-]{43,44})*$/,
      'must be kid:base64key[,kid:base64key…] with 32-byte keys (generate one with: openssl rand -base64 32)',
    )
    .optional(),
  TOKENWARDEN_ADMIN_KEY: z
    .string()
    .regex(
      /^twk_[A-Za-z0-9]+_[A-Za-z0-9_-]{32,}$/,
      'must look like twk_<id>_<secret of 32+ characters>',
    )
    .optional(),
  TOKENWARDEN_RETURN_TO_ALLOWLIST: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item.length > 0),
    )
    .pipe(z.array(origin)),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TOKENWARDEN_DEMO_PROVIDER: booleanText.optional(),
  TOKENWARDEN_DEMO_TOKEN_LIFETIME: z.coerce.number().positive().default(60),
  TOKENWARDEN_INSTANCE_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .optional(),
  TOKENWARDEN_LEASE_SECONDS: z.coerce.number().positive().max(600).default(30),
  TOKENWARDEN_TOKEN_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  TOKENWARDEN_HOLDER_LIVENESS: booleanText.default(true),
  TOKENWARDEN_TOKEN_CACHE_SIZE: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
  TOKENWARDEN_TOKEN_CACHE_MAX_AGE_MS: z.coerce.number().int().min(1).max(3_600_000).default(60_000),
  TOKENWARDEN_BACKGROUND_REFRESH: booleanText.default(true),
  TOKENWARDEN_REFRESH_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(1_000),
  TOKENWARDEN_REFRESH_CLAIM_SIZE: z.coerce.number().int().min(1).max(10_000).default(100),
  TOKENWARDEN_REFRESH_BACKOFF_MS: z.coerce.number().int().min(10).max(3_600_000).default(5_000),
  TOKENWARDEN_REFRESH_BACKOFF_MAX_MS: z.coerce
    .number()
    .int()
    .min(10)
    .max(86_400_000)
    .default(300_000),
  TOKENWARDEN_PROVIDER_LIMITS: z
    .string()
    .optional()
    .transform((value, ctx): ProviderLimits => {
      if (value === undefined || value.trim() === '')
        return { default: DEFAULT_PROVIDER_LIMIT, byProvider: {} };
      const parsed = parseProviderLimits(value);
      if (parsed.ok) return parsed.limits;
      for (const problem of parsed.problems) ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }),
  TOKENWARDEN_WEBHOOK_DELIVERY: booleanText.default(true),
  TOKENWARDEN_WEBHOOK_INTERVAL_MS: z.coerce.number().int().min(50).max(3_600_000).default(1_000),
  TOKENWARDEN_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  TOKENWARDEN_WEBHOOK_RETRY_SCHEDULE: retrySchedule.default(
    parseRetrySchedule(DEFAULT_RETRY_SCHEDULE),
  ),
  TOKENWARDEN_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(10),
  TOKENWARDEN_WEBHOOK_ALLOW_INSECURE_HTTP: booleanText.default(false),
  TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: booleanText.optional(),
  TOKENWARDEN_WEBHOOK_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(30),
});

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Builds the configuration from environment variables (and flags already mapped
 * to the same names by the CLI). Secret values are never echoed in problems.
 */
export function loadConfig(
  source: ConfigSource,
  defaults: { demoProvider?: boolean } = {},
): VaultConfig {
  const result = schema.safeParse(source);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map(
        (issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`,
      ),
    );
  }
  const env = result.data;
  // A lease must outlive the request it covers, retries' waits included: else another
  // process takes it over mid-request and presents the same (maybe single-use) refresh token.
  if (env.TOKENWARDEN_LEASE_SECONDS * 1000 < 2 * env.TOKENWARDEN_TOKEN_TIMEOUT_MS) {
    throw new ConfigError([
      `TOKENWARDEN_LEASE_SECONDS (${env.TOKENWARDEN_LEASE_SECONDS}) must be at least twice TOKENWARDEN_TOKEN_TIMEOUT_MS (${env.TOKENWARDEN_TOKEN_TIMEOUT_MS} ms)`,
    ]);
  }
  const port = env.PORT;
  const publicUrl = env.TOKENWARDEN_PUBLIC_URL?.replace(/\/$/, '');
  return Object.freeze({
    dataDir: resolve(env.TOKENWARDEN_DATA_DIR),
    databaseUrl: env.DATABASE_URL,
    databaseSchema: env.TOKENWARDEN_DATABASE_SCHEMA,
    host: env.HOST,
    port,
    publicUrl,
    masterKeys: env.TOKENWARDEN_MASTER_KEYS,
    adminKey: env.TOKENWARDEN_ADMIN_KEY,
    returnToAllowlist: Object.freeze([...env.TOKENWARDEN_RETURN_TO_ALLOWLIST]),
    logLevel: env.LOG_LEVEL,
    demoProvider: env.TOKENWARDEN_DEMO_PROVIDER ?? defaults.demoProvider ?? false,
    demoTokenLifetimeSeconds: env.TOKENWARDEN_DEMO_TOKEN_LIFETIME,
    instanceId:
      env.TOKENWARDEN_INSTANCE_ID ?? `${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    leaseSeconds: env.TOKENWARDEN_LEASE_SECONDS,
    tokenRequestTimeoutMs: env.TOKENWARDEN_TOKEN_TIMEOUT_MS,
    holderLiveness: env.TOKENWARDEN_HOLDER_LIVENESS,
    tokenCacheSize: env.TOKENWARDEN_TOKEN_CACHE_SIZE,
    tokenCacheMaxAgeMs: env.TOKENWARDEN_TOKEN_CACHE_MAX_AGE_MS,
    backgroundRefresh: env.TOKENWARDEN_BACKGROUND_REFRESH,
    refreshIntervalMs: env.TOKENWARDEN_REFRESH_INTERVAL_MS,
    refreshClaimSize: env.TOKENWARDEN_REFRESH_CLAIM_SIZE,
    refreshBackoffMs: env.TOKENWARDEN_REFRESH_BACKOFF_MS,
    refreshBackoffMaxMs: Math.max(
      env.TOKENWARDEN_REFRESH_BACKOFF_MAX_MS,
      env.TOKENWARDEN_REFRESH_BACKOFF_MS,
    ),
    providerLimits: env.TOKENWARDEN_PROVIDER_LIMITS,
    webhookDelivery: env.TOKENWARDEN_WEBHOOK_DELIVERY,
    webhookIntervalMs: env.TOKENWARDEN_WEBHOOK_INTERVAL_MS,
    webhookTimeoutMs: env.TOKENWARDEN_WEBHOOK_TIMEOUT_MS,
    webhookRetryScheduleMs: Object.freeze([...env.TOKENWARDEN_WEBHOOK_RETRY_SCHEDULE]),
    webhookConcurrency: env.TOKENWARDEN_WEBHOOK_CONCURRENCY,
    webhookAllowInsecureHttp: env.TOKENWARDEN_WEBHOOK_ALLOW_INSECURE_HTTP,
    // The demo provider listens on 127.0.0.1: demo mode needs it unless told otherwise.
    allowLoopbackEndpoints:
      env.TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS ??
      env.TOKENWARDEN_DEMO_PROVIDER ??
      defaults.demoProvider ??
      false,
    webhookRetentionDays: env.TOKENWARDEN_WEBHOOK_RETENTION_DAYS,
  });
}
