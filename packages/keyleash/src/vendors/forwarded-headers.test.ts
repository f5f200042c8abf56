import { describe, expect, it } from 'vitest';
import { genericVendorSchema, openaiSchema } from './config-schema.js';

describe('header configuration', () => {
  it.each([
    [['X-Tag', 'x-trace-*'], ['x-tag', 'x-trace-*']],
    [['authorization'], null],
    [['X-Forwarded-For'], null],
    [['Cookie'], null],
    [['*'], null],
    [['x_y'], null],
  ])('generic forward_headers %j', (list, want) => {
    const r = genericVendorSchema.safeParse({ base_url: 'https://a.example', forward_headers: list });
    expect(r.success ? r.data.forward_headers : null).toEqual(want);
  });

  it('takes an OpenAI organization and project, and nothing that is not an id', () => {
    expect(openaiSchema.parse({ organization: 'org-abc', project: 'proj_1' })).toMatchObject({ organization: 'org-abc', project: 'proj_1' });
    expect(openaiSchema.safeParse({ organization: 'org abc\r\nX-Evil: 1' }).success).toBe(false);
    expect(openaiSchema.safeParse({ organisation: 'org-abc' }).success).toBe(false);
  });
});
