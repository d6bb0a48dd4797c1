import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { ComponentError, RuntimeError } from './errors.ts';
import {
  type ClientAuthentication,
  checkDescriptor,
  type StepKind,
} from './internal/descriptor.ts';
import {
  exportedFunction,
  exportedMember,
  isGeneratorFunction,
  loadModule,
} from './internal/module-loader.ts';

export { KNOWN_VIEW_CLASSES } from './internal/descriptor.ts';
export type { ClientAuthentication, StepKind };

/** An action or a trigger declared in component.json. */
export interface ComponentStep {
  readonly name: string;
  readonly kind: StepKind;
  readonly title: string | undefined;
  /** Absolute path of the module that exports `process`. */
  readonly main: string;
}

/**
 * component.json's `credentials.oauth2` block with `{{ENV}}` templates resolved.
 * `clientSecret` is not enumerable, and printing the block shows it redacted.
 */
export interface ComponentOAuth2 {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly authUri: string;
  readonly tokenUri: string;
  readonly scopes: readonly string[];
  readonly accessType: string | undefined;
  readonly prompt: string | undefined;
  /** Default `client_secret_post`: what elastic.io's examples send. */
  readonly clientAuth: ClientAuthentication | undefined;
  /** A catalog provider whose quirks apply (tokenwarden's addition; default: generic `oauth2`). */
  readonly provider: string | undefined;
}

/** `process.call(ctx, msg, cfg, snapshot)`: sailor's signature. */
export type ProcessFunction = (
  this: unknown,
  msg: unknown,
  cfg: Record<string, unknown>,
  snapshot: Record<string, unknown>,
) => unknown;

/** `verifyCredentials(credentials, cb)`, or one that returns a promise. */
export type VerifyFunction = (
  this: unknown,
  credentials: Record<string, unknown>,
  callback: (error?: unknown, result?: unknown) => void,
) => unknown;

export interface LoadComponentOptions {
  /** Values for `{{NAME}}` templates and required `envVars`. Default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * When false, a template without a value is a warning and stays as written
   * (validating a component where its secrets are not set). Default true.
   */
  requireEnv?: boolean;
  /**
   * Load every module now (verifyCredentials.js, each action and trigger), so
   * that a module that fails to load or has no `process` is reported with the
   * rest. Default true. Loading runs the modules' top-level code.
   */
  loadModules?: boolean;
}

/** A validated component folder. Obtain one with {@link loadComponent}. */
export class Component {
  readonly dir: string;
  readonly descriptorPath: string;
  readonly title: string;
  /** component.json as written (templates not resolved, so it holds no secret). */
  readonly descriptor: Readonly<Record<string, unknown>>;
  /** The cfg member holding the credential: the OAuthFieldView field, else `oauth`. */
  readonly credentialField: string;
  readonly oauth2: ComponentOAuth2 | undefined;
  readonly steps: ReadonlyMap<string, ComponentStep>;
  /** Absolute path of verifyCredentials.js, when the component has one. */
  readonly verifyCredentialsPath: string | undefined;
  /** Things elastic.io would flag but that do not stop a run. */
  readonly warnings: readonly string[];
  readonly #modules = new Map<string, Promise<ProcessFunction>>();
  #verify: Promise<VerifyFunction> | undefined;

  /** @internal use {@link loadComponent}. */
  constructor(parts: {
    dir: string;
    descriptorPath: string;
    title: string;
    descriptor: Record<string, unknown>;
    credentialField: string;
    oauth2: ComponentOAuth2 | undefined;
    steps: ComponentStep[];
    verifyCredentialsPath: string | undefined;
    warnings: string[];
  }) {
    this.dir = parts.dir;
    this.descriptorPath = parts.descriptorPath;
    this.title = parts.title;
    this.descriptor = parts.descriptor;
    this.credentialField = parts.credentialField;
    this.oauth2 = parts.oauth2;
    this.steps = new Map(parts.steps.map((step) => [step.name, Object.freeze(step)]));
    this.verifyCredentialsPath = parts.verifyCredentialsPath;
    this.warnings = Object.freeze([...parts.warnings]);
  }

  /** The declaration of an action or trigger; `unknown_step` names the ones that exist. */
  step(name: string): ComponentStep {
    const step = this.steps.get(name);
    if (step === undefined) {
      const names = [...this.steps.keys()];
      throw new RuntimeError(
        'unknown_step',
        `${this.descriptorPath} declares no action or trigger "${name}"; it has: ${names.join(', ') || 'none'}`,
      );
    }
    return step;
  }

