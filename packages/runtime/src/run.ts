import { RunSession, type RunSessionOptions, type StepResult } from './session.ts';

export interface RunStepOptions extends RunSessionOptions {
  /** The action or trigger to run, by its name in component.json. */
  step: string;
  /** The incoming message, `{body, headers?, attachments?}` as sailor has it. Default `{body: {}}`. */
  msg?: unknown;
}

/**
 * Runs one message through one step: a {@link RunSession} opened for this call
 * alone. Rejects only when the step cannot be started (`unknown_step`, a module
 * that fails to load); everything that happens inside it is an event.
 */
export function runStep(options: RunStepOptions): Promise<StepResult> {
  const { step, msg, ...sessionOptions } = options;
  return new RunSession(sessionOptions).runStep(step, msg === undefined ? { body: {} } : msg);
}
