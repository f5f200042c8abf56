// Opaque pagination cursors: base64url JSON of the last item's sort position.

export interface CursorPos {
  t: number;
  id: string;
}

export function encodeCursor(pos: CursorPos): string {
  return Buffer.from(JSON.stringify([pos.t, pos.id])).toString('base64url');
}

/** Returns null for no cursor; throws on a malformed one (the API turns that into a 400). */
export function decodeCursor(cursor: string | null): CursorPos | null {
  if (cursor === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'number' || typeof parsed[1] !== 'string') {
    throw new InvalidCursorError();
  }
  return { t: parsed[0], id: parsed[1] };
}

export class InvalidCursorError extends Error {
  constructor() {
    super('cursor is malformed');
  }
}
