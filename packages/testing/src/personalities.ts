import type { Personality } from './types.ts';

/** Every personality, in a stable order (for `for … of` over all of them in tests). */
export const PERSONALITIES: readonly Personality[] = Object.freeze([
  'microsoft',
  'salesforce',
  'google',
  'strict',
  'generic',
]);

/**
 * What a personality changes at the token endpoint. The endpoint code reads
 * these fields and never switches on a personality's name, so a new quirk is a
 * new field here.
 */
export interface PersonalityProfile {
  readonly personality: Personality;
  readonly description: string;
  /**
   * `none`: the refresh token is reused (refresh answers omit it).
   * `rotating`: a new one on every refresh; the old one stays usable for the grace period.
   * `single-use`: a new one on every refresh; presenting a used one revokes the
   * whole grant (RFC 9700 §4.14.2).
   */
  readonly rotation: 'none' | 'rotating' | 'single-use';
  /** A refresh without `scope` is `invalid_request`. */
  readonly scopeRequiredOnRefresh: boolean;
  /** Token answers carry `expires_in`. */
  readonly sendsExpiresIn: boolean;
  /**
   * Token answers carry Salesforce's `instance_url`, `id`, `issued_at` and
   * `signature`, and the `format` parameter (`json` | `urlencoded`) is honoured.
   */
  readonly salesforceFields: boolean;
  /**
   * The code exchange returns a refresh token only when the authorization
   * request had `access_type=offline` and `prompt=consent`.
   */
  readonly refreshTokenNeedsOfflineConsent: boolean;
}

export const PERSONALITY_PROFILES: Readonly<Record<Personality, PersonalityProfile>> =
  Object.freeze({
    microsoft: Object.freeze({
      personality: 'microsoft',
      description:
        'Rotates the refresh token on every refresh (the previous one stays valid for a grace period); scope is required on refresh.',
      rotation: 'rotating',
      scopeRequiredOnRefresh: true,
      sendsExpiresIn: true,
      salesforceFields: false,
      refreshTokenNeedsOfflineConsent: false,
    }),
    salesforce: Object.freeze({
      personality: 'salesforce',
      description:
        'No expires_in; instance_url, id, issued_at and signature in every token answer; format=json|urlencoded; no rotation.',
      rotation: 'none',
      scopeRequiredOnRefresh: false,
      sendsExpiresIn: false,
      salesforceFields: true,
      refreshTokenNeedsOfflineConsent: false,
    }),
    google: Object.freeze({
      personality: 'google',
      description:
        'No rotation; a refresh token only when the authorization request had access_type=offline and prompt=consent.',
      rotation: 'none',
      scopeRequiredOnRefresh: false,
      sendsExpiresIn: true,
      salesforceFields: false,
      refreshTokenNeedsOfflineConsent: true,
    }),
    strict: Object.freeze({
      personality: 'strict',
      description:
        'Single-use refresh tokens; presenting a used one revokes the whole grant (RFC 9700 §4.14.2).',
      rotation: 'single-use',
      scopeRequiredOnRefresh: false,
      sendsExpiresIn: true,
      salesforceFields: false,
      refreshTokenNeedsOfflineConsent: false,
    }),
    generic: Object.freeze({
      personality: 'generic',
      description:
        'Plain RFC 6749: refresh tokens are not rotated (refresh answers omit refresh_token).',
      rotation: 'none',
      scopeRequiredOnRefresh: false,
      sendsExpiresIn: true,
      salesforceFields: false,
      refreshTokenNeedsOfflineConsent: false,
    }),
  });

export function isPersonality(value: unknown): value is Personality {
  return typeof value === 'string' && (PERSONALITIES as readonly string[]).includes(value);
}
