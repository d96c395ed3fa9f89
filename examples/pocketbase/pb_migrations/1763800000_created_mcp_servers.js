/// <reference path="../pb_data/types.d.ts" />
// The `mcp_servers` collection of the PocketCoder flow: one record per MCP server an
// agent asked for. Agents (any auth record) may read; only superusers (the admin UI or
// the superuser API) create, approve, deny, revoke or delete. Agents ask through
// POST /api/pocketcoder/mcp_request (pb_hooks/mcp_servers.pb.js).
migrate((app) => {
  const collection = new Collection({
    type: "base",
    name: "mcp_servers",
    listRule: "@request.auth.id != ''",
    viewRule: "@request.auth.id != ''",
    createRule: null,
    updateRule: null,
    deleteRule: null,
    fields: [
      // Catalog key: letters, digits, '_', '.', '-' (a Docker container name part).
      { name: "name", type: "text", required: true, max: 64, pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$" },
      { name: "status", type: "select", required: true, maxSelect: 1,
        values: ["pending", "approved", "denied", "revoked"] },
      // The container image; a new request defaults to Docker's convention mcp/<name>:latest.
      { name: "image", type: "text", max: 512 },
      // Settings: {"network": false} renders disableNetwork: true; UPPER_CASE string
      // keys are secrets, rendered into mcp.env (see pb_hooks/render.js).
      { name: "config", type: "json", maxSize: 65536 },
      { name: "reason", type: "text", max: 2000 },
      // The auth record (collection/id) that last asked, and its agent session.
      { name: "requested_by", type: "text", max: 200 },
      { name: "session_id", type: "text", max: 200 },
      { name: "created", type: "autodate", onCreate: true, onUpdate: false },
      { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ],
    indexes: ["CREATE UNIQUE INDEX idx_mcp_servers_name ON mcp_servers (name)"],
  });
  app.save(collection);
}, (app) => {
  app.delete(app.findCollectionByNameOrId("mcp_servers"));
});
