/** `{{NAME}}` as elastic.io writes it in component.json; spaces inside the braces are allowed. */
const TEMPLATE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

export interface TemplateResult<T> {
  value: T;
  /** Variables used but absent from the environment, in order of first use. */
  missing: string[];
}

/**
 * Replaces every `{{NAME}}` in the strings of a JSON value with `env[NAME]`.
 * A variable without a value is reported, and left as written so that the
 * caller can name it; an empty string counts as a value.
 */
export function resolveTemplates<T>(
  value: T,
  env: Readonly<Record<string, string | undefined>>,
): TemplateResult<T> {
  const missing: string[] = [];
  const visit = (node: unknown): unknown => {
    if (typeof node === 'string') {
      return node.replace(TEMPLATE, (whole, name: string) => {
        const found = Object.hasOwn(env, name) ? env[name] : undefined;
        if (found === undefined) {
          if (!missing.includes(name)) missing.push(name);
          return whole;
        }
        return found;
      });
    }
    if (Array.isArray(node)) return node.map(visit);
    if (typeof node === 'object' && node !== null) {
      const copy: Record<string, unknown> = {};
      for (const [key, member] of Object.entries(node)) copy[key] = visit(member);
      return copy;
    }
    return node;
  };
  return { value: visit(value) as T, missing };
}

/** The variable names a JSON value refers to. */
export function templateVariables(value: unknown): string[] {
  return resolveTemplates(value, {}).missing;
}
