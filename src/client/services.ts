// The service descriptors (and their message schemas) of containerd's v1 API, re-exported so that
// users of berth/client need no other import: `client.service(Content)`, `content.WriteAction`.
export { Containers } from "../gen/containerd/services/containers/v1/containers_pb.js";
export { Content } from "../gen/containerd/services/content/v1/content_pb.js";
export { Diff } from "../gen/containerd/services/diff/v1/diff_pb.js";
export { Events } from "../gen/containerd/services/events/v1/events_pb.js";
export { Images } from "../gen/containerd/services/images/v1/images_pb.js";
export { Introspection } from "../gen/containerd/services/introspection/v1/introspection_pb.js";
export { Leases } from "../gen/containerd/services/leases/v1/leases_pb.js";
export { Namespaces } from "../gen/containerd/services/namespaces/v1/namespaces_pb.js";
export { Snapshots } from "../gen/containerd/services/snapshots/v1/snapshots_pb.js";
export { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.js";
export { Version } from "../gen/containerd/services/version/v1/version_pb.js";
export { Health } from "../gen/grpc/health/v1/health_pb.js";

// Whole modules, for messages and enums (names such as `Info` or `Status` repeat across services).
export * as containers from "../gen/containerd/services/containers/v1/containers_pb.js";
export * as content from "../gen/containerd/services/content/v1/content_pb.js";
export * as diff from "../gen/containerd/services/diff/v1/diff_pb.js";
export * as events from "../gen/containerd/services/events/v1/events_pb.js";
export * as images from "../gen/containerd/services/images/v1/images_pb.js";
export * as introspection from "../gen/containerd/services/introspection/v1/introspection_pb.js";
export * as leases from "../gen/containerd/services/leases/v1/leases_pb.js";
export * as namespaces from "../gen/containerd/services/namespaces/v1/namespaces_pb.js";
export * as snapshots from "../gen/containerd/services/snapshots/v1/snapshots_pb.js";
export * as tasks from "../gen/containerd/services/tasks/v1/tasks_pb.js";
export * as version from "../gen/containerd/services/version/v1/version_pb.js";
export * as health from "../gen/grpc/health/v1/health_pb.js";
export * as types from "./types.js";
