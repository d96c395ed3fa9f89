/// <reference path="../pb_data/types.d.ts" />
// Renders the approved `mcp_servers` records into the shared volume that mcp-fleet
// watches (MCP_CONFIG_DIR):
//
//   docker-mcp.yaml  the catalog, approved servers only (Docker's catalog format)
//   mcp.env          secrets, KEY=value a line
//   registry.yaml    the approval state: each approved server with who may use it,
//                    `required_roles: [..]` (the record's JSON list) and `creator: <id>`
//
// Each file is written to a temp file in the same directory and renamed over the old
// one, so mcp-fleet never sees a half-written file. A file whose content would not
// change is not touched. Nothing is restarted: mcp-fleet converges containers and keeps
// every MCP client session open.
//
// A record's `config` (JSON object):
//   "network": false          -> disableNetwork: true (the container gets --network none)
//   "FETCH_TOKEN": "value"    -> an UPPER_CASE key with a string value is a secret: the
//                                entry gets `secrets: [{name: <server>.FETCH_TOKEN,
//                                env: FETCH_TOKEN}]` and mcp.env gets
//                                `<server>.FETCH_TOKEN="value"`, so two servers' secrets
//                                never clash. Values must be one line.
// Other keys are ignored.

const CATALOG = "docker-mcp.yaml";
const SECRETS = "mcp.env";
const REGISTRY = "registry.yaml";
const ROLE = /^[A-Za-z0-9_.:-]{1,64}$/;
const SECRET_KEY = /^[A-Z][A-Z0-9_]*$/;

function configDir() {
  return $os.getenv("MCP_CONFIG_DIR");
}

// JSON strings are valid YAML double-quoted scalars.
function q(s) {
  return JSON.stringify(String(s));
}

function configOf(record) {
  const raw = record.getString("config");
  if (!raw || raw === "null") return {};
  const c = JSON.parse(raw);
  return c && typeof c === "object" && !Array.isArray(c) ? c : {};
}

// The record's required roles: its JSON list, without anything that is not a role name.
function rolesOf(record) {
  const raw = record.getString("required_roles");
  let roles = [];
  try {
    roles = raw ? JSON.parse(raw) : [];
  } catch (_) {}
  return Array.isArray(roles) ? roles.filter((r) => typeof r === "string" && ROLE.test(r)) : [];
}

// registry.yaml for the approved records whose names are in `names` (all if null).
function renderRegistry(records, names) {
  const chosen = records.filter((r) => names === null || names.indexOf(r.getString("name")) >= 0);
  let yaml = "# Rendered by PocketBase (pb_hooks/render.js): the approved servers and who may use them.\n";
  if (chosen.length === 0) return yaml + "registry: {}\n";
  yaml += "registry:\n";
  for (const r of chosen) {
    yaml += "  " + r.getString("name") + ":\n";
    yaml += "    ref: \"\"\n";
    yaml += "    required_roles: [" + rolesOf(r).map(q).join(", ") + "]\n";
    yaml += "    creator: " + q(r.getString("creator")) + "\n";
  }
  return yaml;
}

// The server names of a catalog this file rendered.
function catalogNames(text) {
  return (text || "").split("\n").filter((l) => /^  [A-Za-z0-9][A-Za-z0-9_.-]*:$/.test(l)).map((l) => l.trim().slice(0, -1));
}

function secretsOf(config) {
  const out = [];
  for (const k of Object.keys(config).sort()) {
    const v = config[k];
    if (!SECRET_KEY.test(k) || typeof v !== "string") continue;
    if (/[\r\n]/.test(v)) throw new Error("secret " + k + " must be one line");
    out.push({ env: k, value: v });
  }
  return out;
}

// The two files' text for the approved records (sorted by name). With `inline`, who
// may use each server goes on its catalog entry (`x-mcp-fleet:`, read by mcp-fleet
// with --approval all) instead of in registry.yaml.
function renderFiles(records, inline) {
  let yaml = "# Rendered by PocketBase (pb_hooks/render.js) from the approved mcp_servers records.\n";
  yaml += "name: docker-mcp\ndisplayName: PocketCoder Dynamic Catalog\n";
  let env = "# Rendered by PocketBase (pb_hooks/render.js): secrets of the approved MCP servers.\n";
  if (records.length === 0) {
    yaml += "registry: {}\n";
  } else {
    yaml += "registry:\n";
  }
  for (const r of records) {
    const name = r.getString("name");
    const config = configOf(r);
    const secrets = secretsOf(config);
    const image = r.getString("image") || "mcp/" + name + ":latest";
    yaml += "  " + name + ":\n";
    yaml += "    title: " + q(name) + "\n";
    yaml += "    description: \"Approved by user for PocketCoder\"\n";
    yaml += "    type: server\n";
    yaml += "    image: " + q(image) + "\n";
    yaml += "    longLived: false\n";
    if (config.network === false) yaml += "    disableNetwork: true\n";
    if (inline) {
      yaml += "    x-mcp-fleet:\n";
      yaml += "      required_roles: [" + rolesOf(r).map(q).join(", ") + "]\n";
      yaml += "      creator: " + q(r.getString("creator")) + "\n";
    }
    if (secrets.length > 0) {
      yaml += "    secrets:\n";
      for (const s of secrets) {
        yaml += "      - name: " + q(name + "." + s.env) + "\n";
        yaml += "        env: " + q(s.env) + "\n";
        // mcp-fleet strips one layer of matching quotes and nothing else.
        env += name + "." + s.env + "=\"" + s.value + "\"\n";
      }
    }
  }
  return { yaml: yaml, env: env };
}

