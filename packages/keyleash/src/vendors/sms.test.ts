import { describe, expect, it } from 'vitest';
import { smsSegments } from './sms.js';

describe('SMS segment counting', () => {
  it('counts GSM-7 bodies: 160 in one segment, 153 a segment beyond', () => {
    expect(smsSegments('')).toEqual({ encoding: 'GSM-7', segments: 1, units: 0 });
    expect(smsSegments('hello')).toMatchObject({ encoding: 'GSM-7', segments: 1 });
    expect(smsSegments('a'.repeat(160))).toMatchObject({ encoding: 'GSM-7', segments: 1, units: 160 });
    expect(smsSegments('a'.repeat(161))).toMatchObject({ encoding: 'GSM-7', segments: 2 });
    expect(smsSegments('a'.repeat(306))).toMatchObject({ segments: 2 });
    expect(smsSegments('a'.repeat(307))).toMatchObject({ segments: 3 });
    expect(smsSegments('a'.repeat(459))).toMatchObject({ segments: 3 });
    expect(smsSegments('a'.repeat(460))).toMatchObject({ segments: 4 });
  });

  it('treats the GSM-7 accented letters and symbols as GSM-7', () => {
    expect(smsSegments('Café @ £5, Øre ÄÖÜ ñ ß ¿¡ §').encoding).toBe('GSM-7');
    expect(smsSegments('line\nbreak\r').encoding).toBe('GSM-7');
  });

  it('counts GSM-7 extension characters as two septets and never splits them', () => {
    expect(smsSegments('€'.repeat(80))).toMatchObject({ encoding: 'GSM-7', segments: 1, units: 160 });
    expect(smsSegments('€'.repeat(81))).toMatchObject({ segments: 2, units: 162 });
    expect(smsSegments('{}[]~|^\\')).toMatchObject({ encoding: 'GSM-7', units: 16 });
    // 152 'a' then '€': the pair does not fit in segment one's last septet, so it moves on.
    expect(smsSegments('a'.repeat(152) + '€' + 'a'.repeat(10))).toMatchObject({ segments: 2, units: 164 });
    expect(smsSegments('a'.repeat(152) + '€' + 'a'.repeat(152))).toMatchObject({ segments: 3, units: 306 });
  });

  it('switches to UCS-2 for anything outside GSM-7: 70 in one segment, 67 a segment beyond', () => {
    expect(smsSegments('ç')).toMatchObject({ encoding: 'UCS-2', segments: 1 }); // lower-case ç is not GSM-7
    expect(smsSegments('Привет')).toMatchObject({ encoding: 'UCS-2', segments: 1, units: 6 });
    expect(smsSegments('ж'.repeat(70))).toMatchObject({ segments: 1 });
    expect(smsSegments('ж'.repeat(71))).toMatchObject({ segments: 2 });
    expect(smsSegments('ж'.repeat(134))).toMatchObject({ segments: 2 });
    expect(smsSegments('ж'.repeat(135))).toMatchObject({ segments: 3 });
    expect(smsSegments('a'.repeat(159) + 'ж')).toMatchObject({ encoding: 'UCS-2', segments: 3 });
  });

  it('counts emoji as two UTF-16 units and never splits a surrogate pair', () => {
    expect(smsSegments('😀'.repeat(35))).toMatchObject({ encoding: 'UCS-2', segments: 1, units: 70 });
    expect(smsSegments('😀'.repeat(36))).toMatchObject({ segments: 2, units: 72 });
    // 66 units then an emoji: 68 > 67, so the pair starts segment two.
    expect(smsSegments('ж'.repeat(66) + '😀' + 'ж'.repeat(5))).toMatchObject({ segments: 2, units: 73 });
    expect(smsSegments('ж'.repeat(66) + '😀' + 'ж'.repeat(66))).toMatchObject({ segments: 3 });
  });
});
