import { format } from 'node:util';
import { type Redactor, toPlain } from './redaction.ts';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/** One log line, already redacted. `source` tells the component's lines from the runtime's. */
export interface LogRecord {
  level: LogLevel;
  msg: string;
  time: string;
  source: 'component' | 'runtime';
  [field: string]: unknown;
}

/** Where log records go. */
export type LogSink = (record: LogRecord) => void;

/**
 * The bunyan-like logger sailor gives components as `this.logger`:
 * `logger.info('text %s', value)`, `logger.info({field}, 'text')`,
 * `logger.error(err, 'text')`, `logger.child({field})`.
 */
export interface ComponentLogger {
  trace(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
  fatal(...args: unknown[]): void;
  child(fields: Record<string, unknown>): ComponentLogger;
}

/**
 * A sink that writes one JSON line per record (to stderr by default, so that
 * stdout stays free for emitted events), dropping records below `level`.
 */
export function jsonLineLogSink(
  options: { write?: (line: string) => void; level?: LogLevel } = {},
): LogSink {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const minimum = LOG_LEVELS.indexOf(options.level ?? 'info');
  return (record) => {
    if (LOG_LEVELS.indexOf(record.level) < minimum) return;
    write(`${JSON.stringify(record)}\n`);
  };
}

/** A logger whose every record is redacted before it reaches the sink. */
export function createLogger(
  sink: LogSink,
  redactor: Redactor,
  source: LogRecord['source'],
  fields: Record<string, unknown> = {},
): ComponentLogger {
  const log =
    (level: LogLevel) =>
    (...args: unknown[]): void => {
      const record: Record<string, unknown> = { ...fields };
      const [first] = args;
      let rest = args;
      if (first instanceof Error) {
        record.err = first;
        rest = args.slice(1);
      } else if (typeof first === 'object' && first !== null && !Array.isArray(first)) {
        Object.assign(record, first);
        rest = args.slice(1);
      }
      const msg =
        rest.length === 0 && record.err instanceof Error
          ? record.err.message
          : format(...rest.map((arg) => (typeof arg === 'object' ? toPlain(arg) : arg)));
      const redacted = redactor.redact(record) as Record<string, unknown>;
      try {
        sink({
          ...redacted,
          level,
          msg: redactor.redactText(msg),
          time: new Date().toISOString(),
          source,
        });
      } catch {
        // A failing sink must not fail the component that logged.
      }
    };
  return {
    trace: log('trace'),
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    fatal: log('fatal'),
    child: (more) => createLogger(sink, redactor, source, { ...fields, ...more }),
  };
}
