// Types of crier.js (see README.md).

export type TransportName = "websocket" | "sse" | "longpoll";
export type State = "connecting" | "open" | "reconnecting" | "failed" | "closed";

export interface ConnectOptions {
  transports?: TransportName[];
  probeDelay?: number;
  connectTimeout?: number;
  storage?: boolean | string | { key?: string; store?: { getItem(k: string): string | null; setItem(k: string, v: string): void } };
  upgradeInterval?: number;
  backoff?: { initial?: number; max?: number };
  maxFailures?: number;
  heartbeat?: number;
  sseIdle?: number;
  longPollWait?: number;
  WebSocket?: unknown;
  fetch?: typeof fetch;
}

export interface Message {
  id: string;
  topic: string;
  event: string | null;
  data: string | Uint8Array;
  contentType: string | null;
  time: number | null;
}

export interface Gap {
  topic: string;
  reason: "trimmed" | "reset" | "overflow" | string;
  after: string | null;
  next: string | null;
  missed: number;
}

export interface CrierError extends Error {
  code: string;
  status?: number;
  topic?: string;
}

export interface Subscription {
  topic: string;
  ready: Promise<void>;
  unsubscribe(): void;
}

export interface RelayRequest {
  id: number;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
  text(): string;
  json(): unknown;
}

export interface RelayResponse {
  status?: number;
  headers?: Record<string, string> | [string, string][];
  body?: string | Uint8Array | ArrayBuffer | unknown;
}

export interface Relay {
  url: string;
  token: string;
  transport: "websocket" | "longpoll";
  close(): void;
}

export interface ClientEvents {
  state: State;
  transport: TransportName | null;
  gap: Gap;
  error: CrierError;
  relay: { url: string; transport: "websocket" | "longpoll"; resumed: boolean };
}

export declare class Client {
  readonly url: string;
  readonly state: State;
  readonly transport: TransportName | null;
  subscribe(topic: string, onMessage: (m: Message) => void,
    options?: { since?: string; onGap?: (g: Gap) => void; onError?: (e: CrierError) => void }): Subscription;
  publish(topic: string, data: string | Uint8Array | ArrayBuffer | unknown,
    options?: { event?: string; contentType?: string }): Promise<{ id: string }>;
  relay(handler: (req: RelayRequest) => RelayResponse | void | Promise<RelayResponse | void>): Promise<Relay>;
  on<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): this;
  reconnect(): void;
  close(): void;
}

export declare function connect(url?: string, options?: ConnectOptions): Client;
declare const _default: { connect: typeof connect; Client: typeof Client };
export default _default;
