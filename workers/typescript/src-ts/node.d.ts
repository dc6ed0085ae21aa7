// The few Node 20 globals and modules the worker and its tests use:
// @types/node comes from npm, which is not reachable where this builds.

declare function require(id: string): any;
declare const __dirname: string;

interface Timer {
  unref(): Timer;
}
declare function setTimeout(callback: () => void, ms?: number): Timer;
declare function clearTimeout(timer: Timer): void;

declare const console: {
  log(...data: unknown[]): void;
  error(...data: unknown[]): void;
};

type Signal = "SIGTERM" | "SIGINT" | "SIGKILL";

interface Writable {
  write(text: string): boolean;
}

declare const process: {
  argv: string[];
  execPath: string;
  env: Record<string, string | undefined>;
  exitCode: number | undefined;
  stdout: Writable;
  stderr: Writable;
  cwd(): string;
  on(event: Signal, listener: () => void): void;
  off(event: Signal, listener: () => void): void;
  exit(code?: number): never;
};

// Global fetch (Node 18+), only as used: JSON in, JSON out.
interface FetchResponse {
  ok: boolean;
  status: number;
  text(): Promise<string>;
  json(): Promise<any>;
}
declare function fetch(
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<FetchResponse>;

declare module "node:path" {
  export function join(...parts: string[]): string;
  export function resolve(...parts: string[]): string;
}

declare module "node:fs" {
  export function copyFileSync(from: string, to: string): void;
  export function existsSync(path: string): boolean;
  export function mkdirSync(path: string, options?: { recursive?: boolean }): void;
  export function mkdtempSync(prefix: string): string;
  export function readFileSync(path: string, encoding: "utf8"): string;
  export function rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void;
  export function writeFileSync(path: string, text: string): void;
}

declare module "node:os" {
  export function tmpdir(): string;
}

declare module "node:readline" {
  export interface Lines {
    on(event: "line", listener: (line: string) => void): Lines;
    on(event: "close", listener: () => void): Lines;
  }
  export function createInterface(options: { input: unknown }): Lines;
}

declare module "node:child_process" {
  export interface ChildProcess {
    pid?: number;
    exitCode: number | null;
    signalCode: string | null;
    stdout: unknown;
    stderr: unknown;
    kill(signal?: Signal): boolean;
    once(event: "exit", listener: (code: number | null, signal: string | null) => void): void;
  }
  export function spawn(
    command: string,
    args: string[],
    options?: { cwd?: string; env?: Record<string, string | undefined>; stdio?: unknown },
  ): ChildProcess;
}

declare module "node:test" {
  type Body = () => void | Promise<void>;
  export function test(name: string, body: Body): Promise<void>;
  export function test(name: string, options: { timeout?: number }, body: Body): Promise<void>;
  export function before(body: Body, options?: { timeout?: number }): void;
  export function after(body: Body, options?: { timeout?: number }): void;
}

declare module "node:assert" {
  export const strict: {
    equal(actual: unknown, expected: unknown, message?: string): void;
    deepEqual(actual: unknown, expected: unknown, message?: string): void;
    ok(value: unknown, message?: string): asserts value;
    match(text: string, pattern: RegExp, message?: string): void;
    rejects(promise: Promise<unknown>, expected?: RegExp | object): Promise<void>;
  };
}
