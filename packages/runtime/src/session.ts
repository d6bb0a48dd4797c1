import type {
  AuthClient,
  ProviderProfile,
  RefreshStrategy,
  TokenResponse,
  TokenSet,
  TokenSource,
} from '@tokenwarden/oauth';
import { createComponentAuthClient } from './auth-client.ts';
import type { Component } from './component.ts';
import { createStepContext, type StepContext } from './context.ts';
import { RuntimeError } from './errors.ts';
import type { EmittedEvent } from './events.ts';
import { executeProcess } from './internal/execute.ts';
import { mergeKeys, mergeKeysInPlace, parseKeysPayload } from './internal/keys-payload.ts';
import { StepRun } from './internal/step-run.ts';
import type { KeyStore } from './key-store.ts';
import { type ComponentLogger, createLogger, jsonLineLogSink, type LogSink } from './logger.ts';
import { Redactor } from './redaction.ts';
import { callVerifyCredentials, type VerifyResult } from './verify.ts';

export interface RunSessionOptions {
  component: Component;
  /** The step configuration (sailor's `cfg`). Copied; the credential field is filled from `keys`. */
  cfg?: Record<string, unknown> | undefined;
  /** The initial snapshot. Default `{}`. */
  snapshot?: Record<string, unknown> | undefined;
  /** Where the credential's keys live. Without it, `updateKeys` is an error event. */
  keys?: KeyStore | undefined;
  /** The token source behind `this.fetch`; default `keys.tokenSource(…)`. */
  tokens?: TokenSource | undefined;
  /** `this.fetch`'s refresh strategy. Default `before-expiry`. */
  strategy?: RefreshStrategy | undefined;
  /**
   * Seconds of validity `this.fetch` and `this.getAccessToken()` ask for, and that
   * the cfg credential field has when a step starts (vault). Default 300.
   */
  marginSeconds?: number | undefined;
  /** Resource statuses that mean "token expired". Default [401]. */
  expiredStatuses?: readonly number[] | undefined;
  /** The provider profile for offline refreshes (see createComponentAuthClient). */
  profile?: ProviderProfile | undefined;
  /** Where the provider catalog lives. Default: the repository's providers/. */
  providersDir?: string | undefined;
  /** Where log lines go (the component's and the runtime's), redacted. Default: JSON lines on stderr. */
  logger?: LogSink | undefined;
  /** Per-step time limit (ms): then `error` (step_timeout) and `end`. Default: none. */
  timeoutMs?: number | undefined;
  /** How long a promise still pending after `end` is waited for. Default 1000 ms. */
  settleAfterEndMs?: number | undefined;
  /**
   * `serial` (default): one message at a time, as sailor with prefetch 1, so two
   * steps of a component that refreshes by itself never spend the same refresh
   * token. `parallel`: for components that only use this.fetch / getAccessToken.
   */
  concurrency?: 'serial' | 'parallel' | undefined;
  /** Called with every event as it is recorded (to print it live). */
  onEvent?: ((event: EmittedEvent) => void) | undefined;
  /** Sailor's flow variables, for `this.getFlowVariables()`. */
  variables?: Readonly<Record<string, string>> | undefined;
  /** The fetch `this.fetch` sends with. Default: the global fetch. */
  fetch?: typeof fetch | undefined;
}

export interface StepOptions {
  /** Overrides the session's `timeoutMs` for this step. */
  timeoutMs?: number | undefined;
  /** Called with every event of this step as it is recorded (in addition to the session's). */
  onEvent?: ((event: EmittedEvent) => void) | undefined;
}

/** What one message through one step produced. */
export interface StepResult {
  step: string;
  /** Every event, in the order emitted. Printing one shows it redacted. */
  events: EmittedEvent[];
  /** The step ended and no `error` was emitted. */
  ok: boolean;
  /** The session's snapshot after the step (a copy). */
  snapshot: Record<string, unknown>;
}

const DEFAULT_MARGIN_SECONDS = 300;
const DEFAULT_SETTLE_AFTER_END_MS = 1000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function copy<T>(value: T): T {
  try {
    return structuredClone(value);
  } catch {
    return value;
  }
}

