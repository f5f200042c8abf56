import pino, { type Logger } from 'pino';

// Tokens and secrets are never logged on purpose; redaction is the second line of defence for
// objects that might carry them (headers, config).
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  '*.headers.authorization',
  'headers.authorization',
  'token',
  '*.token',
  'admin_token',
  '*.admin_token',
  'secret',
  '*.secret',
  '*.test_secret',
  '*.live_secret',
  '*.*.test_secret',
  '*.*.live_secret',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: 'keyleash' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
