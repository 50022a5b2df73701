/** Outloop for Node: call approved HTTP actions through the broker without holding the key. */

/** The C ABI version these bindings were written for. */
export declare const ABI_VERSION: 2;
/** The C ABI version of the loaded library. */
export declare function abiVersion(): number;
/** Throws the Error subclass for a non-zero C ABI status (with the thread's last error). */
export declare function check(status: number): void;
/** The loaded library's raw functions (for tests and advanced use). */
export declare function library(): Record<string, (...args: any[]) => any>;

export interface BrokerOptions {
  /** The Outloop home (absolute); default $OUTLOOP_HOME, else the platform directories. */
  home?: string;
  /** The directory requests come from; default the current directory. */
  workspace?: string;
  /** The tenant the caller expects; a workspace bound elsewhere is denied. */
  tenant?: string;
}

/** Action parameters: JSON values keyed by parameter name. */
export type Params = Record<string, unknown>;

/** The redacted result of an action, as `outloop call --json` prints it. */
export interface CallResult {
  action: string;
  tenant: string;
  /** The upstream HTTP status (any status: the action ran). */
  status: number;
  status_text: string;
  /** Redacted headers, lower-case name -> value. */
  headers: Record<string, string>;
  /** The redacted body as text. */
  body: string;
  /** How many secret occurrences were replaced. */
  redactions: number;
}

export interface ActionInfo {
  name: string;
  kind: 'action' | 'alias';
  description: string;
  decision: 'allow' | 'approve';
  /** JSON Schema of the parameters (null for aliases). */
  params: unknown;
}

export interface Explanation {
  action: string;
  workspace: string;
  tenant: string;
  decision: 'allow' | 'deny' | 'approve';
  rule: string;
  reason: string;
}

/** Options of Broker.request(). */
export interface RequestOptions {
  /** A raw query string (without `?`), or an object URL-encoded as one. */
  query?: string | Record<string, string | number | boolean> | null;
  /** Request headers; Authorization, Cookie, Proxy-*, hop-by-hop and Host are dropped. */
  headers?: Record<string, string>;
  /** A string (sent as UTF-8) or bytes (sent base64-encoded, arriving as the same bytes). */
  body?: string | Uint8Array | null;
}

/** A broker over one host config and one workspace directory. */
export declare class Broker {
  constructor(options?: BrokerOptions);
  readonly closed: boolean;
  /** Frees the handle. Idempotent. */
  close(): void;
  call(action: string, params?: Params): CallResult;
  actions(): ActionInfo[];
  explain(action: string, params?: Params): Explanation;
  redact(data: string): string;
  redact(data: Uint8Array): Buffer;
  redactCounted(data: string): { output: string; count: number };
  redactCounted(data: Uint8Array): { output: Buffer; count: number };
  /**
   * Sends `method path` through alias `alias` with the credential applied host-side; returns
   * the redacted response (`action` = "alias:<alias>"). Throws PolicyDenied, UnknownAction,
   * InvalidParameter, and the backend and upstream errors of call().
   */
  request(alias: string, method: string, path: string, options?: RequestOptions): CallResult;
  verifyAudit(): number;
}

/** Base of every Outloop error. */
export declare class OutloopError extends Error {
  /** The C ABI status number. */
  readonly status: number;
  /** The status's stable name, e.g. "policy_denied". */
  readonly kind: string;
  /** The library's one-line message (no secret). */
  readonly detail: string;
}
export declare class RequestError extends OutloopError {}
export declare class DeniedError extends OutloopError {}
export declare class BackendError extends OutloopError {}
export declare class UpstreamError extends OutloopError {}
export declare class InternalError extends OutloopError {}
export declare class NullParameter extends RequestError {}
export declare class InvalidUtf8 extends RequestError {}
export declare class Panic extends InternalError {}
export declare class InvalidJson extends RequestError {}
export declare class Unsupported extends RequestError {}
export declare class ConfigError extends RequestError {}
export declare class UsageError extends RequestError {}
export declare class InvalidReference extends RequestError {}
export declare class InvalidParameter extends RequestError {}
export declare class UnknownAction extends RequestError {}
export declare class UnboundWorkspace extends DeniedError {}
export declare class PolicyDenied extends DeniedError {}
export declare class ApprovalRequired extends DeniedError {}
export declare class NotFound extends BackendError {}
export declare class Unauthenticated extends BackendError {}
export declare class PermissionDenied extends BackendError {}
export declare class RateLimited extends BackendError {}
export declare class Unavailable extends BackendError {}
export declare class Timeout extends UpstreamError {}
export declare class UpstreamUnreachable extends UpstreamError {}
export declare class SafetyRefused extends UpstreamError {}
export declare class InvalidSecret extends BackendError {}
export declare class AuditError extends InternalError {}
export declare class IoError extends InternalError {}
