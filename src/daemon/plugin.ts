// The plugin graph, modelled on containerd's: each plugin has a type, an id, the types it requires,
// its config and an init function. Start-up order comes from the graph; init errors are kept so
// that Introspection.Plugins reports them truthfully.

export type PluginType =
  | "io.containerd.content.v1"
  | "io.containerd.metadata.v1"
  | "io.containerd.event.v1"
  | "io.containerd.gc.v1"
  | "io.containerd.lease.v1"
  | "io.containerd.snapshotter.v1"
  | "io.containerd.differ.v1"
  | "io.containerd.runtime.v2"
  | "io.containerd.service.v1"
  | "io.containerd.grpc.v1"
  | "io.containerd.ttrpc.v1"
  | "io.containerd.internal.v1";

export interface PluginRegistration<T = unknown> {
  type: PluginType;
  id: string;
  /** Plugin types this one needs initialised first; "*" means every other plugin. */
  requires?: (PluginType | "*")[];
  platforms?: string[];
  capabilities?: string[];
  init(ic: InitContext): Promise<T> | T;
}

export interface InitContext {
  readonly root: string;
  readonly state: string;
  /** This plugin's own config table (`[plugins."<type>.<id>"]`), {} when absent. */
  readonly config: Record<string, unknown>;
  /** Exports shown by Introspection (e.g. a root path). */
  readonly exports: Record<string, string>;
  /** The initialised instance of a required plugin; throws if it failed or is absent. */
  get<T>(type: PluginType, id?: string): T;
  /** All initialised instances of a type, keyed by id. */
  getAll<T>(type: PluginType): Map<string, T>;
  /** Every plugin's state so far and, later, as it finally initialised (read lazily). */
  plugins(): PluginState[];
}

export interface PluginState {
  registration: PluginRegistration;
  exports: Record<string, string>;
  instance?: unknown;
  error?: Error;
}

/** Thrown by init to mark a plugin as skipped (reported as "skip" by ctr) rather than failed. */
export class PluginSkipped extends Error {
  constructor(reason: string) {
    super(`skip plugin: ${reason}`);
  }
}

/** Orders registrations so that every plugin comes after the types it requires (stable otherwise). */
export function orderPlugins(registrations: PluginRegistration[]): PluginRegistration[] {
  const ordered: PluginRegistration[] = [];
  const placed = new Set<PluginRegistration>();
  const visiting = new Set<PluginRegistration>();
  const visit = (r: PluginRegistration) => {
    if (placed.has(r)) return;
    if (visiting.has(r)) throw new Error(`plugin dependency cycle at ${r.type}.${r.id}`);
    visiting.add(r);
    for (const req of r.requires ?? []) {
      if (req === "*") continue;
      for (const dep of registrations) if (dep.type === req && dep !== r) visit(dep);
    }
    visiting.delete(r);
    placed.add(r);
    ordered.push(r);
  };
  for (const r of registrations) if (!(r.requires ?? []).includes("*")) visit(r);
  for (const r of registrations) if ((r.requires ?? []).includes("*")) visit(r);
  return ordered;
}

export interface PluginGraph {
  readonly states: PluginState[];
  get<T>(type: PluginType, id?: string): T;
  getAll<T>(type: PluginType): Map<string, T>;
}

/** Initialises every registration in dependency order; a failing plugin does not stop the others. */
export async function initPlugins(
  registrations: PluginRegistration[],
  opts: {
    root: string;
    state: string;
    config: (type: PluginType, id: string) => Record<string, unknown>;
    disabled?: string[];
    onError?: (state: PluginState) => void;
  },
): Promise<PluginGraph> {
  const states: PluginState[] = [];
  const find = (type: PluginType, id?: string): PluginState | undefined =>
    states.find((s) => s.registration.type === type && (id === undefined || s.registration.id === id));
  const graph: PluginGraph = {
    states,
    get<T>(type: PluginType, id?: string): T {
      const s = find(type, id);
      if (!s) throw new Error(`no plugin ${type}${id ? `.${id}` : ""}`);
      if (s.error) throw new Error(`plugin ${type}.${s.registration.id} failed: ${s.error.message}`);
      return s.instance as T;
    },
    getAll<T>(type: PluginType): Map<string, T> {
      const out = new Map<string, T>();
      for (const s of states)
        if (s.registration.type === type && !s.error) out.set(s.registration.id, s.instance as T);
      return out;
    },
  };
  const disabled = new Set(opts.disabled ?? []);
  for (const registration of orderPlugins(registrations)) {
    if (disabled.has(`${registration.type}.${registration.id}`)) continue;
    const state: PluginState = { registration, exports: {} };
    states.push(state);
    const ic: InitContext = {
      root: `${opts.root}/${registration.type}.${registration.id}`,
      state: `${opts.state}/${registration.type}.${registration.id}`,
      config: opts.config(registration.type, registration.id),
      exports: state.exports,
      get: graph.get.bind(graph),
      getAll: graph.getAll.bind(graph),
      plugins: () => states,
    };
    try {
      state.instance = await registration.init(ic);
    } catch (err) {
      state.error = err instanceof Error ? err : new Error(String(err));
      opts.onError?.(state);
    }
  }
  return graph;
}
