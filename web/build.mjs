// Builds web/dist from web/src: no bundler and no transpiler (the app is plain modern JS, CSS and
// HTML), so the build copies the files, stamps each asset URL with its content hash (long caches
// are safe, a new build is never mixed with an old one) and checks the size budget.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
const dist = join(here, "dist");
const BUDGET_BYTES = 250 * 1024; // first load: compressed JS + CSS (issue #18)

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
let html = readFileSync(join(src, "index.html"), "utf8");
let compressed = 0;
for (const name of readdirSync(src).sort()) {
  if (name === "index.html") continue;
  const body = readFileSync(join(src, name));
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 10);
  const stamped = name.replace(/\.(\w+)$/, `.${hash}.$1`);
  writeFileSync(join(dist, stamped), body);
  html = html.replaceAll(`"${name}"`, `"${stamped}"`);
  if (/\.(js|css)$/.test(name)) compressed += gzipSync(body, { level: 9 }).length;
}
writeFileSync(join(dist, "index.html"), html);
const summary = { js_css_gzip_bytes: compressed, budget_bytes: BUDGET_BYTES };
writeFileSync(join(dist, "build.json"), JSON.stringify(summary) + "\n");
console.log(`web/dist: ${compressed} bytes of compressed JS+CSS (budget ${BUDGET_BYTES})`);
if (compressed > BUDGET_BYTES) {
  console.error("over the first-load budget");
  process.exit(1);
}
