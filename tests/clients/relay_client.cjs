#!/usr/bin/env node
// A real MCP client for mcp-fleet's relay tests: the official TypeScript SDK
// (@modelcontextprotocol/sdk, resolved through NODE_PATH; scripts/node-env.sh).
//
//   node relay_client.cjs URL http|sse METHOD PARAMS-JSON ANSWERS-JSON
//
// Connects over streamable HTTP (`http`) or the legacy HTTP+SSE transport
// (`sse`) and sends one request: METHOD `tools/call` (with an `onprogress`
// callback) or `completion/complete`, with PARAMS. Prints one JSON line of what
// it saw: {sampling: [params...], elicitation: [params...], roots: [params...],
// progress: [notification params...], result}. The caller judges.
// ANSWERS.sampling / .elicitation / .roots, when present and not null, declare
// that capability and are the handler's answer to sampling/createMessage /
// elicitation/create / roots/list; otherwise the client lacks the capability.
'use strict';

const { connect } = require('./connect.cjs');
const {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} = require('@modelcontextprotocol/sdk/types.js');

const CALL_TIMEOUT_MS = 30000;

async function main() {
  const [url, transport, method, paramsJson, answersJson] = process.argv.slice(2);
  if (!answersJson) {
    throw new Error('usage: relay_client.cjs URL http|sse METHOD PARAMS-JSON ANSWERS-JSON');
  }
  const params = JSON.parse(paramsJson);
  const answers = JSON.parse(answersJson);
  const seen = { sampling: [], elicitation: [], roots: [], progress: [] };
  const handlers = [
    ['sampling', CreateMessageRequestSchema],
    ['elicitation', ElicitRequestSchema],
    ['roots', ListRootsRequestSchema],
  ].filter(([kind]) => answers[kind]);
  const capabilities = Object.fromEntries(handlers.map(([kind]) => [kind, {}]));
  const client = await connect(url, transport, capabilities, (c) => {
    for (const [kind, schema] of handlers) {
      c.setRequestHandler(schema, async (request) => {
        seen[kind].push(request.params || {});
        return answers[kind];
      });
    }
  });
  let result;
  if (method === 'tools/call') {
    result = await client.callTool(params, CallToolResultSchema, {
      onprogress: (progress) => seen.progress.push(progress),
      timeout: CALL_TIMEOUT_MS,
    });
  } else if (method === 'completion/complete') {
    result = await client.complete(params, { timeout: CALL_TIMEOUT_MS });
  } else {
    throw new Error(`unsupported method ${method}`);
  }
  await client.close();
  process.stdout.write(JSON.stringify({ ...seen, result }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`relay_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
