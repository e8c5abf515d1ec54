// Bundles the Berth shim after tsc: dist/shim/main.js becomes one file holding every module it
// imports (native addons stay external, resolved from node_modules as before). Measured on the
// bench VM, a shim started from the bundle boots in ~125 ms instead of ~170 and holds ~3 MiB less
// anonymous memory (13.5 vs 16.6 MiB idle): one module instead of ~70, with their records, scopes
// and compiled top-levels. Names are kept as written and a source map points back to src/, so stack
// traces in the shim's log still read as the code does.
import { build } from "esbuild";

const shim = "dist/shim/main.js";
await build({
  entryPoints: [shim],
  outfile: shim,
  allowOverwrite: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Native addons (koffi's ESM entry also breaks when bundled: DESIGN.md).
  external: ["koffi", "better-sqlite3", "zstd-napi"],
  sourcemap: "linked",
  logLevel: "warning",
});
