/// <reference path="../pb_data/types.d.ts" />
// Gateway tokens for agents (issue 11): mcp-fleet verifies them and tells remote MCP
// servers who is calling.
//
//   POST /api/pocketcoder/gateway_token
//        for the authenticated record: {token, token_type: "Bearer", expires_in}, a
//        short-lived HS256 JWT with
//          sub    the record's id (the user id mcp-fleet uses, e.g. a server's creator)
//          name   the record's name (else its email)
//          role   the record's role (users.role; "" if none), and roles: [role]
//          iss "pocketcoder", aud "mcp-fleet", iat, nbf, exp
//        401 without auth; 503 if no secret is configured.
//
// The secret is the content of the file MCP_GATEWAY_JWT_SECRET_FILE, the same file
// mcp-fleet reads to verify (read on every request, so a rotated secret applies at
// once). MCP_GATEWAY_TOKEN_TTL sets the lifetime in seconds (default 900).

routerAdd("POST", "/api/pocketcoder/gateway_token", (e) => {
  const path = $os.getenv("MCP_GATEWAY_JWT_SECRET_FILE");
  let secret = "";
  if (path) {
    try {
      secret = toString($os.readFile(path)).trim();
    } catch (err) {
      e.app.logger().error("gateway token: cannot read the secret file", "path", path, "error", String(err));
    }
  }
  if (!secret) {
    return e.json(503, {
      error: "not_configured",
      message: "no gateway token secret: set MCP_GATEWAY_JWT_SECRET_FILE to the file mcp-fleet verifies with",
    });
  }
  const ttl = parseInt($os.getenv("MCP_GATEWAY_TOKEN_TTL") || "900", 10);
  const lifetime = ttl > 0 && ttl <= 86400 ? ttl : 900;
  const record = e.auth;
  const fields = record.collection().fields.fieldNames();
  const role = fields.indexOf("role") >= 0 ? record.getString("role") : "";
  const name = (fields.indexOf("name") >= 0 && record.getString("name")) || record.email() || record.id;
  const now = Math.floor(Date.now() / 1000);
  const token = $security.createJWT(
    {
      sub: record.id,
      name: name,
      role: role,
      roles: role ? [role] : [],
      iss: "pocketcoder",
      aud: "mcp-fleet",
      iat: now,
      nbf: now,
    },
    secret,
    lifetime,
  );
  return e.json(200, { token: token, token_type: "Bearer", expires_in: lifetime });
}, $apis.requireAuth());
