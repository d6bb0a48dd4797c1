import {
  createAuthorizedFetch,
  type RefreshStrategy,
  type TokenRequest,
  type TokenSource,
} from '@tokenwarden/oauth';
import { RuntimeError } from './errors.ts';
import type { EventName } from './events.ts';
import type { ComponentLogger } from './logger.ts';

export interface AccessTokenOptions {
  /** Refresh first when fewer seconds are left. Default: the session's margin (300). */
  minValiditySeconds?: number;
  /** Refresh before answering, whatever the expiry. */
  forceRefresh?: boolean;
}

/**
 * `this` inside `process(msg, cfg, snapshot)` and `verifyCredentials`: sailor's
 * `emit` and `logger`, plus tokenwarden's authorized `fetch` for the step's
 * credential, so a component needs no refresh code at all.
 */
export interface StepContext {
  /** Emits an event; the promise settles once the runtime handled it (keys stored, for updateKeys). */
  emit(event: EventName, data?: unknown): Promise<void>;
  /** A bunyan-like logger whose output is redacted. */
  readonly logger: ComponentLogger;
  /**
   * The global `fetch`, authorized for the step's credential: a valid token on
   * every request (per the session's strategy), one compare-and-refresh and one
   * retry after a 401, and a second 401 is an `unauthorized_after_refresh` error.
   */
  readonly fetch: typeof fetch;
  /** A valid access token for the step's credential. */
  getAccessToken(options?: AccessTokenOptions): Promise<string>;
  /** The step's credential id, or undefined when the run has none. */
  readonly credentialId: string | undefined;
  /** Sailor's flow variables (the session's `variables`). */
  getFlowVariables(): Record<string, string>;
}

export interface StepContextOptions {
  emit: (event: unknown, data: unknown) => Promise<void>;
  logger: ComponentLogger;
  tokens: TokenSource | undefined;
  strategy: RefreshStrategy;
  marginSeconds: number;
  expiredStatuses: readonly number[] | undefined;
  fetch: typeof fetch | undefined;
  variables: Readonly<Record<string, string>>;
}

export function createStepContext(options: StepContextOptions): StepContext {
  const { tokens } = options;
  const missing = () =>
    new RuntimeError(
      'no_credential',
      'this step has no credential: run it with a key store (vault credential or key file) or a token source',
    );
  const authorizedFetch: typeof fetch =
    tokens === undefined
      ? ((() => Promise.reject(missing())) as unknown as typeof fetch)
      : createAuthorizedFetch(tokens, {
          strategy: options.strategy,
          marginSeconds: options.marginSeconds,
          ...(options.expiredStatuses === undefined
            ? {}
            : { expiredStatuses: options.expiredStatuses }),
          ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
        });
  // Not frozen: components written for sailor may set their own members on `this`.
  return {
    emit: (event: EventName, data?: unknown) => options.emit(event, data),
    logger: options.logger,
    fetch: authorizedFetch,
    getAccessToken: async (request: AccessTokenOptions = {}) => {
      if (tokens === undefined) throw missing();
      const tokenRequest: TokenRequest = {
        minValiditySeconds: request.minValiditySeconds ?? options.marginSeconds,
      };
      if (request.forceRefresh === true) tokenRequest.forceRefresh = true;
      return (await tokens.getToken(tokenRequest)).accessToken;
    },
    credentialId: tokens?.credentialId,
    getFlowVariables: () => ({ ...options.variables }),
  };
}
