// A last-in-first-out list of teardown steps that runs once, on success, failure or Ctrl-C.

export interface Cleanups {
  /** Registers a step; steps run in reverse order of registration. */
  add(label: string, step: () => Promise<unknown>): void;
  /** Runs every step once, reporting (not throwing) failures so that later steps still run. */
  run(): Promise<void>;
}

export function createCleanups(
  report: (msg: string) => void = (m) => process.stderr.write(`${m}\n`),
): Cleanups {
  const steps: { label: string; step: () => Promise<unknown> }[] = [];
  let running: Promise<void> | undefined;
  return {
    add(label, step) {
      steps.push({ label, step });
    },
    run() {
      running ??= (async () => {
        for (const { label, step } of steps.reverse()) {
          try {
            await step();
          } catch (err) {
            report(`cleanup: ${label} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      })();
      return running;
    },
  };
}
