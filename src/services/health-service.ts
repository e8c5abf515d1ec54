// grpc.health.v1.Health: SERVING while the daemon runs, NOT_SERVING once it starts to stop.
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../gen/grpc/health/v1/health_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { notFound } from "../errdefs/errors.js";

export { Health };

export interface HealthState {
  serving(): boolean;
  knownService(name: string): boolean;
  /** Resolves when serving() may have changed. */
  changed(signal: AbortSignal): Promise<void>;
}

export function healthService(state: HealthState): ServiceImpl<(typeof Health)["method"]> {
  const statusOf = (service: string) => {
    if (service !== "" && !state.knownService(service)) throw notFound(`unknown service ${service}`);
    return state.serving() ? Serving.SERVING : Serving.NOT_SERVING;
  };
  return {
    check: async (req) => ({ status: statusOf(req.service) }),
    watch: async function* (req, ctx) {
      let last: Serving | undefined;
      while (!ctx.signal.aborted) {
        const current =
          req.service !== "" && !state.knownService(req.service)
            ? Serving.SERVICE_UNKNOWN
            : state.serving()
              ? Serving.SERVING
              : Serving.NOT_SERVING;
        if (current !== last) {
          last = current;
          yield { status: current };
        }
        if (current === Serving.NOT_SERVING) return; // the daemon is stopping: let the stream end
        await state.changed(ctx.signal);
      }
    },
  };
}
