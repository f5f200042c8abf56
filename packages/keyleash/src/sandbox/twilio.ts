import { smsSegments } from '../vendors/sms.js';
import { createSandbox, type Sandbox, type SandboxAnswer, sandboxId } from './base.js';

// A local stand-in for api.twilio.com: Messages.json and Calls.json create (and fetch), with
// HTTP Basic account SID + auth token and Twilio's error shape — enough for the official
// `twilio` package. Messages report num_segments the way Twilio counts them.

export interface TwilioSandboxOptions {
  accounts: Array<{ accountSid: string; authToken: string }>;
}

function error(status: number, code: number, message: string): SandboxAnswer {
  return { status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } };
}

export function createTwilioSandbox(opts: TwilioSandboxOptions): Sandbox {
  const tokens = new Map(opts.accounts.map((a) => [a.accountSid, a.authToken]));
  const created = new Map<string, Record<string, unknown>>();

  return createSandbox((req) => {
    const auth = req.headers.authorization ?? '';
    const [user, pass] = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8').split(/:(.*)/s) : [];
    if (!user || tokens.get(user) !== pass) return error(401, 20003, 'Authenticate');
    const seg = req.path.split('/').filter(Boolean);
    if (seg[0] !== '2010-04-01' || seg[1] !== 'Accounts' || !seg[2]) return error(404, 20404, 'The requested resource was not found');
    // The account itself: the harmless read `keyleash doctor` checks a credential with.
    if (req.method === 'GET' && seg.length === 3 && seg[2] === `${user}.json`) {
      return { status: 200, body: { sid: user, friendly_name: 'keyleash sandbox', status: 'active', type: 'Full' } };
    }
    if (seg[2] !== user) return error(403, 20003, 'Account SID in the path does not match the credential');
    const f = req.form as Record<string, string | string[] | undefined>;
    const now = new Date().toUTCString();
    const base = `/2010-04-01/Accounts/${user}`;

    if (req.method === 'POST' && seg.length === 4 && seg[3] === 'Messages.json') {
      if (!f.To) return error(400, 21604, "A 'To' phone number is required.");
      if (!f.From && !f.MessagingServiceSid) return error(400, 21603, "A 'From' phone number is required.");
      if (f.Body === undefined && !f.MediaUrl) return error(400, 21602, 'Message body is required.');
      const body = typeof f.Body === 'string' ? f.Body : '';
      const sid = sandboxId('SM');
      const msg = {
        sid,
        account_sid: user,
        to: f.To,
        from: f.From ?? null,
        messaging_service_sid: f.MessagingServiceSid ?? null,
        body,
        status: 'queued',
        num_segments: String(smsSegments(body).segments),
        num_media: String(Array.isArray(f.MediaUrl) ? f.MediaUrl.length : f.MediaUrl ? 1 : 0),
        direction: 'outbound-api',
        api_version: '2010-04-01',
        price: null,
        price_unit: 'USD',
        error_code: null,
        error_message: null,
        date_created: now,
        date_updated: now,
        date_sent: null,
        uri: `${base}/Messages/${sid}.json`,
        subresource_uris: { media: `${base}/Messages/${sid}/Media.json` },
      };
      created.set(sid, msg);
      return { status: 201, body: msg };
    }
    if (req.method === 'POST' && seg.length === 4 && seg[3] === 'Calls.json') {
      if (!f.To || !f.From) return error(400, 21201, "'To' and 'From' are required.");
      if (!f.Url && !f.Twiml && !f.ApplicationSid) return error(400, 21205, 'Url, Twiml or ApplicationSid is required.');
      const sid = sandboxId('CA');
      const call = {
        sid,
        account_sid: user,
        to: f.To,
        from: f.From,
        status: 'queued',
        direction: 'outbound-api',
        api_version: '2010-04-01',
        price: null,
        price_unit: 'USD',
        duration: null,
        start_time: null,
        end_time: null,
        date_created: now,
        date_updated: now,
        uri: `${base}/Calls/${sid}.json`,
        subresource_uris: {},
      };
      created.set(sid, call);
      return { status: 201, body: call };
    }
    if (req.method === 'GET' && seg.length === 5 && (seg[3] === 'Messages' || seg[3] === 'Calls')) {
      const obj = created.get(seg[4]!.replace(/\.json$/, ''));
      return obj ? { status: 200, body: obj } : error(404, 20404, 'The requested resource was not found');
    }
    return error(404, 20404, 'The requested resource was not found');
  });
}