  /** The step's `process` function (loaded once). */
  loadStep(name: string): Promise<ProcessFunction> {
    const step = this.step(name);
    let loaded = this.#modules.get(name);
    if (loaded === undefined) {
      loaded = loadProcess(step, this.descriptorPath);
      this.#modules.set(name, loaded);
      // A failed load is not cached: the file may be fixed between runs.
      loaded.catch(() => this.#modules.delete(name));
    }
    return loaded;
  }

  /** The verifyCredentials function, or undefined when the component has none. */
  loadVerifyCredentials(): Promise<VerifyFunction | undefined> {
    const path = this.verifyCredentialsPath;
    if (path === undefined) return Promise.resolve(undefined);
    if (this.#verify === undefined) {
      this.#verify = loadVerify(path);
      this.#verify.catch(() => {
        this.#verify = undefined;
      });
    }
    return this.#verify;
  }

  [inspect.custom](): string {
    return `Component ${inspect({ dir: this.dir, title: this.title, steps: [...this.steps.keys()] })}`;
  }
}

/**
 * Loads and validates a component folder: component.json (every problem at once,
 * each naming its file and field), `{{ENV}}` templates in the oauth2 block, and
 * (unless `loadModules` is false) verifyCredentials.js and every action and
 * trigger module. Throws a {@link ComponentError} listing the problems.
 */
export async function loadComponent(
  dir: string,
  options: LoadComponentOptions = {},
): Promise<Component> {
  const root = resolve(dir);
  const descriptorPath = join(root, 'component.json');
  let text: string;
  try {
    text = await readFile(descriptorPath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ComponentError(root, [
      `${descriptorPath}: ${code === 'ENOENT' ? 'not found: a component folder needs a component.json' : `cannot be read (${code})`}`,
    ]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ComponentError(root, [
      `${descriptorPath}: not valid JSON (${(error as Error).message})`,
    ]);
  }
  const check = await checkDescriptor(raw, {
    dir: root,
    file: descriptorPath,
    env: options.env ?? process.env,
    requireEnv: options.requireEnv ?? true,
  });
  const problems = [...check.problems];

  const verifyPath = join(root, 'verifyCredentials.js');
  let verifyCredentialsPath: string | undefined;
  try {
    await access(verifyPath);
    verifyCredentialsPath = verifyPath;
  } catch {
    verifyCredentialsPath = undefined;
  }

  if (options.loadModules ?? true) {
    for (const step of check.steps) {
      try {
        await loadProcess(step, descriptorPath);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    if (verifyCredentialsPath !== undefined) {
      try {
        await loadVerify(verifyCredentialsPath);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
  }
  if (problems.length > 0) throw new ComponentError(root, problems);

  let oauth2: ComponentOAuth2 | undefined;
  if (check.oauth2 !== undefined) {
    const { clientSecret, ...visible } = check.oauth2;
    const block = { ...visible, scopes: Object.freeze([...visible.scopes]) };
    Object.defineProperty(block, 'clientSecret', { value: clientSecret, enumerable: false });
    Object.defineProperty(block, 'toJSON', {
      value: () => ({ ...visible, clientSecret: '[redacted]' }),
      enumerable: false,
    });
    oauth2 = Object.freeze(block as ComponentOAuth2);
  }
  return new Component({
    dir: root,
    descriptorPath,
    title: check.title,
    descriptor: raw as Record<string, unknown>,
    credentialField: check.credentialField,
    oauth2,
    steps: check.steps.map(({ name, kind, title, main }) => ({ name, kind, title, main })),
    verifyCredentialsPath,
    warnings: check.warnings,
  });
}

async function loadProcess(
  step: { name: string; kind: StepKind; main: string },
  descriptorPath: string,
): Promise<ProcessFunction> {
  const field = `${step.kind === 'action' ? 'actions' : 'triggers'}.${step.name}.main`;
  let module: unknown;
  try {
    module = await loadModule(step.main);
  } catch (error) {
    throw new RuntimeError(
      'invalid_component',
      `${step.main}: failed to load (${field} in ${descriptorPath}): ${firstLine(error)}`,
      { cause: error },
    );
  }
  const candidate = exportedMember(module, 'process');
  if (typeof candidate !== 'function') {
    throw new RuntimeError(
      'invalid_component',
      `${step.main}: exports no process function (${field} in ${descriptorPath}); write exports.process = function (msg, cfg, snapshot) {…}`,
    );
  }
  if (isGeneratorFunction(candidate)) {
    throw new RuntimeError(
      'invalid_component',
      `${step.main}: process is a generator function (${field} in ${descriptorPath}); wrap its body in co(function* () {…}) and return that promise, as elastic.io components do`,
    );
  }
  return candidate as ProcessFunction;
}

async function loadVerify(path: string): Promise<VerifyFunction> {
  let module: unknown;
  try {
    module = await loadModule(path);
  } catch (error) {
    throw new RuntimeError('invalid_component', `${path}: failed to load: ${firstLine(error)}`, {
      cause: error,
    });
  }
  const verify = exportedFunction(module, ['verify', 'verifyCredentials']);
  if (typeof verify !== 'function') {
    throw new RuntimeError(
      'invalid_component',
      `${path}: exports no function; write module.exports = function verify(credentials, cb) {…}`,
    );
  }
  return verify as VerifyFunction;
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}
