#!/usr/bin/env node
// Two official TypeScript SDK clients and resources/subscribe (NODE_PATH holds
// the SDK; scripts/node-env.sh).
//
//   node resource_updates.cjs URL http|sse
//
// A subscribes to test://watched-resource and B to test://static-text; each
// has the fixture's test_update_resource tool announce its own URI, A's first.
// Then A unsubscribes from its URI and subscribes to B's; the tool announces
// A's old URI, then B's. Prints one JSON line: {a: [uris A was told of], b:
// [uris B was told of]}. A correct relay gives a = [watched, static] and b =
// [static, static]. Each client waits for the update that must arrive last on
// its session (bounded); a wrong one sent to it arrives before that, so it is
// in the list.
'use strict';

const { connect } = require('./connect.cjs');
const { CallToolResultSchema, ResourceUpdatedNotificationSchema } = require('@modelcontextprotocol/sdk/types.js');

const WATCHED = 'test://watched-resource';
const STATIC = 'test://static-text';
const WAIT_MS = 20000;
const CALL_TIMEOUT_MS = 30000;

async function subscriber(url, transport, name) {
  const updates = [];
  let wake = () => {};
  const client = await connect(url, transport, {}, (c) => {
    c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      updates.push(n.params.uri);
      wake();
    });
  });
  // Resolves once `uri` has been announced `count` times to this client.
  const until = (uri, count) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} waited ${WAIT_MS} ms for ${count}x ${uri}; got ${JSON.stringify(updates)}`)),
        WAIT_MS,
      );
      wake = () => {
        if (updates.filter((u) => u === uri).length >= count) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
  const announce = (uri) =>
    client.callTool({ name: 'test_update_resource', arguments: { uri } }, CallToolResultSchema, {
      timeout: CALL_TIMEOUT_MS,
    });
  return { client, updates, until, announce };
}

async function main() {
  const [url, transport] = process.argv.slice(2);
  if (!transport) throw new Error('usage: resource_updates.cjs URL http|sse');
  const a = await subscriber(url, transport, 'A');
  const b = await subscriber(url, transport, 'B');
  await a.client.subscribeResource({ uri: WATCHED });
  await b.client.subscribeResource({ uri: STATIC });
  await a.announce(WATCHED);
  await b.announce(STATIC);
  await a.until(WATCHED, 1);
  await b.until(STATIC, 1);

  await a.client.unsubscribeResource({ uri: WATCHED });
  await a.client.subscribeResource({ uri: STATIC });
  await a.announce(WATCHED);
  await a.announce(STATIC);
  await a.until(STATIC, 1);
  await b.until(STATIC, 2);

  await Promise.all([a.client.close(), b.client.close()]);
  process.stdout.write(JSON.stringify({ a: a.updates, b: b.updates }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`resource_updates: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
