// berthd's entry point: containerd's flags, `config default|dump`, signals, exit codes.
import { Command } from "commander";
import { loadConfig, defaultConfig, configToToml, ConfigError, type ConfigOverrides } from "./config.js";
import { createLogger } from "./logger.js";
import { startDaemon } from "./daemon.js";
import { SocketInUseError } from "./socket.js";
import { berthVersion } from "./version.js";

interface GlobalOpts extends ConfigOverrides {
  logLevel?: string;
}

function fail(message: string): never {
  process.stderr.write(`berthd: ${message}\n`);
  process.exit(1);
}

async function serve(opts: GlobalOpts): Promise<void> {
  let cfg;
  try {
    cfg = loadConfig(opts);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const log = createLogger(cfg.debug.level);
  let daemon;
  try {
    daemon = await startDaemon(cfg, log);
  } catch (err) {
    if (err instanceof SocketInUseError) fail(err.message);
    log.fatal({ err }, "berthd failed to start");
    process.exit(1);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "received signal");
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("SIGPIPE", () => undefined);
  process.on("unhandledRejection", (err) => {
    log.fatal({ err }, "unhandled rejection");
    process.exit(2);
  });
}

const program = new Command()
  .name("berthd")
  .description("Berth: a container daemon that speaks containerd's API")
  .version(berthVersion, "-v, --version")
  .option("-c, --config <file>", "path to the configuration file")
  .option("--root <dir>", "berthd root directory")
  .option("--state <dir>", "berthd state directory")
  .option("-a, --address <sock>", "address for berthd's gRPC server")
  .option("-l, --log-level <level>", "set the logging level [trace, debug, info, warn, error, fatal, panic]")
  .action(async (opts: GlobalOpts) => serve(opts));

const configCmd = program.command("config").description("information on the berthd config");
configCmd
  .command("default")
  .description("print the default config")
  .action(() => {
    process.stdout.write(configToToml(defaultConfig()));
  });
configCmd
  .command("dump")
  .description("print the effective config (defaults, file and flags merged)")
  .action(() => {
    try {
      process.stdout.write(configToToml(loadConfig(program.opts<GlobalOpts>())));
    } catch (err) {
      if (err instanceof ConfigError) fail(err.message);
      throw err;
    }
  });

program
  .command("publish")
  .description("publish an event (a protobuf Any on stdin) to berthd: the shims' legacy -publish-binary")
  .requiredOption("--topic <topic>", "topic of the event")
  .requiredOption("--namespace <ns>", "namespace to publish to")
  .action(async (o: { topic: string; namespace: string }) => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const address = program.opts<GlobalOpts>().address ?? defaultConfig().grpc.address;
    try {
      // Loaded here only: the gRPC client (grpc-js) has no business in the daemon's memory.
      const { publishEvent } = await import("./publish.js");
      await publishEvent(address, o.namespace, o.topic, Buffer.concat(chunks));
    } catch (err) {
      fail((err as Error).message);
    }
  });

await program.parseAsync(process.argv);
