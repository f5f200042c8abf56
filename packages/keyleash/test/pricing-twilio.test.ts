import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { startGateway, type TestGateway, TWILIO_TEST_SID } from './harness.js';

// Every Twilio resource family through the real gateway, on both stores: messages and calls are
// priced (a call always goes with a TimeLimit the cap can pay for); numbers, Verify, paid
// Lookups, extra call legs and anything unclassified are refused on a capped key before Twilio
// sees them.

const US = '+14155550100';
const FROM = '+15005550006';
const US_MINUTE = 14_000;
const ACC = '/twilio/2010-04-01/Accounts/-';
const ANY = ['GET', 'POST', 'DELETE'].flatMap((m) => ['/*', '/*/*', '/*/*/*', '/*/*/*/*', '/*/*/*/*/*', '/*/*/*/*/*/*'].map((p) => `${m} ${p}`));

for (const backend of await backends('pricing_twilio')) {
  describe.skipIf(backend.skip)(`Twilio pricing (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    const tw = () => t.sandboxes.twilio!;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => ({ ...(storeConfig ? { store: storeConfig as never } : {}), log_level: 'warn' }), { sandboxes: ['twilio'] });
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => tw().reset());

    const key = (cap = 5, extra: Record<string, unknown> = {}) =>
      t.issue({ label: 'pricing-twilio', vendor: 'twilio', allowed_endpoints: ANY, daily_usd_cap: cap, expires_in: '5m', ...extra });
    const spend = async (id: string): Promise<number> => (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
    const form = (o: Record<string, string>) => new URLSearchParams(o).toString();

    describe('calls', () => {
      it('gives a call without TimeLimit one (4 hours) and reserves it in full when the cap can pay', async () => {
        const k = await key(5);
        const r = await t.proxy(`${ACC}/Calls.json`, { token: k.token, form: form({ To: US, From: FROM, Url: 'https://example.com/twiml' }) });
        expect(r.status).toBe(201);
        expect(tw().requests[0]!.form).toMatchObject({ To: US, From: FROM, TimeLimit: '14400' });
        expect(await spend(k.id)).toBe(240 * US_MINUTE);
      });

      it('lowers a missing or larger TimeLimit to what the cap has left, and refuses under a minute', async () => {
        const k = await key(0.1); // 7 US minutes
        const r = await t.proxy(`${ACC}/Calls.json`, { token: k.token, form: form({ To: US, From: FROM, Url: 'https://example.com/twiml', TimeLimit: '3600' }) });
        expect(r.status).toBe(201);
        expect(tw().requests[0]!.form).toMatchObject({ TimeLimit: String(7 * 60), Url: 'https://example.com/twiml' });
        expect(await spend(k.id)).toBe(7 * US_MINUTE);
        const none = await t.proxy(`${ACC}/Calls.json`, { token: k.token, form: form({ To: US, From: FROM, Url: 'https://example.com/twiml' }) });
        expect(none.status).toBe(429);
        expect(none.body.code).toBe('cap_exhausted');
        expect(tw().requests).toHaveLength(1);
        // International, at the $0.50 default a minute: $0.10 buys no minute at all.
        const k2 = await key(0.1);
        const intl = await t.proxy(`${ACC}/Calls.json`, { token: k2.token, body: { To: '+8613800138000', From: FROM, Url: 'https://example.com/twiml' } });
        expect(intl.status).toBe(429);
        expect(tw().requests).toHaveLength(1);
        expect(await spend(k2.id)).toBe(0);
      });

      it('fits TimeLimit to a budget that binds before the key cap', async () => {
        expect((await t.admin('POST', '/v1/budgets', { id: `calls:${backend.name.replace(/\W/g, '')}`, limit_usd: 0.05, period: 'day' })).status).toBe(201);
        const k = await key(5, { budgets: [`calls:${backend.name.replace(/\W/g, '')}`] });
        const r = await t.proxy(`${ACC}/Calls.json`, { token: k.token, form: form({ To: US, From: FROM, Url: 'https://example.com/twiml' }) });
        expect(r.status).toBe(201);
        expect(tw().requests[0]!.form).toMatchObject({ TimeLimit: String(3 * 60) });
        expect(await spend(k.id)).toBe(3 * US_MINUTE);
      });

      it('lets a call be ended for free, but refuses new TwiML, recordings, machine detection and conference participants', async () => {
        tw().respond = () => ({ status: 200, body: { sid: 'CA1', status: 'completed' } });
        const k = await key();
        const end = await t.proxy(`${ACC}/Calls/CA1.json`, { token: k.token, form: form({ Status: 'completed' }) });
        expect(end.status, JSON.stringify(end.body)).toBe(200);
        expect(tw().requests[0]!.path).toBe(`/2010-04-01/Accounts/${TWILIO_TEST_SID}/Calls/CA1.json`);
        for (const [path, body] of [
          [`${ACC}/Calls/CA1.json`, { Twiml: '<Response><Dial>+447700900123</Dial></Response>' }],
          [`${ACC}/Calls/CA1/Recordings.json`, {}],
          [`${ACC}/Conferences/CF1/Participants.json`, { From: FROM, To: US }],
          [`${ACC}/Calls.json`, { From: FROM, To: US, Url: 'https://example.com/twiml', Record: 'true' }],
          [`${ACC}/Calls.json`, { From: FROM, To: US, Url: 'https://example.com/twiml', MachineDetection: 'Enable' }],
        ] as const) {
          const r = await t.proxy(path, { token: k.token, method: 'POST', form: form(body) });
          expect(r.status, path).toBe(403);
          expect(r.body.code).toBe('cost_unknown');
        }
        expect(tw().requests).toHaveLength(1);
        expect(await spend(k.id)).toBe(0);
      });
    });

    describe('messages', () => {
      it('refuses messages it cannot price: templates and non-SMS channels', async () => {
        const k = await key();
        for (const body of <Record<string, string>[]>[
          { To: US, From: FROM, ContentSid: 'HX1' },
          { To: US, From: FROM, Body: 'hi', ContentSid: 'HX1' },
          { To: `whatsapp:${US}`, From: `whatsapp:${FROM}`, Body: 'hi' },
        ]) {
          const r = await t.proxy(`${ACC}/Messages.json`, { token: k.token, form: form(body) });
          expect(r.status, JSON.stringify(body)).toBe(403);
          expect(r.body.code).toBe('cost_unknown');
        }
        expect(tw().requests).toHaveLength(0);
        const sms = await t.proxy(`${ACC}/Messages.json`, { token: k.token, form: form({ To: US, From: FROM, Body: 'hi' }) });
        expect(sms.status).toBe(201);
        expect(await spend(k.id)).toBe(8_300);
      });
    });

    describe('numbers, Verify, Lookup and the rest', () => {
      it('refuses buying a number, Verify, paid Lookups and unclassified writes; updates, releases and free lookups pass', async () => {
        const k = await key();
        for (const [path, method, body] of [
          [`${ACC}/IncomingPhoneNumbers.json`, 'POST', { PhoneNumber: '+14155550199' }],
          [`${ACC}/IncomingPhoneNumbers/Local.json`, 'POST', { AreaCode: '415' }],
          [`${ACC}/IncomingPhoneNumbers/TollFree.json`, 'POST', { AreaCode: '800' }],
          ['/twilio/v2/Services/VA1/Verifications', 'POST', { To: US, Channel: 'sms' }],
          ['/twilio/v2/Services', 'POST', { FriendlyName: 'x' }],
          [`${ACC}/Queues.json`, 'POST', { FriendlyName: 'q' }],
          ['/twilio/v2/PhoneNumbers/+14155550100?Fields=line_type_intelligence', 'GET', undefined],
          ['/twilio/v1/PhoneNumbers/+14155550100?Type=carrier', 'GET', undefined],
        ] as const) {
          const r = await t.proxy(path, { token: k.token, method, ...(body ? { form: form(body) } : {}) });
          expect(r.status, path).toBe(403);
          expect(r.body.code).toBe('cost_unknown');
        }
        expect(tw().requests).toHaveLength(0);
        tw().respond = () => ({ status: 200, body: { ok: true } });
        for (const [path, method] of [
          [`${ACC}/IncomingPhoneNumbers/PN1.json`, 'POST'],
          [`${ACC}/IncomingPhoneNumbers/PN1.json`, 'DELETE'],
          ['/twilio/v2/PhoneNumbers/+14155550100?CountryCode=US', 'GET'],
          [`${ACC}/Messages/SM1.json`, 'POST'],
          [`${ACC}/AvailablePhoneNumbers/US/Local.json`, 'GET'],
        ] as const) {
          const r = await t.proxy(path, { token: k.token, method, ...(method === 'POST' ? { form: form({ FriendlyName: 'x' }) } : {}) });
          expect(r.status, `${path} ${JSON.stringify(r.body)}`).toBe(200);
        }
        expect(tw().requests).toHaveLength(5);
        expect(await spend(k.id)).toBe(0);
      });
    });
  });
}
