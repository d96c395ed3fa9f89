// Opens the status page in headless Chromium, says "loaded" once it is live,
// then waits (without reloading) until SERVER shows Running and ready, and
// takes a screenshot. Prints one JSON line with what it saw.
//   node status_page.mjs URL SERVER SCREENSHOT   (URL carries ?token=… once)
import { createRequire } from "node:module";
const require = createRequire(process.env.MCP_FLEET_NODE_MODULES + "/");
const { chromium } = require("playwright-core");

const [url, server, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.MCP_FLEET_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 500 } });
  await page.goto(url);
  await page.waitForSelector("#live.on", { timeout: 30000 });
  // A reload would drop this marker; the check below proves there was none.
  await page.evaluate(() => { window.__sameDocument = true; });
  console.log("loaded");
  const row = `tr[data-server="${server}"]`;
  await page.waitForSelector(`${row} [data-phase="Running"]`, { timeout: 120000 });
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.cells[2]?.textContent === "ready",
    row, { timeout: 120000 });
  const seen = await page.evaluate((sel) => ({
    sameDocument: window.__sameDocument === true,
    navigations: performance.getEntriesByType("navigation").length,
    row: [...document.querySelector(sel).cells].map((c) => c.textContent),
    path: location.pathname + location.search,
  }), row);
  await page.screenshot({ path: shot });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