function readOr(path, dflt) {
  try {
    return toString($os.readFile(path));
  } catch (_) {
    return dflt;
  }
}

// Writes dir/file atomically (temp file in the same directory, then rename) unless it
// already holds `text`. Returns whether it wrote.
function writeAtomic(dir, file, text, mode) {
  const path = dir + "/" + file;
  if (readOr(path, null) === text) return false;
  const tmp = dir + "/." + file + ".pocketbase-" + $security.randomString(8) + ".tmp";
  try {
    $os.writeFile(tmp, text, mode);
    $os.rename(tmp, path);
  } catch (err) {
    try { $os.remove(tmp); } catch (_) {}
    throw err;
  }
  return true;
}

function envKeys(text) {
  return (text || "").split("\n").filter((l) => l && l[0] !== "#").map((l) => l.split("=")[0]);
}

// The env keys a catalog this file rendered names in its `secrets:` lists.
function catalogSecretKeys(text) {
  return (text || "").split("\n").filter((l) => /^      - name: "/.test(l)).map((l) => JSON.parse(l.slice(14)));
}

// On Kubernetes (MCP_KUBE_NAMESPACE set) the files live in the ConfigMap and Secret
// that mcp-fleet mounts (manifests/), written through the API with this Pod's service
// account token (re-read each time: kubelet rotates it). Returns a call function, or
// null off Kubernetes.
function kubeApi() {
  const ns = $os.getenv("MCP_KUBE_NAMESPACE");
  if (!ns) return null;
  const base = $os.getenv("MCP_KUBE_API") ||
    "https://" + $os.getenv("KUBERNETES_SERVICE_HOST") + ":" + ($os.getenv("KUBERNETES_SERVICE_PORT") || "443");
  const tokenFile = $os.getenv("MCP_KUBE_TOKEN_FILE") || "/var/run/secrets/kubernetes.io/serviceaccount/token";
  const token = toString($os.readFile(tokenFile)).trim();
  return (method, path, body) => {
    const res = $http.send({
      url: base + "/api/v1/namespaces/" + ns + path,
      method: method,
      body: body ? JSON.stringify(body) : "",
      headers: {
        "Authorization": "Bearer " + token,
        "Content-Type": "application/merge-patch+json",
        "Accept": "application/json",
      },
      timeout: 10,
    });
    if (res.statusCode < 200 || res.statusCode > 299) {
      const why = res.json && res.json.message ? res.json.message : "";
      throw new Error(method + " " + path + ": HTTP " + res.statusCode + " " + why);
    }
    return res.json;
  };
}

// The Kubernetes counterpart of the file writes below: the catalog (with each
// server's access rule on its entry, as mcp-fleet runs there with --approval all) in
// the ConfigMap, the secrets in the Secret: first when secrets are added, after the
// catalog when they are dropped, as with files.
function renderKube(app, api, records) {
  const files = renderFiles(records, true);
  const configMap = $os.getenv("MCP_KUBE_CONFIGMAP") || "mcp-fleet-catalog";
  const secret = $os.getenv("MCP_KUBE_SECRET") || "mcp-fleet-secrets";
  const data = api("GET", "/configmaps/" + configMap).data || {};
  const newKeys = envKeys(files.env);
  const envFirst = catalogSecretKeys(data[CATALOG]).every((k) => newKeys.indexOf(k) >= 0);
  const wrote = [];
  const writeEnv = () => {
    // Not read back to compare (it is base64 and this JavaScript has no decoder);
    // the same content again changes nothing in the cluster.
    api("PATCH", "/secrets/" + secret, { stringData: { [SECRETS]: files.env } });
    wrote.push(SECRETS);
  };
  const writeCatalog = () => {
    if (data[CATALOG] === files.yaml) return;
    api("PATCH", "/configmaps/" + configMap, { data: { [CATALOG]: files.yaml } });
    wrote.push(CATALOG);
  };
  if (envFirst) { writeEnv(); writeCatalog(); } else { writeCatalog(); writeEnv(); }
  app.logger().info("mcp render", "configmap", configMap, "wrote", wrote.join(","), "approved",
    records.map((r) => r.getString("name")).join(","));
  return { wrote: wrote };
}

// Renders the shared volume (or, on Kubernetes, the ConfigMap and Secret) from the
// database. Safe to call on any change: unchanged files are left alone.
function render(app) {
  const records = app.findRecordsByFilter("mcp_servers", "status = 'approved'", "name", 0, 0);
  const api = kubeApi();
  if (api) return renderKube(app, api, records);
  const dir = configDir();
  if (!dir) {
    app.logger().warn("mcp render: neither MCP_CONFIG_DIR nor MCP_KUBE_NAMESPACE is set; nothing rendered");
    return { wrote: [] };
  }
  const files = renderFiles(records, false);
  // New secrets must exist before the catalog names them; dropped secrets go after the
  // catalog stops naming them.
  const oldKeys = envKeys(readOr(dir + "/" + SECRETS, ""));
  const newKeys = envKeys(files.env);
  const envFirst = oldKeys.every((k) => newKeys.indexOf(k) >= 0);
  const wrote = [];
  // The registry never names a server the catalog does not have: first only servers
  // in both the old catalog and the new one, then (after the catalog) all of them.
  const before = catalogNames(readOr(dir + "/" + CATALOG, ""));
  const writeRegistry = (names) => writeAtomic(dir, REGISTRY, renderRegistry(records, names), 420) && wrote.push(REGISTRY);
  writeRegistry(before);
  const writeEnv = () => writeAtomic(dir, SECRETS, files.env, 384 /* 0600 */) && wrote.push(SECRETS);
  const writeCatalog = () => writeAtomic(dir, CATALOG, files.yaml, 420 /* 0644 */) && wrote.push(CATALOG);
  if (envFirst) { writeEnv(); writeCatalog(); } else { writeCatalog(); writeEnv(); }
  writeRegistry(null);
  if (wrote.length > 0) {
    app.logger().info("mcp render", "dir", dir, "wrote", wrote.join(","), "approved",
      records.map((r) => r.getString("name")).join(","));
  }
  return { wrote: wrote };
}

// mcp-fleet's status: from its `GET /status` when MCP_FLEET_STATUS_URL is set (with
// the operator token in MCP_FLEET_TOKEN_FILE; on Kubernetes the status file is inside
// mcp-fleet's Pod), else from its status file. Null when it cannot be had.
function fleetStatus() {
  const url = $os.getenv("MCP_FLEET_STATUS_URL");
  if (!url) {
    const path = $os.getenv("MCP_STATUS_FILE") || (configDir() + "/mcp-status.json");
    try {
      return JSON.parse(readOr(path, "null"));
    } catch (_) {
      return null;
    }
  }
  const headers = { "Accept": "application/json" };
  const tokenFile = $os.getenv("MCP_FLEET_TOKEN_FILE");
  try {
    if (tokenFile) headers["Authorization"] = "Bearer " + toString($os.readFile(tokenFile)).trim();
    const res = $http.send({ url: url, method: "GET", headers: headers, timeout: 5 });
    return res.statusCode === 200 ? res.json : null;
  } catch (_) {
    return null;
  }
}

// What the application tells the agent about `name`, from the record and mcp-fleet's
// status file (MCP_CONFIG_DIR/mcp-status.json, or MCP_STATUS_FILE):
//   pending | denied | revoked   the request as the admin left it
//   starting                     approved; mcp-fleet has not got it running and ready yet
//   ready                        the container runs and the gateway serves its tools
//   failing                      CrashLoopBackOff, ImagePullBackOff, Invalid, Conflict, Unsupported
function serverState(app, name) {
  let record = null;
  try {
    record = app.findFirstRecordByData("mcp_servers", "name", name);
  } catch (_) {}
  if (!record) return { server_name: name, state: "unknown", message: "no request for this server" };
  const status = record.getString("status");
  const out = { server_name: name, request: status, state: status, phase: null, message: "", ready: null };
  if (status !== "approved") return out;
  const fleet = fleetStatus();
  const s = fleet && fleet.servers ? fleet.servers[name] : null;
  if (!s) {
    out.state = "starting";
    out.message = "approved; waiting for mcp-fleet to pick it up";
    return out;
  }
  out.phase = s.phase;
  out.message = s.message || "";
  out.ready = s.ready ? !!s.ready.status : false;
  if (["CrashLoopBackOff", "ImagePullBackOff", "Invalid", "Conflict", "Unsupported"].indexOf(s.phase) >= 0) {
    out.state = "failing";
  } else if ((s.phase === "Running" || s.phase === "Remote") && out.ready) {
    out.state = "ready";
  } else {
    out.state = "starting";
    if (s.ready && s.ready.message) out.message = s.ready.message;
  }
  return out;
}

// For hooks: a failed render is logged and does not fail the request that
// triggered it (the next change renders again).
function renderLogged(app) {
  try {
    render(app);
  } catch (err) {
    app.logger().error("mcp render failed", "error", String(err));
  }
}

module.exports = {
  render: render,
  renderLogged: renderLogged,
  renderFiles: renderFiles,
  renderRegistry: renderRegistry,
  serverState: serverState,
};
