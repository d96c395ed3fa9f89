#!/usr/bin/env node
// notifications/cancelled from an official TypeScript SDK client (NODE_PATH
// holds the SDK; scripts/node-env.sh).
//
//   node cancel_client.cjs URL http|sse GROUP
//
// Client A calls the fixture's test_wait_for_cancel; client B waits (with
// test_call_outcome) until that call has started at the server; then A aborts
// it, which makes the SDK send notifications/cancelled; B waits until the call
// has ended at the server. Prints one JSON line: {call: how A's call ended,
// outcome: {outcome: "cancelled" | "finished", seconds}} from the server.
'use strict';

const { connect } = require('./connect.cjs');
const { CallToolResultSchema } = require('@modelcontextprotocol/sdk/types.js');

const CALL_TIMEOUT_MS = 30000;

async function main() {
  const [url, transport, group] = process.argv.slice(2);
  if (!group) throw new Error('usage: cancel_client.cjs URL http|sse GROUP');
  const a = await connect(url, transport, {}, () => {});
  const b = await connect(url, transport, {}, () => {});
  const tool = (client, name, args, options = {}) =>
    client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: CALL_TIMEOUT_MS, ...options });
  const text = (result) => {
    if (result.isError) throw new Error(`the fixture failed: ${JSON.stringify(result)}`);
    return result.content[0].text;
  };

  const abort = new AbortController();
  const call = tool(a, 'test_wait_for_cancel', { group }, { signal: abort.signal }).then(
    (result) => ({ result }),
    (e) => ({ error: String(e) }),
  );
  text(await tool(b, 'test_call_outcome', { group, wait: 'started' }));
  abort.abort('the relay test cancels');
  const ended = await call;
  const outcome = JSON.parse(text(await tool(b, 'test_call_outcome', { group, wait: 'ended' })));
  await Promise.all([a.close(), b.close()]);
  process.stdout.write(JSON.stringify({ call: ended, outcome }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`cancel_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
