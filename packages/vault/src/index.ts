export { ConfigError, type ConfigSource, loadConfig, type VaultConfig } from './config.ts';
export { type RotationResult, rotateKeys } from './rotate-keys.ts';
export { DEMO_AUTH_CLIENT_ID, type RunningVault, type StartOptions, startVault } from './server.ts';
