import { createSandbox, type Sandbox } from './base.js';

// A generic upstream for vendors defined in config: it answers every request with what it
// received (method, path, query, the credential it was sent, the body), so a newcomer can see
// exactly what keyleash forwards. Secrets it is given are echoed masked, never in full.

export function createEchoSandbox(): Sandbox {
  return createSandbox((req) => {
    if (req.path === '/fail') return { status: 500, body: { error: 'the echo sandbox fails on /fail' } };
    const auth = req.headers.authorization;
    return {
      status: 200,
      body: {
        echo: true,
        method: req.method,
        path: req.path,
        query: req.query,
        credential: auth ? `${auth.split(' ')[0]} ***` : null,
        body: req.json ?? (Object.keys(req.form).length ? req.form : req.body),
      },
    };
  });
}
