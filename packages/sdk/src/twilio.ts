import twilio from 'twilio';
import { resolveBinding, type BindOptions } from './bind.js';

type RequestOptions<T> = Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0] & { data?: T };

/**
 * A twilio `RequestClient` that sends every request to `{proxy}/twilio{path}` instead of
 * `https://api.twilio.com{path}`. The vault key travels as the Basic-auth password (the proxy
 * accepts the token as username or password).
 */
export class KeyleashTwilioRequestClient extends twilio.RequestClient {
  readonly proxyUrl: string;
  constructor(proxyUrl: string, opts?: ConstructorParameters<typeof twilio.RequestClient>[0]) {
    super(opts);
    this.proxyUrl = proxyUrl.replace(/\/+$/, '');
  }
  override request<TData>(opts: RequestOptions<TData>) {
    const u = new URL(opts.uri);
    return super.request<TData>({ ...opts, uri: `${this.proxyUrl}/twilio${u.pathname}${u.search}` });
  }
}

export interface TwilioClientOptions extends BindOptions {
  /** Your Account SID (`AC…`), which Twilio's paths carry. Default: `TWILIO_ACCOUNT_SID`. */
  accountSid?: string;
  /** Extra twilio client options (e.g. `logLevel`); `httpClient` is set to the proxy's. */
  config?: Omit<NonNullable<Parameters<typeof twilio>[2]>, 'httpClient' | 'accountSid'>;
}

/** A `twilio` client bound to the vault key in scope, calling through `{proxy}/twilio`. */
export function twilioClient(options: TwilioClientOptions = {}): twilio.Twilio {
  const { token, proxyUrl } = resolveBinding(options, 'twilio');
  const accountSid = options.accountSid ?? process.env.TWILIO_ACCOUNT_SID;
  if (!accountSid) throw new TypeError('keyleash: twilioClient needs `accountSid` (or TWILIO_ACCOUNT_SID): Twilio paths carry it');
  return twilio(accountSid, token, { ...options.config, httpClient: new KeyleashTwilioRequestClient(proxyUrl) });
}
