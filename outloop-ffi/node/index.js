'use strict';
/**
 * Outloop for Node: call approved HTTP actions through the broker without holding the key.
 *
 * The broker runs in-process through liboutloop (the C ABI of outloop-ffi, loaded with koffi):
 * it resolves the workspace's tenant, checks policy, applies the credential host-side and
 * returns a redacted result; every attempt is audited. No call here returns a raw secret.
 * Calls are synchronous: they block the calling thread until the broker is done.
 *
 * The library is found through $OUTLOOP_FFI_LIB, else beside this file, else in the cargo
 * target dir ($CARGO_TARGET_DIR or a `target/` above this file; debug before release).
 */

const fs = require('node:fs');
const path = require('node:path');
const koffi = require('koffi');

/** The C ABI version these bindings were written for. */
const ABI_VERSION = 2;

const LIB_NAME = { darwin: 'liboutloop.dylib', win32: 'outloop.dll' }[process.platform] || 'liboutloop.so';

/** Base of every Outloop error: `status` (C ABI number), `kind` (stable name), `message`. */
class OutloopError extends Error {
  constructor(status, kind, message) {
    super(`${kind}: ${message}`);
    this.name = new.target.name;
    this.status = status;
    this.kind = kind;
    this.detail = message;
  }
}
/** The request or host config is malformed (exit code 2). */
class RequestError extends OutloopError {}
/** Refused by tenant resolution or policy (exit code 3). */
class DeniedError extends OutloopError {}
/** A secret backend failed or refused (exit code 4). */
class BackendError extends OutloopError {}
/** The upstream was unreachable, timed out, or refused by a safety check (exit code 5). */
class UpstreamError extends OutloopError {}
/** A bug, an audit failure or a local I/O failure (exit code 1); status `internal`. */
class InternalError extends OutloopError {}

const classes = { OutloopError, RequestError, DeniedError, BackendError, UpstreamError, InternalError };
const BY_STATUS = new Map();
for (const [status, name, base] of [
  [1, 'NullParameter', RequestError],
  [2, 'InvalidUtf8', RequestError],
  [3, 'Panic', InternalError],
  [4, 'InvalidJson', RequestError],
  [5, 'Unsupported', RequestError],
  [100, 'ConfigError', RequestError],
  [101, 'UsageError', RequestError],
  [102, 'InvalidReference', RequestError],
  [103, 'InvalidParameter', RequestError],
  [104, 'UnknownAction', RequestError],
  [105, 'UnboundWorkspace', DeniedError],
  [106, 'PolicyDenied', DeniedError],
  [107, 'ApprovalRequired', DeniedError],
  [108, 'NotFound', BackendError],
  [109, 'Unauthenticated', BackendError],
  [110, 'PermissionDenied', BackendError],
  [111, 'RateLimited', BackendError],
  [112, 'Unavailable', BackendError],
  [113, 'Timeout', UpstreamError],
  [114, 'UpstreamUnreachable', UpstreamError],
  [115, 'SafetyRefused', UpstreamError],
  [116, 'InvalidSecret', BackendError],
  [117, 'AuditError', InternalError],
  [118, 'IoError', InternalError],
]) {
  // A named class per status, so `instanceof` and `err.name` both work.
  const cls = { [name]: class extends base {} }[name];
  classes[name] = cls;
  BY_STATUS.set(status, cls);
}
BY_STATUS.set(119, InternalError);

/** Where the library is looked for, in order. */
function candidates() {
  if (process.env.OUTLOOP_FFI_LIB) return [process.env.OUTLOOP_FFI_LIB];
  const out = [path.join(__dirname, LIB_NAME)];
  const targets = [];
  if (process.env.CARGO_TARGET_DIR) targets.push(process.env.CARGO_TARGET_DIR);
  for (let d = __dirname; ; d = path.dirname(d)) {
    targets.push(path.join(d, 'target'));
    if (path.dirname(d) === d) break;
  }
  for (const t of targets) out.push(path.join(t, 'debug', LIB_NAME), path.join(t, 'release', LIB_NAME));
  return out;
}

let ffi = null;

