// containerd.services.version.v1.Version: tells clients what they are talking to.
import { Version } from "../gen/containerd/services/version/v1/version_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { berthVersion, berthRevision } from "../daemon/version.js";

export { Version };

export function versionService(): ServiceImpl<(typeof Version)["method"]> {
  return {
    version: async () => ({ version: berthVersion, revision: berthRevision }),
  };
}
