/* Calling the Outloop broker from C through outloop.h.
 *
 * Usage: outloop_example HOME WORKSPACE < text-to-redact
 *
 * HOME is an Outloop home (config.toml, vault, audit log) whose tenant for WORKSPACE allows
 * the action `echo.bearer` and denies `echo.delete` (scripts/test-ffi.sh sets one up against
 * httpbin). The example opens a broker, lists actions, explains, calls, shows the statuses of
 * a denied, a wrong-tenant and a malformed request, redacts stdin, verifies the audit log and
 * frees everything. Each expectation is one check; the last line is `N passed, M failed`.
 *
 * Build: cc -I outloop-ffi/include examples/ffi/outloop_example.c -L target/debug -loutloop
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outloop.h"

static int passed = 0, failed = 0;

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
    printf("ok   %s\n", what);
  } else {
    failed++;
    const char *err = outloop_last_error_message();
    printf("FAIL %s (last error: %s)\n", what, err ? err : "none");
  }
}

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

/* Expects `status`, with a last error message present exactly when it is not OUTLOOP_OK. */
static void expect(outloop_status got, outloop_status want, const char *what) {
  char line[256];
  snprintf(line, sizeof line, "%s: %s", what, outloop_status_name(got));
  int msg_ok = (got == OUTLOOP_OK) == (outloop_last_error_message() == NULL);
  check(got == want && msg_ok, line);
  if (got != OUTLOOP_OK && got == want) printf("     -> %s\n", outloop_last_error_message());
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s HOME WORKSPACE < text-to-redact\n", argv[0]);
    return 2;
  }
  const char *home = argv[1], *ws = argv[2];
  check(outloop_abi_version() == OUTLOOP_ABI_VERSION, "ABI version matches the header");

  outloop_broker *b = NULL;
  expect(outloop_broker_open(u8(home), strlen(home), u8(ws), strlen(ws), &b), OUTLOOP_OK, "open");
  if (b == NULL) {
    printf("%d passed, %d failed\n", passed, failed + 1);
    return 1;
  }

  uint8_t *out = NULL;
  size_t len = 0;

  expect(outloop_actions(b, &out, &len), OUTLOOP_OK, "actions");
  if (out) {
    check(strstr((const char *)out, "\"echo.bearer\"") != NULL, "actions list echo.bearer");
    outloop_buffer_free(out, len);
    out = NULL;
  }

  const char *action = "echo.bearer";
  expect(outloop_explain(b, u8(action), strlen(action), NULL, 0, &out, &len), OUTLOOP_OK,
         "explain echo.bearer");
  if (out) {
    check(strstr((const char *)out, "\"decision\":\"allow\"") != NULL, "echo.bearer is allowed");
    outloop_buffer_free(out, len);
    out = NULL;
  }

  /* A real call: httpbin echoes the token, the broker redacts it. */
  expect(outloop_call(b, u8(action), strlen(action), u8("{}"), 2, NULL, 0, &out, &len),
         OUTLOOP_OK, "call echo.bearer");
  if (out) {
    printf("     -> %.*s\n", (int)len, (const char *)out);
    check(strstr((const char *)out, "[REDACTED:echo]") != NULL, "the echoed token is redacted");
    outloop_buffer_free(out, len);
    out = NULL;
  }

  /* Failures leave the out-parameters alone. */
  uint8_t *untouched = (uint8_t *)&len;
  out = untouched;
  const char *denied = "echo.delete";
  expect(outloop_call(b, u8(denied), strlen(denied), NULL, 0, NULL, 0, &out, &len),
         OUTLOOP_POLICY_DENIED, "call echo.delete");
  expect(outloop_call(b, u8(action), strlen(action), NULL, 0, u8("globex"), 6, &out, &len),
         OUTLOOP_POLICY_DENIED, "call for another tenant");
  expect(outloop_call(b, u8(action), strlen(action), u8("{nope"), 5, NULL, 0, &out, &len),
         OUTLOOP_INVALID_JSON, "call with broken JSON");
  expect(outloop_call(b, u8("\xff\xfe"), 2, NULL, 0, NULL, 0, &out, &len), OUTLOOP_INVALID_UTF8,
         "call with invalid UTF-8");
  expect(outloop_call(b, NULL, 0, NULL, 0, NULL, 0, &out, &len), OUTLOOP_NULL_PARAMETER,
         "call with a NULL action");
  expect(outloop_call(b, u8("no.such"), 7, NULL, 0, NULL, 0, &out, &len),
         OUTLOOP_UNKNOWN_ACTION, "call an unknown action");
  const char *unknown_alias = "{\"alias\":\"api\",\"method\":\"GET\",\"path\":\"/\"}";
  expect(outloop_alias_request(b, u8(unknown_alias), strlen(unknown_alias), NULL, 0, &out, &len),
         OUTLOOP_UNKNOWN_ACTION, "alias request to an unknown alias");
  expect(outloop_alias_request(b, u8("{nope"), 5, NULL, 0, &out, &len), OUTLOOP_INVALID_JSON,
         "alias request with broken JSON");
  expect(outloop_debug_panic(), OUTLOOP_PANIC, "forced panic");
  check(out == untouched, "out-parameters untouched by failures");
  out = NULL;

  /* Redact whatever arrives on stdin with the workspace tenant's secrets. */
  size_t cap = 4096, n = 0;
  char *input = malloc(cap);
  for (size_t r; input && (r = fread(input + n, 1, cap - n, stdin)) > 0;) {
    n += r;
    if (n == cap) input = realloc(input, cap *= 2);
  }
  size_t count = 0;
  expect(outloop_redact(b, (const uint8_t *)input, n, &out, &len, &count), OUTLOOP_OK, "redact stdin");
  free(input);
  if (out) {
    printf("     -> %zu replacement(s): %.*s\n", count, (int)len, (const char *)out);
    check(count >= 1, "stdin held a secret and it was replaced");
    outloop_buffer_free(out, len);
    out = NULL;
  }

  uint64_t records = 0;
  expect(outloop_audit_verify(b, &records), OUTLOOP_OK, "audit verify");
  printf("     -> %llu audit records, chain intact\n", (unsigned long long)records);
  check(records >= 3, "every attempt was audited");

  outloop_broker_free(b);
  outloop_broker_free(NULL);
  outloop_buffer_free(NULL, 0);
  printf("c example: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
