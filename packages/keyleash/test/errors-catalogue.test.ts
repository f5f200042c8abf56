import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERRORS, errorBody, type ErrorCode } from '../src/errors.js';

// Keeps docs/errors.md and the catalogue in src/errors.ts in step, the way fastify's
// test/internals/errors.test.js keeps docs/Reference/Errors.md in step with its errors:
// every code is documented, every documented code exists, and the statuses agree.

const DOCS_PATH = fileURLToPath(new URL('../../../docs/errors.md', import.meta.url));
const doc = readFileSync(DOCS_PATH, 'utf8');

interface Section {
  heading: string;
  body: string;
}

/** The `## heading` sections of the document, outside fenced code blocks. */
function sections(markdown: string): Section[] {
  const out: Section[] = [];
  let current: Section | null = null;
  let fenced = false;
  for (const line of markdown.split(/\r?\n/)) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^## (.*?)\s*$/.exec(line);
    if (m) {
      current = { heading: m[1]!, body: '' };
      out.push(current);
    } else if (current) {
      current.body += line + '\n';
    }
  }
  return out;
}

const docSections = sections(doc);
const headings = docSections.map((s) => s.heading);
const codes = Object.keys(ERRORS) as ErrorCode[];

describe('docs/errors.md and the ERRORS catalogue', () => {
  it('the document starts with the error body shape', () => {
    const intro = doc.slice(0, doc.indexOf('\n## '));
    for (const field of ['"code"', '"message"', '"param"', '"request_id"', '"docs"']) expect(intro).toContain(field);
    expect(intro).toMatch(/top-level `code`/);
  });

  it('every code in ERRORS has a "## <code>" heading', () => {
    const missing = codes.filter((c) => !headings.includes(c));
    expect(missing, `undocumented codes: ${missing.join(', ')}`).toEqual([]);
  });

  it('every "##" heading is a code in ERRORS', () => {
    const unknown = headings.filter((h) => !Object.hasOwn(ERRORS, h));
    expect(unknown, `headings that are not codes: ${unknown.join(', ')}`).toEqual([]);
  });

  it('each code is documented exactly once', () => {
    const dupes = headings.filter((h, i) => headings.indexOf(h) !== i);
    expect(dupes).toEqual([]);
    expect(headings.length).toBe(codes.length);
  });

  it.each(codes)('%s: the documented status matches ERRORS', (code) => {
    const section = docSections.find((s) => s.heading === code);
    expect(section, `no section for ${code}`).toBeDefined();
    const statuses = [...section!.body.matchAll(/^Status: (\d{3})\s*$/gm)].map((m) => Number(m[1]));
    expect(statuses, `${code} needs exactly one "Status: NNN" line`).toHaveLength(1);
    expect(statuses[0]).toBe(ERRORS[code].status);
  });

  it.each(codes)('%s: the section says when it happens and what to do', (code) => {
    const section = docSections.find((s) => s.heading === code)!;
    expect(section.body).toMatch(/^When: \S/m);
    expect(section.body).toMatch(/^What to do: \S/m);
  });

  it("every error body's docs link points at an existing section", () => {
    for (const code of codes) {
      const body = errorBody(code);
      expect(body.code).toBe(code);
      expect(body.docs).toBe(`docs/errors.md#${code}`);
      // GitHub-style anchors of "## code" are the code itself (codes are lowercase with underscores).
      expect(code).toMatch(/^[a-z][a-z0-9_]*$/);
    }
  });

  it('every status in ERRORS is an HTTP error status', () => {
    for (const code of codes) {
      expect(ERRORS[code].status).toBeGreaterThanOrEqual(400);
      expect(ERRORS[code].status).toBeLessThan(600);
    }
  });
});
