/// <reference path="../pb_data/types.d.ts" />
// The PocketCoder side of mcp-fleet (PocketBase >= 0.23 JSVM; checked with 0.40).
//
//   POST /api/pocketcoder/mcp_request  {server_name, reason, session_id}
//        an agent (any auth record) asks for an MCP server: 401 without auth; an approved
//        record is returned as it is (200); otherwise the record is created (201) or set
//        back to pending (200) with the new reason/session.
//   GET  /api/pocketcoder/mcp_status?server_name=NAME
//        what to tell the agent: pending | denied | revoked | starting | ready | failing,
//        from the record and mcp-fleet's status file (see render.js serverState).
//
// On every create, update or delete of an mcp_servers record (an admin approving,
// denying or revoking), render.js re-renders docker-mcp.yaml, mcp.env and registry.yaml into
// MCP_CONFIG_DIR atomically. Nothing is restarted.
//
// Each handler runs in its own JS context, so helpers are require()d inside them.

routerAdd("POST", "/api/pocketcoder/mcp_request", (e) => {
  const body = e.requestInfo().body || {};
  const name = String(body.server_name || "").trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    return e.json(400, { error: "bad_request", message: "server_name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}" });
  }
  const view = (r) => ({
    id: r.id,
    server_name: r.getString("name"),
    status: r.getString("status"),
    image: r.getString("image"),
    reason: r.getString("reason"),
    requested_by: r.getString("requested_by"),
    session_id: r.getString("session_id"),
    creator: r.getString("creator"),
  });
  const find = () => {
    try {
      return $app.findFirstRecordByData("mcp_servers", "name", name);
    } catch (_) {
      return null;
    }
  };
  let record = find();
  if (record && record.getString("status") === "approved") {
    return e.json(200, view(record));
  }
  const created = !record;
  if (created) {
    record = new Record($app.findCollectionByNameOrId("mcp_servers"));
    record.set("name", name);
    record.set("image", "mcp/" + name + ":latest");
    record.set("creator", e.auth.id);
  }
  record.set("status", "pending");
  record.set("reason", String(body.reason || "").slice(0, 2000));
  record.set("session_id", String(body.session_id || "").slice(0, 200));
  record.set("requested_by", e.auth.collection().name + "/" + e.auth.id);
  try {
    $app.save(record);
  } catch (err) {
    // A concurrent request created it first (unique name): answer with that one.
    const other = find();
    if (created && other) return e.json(200, view(other));
    throw err;
  }
  return e.json(created ? 201 : 200, view(record));
}, $apis.requireAuth());

routerAdd("GET", "/api/pocketcoder/mcp_status", (e) => {
  const name = String(e.request.url.query().get("server_name") || "");
  return e.json(200, require(`${__hooks}/render.js`).serverState($app, name));
}, $apis.requireAuth());


onRecordAfterCreateSuccess((e) => {
  e.next();
  require(`${__hooks}/render.js`).renderLogged(e.app);
}, "mcp_servers");

onRecordAfterUpdateSuccess((e) => {
  e.next();
  require(`${__hooks}/render.js`).renderLogged(e.app);
}, "mcp_servers");

onRecordAfterDeleteSuccess((e) => {
  e.next();
  require(`${__hooks}/render.js`).renderLogged(e.app);
}, "mcp_servers");

// When PocketBase starts serving (after its migrations ran), the volume is brought in
// line with the database: a fresh install renders an empty catalog (`registry: {}`).
$app.onServe().bindFunc((e) => {
  require(`${__hooks}/render.js`).renderLogged(e.app);
  return e.next();
});
