// The command line every shim v2 binary accepts (Go's flag syntax: -name value, -name=value,
// --name value; booleans alone), and the action: start, delete, or none (serve).
import { BerthError } from "../errdefs/errors.js";

export interface ShimFlags {
  namespace: string;
  id: string;
  address: string;
  publishBinary: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  action: "start" | "delete" | "serve";
}

const valueFlags = new Set(["namespace", "id", "address", "publish-binary", "bundle", "socket"]);
const boolFlags = new Set(["debug", "v"]);

export function parseShimFlags(argv: readonly string[]): ShimFlags {
  const values: Record<string, string> = {};
  const bools = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("-") || arg === "-" || positional.length > 0) {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (boolFlags.has(name)) {
      if (eq < 0 || body.slice(eq + 1) === "true") bools.add(name);
      continue;
    }
    if (!valueFlags.has(name))
      throw new BerthError("invalid-argument", `flag provided but not defined: -${name}`);
    if (eq >= 0) values[name] = body.slice(eq + 1);
    else {
      const v = argv[++i];
      if (v === undefined) throw new BerthError("invalid-argument", `flag needs an argument: -${name}`);
      values[name] = v;
    }
  }
  const action = positional[0] ?? "serve";
  if (action !== "start" && action !== "delete" && action !== "serve")
    throw new BerthError("invalid-argument", `unknown shim action ${JSON.stringify(action)}`);
  return {
    namespace: values.namespace ?? "",
    id: values.id ?? "",
    address: values.address ?? "",
    publishBinary: values["publish-binary"] ?? "containerd",
    bundle: values.bundle ?? "",
    socket: values.socket ?? "",
    debug: bools.has("debug"),
    version: bools.has("v"),
    action,
  };
}
