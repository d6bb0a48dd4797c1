export type { PersonalityProfile } from './personalities.ts';
export { PERSONALITIES, PERSONALITY_PROFILES } from './personalities.ts';
export { startFakeProvider } from './provider.ts';
export type {
  ClientRegistration,
  Counters,
  FakeProvider,
  FakeProviderOptions,
  Fault,
  FaultController,
  FaultEndpoint,
  FaultKind,
  FaultTiming,
  InjectedFault,
  InjectOptions,
  MintedGrant,
  MintGrantsOptions,
  Personality,
  RefreshTokenStatus,
  TokenRequestCounters,
} from './types.ts';
