'use strict';
// The Node package against the real library, a real vault and the real httpbin
// ($OUTLOOP_TEST_HTTPBIN, started by scripts/test-ffi.sh). Every result, error and the audit
// log are checked for the FAKE secrets.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const outloop = require('..');

const REPO = path.resolve(__dirname, '..', '..', '..');
const ACME_SECRET = 'FAKE-node-acme-echo-token-6e2b90';
const GLOBEX_SECRET = 'FAKE-node-globex-echo-token-1a7c35';

function noSecret(...values) {
  for (const v of values) {
    const s = typeof v === 'string' ? v : v instanceof Error ? `${v.name} ${v.message} ${v.stack}` : JSON.stringify(v);
    assert.ok(!s.includes(ACME_SECRET) && !s.includes(GLOBEX_SECRET) && !s.includes('FAKE'), 'a secret leaked');
  }
}

function setup() {
  const httpbin = process.env.OUTLOOP_TEST_HTTPBIN;
  assert.ok(httpbin, 'OUTLOOP_TEST_HTTPBIN is not set: run scripts/test-ffi.sh, which starts httpbin');
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'outloop-node-')));
  const e = {
    root,
    home: path.join(root, 'home'),
    acme: path.join(root, 'clients', 'acme'),
    globex: path.join(root, 'clients', 'globex'),
    unbound: path.join(root, 'elsewhere'),
  };
  for (const d of [e.acme, e.globex, e.unbound]) fs.mkdirSync(d, { recursive: true });
  const bin = process.env.OUTLOOP_BIN || path.join(REPO, 'target', 'debug', 'outloop');
  const env = { ...process.env, OUTLOOP_HOME: e.home };
  delete env.HTTP_PROXY;
  delete env.http_proxy;
  // Secret values go in on stdin, never in argv.
  const run = (args, input = '') => execFileSync(bin, args, { env, input, stdio: ['pipe', 'pipe', 'pipe'] });
  run(['init']);
  for (const [t, ws, secret] of [['acme', e.acme, ACME_SECRET], ['globex', e.globex, GLOBEX_SECRET]]) {
    run(['tenant', 'add', t]);
    run(['bind', ws, t]);
    run(['secret', 'set', `vault://${t}/echo`, '--tenant', t, '--credential', 'echo'], secret);
  }
  const cfg = path.join(e.home, 'config.toml');
  let text = fs.readFileSync(cfg, 'utf8').replace('allow_private = []', 'allow_private = ["127.0.0.0/8"]');
  text += `
[actions."echo.bearer"]
description = "httpbin echoes the bearer token it received"
credential = "echo"
method = "GET"
url = "${httpbin}/bearer"
auth = { type = "bearer" }

[actions."echo.anything"]
description = "httpbin echoes the request"
credential = "echo"
method = "GET"
url = "${httpbin}/anything"
query = { q = "{q}" }
auth = { type = "header", name = "X-Api-Key" }
[actions."echo.anything".params]
q = { type = "string", pattern = "^[a-z0-9-]+$" }

[actions."echo.delete"]
credential = "echo"
method = "DELETE"
url = "${httpbin}/delete"
auth = { type = "bearer" }

[aliases.httpbin]
credential = "echo"
base_url = "${httpbin}"
auth = { type = "bearer" }
allow = ["GET /bearer", "GET /headers", "POST /anything/**"]

[policy.tenants.acme]
allow = ["echo.bearer", "echo.anything", "alias:httpbin"]
[policy.tenants.globex]
allow = ["echo.bearer"]
`;
  fs.writeFileSync(cfg, text);
  e.audit = () => {
    const p = path.join(e.home, 'audit.jsonl');
    return fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : '';
  };
  return e;
}

const env = setup();
test.after(() => fs.rmSync(env.root, { recursive: true, force: true }));

function withBroker(opts, fn) {
  const b = new outloop.Broker({ home: env.home, ...opts });
  try {
    return fn(b);
  } finally {
    b.close();
  }
}

test('ABI version', () => {
  assert.equal(outloop.abiVersion(), 2);
});

