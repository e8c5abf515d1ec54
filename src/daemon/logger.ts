// The daemon's logger: JSON lines on stderr (pino), configured once at start-up.
import { pino, destination, stdTimeFunctions, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

export function createLogger(level: LogLevel): Logger {
  const pinoLevel = level === "panic" ? "fatal" : level;
  return pino(
    {
      level: pinoLevel,
      base: undefined,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination({ fd: 2, sync: true }),
  );
}
