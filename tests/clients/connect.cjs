// Shared by the relay test clients: an official TypeScript SDK client
// connected over streamable HTTP (`http`) or the legacy HTTP+SSE transport (`sse`).
'use strict';

const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { SSEClientTransport } = require('@modelcontextprotocol/sdk/client/sse.js');

/** A new client with `capabilities`; `setup(client)` registers handlers before it connects. */
async function connect(url, transport, capabilities, setup) {
  if (!['http', 'sse'].includes(transport)) throw new Error(`unknown transport ${transport}`);
  const client = new Client({ name: 'mcp-fleet-relay-test', version: '1.0.0' }, { capabilities });
  setup(client);
  const endpoint = new URL(url);
  await client.connect(
    transport === 'sse' ? new SSEClientTransport(endpoint) : new StreamableHTTPClientTransport(endpoint),
  );
  return client;
}

module.exports = { connect };
