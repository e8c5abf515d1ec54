// The shared containerd.types messages (Descriptor, Mount, Platform, Metric) in one namespace.
export * from "../gen/containerd/types/descriptor_pb.js";
export * from "../gen/containerd/types/mount_pb.js";
export * from "../gen/containerd/types/platform_pb.js";
export * from "../gen/containerd/types/metrics_pb.js";
