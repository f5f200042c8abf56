import Anthropic, { type ClientOptions } from '@anthropic-ai/sdk';
import { resolveBinding, type BindOptions } from './bind.js';

export interface AnthropicClientOptions extends BindOptions {
  /** Extra client options; credentials and `baseURL` are set to the vault key and `{proxy}/anthropic`. */
  config?: Omit<ClientOptions, 'apiKey' | 'authToken' | 'baseURL'>;
}

/**
 * An `@anthropic-ai/sdk` client bound to the vault key in scope, calling `{proxy}/anthropic`.
 * The key goes as `Authorization: Bearer` (the SDK's `authToken`), which the proxy reads.
 */
export function anthropicClient(options: AnthropicClientOptions = {}): Anthropic {
  const { token, proxyUrl } = resolveBinding(options, 'anthropic');
  return new Anthropic({ ...options.config, apiKey: null, authToken: token, baseURL: `${proxyUrl}/anthropic` });
}
