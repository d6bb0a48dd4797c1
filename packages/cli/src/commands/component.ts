import type { Component } from '@tokenwarden/runtime';
import { expectPositionals, parseCommandArgs } from '../args.ts';
import type { Command, CommandGroup } from '../command.ts';
import { CliError, EXIT } from '../errors.ts';
import { err, formatFields, out, printJson } from '../output.ts';
import { cliErrorFromRuntime, loadRuntime } from '../runtime-module.ts';

const validate: Command = {
  name: 'validate',
  summary: 'check a component folder and list every problem (file and field)',
  help: `tokenwarden component validate: check a component folder

Usage:
  tokenwarden component validate <component-dir> [--allow-missing-env] [--json]

Checks component.json (title, actions and triggers with a "main" module that
exists, field view classes, the credentials' OAuthFieldView field and oauth2
block with client_id, client_secret, auth_uri and token_uri, {{ENV}} templates,
required envVars) and loads verifyCredentials.js and every action and trigger
module (running their top-level code, as a run would), each of which must export
process. Every problem is listed on stderr, each naming its file and field, and
the command exits 2. A valid component prints its title, credential field and
steps on stdout, and warnings (what elastic.io would flag) on stderr.

Nothing reads or writes any keys.

Options:
  --allow-missing-env   a {{VARIABLE}} or required envVar without a value in the
                        environment is a warning, not a problem (to check a
                        component where its secrets are not set)
  --json                print {"valid": …, "problems" | "component": …} as JSON
  -h, --help            show this help

Exit codes: 0 valid; 2 invalid (every problem on stderr).

Example:
  tokenwarden component validate examples/outlook
  tokenwarden component validate ./my-component --allow-missing-env
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        'allow-missing-env': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
    });
    const [dir] = expectPositionals(positionals, ['component-dir']) as [string];
    const runtime = await loadRuntime();
    let component: Component;
    try {
      component = await runtime.loadComponent(dir, {
        env: context.env,
        requireEnv: !values['allow-missing-env'],
      });
    } catch (error) {
      if (values.json && error instanceof runtime.ComponentError) {
        printJson({ valid: false, dir: error.dir, problems: error.problems });
      }
      const failure = cliErrorFromRuntime(runtime, error);
      if (failure instanceof CliError) {
        throw new CliError(failure.message, failure.exitCode, {
          code: failure.code,
          hint: 'Fix the problems above; "tokenwarden component validate --help" says what is checked.',
        });
      }
      throw failure;
    }
    const steps = [...component.steps.values()];
    if (values.json) {
      printJson({
        valid: true,
        component: {
          dir: component.dir,
          title: component.title,
          credentialField: component.credentialField,
          oauth2:
            component.oauth2 === undefined
              ? null
              : {
                  authUri: component.oauth2.authUri,
                  tokenUri: component.oauth2.tokenUri,
                  scopes: component.oauth2.scopes,
                  provider: component.oauth2.provider ?? null,
                },
          verifyCredentials: component.verifyCredentialsPath !== undefined,
          steps: steps.map(({ name, kind, title, main }) => ({
            name,
            kind,
            title: title ?? null,
            main,
          })),
        },
        warnings: component.warnings,
      });
    } else {
      const list = (kind: 'action' | 'trigger') =>
        steps
          .filter((step) => step.kind === kind)
          .map((step) => step.name)
          .join(', ') || '-';
      out(
        formatFields([
          ['component', `${component.dir}: valid`],
          ['title', component.title],
          [
            'credential',
            `cfg.${component.credentialField}${component.oauth2 === undefined ? '' : `, oauth2 token_uri ${component.oauth2.tokenUri}`}`,
          ],
          [
            'verifyCredentials',
            component.verifyCredentialsPath === undefined ? 'none (accepted unchecked)' : 'yes',
          ],
          ['actions', list('action')],
          ['triggers', list('trigger')],
        ]),
      );
    }
    for (const warning of component.warnings) err(`warning: ${warning}`);
    return EXIT.ok;
  },
};

export const component: CommandGroup = {
  name: 'component',
  summary: 'work with integration component folders (validate)',
  description: 'work with integration component folders (component.json and its modules)',
  subcommands: [validate],
};
