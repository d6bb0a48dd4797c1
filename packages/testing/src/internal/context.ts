import type { PersonalityProfile } from '../personalities.ts';
import type { Counters } from '../types.ts';
import type { ResolvedOptions } from './options.ts';
import type { TokenStore } from './store.ts';

export interface ProviderUrls {
  readonly url: string;
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly revocationEndpoint: string;
  readonly resourceUrl: string;
  /** Salesforce's `instance_url`: the base of the Salesforce-like API. */
  readonly instanceUrl: string;
}

/** What every endpoint of one fake provider shares. */
export interface ProviderContext {
  readonly options: ResolvedOptions;
  readonly profile: PersonalityProfile;
  readonly store: TokenStore;
  /** Mutated in place by the endpoints; reset in place too. */
  readonly counters: Counters;
  readonly urls: ProviderUrls;
}
