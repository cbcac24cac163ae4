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
const files = {};
// the entry module last: its imports ("./frame.js") are stamped before it is hashed
const names = readdirSync(src).filter((n) => n !== "index.html").sort((a, b) => (a === "app.js") - (b === "app.js"));
for (const name of names) {
  let text = readFileSync(join(src, name), "utf8");
  for (const [from, to] of Object.entries(files)) text = text.replaceAll(`"./${from}"`, `"./${to}"`);
  const hash = createHash("sha256").update(text).digest("hex").slice(0, 10);
  const stamped = name.replace(/\.(\w+)$/, `.${hash}.$1`);
  writeFileSync(join(dist, stamped), text);
  files[name] = stamped;
  html = html.replaceAll(`"${name}"`, `"${stamped}"`);
  if (/\.(js|css)$/.test(name)) compressed += gzipSync(Buffer.from(text), { level: 9 }).length;
}
writeFileSync(join(dist, "index.html"), html);
const summary = { js_css_gzip_bytes: compressed, budget_bytes: BUDGET_BYTES, files };
writeFileSync(join(dist, "build.json"), JSON.stringify(summary) + "\n");
console.log(`web/dist: ${compressed} bytes of compressed JS+CSS (budget ${BUDGET_BYTES})`);
if (compressed > BUDGET_BYTES) {
  console.error("over the first-load budget");
  process.exit(1);
}
