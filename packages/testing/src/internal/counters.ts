import type { Counters } from '../types.ts';

export function zeroCounters(): Counters {
  return {
    tokenRequests: { authorization_code: 0, refresh_token: 0, other: 0 },
    refreshes: 0,
    codeExchanges: 0,
    invalidGrants: 0,
    reusedRefreshTokens: 0,
    revokedGrants: 0,
    revocationRequests: 0,
    resourceRequests: 0,
    unauthorized: 0,
    forbidden: 0,
    faultsInjected: 0,
  };
}

/** A deep copy, so a caller's snapshot does not move under it. */
export function copyCounters(counters: Counters): Counters {
  return { ...counters, tokenRequests: { ...counters.tokenRequests } };
}

/** Resets in place: the endpoints hold a reference to this one object. */
export function resetCounters(counters: Counters): void {
  Object.assign(counters, zeroCounters());
}
