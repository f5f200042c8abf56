import twilio from 'twilio';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  rawRequest,
  startGateway,
  type TestGateway,
  TWILIO_LIVE_SID,
  TWILIO_LIVE_TOKEN,
  TWILIO_TEST_SID,
  TWILIO_TEST_TOKEN,
} from './harness.js';

// The official `twilio` package through the proxy. Its one extra line: `client.api.baseUrl`.

const ANY_SID = 'AC' + 'f'.repeat(32);
const US = '+14155550100';
const FROM = '+15005550006';
const US_SEGMENT = 8_300; // $0.0083, the built-in US price per segment

let t: TestGateway;
const tw = () => t.sandboxes.twilio!;

beforeAll(async () => {
  t = await startGateway(undefined, { sandboxes: ['twilio'] });
});
afterAll(async () => {
  await t.close();
});
beforeEach(() => {
  tw().reset();
});

const twilioKey = (extra: Record<string, unknown> = {}) => ({
  label: 'agent-sms',
  vendor: 'twilio',
  allowed_endpoints: [
    'POST /2010-04-01/Accounts/*/Messages.json',
    'GET /2010-04-01/Accounts/*/Messages/*',
    'POST /2010-04-01/Accounts/*/Calls.json',
    'POST /2010-04-01/Accounts/*/IncomingPhoneNumbers.json',
  ],
  daily_usd_cap: 1,
  expires_in: '5m',
  ...extra,
});

function client(token: string) {
  // Any AC… SID (the SDK insists on one); keyleash puts the real account in the path.
  const c = twilio(ANY_SID, token, { autoRetry: false });
  c.api.baseUrl = `${t.proxyUrl}/twilio`;
  return c;
}

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

const basic = (sid: string, token: string) => `Basic ${Buffer.from(`${sid}:${token}`).toString('base64')}`;

describe('twilio through the proxy with the official SDK', () => {
  it('sends an SMS with the real account SID and auth token, charged per segment', async () => {
    const key = await t.issue(twilioKey());
    const msg = await client(key.token).messages.create({ to: US, from: FROM, body: 'Your code is 123456' });
    expect(msg.sid).toMatch(/^SM/);
    expect(msg.accountSid).toBe(TWILIO_TEST_SID);
    const seen = tw().requests[0]!;
    expect(seen.path).toBe(`/2010-04-01/Accounts/${TWILIO_TEST_SID}/Messages.json`);
    expect(seen.headers.authorization).toBe(basic(TWILIO_TEST_SID, TWILIO_TEST_TOKEN));
    expect(JSON.stringify(seen.headers)).not.toContain(key.token);
    expect(seen.form).toMatchObject({ To: US, From: FROM, Body: 'Your code is 123456' });
    expect(await spend(key.id)).toBe(US_SEGMENT);
    // The message can be read back, for free.
    const got = await client(key.token).messages(msg.sid).fetch();
    expect(got.sid).toBe(msg.sid);
    expect(await spend(key.id)).toBe(US_SEGMENT);
  });

  it('prices UCS-2 and long GSM-7 bodies by segment and by destination prefix', async () => {
    const key = await t.issue(twilioKey());
    await client(key.token).messages.create({ to: '+447700900123', from: FROM, body: 'Привет! '.repeat(10) }); // 80 UCS-2 units: 2 × $0.05
    expect(await spend(key.id)).toBe(100_000);
    await client(key.token).messages.create({ to: US, from: FROM, body: 'a'.repeat(307) }); // 3 GSM-7 segments
    expect(await spend(key.id)).toBe(100_000 + 3 * US_SEGMENT);
    await client(key.token).messages.create({ to: '+8613800138000', from: FROM, body: 'hi' }); // unlisted: default $0.15
    expect(await spend(key.id)).toBe(100_000 + 3 * US_SEGMENT + 150_000);
  });

  it('stops an SMS loop exactly at the cap', async () => {
    const key = await t.issue(twilioKey({ daily_usd_cap: 0.0415 })); // exactly five US segments
    const c = client(key.token);
    let sent = 0;
    let refusal: unknown = null;
    for (let i = 0; i < 20 && refusal === null; i++) {
      await c.messages.create({ to: US, from: FROM, body: `ping ${i}` }).then(
        () => sent++,
        (e: unknown) => (refusal = e),
      );
    }
    expect(sent).toBe(5);
    expect(refusal).toMatchObject({ status: 429, code: 'cap_exhausted' });
    expect(tw().requests).toHaveLength(5);
    expect(await spend(key.id)).toBe(41_500);
  });

  it('prices calls per minute of TimeLimit, gives a call without one a TimeLimit, and lowers it to what the cap has left', async () => {
    const key = await t.issue(twilioKey());
    await client(key.token).calls.create({ to: US, from: FROM, url: 'https://example.com/twiml', timeLimit: 90 });
    expect(tw().requests[0]!.form).toMatchObject({ TimeLimit: '90' });
    expect(await spend(key.id)).toBe(2 * 14_000);
    // No TimeLimit: Twilio's own 4 hours would cost $3.36; the $0.972 left pays for 69 minutes.
    const call = await client(key.token).calls.create({ to: US, from: FROM, url: 'https://example.com/twiml' });
    expect(call.sid).toMatch(/^CA/);
    expect(tw().requests[1]!.form).toMatchObject({ To: US, TimeLimit: String(69 * 60) });
    expect(await spend(key.id)).toBe(71 * 14_000);
    // $0.006 left: not a minute's worth, so refused before Twilio sees it.
    const err = await client(key.token)
      .calls.create({ to: US, from: FROM, url: 'https://example.com/twiml', timeLimit: 600 })
      .then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ status: 429, code: 'cap_exhausted' });
    expect(tw().requests).toHaveLength(2);
  });

  it('rewrites "-" in the path to the real account, and takes flat JSON bodies', async () => {
    const key = await t.issue(twilioKey());
    const r = await t.proxy('/twilio/2010-04-01/Accounts/-/Messages.json', { token: key.token, body: { To: US, From: FROM, Body: 'json body' } });
    expect(r.status).toBe(201);
    const seen = tw().requests[0]!;
    expect(seen.path).toBe(`/2010-04-01/Accounts/${TWILIO_TEST_SID}/Messages.json`);
    expect(seen.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(seen.form).toMatchObject({ To: US, Body: 'json body' });
  });

  it('uses the live account only for live keys', async () => {
    const live = await t.issue(twilioKey({ mode: 'live' }));
    await client(live.token).messages.create({ to: US, from: FROM, body: 'live' });
    const seen = tw().requests[0]!;
    expect(seen.path).toContain(TWILIO_LIVE_SID);
    expect(seen.headers.authorization).toBe(basic(TWILIO_LIVE_SID, TWILIO_LIVE_TOKEN));
  });

  it('refuses a write with no cost rule on a capped key, and a priced param given twice', async () => {
    const key = await t.issue(twilioKey());
    const r = await t.proxy('/twilio/2010-04-01/Accounts/-/IncomingPhoneNumbers.json', { token: key.token, form: 'PhoneNumber=%2B14155550199' });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('cost_unknown');
    const dup = await rawRequest(
      t.proxyUrl,
      'POST',
      '/twilio/2010-04-01/Accounts/-/Messages.json',
      { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded' },
      `To=${encodeURIComponent(US)}&From=${encodeURIComponent(FROM)}&Body=a&Body=${'b'.repeat(900)}`,
    );
    expect(dup.status).toBe(400);
    expect(dup.body).toMatchObject({ code: 'invalid_amount', param: 'Body' });
    expect(tw().requests).toHaveLength(0);
  });
});
