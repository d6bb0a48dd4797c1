export { type ComponentAuthClientOptions, createComponentAuthClient } from './auth-client.ts';
export {
  type ClientAuthentication,
  Component,
  type ComponentOAuth2,
  type ComponentStep,
  KNOWN_VIEW_CLASSES,
  type LoadComponentOptions,
  loadComponent,
  type ProcessFunction,
  type StepKind,
  type VerifyFunction,
} from './component.ts';
export type { AccessTokenOptions, StepContext } from './context.ts';
export {
  ComponentError,
  isRuntimeError,
  RUNTIME_ERROR_CODES,
  RuntimeError,
  type RuntimeErrorCode,
  type RuntimeErrorOptions,
} from './errors.ts';
export { EmittedEvent, EVENT_NAMES, type EventName, isEventName } from './events.ts';
export { FileKeyStore, type FileKeyStoreOptions } from './file-key-store.ts';
export type { KeyStore, TokenSourceContext } from './key-store.ts';
export {
  type ComponentLogger,
  jsonLineLogSink,
  LOG_LEVELS,
  type LogLevel,
  type LogRecord,
  type LogSink,
} from './logger.ts';
export { Redactor } from './redaction.ts';
export { type RunStepOptions, runStep } from './run.ts';
export {
  RunSession,
  type RunSessionOptions,
  type StepOptions,
  type StepResult,
} from './session.ts';
export { VaultKeyStore, type VaultOptions, VaultTokenSource } from './vault-key-store.ts';
export { type CallVerifyOptions, callVerifyCredentials, type VerifyResult } from './verify.ts';