/** Loads the library and declares its functions (once). Throws when not found. */
function library() {
  if (ffi) return ffi;
  const paths = candidates();
  const found = paths.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(`${LIB_NAME} not found; set OUTLOOP_FFI_LIB or run \`cargo build -p outloop-ffi\` (looked in: ${paths.join(', ')})`);
  }
  const lib = koffi.load(found);
  koffi.opaque('outloop_broker');
  const f = (sig) => lib.func(sig);
  const out = '_Out_ uint8_t **out, _Out_ size_t *out_len';
  ffi = {
    abiVersion: f('uint32_t outloop_abi_version(void)'),
    statusName: f('const char *outloop_status_name(int32_t status)'),
    lastError: f('const char *outloop_last_error_message(void)'),
    open: f('int32_t outloop_broker_open(const uint8_t *home, size_t home_len, const uint8_t *ws, size_t ws_len, _Out_ outloop_broker **out)'),
    free: f('void outloop_broker_free(outloop_broker *b)'),
    bufferFree: f('void outloop_buffer_free(uint8_t *ptr, size_t len)'),
    call: f(`int32_t outloop_call(const outloop_broker *b, const uint8_t *action, size_t action_len, const uint8_t *params, size_t params_len, const uint8_t *tenant, size_t tenant_len, ${out})`),
    alias: f(`int32_t outloop_alias_request(const outloop_broker *b, const uint8_t *request, size_t request_len, const uint8_t *tenant, size_t tenant_len, ${out})`),
    actions: f(`int32_t outloop_actions(const outloop_broker *b, ${out})`),
    explain: f(`int32_t outloop_explain(const outloop_broker *b, const uint8_t *action, size_t action_len, const uint8_t *params, size_t params_len, ${out})`),
    redact: f(`int32_t outloop_redact(const outloop_broker *b, const uint8_t *input, size_t input_len, ${out}, _Out_ size_t *out_count)`),
    auditVerify: f('int32_t outloop_audit_verify(const outloop_broker *b, _Out_ uint64_t *out_records)'),
    debugPanic: f('int32_t outloop_debug_panic(void)'),
  };
  const v = ffi.abiVersion();
  if (v !== ABI_VERSION) {
    ffi = null;
    throw new Error(`${found} has C ABI version ${v}; these bindings need ${ABI_VERSION}`);
  }
  return ffi;
}

/** Throws the Error subclass for a non-zero status, with this thread's last error message. */
function check(status) {
  if (status === 0) return;
  const f = library();
  const message = f.lastError() ?? '(no message)';
  const Cls = BY_STATUS.get(status) || OutloopError;
  throw new Cls(status, f.statusName(status), message);
}

/** A (pointer, length) pair: null/undefined is (NULL, 0); strings are UTF-8. */
function arg(v) {
  if (v === null || v === undefined) return [null, 0];
  const b = Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(String(v), 'utf8');
  // koffi passes an empty buffer as NULL; give it one byte of storage and a length of 0.
  return b.length ? [b, b.length] : [Buffer.alloc(1), 0];
}

/** Checks the status, copies the returned buffer out and frees it. */
function take(status, out, outLen) {
  check(status);
  const f = library();
  const ptr = out[0];
  const len = Number(outLen[0]);
  try {
    // Copy out of the library's memory before it is freed (Buffer.from(ArrayBuffer) would not).
    return len ? Buffer.from(new Uint8Array(koffi.view(ptr, len))) : Buffer.alloc(0);
  } finally {
    f.bufferFree(ptr, len);
  }
}

/**
 * A broker over one host config and one workspace directory. Close it with `close()` (or
 * `using` / `Symbol.dispose` where supported).
 */
class Broker {
  /**
   * @param {{home?: string, workspace?: string, tenant?: string}} [options]
   *   home: the Outloop home (absolute; holds config.toml, the vault, the audit log), default
   *   $OUTLOOP_HOME or the platform directories; workspace: the directory requests come from,
   *   default the current directory; tenant: the tenant the caller expects (calls from a
   *   workspace bound to another tenant throw PolicyDenied).
   * @throws {OutloopError} ConfigError, UsageError, IoError… when the config or backends
   *   cannot be opened.
   */
  constructor(options = {}) {
    const f = library();
    this._tenant = options.tenant ?? null;
    const [h, hl] = arg(options.home);
    const [w, wl] = arg(options.workspace);
    const out = [null];
    check(f.open(h, hl, w, wl, out));
    this._handle = out[0];
  }

