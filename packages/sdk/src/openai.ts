import OpenAI, { type ClientOptions } from 'openai';
import { resolveBinding, type BindOptions } from './bind.js';

export interface OpenAIClientOptions extends BindOptions {
  /** Extra client options; `apiKey` and `baseURL` are set to the vault key and `{proxy}/openai/v1`. */
  config?: Omit<ClientOptions, 'apiKey' | 'baseURL'>;
}

/** An `openai` client bound to the vault key in scope, calling `{proxy}/openai/v1`. */
export function openaiClient(options: OpenAIClientOptions = {}): OpenAI {
  const { token, proxyUrl } = resolveBinding(options, 'openai');
  return new OpenAI({ ...options.config, apiKey: token, baseURL: `${proxyUrl}/openai/v1` });
}
