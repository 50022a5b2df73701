mod audit;
mod bad_input;
mod call;
mod canary;
mod daemon;
mod daemon_frontends;
mod doctor;
mod exec;
mod import;
mod import_keyring;
mod init_agent;
mod mcp;
mod packs;
mod policy;
mod scan;
mod tenants;
mod vendor_backends;

use crate::support::httpbin;

/// Actions against httpbin and the recording upstream `rec`, and a policy for both tenants.
pub fn actions(rec: &str) -> String {
    let h = httpbin();
    format!(
        r#"
[actions."echo.bearer"]
description = "httpbin /bearer: reports the bearer token it received"
credential = "echo"
method = "GET"
url = "{h}/bearer"
auth = {{ type = "bearer" }}

[actions."echo.headers"]
description = "httpbin /headers with a named header"
credential = "key"
method = "GET"
url = "{h}/headers"
auth = {{ type = "header", name = "X-Api-Key", format = "Key {{secret}}" }}

[actions."echo.basic"]
credential = "key"
method = "GET"
url = "{h}/headers"
auth = {{ type = "basic", username = "outloop" }}

[actions."echo.query"]
credential = "key"
method = "GET"
url = "{h}/anything"
query = {{ q = "{{q}}" }}
auth = {{ type = "query", name = "api_key" }}
params.q = {{ type = "string", required = false }}

[actions."echo.redirect"]
credential = "echo"
method = "GET"
url = "{h}/redirect-to"
query = {{ url = "{{to}}" }}
auth = {{ type = "bearer" }}
params.to = {{ type = "string" }}

[actions."echo.gzip"]
credential = "echo"
method = "GET"
url = "{h}/gzip"
auth = {{ type = "bearer" }}

[actions."echo.deflate"]
credential = "echo"
method = "GET"
url = "{h}/deflate"
auth = {{ type = "bearer" }}

[actions."echo.brotli"]
credential = "echo"
method = "GET"
url = "{h}/brotli"
auth = {{ type = "bearer" }}

[actions."echo.stream"]
description = "httpbin /stream/n: n JSON lines, chunked, each echoing the request headers"
credential = "echo"
method = "GET"
url = "{h}/stream/{{n}}"
auth = {{ type = "bearer" }}
params.n = {{ type = "integer", min = 1, max = 100 }}

[actions."echo.range"]
method = "GET"
url = "{h}/range/{{n}}"
params.n = {{ type = "integer", min = 1, max = 102400 }}

[actions."echo.stream-bytes"]
method = "GET"
url = "{h}/stream-bytes/{{n}}"
query = {{ chunk_size = "{{chunk}}" }}
params.n = {{ type = "integer", min = 1, max = 102400 }}
params.chunk = {{ type = "integer", min = 1, max = 65536, default = 1000 }}

[actions."echo.big"]
method = "GET"
url = "{h}/bytes/{{n}}"
max_response_bytes = 1000
params.n = {{ type = "integer", min = 1, max = 100000 }}

[actions."echo.status"]
method = "GET"
url = "{h}/status/{{code}}"
params.code = {{ type = "integer", min = 100, max = 599 }}

[actions."rec.get"]
description = "the recording upstream"
credential = "echo"
method = "GET"
url = "{rec}/v1/items/{{id}}"
auth = {{ type = "bearer" }}
params.id = {{ type = "string", max_length = 64 }}

[actions."rec.create"]
credential = "echo"
method = "POST"
url = "{rec}/v1/items"
body = {{ name = "{{name}}", count = "{{count}}", note = "{{note}}" }}
auth = {{ type = "bearer" }}
params.name = {{ type = "string", enum = ["alpha", "beta"] }}
params.count = {{ type = "integer", min = 0, max = 10, default = 1 }}
params.note = {{ type = "string", required = false }}

[actions.metadata]
method = "GET"
url = "http://169.254.169.254/latest/meta-data/"

[policy.tenants.acme]
allow = ["echo.*", "rec.*", "metadata"]
deny = ["echo.status"]

[policy.tenants.globex]
allow = ["rec.*", "echo.bearer"]
"#
    )
}
