import { type DestinationStream, type Logger, pino } from 'pino';

/** The path alone: query strings (`code`, `state`) never reach a log line. */
export function pathOf(url: string): string {
  const index = url.indexOf('?');
  return index === -1 ? url : url.slice(0, index);
}

/**
 * Every path where a secret could sit in a log object. Request and response
 * serializers below already keep headers and query strings out; these catch
 * anything a log call passes by accident.
 */
export const REDACT_PATHS = [
  'access_token',
  'refresh_token',
  'id_token',
  'client_secret',
  'clientSecret',
  'code_verifier',
  'codeVerifier',
  'apiKey',
  'key',
  'tokens',
  'tokenSet',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.client_secret',
  '*.clientSecret',
  '*.code_verifier',
  '*.codeVerifier',
  '*.apiKey',
  '*.tokens',
  'req.headers',
  'headers.authorization',
  'headers.cookie',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        req: (req: { method?: string; url?: string; id?: string }) => ({
          method: req.method,
          path: pathOf(req.url ?? ''),
          id: req.id,
        }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
        err: pino.stdSerializers.err,
      },
    },
    destination,
  );
}
