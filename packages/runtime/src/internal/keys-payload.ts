import type { TokenResponse } from '@tokenwarden/oauth';
import { RuntimeError } from '../errors.ts';

export interface KeysPayload {
  /** The token response to merge into the credential. */
  response: TokenResponse;
  /** The cfg member the response was found under (undefined for a bare response). */
  field: string | undefined;
  /** Other members of a `{oauth: {…}, …}` payload: cfg members, not keys. */
  others: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Finds the token response in an `updateKeys` payload: a bare token response,
 * `{<credential field>: {…}}` (other members allowed: the Salesforce example
 * emits its whole configuration), or any single member holding one (what the
 * vault's PUT /keys accepts). Validates it and coerces, in this one place, the
 * quirks tolerated elsewhere: `expires_in` as a numeric string, a missing
 * `token_type` (Bearer). Messages name members, never their values.
 */
export function parseKeysPayload(payload: unknown, credentialField: string): KeysPayload {
  const invalid = (why: string) =>
    new RuntimeError('invalid_keys_payload', `updateKeys payload rejected: ${why}`);
  if (!isObject(payload)) {
    throw invalid(
      `expected an object, got ${payload === null ? 'null' : Array.isArray(payload) ? 'an array' : typeof payload}`,
    );
  }
  let candidate: Record<string, unknown> | undefined;
  let field: string | undefined;
  let others: Record<string, unknown> = {};
  if ('access_token' in payload) {
    candidate = payload;
  } else if (isObject(payload[credentialField])) {
    field = credentialField;
    candidate = payload[credentialField] as Record<string, unknown>;
    const { [credentialField]: _keys, ...rest } = payload;
    others = rest;
  } else {
    const keys = Object.keys(payload);
    const [only] = keys;
    if (keys.length === 1 && only !== undefined && isObject(payload[only])) {
      field = only;
      candidate = payload[only] as Record<string, unknown>;
    }
  }
  if (candidate === undefined) {
    throw invalid(
      `no token response in it; expected {access_token, …} or {"${credentialField}": {access_token, …}}, got members ${Object.keys(payload).join(', ') || '(none)'}`,
    );
  }
  const where = field === undefined ? '' : `${field}.`;
  const response: Record<string, unknown> = { ...candidate };
  if (typeof response.access_token !== 'string' || response.access_token === '') {
    throw invalid(`${where}access_token must be a non-empty string`);
  }
  if (response.token_type === undefined) response.token_type = 'Bearer';
  if (typeof response.token_type !== 'string' || response.token_type === '') {
    throw invalid(`${where}token_type must be a non-empty string`);
  }
  if (typeof response.expires_in === 'string' && /^\d+$/.test(response.expires_in)) {
    response.expires_in = Number(response.expires_in);
  }
  if (
    response.expires_in !== undefined &&
    (typeof response.expires_in !== 'number' ||
      !Number.isFinite(response.expires_in) ||
      response.expires_in < 0)
  ) {
    throw invalid(`${where}expires_in must be a non-negative number of seconds`);
  }
  if (
    response.refresh_token !== undefined &&
    (typeof response.refresh_token !== 'string' || response.refresh_token === '')
  ) {
    throw invalid(`${where}refresh_token must be a non-empty string when present`);
  }
  return { response: response as TokenResponse, field, others };
}

/**
 * What `TokenSet.merge` does to the members, for a cfg credential field: new
 * members replace old ones, omitted ones (above all `refresh_token`) are kept,
 * and an old `expires_in` is dropped when the new response has none (it said
 * nothing about the new access token).
 */
export function mergeKeys(
  current: unknown,
  response: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...(isObject(current) ? current : {}), ...response };
  if (response.expires_in === undefined) delete merged.expires_in;
  return merged;
}

/** Applies {@link mergeKeys} to an object in place, so references a component holds see it. */
export function mergeKeysInPlace(
  target: Record<string, unknown>,
  response: Readonly<Record<string, unknown>>,
): void {
  Object.assign(target, response);
  if (response.expires_in === undefined) delete target.expires_in;
}
