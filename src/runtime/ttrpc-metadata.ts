// The ttrpc metadata key that carries the namespace between daemon and shims (both directions).
export const ttrpcNamespaceKey = "containerd-namespace-ttrpc";
