import { parseArgs } from 'node:util';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

// `keyleash mcp-stdio`: a stdio MCP server for clients that only start local servers (Claude
// Desktop's config, many IDEs). It relays every message to {PROXY}/mcp/{server} with a vault
// key and every answer back; keyleash does the checking. The key comes from the environment, so
// it never shows in a process list.

const HELP = `keyleash mcp-stdio — a stdio MCP server that relays to keyleash's MCP gateway

Usage:
  KEYLEASH_VAULT_KEY=vk_… keyleash mcp-stdio --url http://127.0.0.1:8081/mcp/stripe

Options:
  --url U        The gateway's MCP endpoint, {PROXY}/mcp/{server} (or KEYLEASH_MCP_URL)
  --key-env N    The environment variable holding the vault key (default KEYLEASH_VAULT_KEY)
`;

/** The keyleash error code in an HTTP error's text (a refusal body), if any. */
function codeIn(text: string): string | undefined {
  return /"code"\s*:\s*"([a-z_]{1,64})"/.exec(text)?.[1];
}

export async function runMcpStdio(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { url: { type: 'string' }, 'key-env': { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (e) {
    process.stderr.write(`keyleash mcp-stdio: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const url = values.url ?? env.KEYLEASH_MCP_URL;
  const keyEnv = values['key-env'] ?? 'KEYLEASH_VAULT_KEY';
  const key = env[keyEnv];
  if (!url || !/^https?:\/\/[^/]+\/mcp\/[a-z][a-z0-9_-]{0,31}\/?$/.test(url)) {
    process.stderr.write(`keyleash mcp-stdio: give --url {PROXY}/mcp/{server}\n\n${HELP}`);
    return 2;
  }
  if (!key) {
    process.stderr.write(`keyleash mcp-stdio: set ${keyEnv} to a vault key\n`);
    return 2;
  }

  const http = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
  const stdio = new StdioServerTransport();
  const initializing = new Set<string | number>();

  http.onmessage = (m: JSONRPCMessage) => {
    // The gateway checks the protocol version on every message after initialize, as a client would send it.
    if ('id' in m && 'result' in m && initializing.delete(m.id) && typeof (m.result as { protocolVersion?: unknown }).protocolVersion === 'string') {
      http.setProtocolVersion((m.result as { protocolVersion: string }).protocolVersion);
    }
    stdio.send(m).catch(() => undefined);
  };
  http.onerror = (err) => process.stderr.write(`keyleash mcp-stdio: ${err.message}\n`);
  stdio.onmessage = (m: JSONRPCMessage) => {
    if ('method' in m && m.method === 'initialize' && 'id' in m) initializing.add(m.id);
    http.send(m).catch((err: Error) => {
      // A refused message (401 key_revoked, 413, …) still gets an answer the client can read.
      if (!('method' in m) || !('id' in m)) return;
      const code = codeIn(err.message);
      const reply: JSONRPCMessage = {
        jsonrpc: '2.0',
        id: m.id,
        error: { code: -32603, message: code ? `keyleash refused the message (${code})` : `keyleash could not be reached: ${err.message.slice(0, 200)}`, ...(code ? { data: { code } } : {}) },
      };
      stdio.send(reply).catch(() => undefined);
    });
  };
  await http.start();
  await stdio.start();
  await new Promise<void>((resolve) => {
    stdio.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  await http.close().catch(() => undefined);
  return 0;
}
