// containerd.services.introspection.v1.Introspection: the plugin graph as it really initialised,
// and the server's persistent UUID.
import { Introspection } from "../gen/containerd/services/introspection/v1/introspection_pb.js";
import { GrpcCode } from "../errdefs/grpc-status.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import type { PluginState } from "../daemon/plugin.js";
import { PluginSkipped } from "../daemon/plugin.js";
import { parseFilters } from "../core/filters/filter.js";
import { pluginAdaptor } from "../core/filters/adaptors.js";
import { invalidArgument, isCode } from "../errdefs/errors.js";

export { Introspection };

export interface IntrospectionDeps {
  plugins: () => PluginState[];
  uuid: string;
  /** The host platform string ("linux/amd64") reported for platform-specific plugins. */
  platform: { os: string; architecture: string; variant: string };
}

export function introspectionService(deps: IntrospectionDeps): ServiceImpl<(typeof Introspection)["method"]> {
  return {
    plugins: async (req) => {
      let filter;
      try {
        filter = parseFilters(req.filters);
      } catch (err) {
        // containerd's service wraps filter errors once more: "...: invalid argument: invalid argument".
        if (isCode(err, "invalid-argument")) throw invalidArgument((err as Error).message);
        throw err;
      }
      const plugins = deps.plugins().map((s) => {
        const r = s.registration;
        const platforms = r.platforms ? [deps.platform] : [];
        return {
          type: r.type,
          id: r.id,
          requires: (r.requires ?? []).map(String),
          platforms,
          exports: s.exports,
          capabilities: r.capabilities ?? [],
          initErr: s.error
            ? {
                code: s.error instanceof PluginSkipped ? GrpcCode.UNKNOWN : GrpcCode.UNKNOWN,
                message: s.error.message,
              }
            : undefined,
        };
      });
      return {
        plugins: plugins.filter((p) =>
          filter.match(
            pluginAdaptor({
              type: p.type,
              id: p.id,
              platforms: p.platforms.map(
                (x) => `${x.os}/${x.architecture}${x.variant ? `/${x.variant}` : ""}`,
              ),
              capabilities: p.capabilities,
            }),
          ),
        ),
      };
    },
    server: async () => ({ uuid: deps.uuid, pid: BigInt(process.pid), pidns: 0n, deprecations: [] }),
  };
}
