// SMS segment counting, the way carriers (and Twilio's bill) count: a body that fits the GSM-7
// alphabet is sent 7 bits a character, 160 in one segment or 153 a segment once it is split (the
// rest is the concatenation header); anything else goes as UCS-2, 70 in one segment or 67 a
// segment when split. GSM-7 extension characters take two septets, and neither an escape pair
// nor a UTF-16 surrogate pair is ever split across two segments.

const GSM7_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
    '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
const GSM7_EXTENSION = new Set('\f^{}\\[~]|€');

export type SmsEncoding = 'GSM-7' | 'UCS-2';

export interface SmsSegments {
  encoding: SmsEncoding;
  segments: number;
  /** Septets (GSM-7) or UTF-16 code units (UCS-2). */
  units: number;
}

/** Each character's size in the encoding's units, in order. */
function unitsOf(body: string): { encoding: SmsEncoding; sizes: number[] } {
  const chars = [...body];
  if (chars.every((c) => GSM7_BASIC.has(c) || GSM7_EXTENSION.has(c))) {
    return { encoding: 'GSM-7', sizes: chars.map((c) => (GSM7_EXTENSION.has(c) ? 2 : 1)) };
  }
  return { encoding: 'UCS-2', sizes: chars.map((c) => c.length) };
}

export function smsSegments(body: string): SmsSegments {
  const { encoding, sizes } = unitsOf(body);
  const single = encoding === 'GSM-7' ? 160 : 70;
  const multi = encoding === 'GSM-7' ? 153 : 67;
  const units = sizes.reduce((a, b) => a + b, 0);
  if (units <= single) return { encoding, segments: 1, units };
  let segments = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > multi) {
      segments++;
      used = 0;
    }
    used += size;
  }
  return { encoding, segments, units };
}
