/// <reference path="../pb_data/types.d.ts" />
// Identity and access (issue 11):
//   users.role                 the agent's role, put into its gateway token
//                              (pb_hooks/gateway_token.pb.js). Only superusers set it: a
//                              user can neither sign up with one nor change its own.
//   mcp_servers.required_roles a JSON list of roles; a user holding one of them (or the
//                              server's creator, or an mcp.admin) may use the server.
//                              Rendered into registry.yaml (pb_hooks/render.js).
//   mcp_servers.creator        the id of the user who first asked for the server.
migrate((app) => {
  const noRole = "@request.body.role:isset = false";
  const users = app.findCollectionByNameOrId("users");
  users.fields.add(new TextField({ name: "role", max: 64, pattern: "^[A-Za-z0-9_.:-]*$" }));
  // A rule reads as a string pointer: null (superusers only) stays null; "" (anyone)
  // becomes "anyone, without a role".
  const withoutRole = (rule) => {
    if (rule === null || rule === undefined) return null;
    const text = String(rule);
    return text ? "(" + text + ") && " + noRole : noRole;
  };
  users.createRule = withoutRole(users.createRule);
  users.updateRule = withoutRole(users.updateRule);
  app.save(users);

  const servers = app.findCollectionByNameOrId("mcp_servers");
  servers.fields.add(new JSONField({ name: "required_roles", maxSize: 4096 }));
  servers.fields.add(new TextField({ name: "creator", max: 64 }));
  app.save(servers);
}, (app) => {
  const strip = (rule) => (rule === null || rule === undefined ? null : String(rule).replace(/^\((.*)\) && @request\.body\.role:isset = false$/, "$1").replace(/^@request\.body\.role:isset = false$/, ""));
  const users = app.findCollectionByNameOrId("users");
  users.createRule = strip(users.createRule);
  users.updateRule = strip(users.updateRule);
  users.fields.removeByName("role");
  app.save(users);
  const servers = app.findCollectionByNameOrId("mcp_servers");
  servers.fields.removeByName("required_roles");
  servers.fields.removeByName("creator");
  app.save(servers);
});
