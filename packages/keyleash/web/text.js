// Text from the server as the dashboard shows it. Preact already renders every string as a text
// node (never HTML), but a text node still acts on bidirectional overrides, which reorder what a
// label reads as, and shows other control characters as nothing. Labels, metadata and paths come
// from whoever issued, minted or called with a key, so these are shown as visible escapes.

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every control character and bidi override shown as `\xNN` or `\uNNNN`. */
export function shownText(s) {
  return s.replace(UNSAFE, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** A JSON answer with every string in it (keys too) passed through shownText. */
export function shownDeep(v) {
  if (typeof v === 'string') return shownText(v);
  if (Array.isArray(v)) return v.map(shownDeep);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [shownText(k), shownDeep(x)]));
  return v;
}
