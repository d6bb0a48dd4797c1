import { stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { endpointProblem } from '@tokenwarden/oauth';
import { resolveTemplates } from './templating.ts';

/**
 * The view classes elastic.io documents for component.json fields. A field with
 * another one would render as nothing on that platform, so it is reported.
 */
export const KNOWN_VIEW_CLASSES: readonly string[] = Object.freeze([
  'TextFieldView',
  'TextFieldWithNoteView',
  'TextAreaView',
  'TextAreaWithNoteView',
  'PasswordFieldView',
  'CheckBox',
  'CheckBoxView',
  'SelectView',
  'MultiSelectView',
  'SelectPropertyView',
  'OAuthFieldView',
  'CodeFieldView',
  'JSONataView',
  'HTTPAuthView',
  'WebHookAuthView',
]);

export type StepKind = 'action' | 'trigger';

export interface StepDeclaration {
  name: string;
  kind: StepKind;
  title: string | undefined;
  /** Absolute path of the module. */
  main: string;
  /** As written in component.json, for messages. */
  mainAsWritten: string;
}

export type ClientAuthentication = 'client_secret_post' | 'client_secret_basic';

/** component.json's `credentials.oauth2` block, templates resolved. */
export interface OAuth2Declaration {
  clientId: string;
  clientSecret: string;
  authUri: string;
  tokenUri: string;
  scopes: string[];
  accessType: string | undefined;
  prompt: string | undefined;
  clientAuth: ClientAuthentication | undefined;
  provider: string | undefined;
}

export interface DescriptorCheck {
  problems: string[];
  warnings: string[];
  title: string;
  credentialField: string;
  oauth2: OAuth2Declaration | undefined;
  steps: StepDeclaration[];
}

export interface DescriptorOptions {
  dir: string;
  file: string;
  env: Readonly<Record<string, string | undefined>>;
  requireEnv: boolean;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks a parsed component.json and lists every problem at once, each naming
 * the file and the field. Templating applies to `credentials.oauth2`, the block
 * where elastic.io components put `{{CLIENT_ID}}`-style references.
 */
export async function checkDescriptor(
  raw: unknown,
  options: DescriptorOptions,
): Promise<DescriptorCheck> {
  const { dir, file } = options;
  const problems: string[] = [];
  const warnings: string[] = [];
  const problem = (field: string, message: string) =>
    problems.push(`${file}: ${field}: ${message}`);
  const warn = (field: string, message: string) => warnings.push(`${file}: ${field}: ${message}`);
  const result: DescriptorCheck = {
    problems,
    warnings,
    title: '',
    credentialField: 'oauth',
    oauth2: undefined,
    steps: [],
  };

  if (!isObject(raw)) {
    problems.push(`${file}: (root): must be a JSON object`);
    return result;
  }

  if (typeof raw.title !== 'string' || raw.title.trim() === '') problem('title', 'required');
  else result.title = raw.title;
  if (raw.description === undefined) warn('description', 'missing (elastic.io requires one)');

  checkEnvVars(raw.envVars, options, problem);

  // Credentials: fields and the oauth2 block.
  const oauthFields: string[] = [];
  if (raw.credentials !== undefined) {
    if (!isObject(raw.credentials)) {
      problem('credentials', 'must be an object');
    } else {
      const { fields } = raw.credentials;
      checkFields(fields, 'credentials.fields', problem, oauthFields);
      if (raw.credentials.oauth2 !== undefined) {
        result.oauth2 = checkOAuth2(raw.credentials.oauth2, options, problem, warn);
      }
    }
  }
  if (oauthFields.length > 1) {
    problem(
      'credentials.fields',
      `${oauthFields.length} fields use OAuthFieldView (${oauthFields.join(', ')}); a step is bound to one credential`,
    );
  }
  const [oauthField] = oauthFields;
  if (oauthField !== undefined) result.credentialField = oauthField;
  else if (result.oauth2 !== undefined) {
    warn(
      'credentials.fields',
      'an oauth2 block but no OAuthFieldView field: the credential is handed to steps as cfg.oauth',
    );
  }

  // Actions and triggers.
  const seen = new Map<string, string>();
  let count = 0;
  for (const [group, kind] of [
    ['actions', 'action'],
    ['triggers', 'trigger'],
  ] as const) {
    const steps = raw[group];
    if (steps === undefined) continue;
    if (!isObject(steps)) {
      problem(group, 'must be an object whose members are the steps');
      continue;
    }
    for (const [name, step] of Object.entries(steps)) {
      count++;
      const field = `${group}.${name}`;
      const other = seen.get(name);
      if (other !== undefined) {
        problem(field, `the name is also used by ${other}: a step name must be unique`);
      }
      seen.set(name, field);
      if (!isObject(step)) {
        problem(field, 'must be an object');
        continue;
      }
      if (step.title === undefined) warn(`${field}.title`, 'missing');
      checkFields(step.fields, `${field}.fields`, problem, []);
      const main = await checkMain(step.main, dir, `${field}.main`, problem);
      if (main !== undefined) {
        result.steps.push({
          name,
          kind,
          title: typeof step.title === 'string' ? step.title : undefined,
          main,
          mainAsWritten: step.main as string,
        });
      }
    }
  }
  if (count === 0) problem('actions', 'the component declares no action and no trigger');
  return result;
}

function checkEnvVars(
  envVars: unknown,
  options: DescriptorOptions,
  problem: (field: string, message: string) => void,
): void {
  if (envVars === undefined) return;
  if (!isObject(envVars)) {
    problem('envVars', 'must be an object');
    return;
  }
  for (const [name, spec] of Object.entries(envVars)) {
    if (!isObject(spec)) {
      problem(`envVars.${name}`, 'must be an object ({required, description})');
      continue;
    }
    if (spec.required === true && options.requireEnv && options.env[name] === undefined) {
      problem(`envVars.${name}`, `required, but the environment variable ${name} is not set`);
    }
  }
}

function checkFields(
  fields: unknown,
  path: string,
  problem: (field: string, message: string) => void,
  oauthFields: string[],
): void {
  if (fields === undefined) return;
  if (!isObject(fields)) {
    problem(path, 'must be an object whose members are the fields');
    return;
  }
  for (const [name, spec] of Object.entries(fields)) {
    const field = `${path}.${name}`;
    if (!isObject(spec)) {
      problem(field, 'must be an object');
      continue;
    }
    const { viewClass } = spec;
    if (typeof viewClass !== 'string' || viewClass === '') {
      problem(`${field}.viewClass`, 'required');
    } else if (!KNOWN_VIEW_CLASSES.includes(viewClass)) {
      const hint = closest(viewClass, KNOWN_VIEW_CLASSES);
      problem(
        `${field}.viewClass`,
        `unknown view class "${viewClass}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; known: ${KNOWN_VIEW_CLASSES.join(', ')}`,
      );
    } else if (viewClass === 'OAuthFieldView') {
      oauthFields.push(name);
    }
    if (spec.required !== undefined && typeof spec.required !== 'boolean') {
      problem(`${field}.required`, 'must be true or false');
    }
  }
}

function checkOAuth2(
  block: unknown,
  options: DescriptorOptions,
  problem: (field: string, message: string) => void,
  warn: (field: string, message: string) => void,
): OAuth2Declaration | undefined {
  const path = 'credentials.oauth2';
  if (!isObject(block)) {
    problem(path, 'must be an object');
    return undefined;
  }
  const { value, missing } = resolveTemplates(block, options.env);
  for (const name of missing) {
    const where = Object.entries(block)
      .filter(([, v]) => JSON.stringify(v).includes(name))
      .map(([k]) => `${path}.${k}`);
    const field = where.join(', ') || path;
    if (options.requireEnv) {
      problem(field, `uses {{${name}}}, but the environment variable ${name} is not set`);
    } else {
      warn(field, `uses {{${name}}}, which the environment does not set`);
    }
  }
  const text = (key: string, required: boolean): string | undefined => {
    const member = value[key];
    if (member === undefined || member === '') {
      if (required) problem(`${path}.${key}`, 'required');
      return undefined;
    }
    if (typeof member !== 'string') {
      problem(`${path}.${key}`, 'must be a string');
      return undefined;
    }
    return member;
  };
  const url = (key: string): string | undefined => {
    const member = text(key, true);
    // A template left unresolved (requireEnv off) is checked once it has a value.
    if (member === undefined || /\{\{/.test(member)) return member;
    const issue = endpointProblem(member);
    if (issue !== undefined) problem(`${path}.${key}`, issue);
    return member;
  };
  const clientId = text('client_id', true);
  const clientSecret = text('client_secret', true);
  const authUri = url('auth_uri');
  const tokenUri = url('token_uri');
  let scopes: string[] = [];
  if (typeof value.scopes === 'string') scopes = value.scopes.split(/[\s,]+/).filter(Boolean);
  else if (Array.isArray(value.scopes) && value.scopes.every((s) => typeof s === 'string')) {
    scopes = value.scopes as string[];
  } else if (value.scopes !== undefined) problem(`${path}.scopes`, 'must be an array of strings');
  const clientAuth = text('client_auth', false);
  if (
    clientAuth !== undefined &&
    clientAuth !== 'client_secret_post' &&
    clientAuth !== 'client_secret_basic'
  ) {
    problem(`${path}.client_auth`, 'must be "client_secret_post" or "client_secret_basic"');
  }
  const provider = text('provider', false);
  if (provider !== undefined && !/^[a-z0-9][a-z0-9-]*$/.test(provider)) {
    problem(`${path}.provider`, 'must be a provider id from the catalog (lowercase, digits, -)');
  }
  if (
    clientId === undefined ||
    clientSecret === undefined ||
    authUri === undefined ||
    tokenUri === undefined
  ) {
    return undefined;
  }
  if (scopes.length === 0) warn(`${path}.scopes`, 'no scopes: the provider grants its defaults');
  return {
    clientId,
    clientSecret,
    authUri,
    tokenUri,
    scopes,
    accessType: text('access_type', false),
    prompt: text('prompt', false),
    clientAuth: clientAuth as ClientAuthentication | undefined,
    provider,
  };
}

async function checkMain(
  main: unknown,
  dir: string,
  field: string,
  problem: (field: string, message: string) => void,
): Promise<string | undefined> {
  if (typeof main !== 'string' || main === '') {
    problem(field, 'required (the module that exports process)');
    return undefined;
  }
  const file = resolve(dir, main);
  const inside = relative(dir, file);
  if (inside.startsWith('..') || isAbsolute(inside)) {
    problem(field, `"${main}" is outside the component folder`);
    return undefined;
  }
  try {
    if (!(await stat(file)).isFile()) {
      problem(field, `"${main}" is not a file`);
      return undefined;
    }
  } catch {
    problem(field, `"${main}" does not exist (looked for ${file})`);
    return undefined;
  }
  return file;
}

/** The known name nearest to a misspelt one (case or up to two edits), if any. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    if (candidate.toLowerCase() === name.toLowerCase()) return candidate;
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
