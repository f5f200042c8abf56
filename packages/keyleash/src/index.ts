export { createGateway, type Gateway, type GatewayOptions } from './gateway.js';
export { loadConfig, parseConfig, configSchema, ConfigError, type Config, type ConfigInput } from './config/config.js';
export { ERRORS, type ErrorCode } from './errors.js';
export type { Store, KeyRecord, AuditRecord } from './store/store.js';
export { SqliteStore } from './store/sqlite/index.js';
export { createStripeSandbox, type StripeSandbox } from './sandbox/stripe.js';
export { createOpenAISandbox } from './sandbox/openai.js';
export { createAnthropicSandbox } from './sandbox/anthropic.js';
export { createTwilioSandbox } from './sandbox/twilio.js';