const noop = () => undefined;

/**
 * Runs messages through a component's steps with the sailor contract, holding
 * what sailor holds across messages (the snapshot) and what it does not: the
 * cfg, so that keys a step stored with `updateKeys`, and tokens `this.fetch`
 * refreshed, are in the cfg of every later message of the session.
 */
export class RunSession {
  readonly component: Component;
  /** Knows this session's secret values; used for every event and log line it prints. */
  readonly redactor = new Redactor();
  readonly #options: RunSessionOptions;
  readonly #sink: LogSink;
  readonly #logger: ComponentLogger;
  readonly #margin: number;
  #cfg: Record<string, unknown>;
  #snapshot: Record<string, unknown>;
  /** Keys a step emitted that the key store has not stored yet (stored before the next step). */
  #unsaved: Record<string, unknown> | undefined;
  #serial: Promise<unknown> = Promise.resolve();
  #source: TokenSource | undefined;
  #authClient: Promise<AuthClient> | undefined;

  constructor(options: RunSessionOptions) {
    this.component = options.component;
    this.#options = options;
    this.#margin = options.marginSeconds ?? DEFAULT_MARGIN_SECONDS;
    this.#cfg = copy(options.cfg ?? {});
    this.#snapshot = copy(options.snapshot ?? {});
    this.redactor.addSecretsOf(this.#cfg);
    this.redactor.addSecret(this.component.oauth2?.clientSecret);
    this.#sink = options.logger ?? jsonLineLogSink();
    this.#logger = createLogger(this.#sink, this.redactor, 'runtime', {
      component: this.component.title,
    });
  }

  /** The cfg member that holds the credential (`oauth`, or the OAuthFieldView field). */
  get credentialField(): string {
    return this.component.credentialField;
  }

  /** The credential's id, when the session has one. */
  get credentialId(): string | undefined {
    return this.#options.keys?.credentialId ?? this.#options.tokens?.credentialId;
  }

  /** A copy of the cfg the next message will get (secrets included: do not print it). */
  get cfg(): Record<string, unknown> {
    return copy(this.#cfg);
  }

  /** A copy of the snapshot the next message will get. */
  get snapshot(): Record<string, unknown> {
    return copy(this.#snapshot);
  }

  /** Whether keys emitted by a step still wait to be stored (a store failed). */
  get hasUnsavedKeys(): boolean {
    return this.#unsaved !== undefined;
  }

  /**
   * Runs one message through a step. Rejects only when the step cannot start
   * (`unknown_step`, a module that fails to load); a failure inside it, or in
   * preparing its keys, is an `error` event and `ok: false`.
   */
  runStep(step: string, msg: unknown, options: StepOptions = {}): Promise<StepResult> {
    return this.#exclusive(() => this.#runStep(step, msg, options));
  }

  /** Runs the component's verifyCredentials with the session's cfg (keys included). */
  verifyCredentials(options: { timeoutMs?: number | undefined } = {}): Promise<VerifyResult> {
    return this.#exclusive(() => this.#verify(options));
  }

  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#options.concurrency === 'parallel') return operation();
    const result = this.#serial.then(operation, operation);
    this.#serial = result.then(noop, noop);
    return result;
  }

  async #runStep(step: string, msg: unknown, options: StepOptions): Promise<StepResult> {
    const processFunction = await this.component.loadStep(step);
    const logger = this.#logger.child({ step });
    const stepCfg: { current: Record<string, unknown> | undefined } = { current: undefined };
    const sessionOnEvent = this.#options.onEvent;
    const stepOnEvent = options.onEvent;
    const run = new StepRun({
      redactor: this.redactor,
      logger,
      onEvent:
        sessionOnEvent === undefined && stepOnEvent === undefined
          ? undefined
          : (event) => {
              sessionOnEvent?.(event);
              stepOnEvent?.(event);
            },
      handlers: {
        snapshot: (data) => {
          this.#snapshot = copy(data) as Record<string, unknown>;
        },
        updateSnapshot: (data) => {
          if (!isObject(this.#snapshot)) this.#snapshot = {};
          Object.assign(this.#snapshot, copy(data));
        },
        updateKeys: (data, current) => this.#updateKeys(data, current, stepCfg.current),
      },
    });
    const result = (): StepResult => ({
      step,
      events: [...run.events],
      ok: run.ok && run.ended,
      snapshot: copy(this.#snapshot),
    });

    const failure = await this.#prepareKeys();
    if (failure !== undefined) {
      run.record('error', failure, 'runtime');
      await run.emit('end', undefined, 'runtime');
      await run.finish();
      return result();
    }
    const cfg = copy(this.#cfg);
    stepCfg.current = cfg;
    const ctx = this.#context(
      run,
      cfg,
      createLogger(this.#sink, this.redactor, 'component', { step }),
    );
    await executeProcess(processFunction, ctx, run, [copy(msg), cfg, copy(this.#snapshot)], {
      timeoutMs: options.timeoutMs ?? this.#options.timeoutMs,
      settleAfterEndMs: this.#options.settleAfterEndMs ?? DEFAULT_SETTLE_AFTER_END_MS,
      logger,
    });
    return result();
  }

  async #verify(options: { timeoutMs?: number | undefined }): Promise<VerifyResult> {
    const verify = await this.component.loadVerifyCredentials();
    if (verify === undefined) {
      return {
        verified: true,
        skipped: true,
        reason: `${this.component.dir} has no verifyCredentials.js: the credentials are accepted unchecked, as elastic.io does`,
      };
    }
    const logger = this.#logger.child({ step: 'verifyCredentials' });
    const failure = await this.#prepareKeys();
    if (failure !== undefined) {
      return { verified: false, reason: this.redactor.redactText(failure.message) };
    }
    const cfg = copy(this.#cfg);
    const run = new StepRun({
      redactor: this.redactor,
      logger,
      onEvent: (event) => {
        if (event.name === 'error') logger.error({ error: event.data }, 'verifyCredentials');
      },
      handlers: {
        snapshot: noop,
        updateSnapshot: noop,
        updateKeys: (data, current) => this.#updateKeys(data, current, cfg),
      },
    });
    const ctx = this.#context(
      run,
      cfg,
      createLogger(this.#sink, this.redactor, 'component', { step: 'verifyCredentials' }),
    );
    const result = await callVerifyCredentials(verify, ctx, cfg, {
      redactor: this.redactor,
      timeoutMs: options.timeoutMs ?? this.#options.timeoutMs,
    });
    await run.finish();
    return result;
  }

  #context(run: StepRun, cfg: Record<string, unknown>, logger: ComponentLogger): StepContext {
    return createStepContext({
      emit: (event, data) => run.emit(event, data, 'component'),
      logger,
      tokens: this.#reflecting(cfg),
      strategy: this.#options.strategy ?? 'before-expiry',
      marginSeconds: this.#margin,
      expiredStatuses: this.#options.expiredStatuses,
      fetch: this.#options.fetch,
      variables: this.#options.variables ?? {},
    });
  }

  /**
   * Before a step: store keys an earlier step could not, then fill the cfg's
   * credential field from the key store (a fresh access token from the vault,
   * the whole stored response from a key file). Returns the failure, if any.
   */
  async #prepareKeys(): Promise<Error | undefined> {
    const { keys } = this.#options;
    if (keys === undefined) return undefined;
    if (this.#unsaved !== undefined) {
      try {
        await keys.updateKeys(this.#unsaved as TokenResponse);
        this.#unsaved = undefined;
      } catch (cause) {
        return new RuntimeError(
          'keys_not_stored',
          `keys an earlier message emitted are still not stored in ${keys.description} (${this.#describe(cause)}); the step was not run`,
          { cause, credentialId: keys.credentialId },
        );
      }
    }
    try {
      const current = await keys.readKeys({ minValiditySeconds: this.#margin });
      this.redactor.addSecretsOf(current);
      this.#cfg[this.credentialField] = current;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
    return undefined;
  }

  /**
   * `updateKeys`: merged into the cfg (the session's and the running step's)
   * first, so the freshest keys are never dropped, then stored; the emit
   * promise settles once the store answered. A failure is an `error` event, and
   * the keys are stored again before the next step.
   */
  async #updateKeys(
    data: unknown,
    run: StepRun,
    stepCfg: Record<string, unknown> | undefined,
  ): Promise<void> {
    const field = this.credentialField;
    let parsed: ReturnType<typeof parseKeysPayload>;
    try {
      parsed = parseKeysPayload(data, field);
    } catch (error) {
      run.record('error', error, 'runtime');
      throw error;
    }
    const { response, others } = parsed;
    this.redactor.addSecretsOf(response);
    this.redactor.addSecretsOf(data);
    run.record('updateKeys', data, 'component');

    this.#cfg[field] = mergeKeys(this.#cfg[field], response);
    Object.assign(this.#cfg, copy(others));
    if (stepCfg !== undefined) {
      const current = stepCfg[field];
      if (isObject(current)) mergeKeysInPlace(current, response);
      else stepCfg[field] = { ...response };
      Object.assign(stepCfg, copy(others));
    }

    const { keys } = this.#options;
    if (keys === undefined) {
      const error = new RuntimeError(
        'no_key_store',
        'updateKeys: this run has no key store, so the new keys live only in this session and are lost when it ends; run with a vault credential or a key file',
      );
      run.record('error', error, 'runtime');
      throw error;
    }
    const toStore =
      this.#unsaved === undefined ? { ...response } : mergeKeys(this.#unsaved, response);
    try {
      await keys.updateKeys(toStore as TokenResponse);
      this.#unsaved = undefined;
    } catch (cause) {
      this.#unsaved = toStore;
      const error = new RuntimeError(
        'keys_not_stored',
        `updateKeys: ${keys.description} did not store the keys (${this.#describe(cause)}); they are kept in memory and stored again before the next message`,
        { cause, credentialId: keys.credentialId },
      );
      run.record('error', error, 'runtime');
      throw error;
    }
  }

  /** The step's token source, reflecting every token it hands out into the cfg. */
  #reflecting(stepCfg: Record<string, unknown>): TokenSource | undefined {
    const base = this.#baseSource();
    if (base === undefined) return undefined;
    return {
      credentialId: base.credentialId,
      getToken: async (request) => {
        const tokenSet = await base.getToken(request);
        this.#reflect(tokenSet, stepCfg);
        return tokenSet;
      },
    };
  }

  #baseSource(): TokenSource | undefined {
    if (this.#source !== undefined) return this.#source;
    const { tokens, keys } = this.#options;
    this.#source =
      tokens ?? keys?.tokenSource({ authClient: () => this.#componentAuthClient() }) ?? undefined;
    return this.#source;
  }

  #componentAuthClient(): Promise<AuthClient> {
    if (this.#authClient === undefined) {
      const { profile, providersDir } = this.#options;
      this.#authClient = createComponentAuthClient(this.component, {
        ...(profile === undefined ? {} : { profile }),
        ...(providersDir === undefined ? {} : { providersDir }),
      });
      // A failure (a variable not set yet) is not cached.
      this.#authClient.catch(() => {
        this.#authClient = undefined;
      });
    }
    return this.#authClient;
  }

  /**
   * A token handed out (maybe just refreshed) becomes the cfg's credential
   * field, so code that reads `cfg.oauth` sees it. From the vault that is the
   * access token and its non-secret members; from a key file the whole stored
   * response, rotated refresh token included.
   */
  #reflect(tokenSet: TokenSet, stepCfg: Record<string, unknown>): void {
    const tokens = tokenSet.toStored().tokens;
    this.redactor.addSecretsOf(tokens);
    const field = this.credentialField;
    const session = this.#cfg[field];
    if (!isObject(session) || session.access_token !== tokens.access_token) {
      this.#cfg[field] = mergeKeys(session, tokens);
    }
    const step = stepCfg[field];
    if (!isObject(step)) stepCfg[field] = { ...tokens };
    else if (step.access_token !== tokens.access_token) mergeKeysInPlace(step, tokens);
  }

  #describe(error: unknown): string {
    const text = error instanceof Error ? error.message : String(error);
    return this.redactor.redactText(text);
  }
}