  /** Whether close() was called. */
  get closed() {
    return this._handle === null;
  }

  /** Frees the handle (zeroizing cached credentials). Idempotent. */
  close() {
    if (this._handle !== null) {
      library().free(this._handle);
      this._handle = null;
    }
  }

  [Symbol.dispose || Symbol.for('nodejs.dispose')]() {
    this.close();
  }

  _h() {
    if (this._handle === null) throw new Error('the broker is closed');
    return this._handle;
  }

  _json(fn) {
    const out = [null];
    const len = [0];
    return JSON.parse(take(fn(out, len), out, len).toString('utf8'));
  }

  /**
   * Performs an action for the workspace. Returns the redacted result, the object
   * `outloop call --json` prints: {action, tenant, status, status_text, headers, body,
   * redactions}. Any upstream status is a result, not an error.
   */
  call(action, params = {}) {
    const h = this._h();
    const [a, al] = arg(action);
    const [p, pl] = arg(JSON.stringify(params));
    const [t, tl] = arg(this._tenant);
    return this._json((o, n) => library().call(h, a, al, p, pl, t, tl, o, n));
  }

  /** The actions and aliases this workspace may use: [{name, kind, description, decision, params}]. */
  actions() {
    const h = this._h();
    return this._json((o, n) => library().actions(h, o, n)).actions;
  }

  /** The policy decision for an action (or `alias:<name>`), without a backend call: {action, workspace, tenant, decision, rule, reason}. */
  explain(action, params = {}) {
    const h = this._h();
    const [a, al] = arg(action);
    const [p, pl] = arg(JSON.stringify(params));
    return this._json((o, n) => library().explain(h, a, al, p, pl, o, n));
  }

  /** Replaces every secret of the workspace's tenant in `data`; returns the same type (string or Buffer). */
  redact(data) {
    return this.redactCounted(data).output;
  }

  /** As redact(), also returning the number of replacements: {output, count}. */
  redactCounted(data) {
    const h = this._h();
    const [d, dl] = arg(data);
    const out = [null];
    const len = [0];
    const count = [0];
    const bytes = take(library().redact(h, d, dl, out, len, count), out, len);
    return { output: typeof data === 'string' ? bytes.toString('utf8') : bytes, count: Number(count[0]) };
  }

  /**
   * Sends `method path` through alias `alias` (`[aliases.<alias>]`, a pinned upstream) for the
   * workspace, with the credential applied host-side. `path` is below the alias's base URL and
   * starts with `/`. Options: `query` (a raw query string without `?`, or an object, URL-encoded
   * here), `headers` ({name: value}; Authorization, Cookie, Proxy-*, hop-by-hop and Host are
   * dropped), `body` (a string sent as UTF-8, or a Buffer/Uint8Array sent base64-encoded over
   * the C ABI and arriving as the same bytes). Returns the redacted response, the object
   * `outloop call --json` prints with `action` = "alias:<alias>". Throws PolicyDenied (outside
   * the alias's `allow` rules, policy, another tenant), UnknownAction, InvalidParameter (bad
   * method, path, query or header), and the backend and upstream errors of call().
   */
  request(alias, method, urlPath, options = {}) {
    const h = this._h();
    const req = { alias, method, path: urlPath };
    let { query, headers, body } = options;
    if (query !== undefined && query !== null) {
      req.query = typeof query === 'string' ? query : new URLSearchParams(query).toString();
    }
    if (headers) req.headers = { ...headers };
    if (body instanceof Uint8Array) req.body_base64 = Buffer.from(body).toString('base64');
    else if (body !== undefined && body !== null) req.body = String(body);
    const [r, rl] = arg(JSON.stringify(req));
    const [t, tl] = arg(this._tenant);
    return this._json((o, n) => library().alias(h, r, rl, t, tl, o, n));
  }

  /** Verifies the audit log's hash chain; returns the number of records checked. */
  verifyAudit() {
    const n = [0];
    check(library().auditVerify(this._h(), n));
    return Number(n[0]);
  }
}

/** The C ABI version of the loaded library. */
function abiVersion() {
  return library().abiVersion();
}

module.exports = { Broker, abiVersion, library, check, ABI_VERSION, ...classes };
