// Money and time as the dashboard shows them. Plain module: the dashboard imports it, and the
// tests import it in Node.

const formats = new Map();
function usdFormat(digits) {
  let f = formats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: digits });
    formats.set(digits, f);
  }
  return f;
}

/**
 * USD with as many digits as the amount needs, so a non-zero cost never reads `$0.00`: cents
 * from $1, four places from one cent (`$0.0142`), six below (`$0.0042`, `$0.000002`). Amounts are
 * whole micro-dollars, so six places always show them.
 */
export function usd(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const a = Math.abs(n);
  const digits = a === 0 || a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
  return usdFormat(digits).format(n);
}

/** A short USD label for chart axes. */
export function usdAxis(n) {
  const a = Math.abs(n);
  if (a >= 1000) return `$${(n / 1000).toFixed(a >= 10_000 ? 0 : 1)}k`;
  return usd(n);
}

export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hrs / 24)}d`;
}

/** `WCAG 2` contrast ratio of two `rgb(…)` / `#rrggbb` colours (the dashboard's tests check its badges). */
export function contrastRatio(a, b) {
  const lum = (c) => {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(c);
    const rgb = m ? m.slice(1).map((x) => parseInt(x, 16)) : (c.match(/\d+(\.\d+)?/g) || []).slice(0, 3).map(Number);
    const [r, g, bl] = rgb.map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
