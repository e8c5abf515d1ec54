// Generates TypeScript from api/**/*.proto with protoc + protoc-gen-es into src/gen (part of the build).
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync, mkdirSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const api = join(root, "api");
const out = join(root, "src", "gen");

function protos(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? protos(join(dir, e.name)) : e.name.endsWith(".proto") ? [join(dir, e.name)] : [],
  );
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const files = protos(api).map((f) => relative(api, f));
execFileSync(
  "protoc",
  [
    `--plugin=protoc-gen-es=${join(root, "node_modules", ".bin", "protoc-gen-es")}`,
    `--es_out=${out}`,
    "--es_opt=target=ts,import_extension=js",
    `-I${api}`,
    "-I/usr/include",
    ...files,
  ],
  { stdio: "inherit" },
);
console.log(`generated ${files.length} proto files into src/gen`);
