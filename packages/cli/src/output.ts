/**
 * Output conventions: stdout carries the result (a table, JSON, an id, a token)
 * so that `$(tokenwarden …)` captures exactly that; progress, confirmations and
 * errors go to stderr.
 */

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function err(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** `--json`: the vault's answer as it came, pretty-printed. */
export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

// Values come from the vault (names, messages): keep terminal control sequences out.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value).replace(CONTROL, '?');
}

/** A plain table: upper-case headers, columns padded to the widest cell, two spaces apart. */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((text, column) =>
        column === cells.length - 1 ? text : text.padEnd(widths[column] ?? 0),
      )
      .join('  ')
      .trimEnd();
  return [line(headers.map((header) => header.toUpperCase())), ...rows.map(line)].join('\n');
}

/** Key-value lines for `show` commands. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(...fields.map(([name]) => name.length)) + 1;
  return fields.map(([name, value]) => `${`${name}:`.padEnd(width)} ${value}`).join('\n');
}

export function formatDuration(ms: number): string {
  const seconds = Math.round(Math.abs(ms) / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d`;
}

/** `2025-11-22 10:00:00Z (in 59m12s)`; `-` when there is no time. */
export function formatTime(value: string | null | undefined, now: number = Date.now()): string {
  if (value === null || value === undefined) return '-';
  const at = Date.parse(value);
  if (Number.isNaN(at)) return cell(value);
  const text = new Date(at)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
  const delta = at - now;
  return `${text} (${delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(delta)} ago`})`;
}

/** A URL fit to print: without user name or password. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}

/**
 * Removes known secrets (the API key, a client secret) from text that is about
 * to be printed, and the password of any URL in it (a DATABASE_URL in an error).
 */
export function redact(text: string, secrets: Iterable<string>): string {
  let result = text;
  for (const secret of secrets) {
    if (secret.length >= 4) result = result.split(secret).join('[redacted]');
  }
  return result.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]*):[^\s/@]*@/gi, '$1:[redacted]@');
}