test('a call returns the redacted upstream echo', () => {
  const r = withBroker({ workspace: env.acme }, (b) => b.call('echo.bearer'));
  assert.equal(r.action, 'echo.bearer');
  assert.equal(r.tenant, 'acme');
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { authenticated: true, token: '[REDACTED:echo]' });
  assert.ok(r.redactions >= 1);
  noSecret(r, env.audit());
});

test('parameters fill their slot and a header echo is redacted', () => {
  const r = withBroker({ workspace: env.acme, tenant: 'acme' }, (b) => b.call('echo.anything', { q: 'abc-1' }));
  const body = JSON.parse(r.body);
  assert.deepEqual(body.args, { q: 'abc-1' });
  assert.equal(body.headers['X-Api-Key'], '[REDACTED:echo]');
  noSecret(r);
});

test('a wrong-tenant request is denied', () => {
  withBroker({ workspace: env.acme, tenant: 'globex' }, (b) => {
    assert.throws(() => b.call('echo.bearer'), (e) => {
      assert.ok(e instanceof outloop.PolicyDenied && e instanceof outloop.DeniedError && e instanceof Error);
      assert.equal(e.name, 'PolicyDenied');
      assert.equal(e.status, 106);
      assert.equal(e.kind, 'policy_denied');
      assert.match(e.message, /globex/);
      noSecret(e, env.audit());
      return true;
    });
  });
});

for (const [label, action, params, cls, status] of [
  ['policy denial', 'echo.delete', {}, 'PolicyDenied', 106],
  ['unknown action', 'no.such.action', {}, 'UnknownAction', 104],
  ['bad parameter', 'echo.anything', { q: 'NOT valid!' }, 'InvalidParameter', 103],
  ['missing parameter', 'echo.anything', {}, 'InvalidParameter', 103],
  ['invalid UTF-8', Buffer.from([0x65, 0xff]), {}, 'InvalidUtf8', 2],
]) {
  test(`${label} throws ${cls}`, () => {
    withBroker({ workspace: env.acme }, (b) => {
      assert.throws(() => b.call(action, params), (e) => {
        assert.ok(e instanceof outloop[cls], `${e.name}: ${e.message}`);
        assert.equal(e.status, status);
        noSecret(e);
        return true;
      });
    });
  });
}

test('invalid JSON parameters are reported, out-parameters untouched', () => {
  withBroker({ workspace: env.acme }, (b) => {
    const f = outloop.library();
    const a = Buffer.from('echo.bearer');
    const p = Buffer.from('{oops');
    const out = [null];
    const len = [0];
    const status = f.call(b._h(), a, a.length, p, p.length, null, 0, out, len);
    assert.throws(() => outloop.check(status), outloop.InvalidJson);
    assert.equal(status, 4);
  });
});

test('NULL parameters are reported', () => {
  const status = outloop.library().actions(null, [null], [0]);
  assert.throws(() => outloop.check(status), (e) => e instanceof outloop.NullParameter && /broker/.test(e.message));
});

test('a forced panic throws Panic', () => {
  assert.throws(() => outloop.check(outloop.library().debugPanic()), (e) => e instanceof outloop.Panic && e instanceof outloop.InternalError);
});

test('an unbound workspace is refused', () => {
  withBroker({ workspace: env.unbound }, (b) => {
    assert.throws(() => b.call('echo.bearer'), outloop.UnboundWorkspace);
    assert.throws(() => b.actions(), outloop.UnboundWorkspace);
  });
});

test('actions and explain', () => {
  withBroker({ workspace: env.acme }, (b) => {
    assert.deepEqual(b.actions().map((a) => a.name), ['echo.anything', 'echo.bearer', 'alias:httpbin']);
    const e = b.explain('echo.delete');
    assert.equal(e.decision, 'deny');
    assert.equal(e.tenant, 'acme');
    assert.equal(b.explain('echo.anything', { q: 'x' }).decision, 'allow');
    assert.throws(() => b.explain('nope'), outloop.UnknownAction);
  });
});

test('redact uses the workspace tenant\'s secrets', () => {
  withBroker({ workspace: env.acme }, (b) => {
    const r = b.redactCounted(`log: token=${ACME_SECRET}; done`);
    assert.deepEqual(r, { output: 'log: token=[REDACTED:echo]; done', count: 1 });
    const raw = b.redact(Buffer.concat([Buffer.from(ACME_SECRET), Buffer.from([0, 0xff])]));
    assert.deepEqual(raw, Buffer.concat([Buffer.from('[REDACTED:echo]'), Buffer.from([0, 0xff])]));
    assert.equal(b.redact(''), '');
  });
});

test('request() through an alias comes back redacted', () => {
  withBroker({ workspace: env.acme }, (b) => {
    let r = b.request('httpbin', 'GET', '/headers', { headers: { Authorization: 'Bearer FAKE-agent', 'X-Agent': 'seen' } });
    assert.equal(r.action, 'alias:httpbin');
    assert.equal(r.tenant, 'acme');
    assert.equal(r.status, 200);
    const h = JSON.parse(r.body).headers;
    assert.equal(h.Authorization, 'Bearer [REDACTED:echo]');
    assert.equal(h['X-Agent'], 'seen');
    assert.ok(r.redactions >= 1);
    noSecret(r);
    r = b.request('httpbin', 'POST', '/anything/items', {
      query: { page: 2 }, headers: { 'Content-Type': 'application/octet-stream' }, body: Buffer.from([0, 1, 0xff]),
    });
    const body = JSON.parse(r.body);
    assert.deepEqual(body.args, { page: '2' });
    assert.equal(body.data, 'data:application/octet-stream;base64,AAH/');
    assert.equal(JSON.parse(b.request('httpbin', 'POST', '/anything/t', { body: 'plain text' }).body).data, 'plain text');
  });
  noSecret(env.audit());
  assert.ok(env.audit().includes('"request":"GET /headers"'));
});

test('request() refusals: denied path, bad path, unknown alias, wrong tenant, bad JSON, NULL', () => {
  withBroker({ workspace: env.acme }, (b) => {
    assert.throws(() => b.request('httpbin', 'GET', '/anything/x'), (e) => e instanceof outloop.PolicyDenied && /aliases\.httpbin\.allow/.test(e.message));
    assert.throws(() => b.request('httpbin', 'GET', '/anything/%2e%2e/bearer'), outloop.InvalidParameter);
    assert.throws(() => b.request('nosuch', 'GET', '/x'), outloop.UnknownAction);
    const f = outloop.library();
    for (const bad of ['{oops', '{"alias":"httpbin"}', '{"alias":"httpbin","method":"GET","path":"/bearer","x":1}']) {
      const r = Buffer.from(bad);
      const out = [null];
      const status = f.alias(b._h(), r, r.length, null, 0, out, [0]);
      assert.throws(() => outloop.check(status), outloop.InvalidJson);
      assert.equal(out[0], null);
    }
    assert.throws(() => outloop.check(f.alias(b._h(), null, 0, null, 0, [null], [0])), (e) => e instanceof outloop.NullParameter && /request_json/.test(e.message));
    assert.throws(() => outloop.check(f.alias(null, Buffer.from('{}'), 2, null, 0, [null], [0])), (e) => e instanceof outloop.NullParameter && /broker/.test(e.message));
  });
  withBroker({ workspace: env.acme, tenant: 'globex' }, (b) => {
    assert.throws(() => b.request('httpbin', 'GET', '/bearer'), (e) => e instanceof outloop.PolicyDenied && /globex/.test(e.message));
  });
  withBroker({ workspace: env.globex }, (b) => {
    assert.throws(() => b.request('httpbin', 'GET', '/bearer'), outloop.PolicyDenied);
  });
});

test('the audit log verifies and holds no secret', () => {
  withBroker({ workspace: env.acme }, (b) => {
    assert.throws(() => b.call('echo.delete'), outloop.PolicyDenied);
    assert.ok(b.verifyAudit() >= 1);
  });
  noSecret(env.audit());
  assert.match(env.audit(), /"decision":"deny"/);
});

test('open errors and close', () => {
  assert.throws(() => new outloop.Broker({ home: 'relative/home', workspace: env.acme }), outloop.UsageError);
  assert.throws(() => new outloop.Broker({ home: path.join(env.root, 'no-home'), workspace: env.acme }), outloop.OutloopError);
  const b = new outloop.Broker({ home: env.home, workspace: env.acme });
  b.close();
  b.close();
  assert.ok(b.closed);
  assert.throws(() => b.actions(), /closed/);
});
