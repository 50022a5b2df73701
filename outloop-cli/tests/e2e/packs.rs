//! The action packs in `examples/actions/`.
//!
//! - Every pack loads through `include` in a host config and through `outloop actions --pack`.
//! - Every action's method, host, path and auth placement match the vendor's documented form
//!   (the tables below, each row citing the vendor's reference page).
//! - Write actions follow the naming convention the packs' suggested policies rely on.
//! - One representative action per pack runs end to end through the real CLI against a
//!   loopback fake of the vendor that checks method, path, auth header form, required headers
//!   and body shape as the vendor documents them, and answers with the documented response
//!   shape. The test installs a temp copy of the pack with the vendor origin rewritten to the
//!   fake's `http://127.0.0.1:<port>` (the only edit), with `[egress] allow_private =
//!   ["127.0.0.0/8"]`. Each fake echoes the credentials it received in an `x-fake-echo`
//!   response header, as a reflecting upstream would; they must come back redacted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::Env;

fn packs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/actions")
}

const PACKS: &[&str] = &[
    "github.toml",
    "google-ads.toml",
    "hubspot.toml",
    "mailchimp.toml",
    "meta-ads.toml",
    "salesforce.toml",
    "sendgrid.toml",
    "slack.toml",
    "stripe.toml",
];

/// Per pack: the action prefix, the documented origin, and how the credential is applied.
struct Vendor {
    pack: &'static str,
    prefix: &'static str,
    /// The credential name every action applies.
    credential: &'static str,
    origin: &'static str,
    /// `bearer`, `basic` or `query:<name>`.
    auth: &'static str,
    /// `credential_headers` every action carries (header, credential).
    credential_headers: &'static [(&'static str, &'static str)],
    /// Static headers every action sends (header, value).
    headers: &'static [(&'static str, &'static str)],
}

const VENDORS: &[Vendor] = &[
    // https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api
    // https://docs.github.com/en/rest/about-the-rest-api/api-versions
    Vendor {
        pack: "github.toml",
        prefix: "github.",
        credential: "github",
        origin: "https://api.github.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ],
    },
    // https://developers.google.com/google-ads/api/rest/auth
    Vendor {
        pack: "google-ads.toml",
        prefix: "googleads.",
        credential: "googleads",
        origin: "https://googleads.googleapis.com",
        auth: "bearer",
        credential_headers: &[("developer-token", "googleads-developer-token")],
        headers: &[],
    },
    // https://developers.hubspot.com/docs/guides/apps/private-apps/overview
    Vendor {
        pack: "hubspot.toml",
        prefix: "hubspot.",
        credential: "hubspot",
        origin: "https://api.hubapi.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[],
    },
    // https://mailchimp.com/developer/marketing/docs/fundamentals/#authentication
    // (host: https://<dc>.api.mailchimp.com, the pack ships `us1` to be edited)
    Vendor {
        pack: "mailchimp.toml",
        prefix: "mailchimp.",
        credential: "mailchimp",
        origin: "https://us1.api.mailchimp.com",
        auth: "basic",
        credential_headers: &[],
        headers: &[],
    },
    // https://developers.facebook.com/docs/marketing-api/insights (access_token parameter)
    Vendor {
        pack: "meta-ads.toml",
        prefix: "meta.",
        credential: "meta",
        origin: "https://graph.facebook.com",
        auth: "query:access_token",
        credential_headers: &[],
        headers: &[],
    },
    // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/quickstart_oauth.htm
    // (host: the org's My Domain, https://MyDomainName.my.salesforce.com, edited on install)
    Vendor {
        pack: "salesforce.toml",
        prefix: "salesforce.",
        credential: "salesforce",
        origin: "https://mydomainname.my.salesforce.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[],
    },
    // https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/authentication
    Vendor {
        pack: "sendgrid.toml",
        prefix: "sendgrid.",
        credential: "sendgrid",
        origin: "https://api.sendgrid.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[],
    },
    // https://docs.slack.dev/authentication/tokens
    Vendor {
        pack: "slack.toml",
        prefix: "slack.",
        credential: "slack",
        origin: "https://slack.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[],
    },
    // https://docs.stripe.com/api/authentication
    Vendor {
        pack: "stripe.toml",
        prefix: "stripe.",
        credential: "stripe",
        origin: "https://api.stripe.com",
        auth: "bearer",
        credential_headers: &[],
        headers: &[],
    },
];

/// Every action: (name, method, path after the origin, writes?), as the vendor documents it.
const ACTIONS: &[(&str, &str, &str, bool)] = &[
    // https://docs.github.com/en/rest/repos/repos
    ("github.repos.list", "GET", "/user/repos", false),
    ("github.repos.get", "GET", "/repos/{owner}/{repo}", false),
    // https://docs.github.com/en/rest/issues/issues, .../issues/comments
    (
        "github.issues.list",
        "GET",
        "/repos/{owner}/{repo}/issues",
        false,
    ),
    (
        "github.issues.get",
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        false,
    ),
    (
        "github.issues.create",
        "POST",
        "/repos/{owner}/{repo}/issues",
        true,
    ),
    (
        "github.issues.comments.create",
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        true,
    ),
    // https://developers.google.com/google-ads/api/rest/common/search
    (
        "googleads.search_stream",
        "POST",
        "/v24/customers/{customer_id}/googleAds:searchStream",
        false,
    ),
    // https://developers.hubspot.com/docs/reference/api/crm/objects/contacts
    (
        "hubspot.contacts.list",
        "GET",
        "/crm/v3/objects/contacts",
        false,
    ),
    (
        "hubspot.contacts.search",
        "POST",
        "/crm/v3/objects/contacts/search",
        false,
    ),
    (
        "hubspot.contacts.get",
        "GET",
        "/crm/v3/objects/contacts/{contact_id}",
        false,
    ),
    (
        "hubspot.contacts.create",
        "POST",
        "/crm/v3/objects/contacts",
        true,
    ),
    (
        "hubspot.contacts.update",
        "PATCH",
        "/crm/v3/objects/contacts/{contact_id}",
        true,
    ),
    // https://developers.hubspot.com/docs/reference/api/crm/objects/companies
    (
        "hubspot.companies.list",
        "GET",
        "/crm/v3/objects/companies",
        false,
    ),
    (
        "hubspot.companies.search",
        "POST",
        "/crm/v3/objects/companies/search",
        false,
    ),
    (
        "hubspot.companies.get",
        "GET",
        "/crm/v3/objects/companies/{company_id}",
        false,
    ),
    (
        "hubspot.companies.create",
        "POST",
        "/crm/v3/objects/companies",
        true,
    ),
    (
        "hubspot.companies.update",
        "PATCH",
        "/crm/v3/objects/companies/{company_id}",
        true,
    ),
    // https://mailchimp.com/developer/marketing/api/lists/get-lists-info/
    ("mailchimp.lists.list", "GET", "/3.0/lists", false),
    // https://mailchimp.com/developer/marketing/api/reports/
    ("mailchimp.reports.list", "GET", "/3.0/reports", false),
    (
        "mailchimp.reports.get",
        "GET",
        "/3.0/reports/{campaign_id}",
        false,
    ),
    // https://developers.facebook.com/docs/marketing-api/reference/ad-campaign-group/insights
    (
        "meta.campaign.insights",
        "GET",
        "/v25.0/{campaign_id}/insights",
        false,
    ),
    // https://developers.facebook.com/docs/marketing-api/reference/ad-account/insights
    (
        "meta.account.campaign_insights",
        "GET",
        "/v25.0/act_{ad_account_id}/insights",
        false,
    ),
    // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm
    (
        "salesforce.query",
        "GET",
        "/services/data/v66.0/query",
        false,
    ),
    (
        "salesforce.query.more",
        "GET",
        "/services/data/v66.0/query/{locator}",
        false,
    ),
    // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_retrieve.htm
    (
        "salesforce.sobject.get",
        "GET",
        "/services/data/v66.0/sobjects/{sobject}/{id}",
        false,
    ),
    // https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
    ("sendgrid.send", "POST", "/v3/mail/send", true),
    ("sendgrid.template.send", "POST", "/v3/mail/send", true),
    // https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates/retrieve-paged-transactional-templates
    ("sendgrid.templates.list", "GET", "/v3/templates", false),
    // https://docs.slack.dev/reference/methods/chat.postMessage
    ("slack.chat.post", "POST", "/api/chat.postMessage", true),
    // https://docs.slack.dev/reference/methods/conversations.history
    (
        "slack.conversations.history",
        "GET",
        "/api/conversations.history",
        false,
    ),
    // https://docs.stripe.com/api/customers, https://docs.stripe.com/api/charges
    ("stripe.customers.list", "GET", "/v1/customers", false),
    (
        "stripe.customers.get",
        "GET",
        "/v1/customers/{customer_id}",
        false,
    ),
    // https://docs.stripe.com/api/customers/create, .../update (form-encoded bodies)
    ("stripe.customers.create", "POST", "/v1/customers", true),
    (
        "stripe.customers.update",
        "POST",
        "/v1/customers/{customer_id}",
        true,
    ),
    ("stripe.charges.list", "GET", "/v1/charges", false),
    (
        "stripe.charges.get",
        "GET",
        "/v1/charges/{charge_id}",
        false,
    ),
];

/// The last name segments that mark a write; the packs' suggested `approve` globs use them.
const WRITE_VERBS: &[&str] = &["create", "update", "send", "post"];

fn pack_json(env: &Env, pack: &Path) -> Value {
    let r = env.ok(
        &["actions", "--pack", pack.to_str().unwrap(), "--json"],
        &env.root,
    );
    r.json()
}

#[test]
fn every_action_matches_the_vendors_documented_form() {
    let env = Env::new("");
    let mut seen = Vec::new();
    for v in VENDORS {
        let out = pack_json(&env, &packs_dir().join(v.pack));
        assert_eq!(out["aliases"], json!([]), "{}", v.pack);
        for a in out["actions"].as_array().unwrap() {
            let name = a["name"].as_str().unwrap();
            assert!(name.starts_with(v.prefix), "{name} in {}", v.pack);
            let &(_, method, path, write) = ACTIONS
                .iter()
                .find(|row| row.0 == name)
                .unwrap_or_else(|| panic!("{name} has no row in ACTIONS"));
            assert_eq!(a["method"], method, "{name}");
            let url = a["url"].as_str().unwrap();
            let url_lower = url.to_ascii_lowercase();
            assert!(
                url_lower.starts_with(v.origin),
                "{name}: {url} is not on {}",
                v.origin
            );
            assert_eq!(&url[v.origin.len()..], path, "{name}");
            assert_eq!(a["write"], write, "{name}");
            let verb = name.rsplit('.').next().unwrap();
            assert_eq!(
                WRITE_VERBS.contains(&verb),
                write,
                "{name}: writes, and only writes, end in one of {WRITE_VERBS:?}"
            );
            assert_eq!(a["credential"], v.credential, "{name}: credential");
            match v.auth {
                "bearer" => assert_eq!(a["auth"], json!({"type": "bearer"}), "{name}"),
                "basic" => assert_eq!(a["auth"]["type"], "basic", "{name}"),
                q => {
                    let param = q.strip_prefix("query:").unwrap();
                    assert_eq!(a["auth"], json!({"type": "query", "name": param}), "{name}");
                }
            }
            let ch: BTreeMap<String, String> =
                serde_json::from_value(a["credential_headers"].clone()).unwrap();
            let want: BTreeMap<String, String> = v
                .credential_headers
                .iter()
                .map(|(h, c)| ((*h).to_owned(), (*c).to_owned()))
                .collect();
            assert_eq!(ch, want, "{name}: credential_headers");
            for (h, val) in v.headers {
                assert_eq!(a["headers"][h], *val, "{name}: header {h}");
            }
            if write || method != "GET" {
                let form = a["form"].as_object().is_some_and(|f| !f.is_empty());
                assert!(
                    a["body"].is_object() != form,
                    "{name}: a JSON body or a form, one of them"
                );
                assert_eq!(
                    form,
                    v.pack == "stripe.toml",
                    "{name}: only Stripe uses forms"
                );
            }
            seen.push(name.to_owned());
        }
    }
    let mut want: Vec<&str> = ACTIONS.iter().map(|r| r.0).collect();
    want.sort_unstable();
    seen.sort();
    assert_eq!(
        seen, want,
        "every documented action is in a pack, and no other"
    );
    env.assert_no_leak();
}

#[test]
fn every_pack_loads_through_include_and_lists_for_the_tenant() {
    let env = Env::new(
        "[policy.tenants.acme]\nallow = [\"github.*\", \"googleads.*\", \"hubspot.*\", \"mailchimp.*\", \"meta.*\", \"salesforce.*\", \"sendgrid.*\", \"slack.*\", \"stripe.*\"]\napprove = [\"hubspot.*.create\", \"hubspot.*.update\", \"sendgrid.send\", \"sendgrid.template.send\", \"slack.chat.post\", \"github.*.create\", \"stripe.*.create\", \"stripe.*.update\"]\n",
    );
    let dir = env.home.join("actions");
    std::fs::create_dir_all(&dir).unwrap();
    for p in PACKS {
        std::fs::copy(packs_dir().join(p), dir.join(p)).unwrap();
    }
    let r = env.ok(&["actions", "--json"], &env.acme);
    let v = r.json();
    let mut listed: Vec<(String, String)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["decision"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    listed.sort();
    let mut want: Vec<(String, String)> = ACTIONS
        .iter()
        .map(|&(n, _, _, w)| {
            let d = if w { "approve" } else { "allow" };
            (n.to_owned(), d.to_owned())
        })
        .collect();
    want.sort();
    assert_eq!(listed, want, "{}", r.stdout);
    env.assert_no_leak();
}

#[test]
fn pack_listing_names_read_and_write_and_bad_packs_get_one_line() {
    let env = Env::new("");
    let hubspot = packs_dir().join("hubspot.toml");
    let r = env.ok(&["actions", "--pack", hubspot.to_str().unwrap()], &env.root);
    assert!(
        r.stdout.starts_with(&format!(
            "pack {}: 10 actions, 0 aliases\n",
            hubspot.display()
        )),
        "{}",
        r.stdout
    );
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} listed: {}", r.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        &line("hubspot.contacts.list")[1..5],
        [
            "read",
            "GET",
            "https://api.hubapi.com/crm/v3/objects/contacts",
            "hubspot"
        ]
    );
    assert_eq!(&line("hubspot.contacts.search")[1..3], ["read", "POST"]);
    assert_eq!(&line("hubspot.contacts.update")[1..3], ["write", "PATCH"]);

    let bad = env.root.join("bad.toml");
    std::fs::write(
        &bad,
        "# a pack\n[actions.\"x.get\"]\nmethod = \"GET\"\nurl = \"https://{tenant_host}/v1\"\n",
    )
    .unwrap();
    let r = env.run(&["actions", "--pack", bad.to_str().unwrap()], &env.root);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "outloop: {}:4: actions.\"x.get\".url: placeholders may appear only in the URL path, never in the scheme, host or port\n",
            bad.display()
        )
    );
    assert_eq!(r.stdout, "");

    let r = env.run(
        &["actions", "--pack", "/nonexistent/pack.toml", "--json"],
        &env.root,
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.json()["error"]["message"],
        "/nonexistent/pack.toml: no such action pack"
    );
    env.assert_no_leak();
}

// ---- loopback fakes ----

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("body is not JSON: {e}"))
    }

    fn expect(&self, method: &str, path: &str) -> Result<(), String> {
        if self.method != method || self.path != path {
            return Err(format!(
                "expected {method} {path}, got {} {}",
                self.method, self.path
            ));
        }
        Ok(())
    }

    fn expect_header(&self, name: &str, value: &str) -> Result<(), String> {
        match self.header(name) {
            Some(v) if v == value => Ok(()),
            other => Err(format!("header {name}: expected `{value}`, got {other:?}")),
        }
    }

    fn expect_bearer(&self, token: &str) -> Result<(), String> {
        self.expect_header("authorization", &format!("Bearer {token}"))
    }
}

/// What a fake answers: status, content type and body; `Err` becomes a 400 naming the problem.
type Answer = Result<(u16, &'static str, String), String>;
type Handler = Arc<dyn Fn(&Req) -> Answer + Send + Sync>;

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Req>>>,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Fake {
    /// Listens before returning, so the first request cannot race the bind.
    fn start(handler: Handler) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let target = parts.next().unwrap_or("").to_owned();
                let mut headers = BTreeMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let (path, q) = target.split_once('?').unwrap_or((&target, ""));
                let query = q
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (decode(k), decode(v))
                    })
                    .collect();
                let req = Req {
                    method,
                    path: path.to_owned(),
                    query,
                    headers,
                    body,
                };
                rec.lock().unwrap().push(req.clone());
                let (status, ctype, body) = match handler(&req) {
                    Ok(a) => a,
                    Err(why) => (
                        400,
                        "application/json",
                        json!({ "fake_error": why }).to_string(),
                    ),
                };
                // Reflect every credential-bearing part, as a careless upstream would.
                let echo = [
                    req.header("authorization").unwrap_or(""),
                    req.header("developer-token").unwrap_or(""),
                    q,
                ]
                .join(" | ");
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nx-fake-echo: {echo}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        });
        Fake {
            url: format!("http://{addr}"),
            seen,
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

/// Installs `pack` with `origin` rewritten to the fake, stores the credentials for tenant
/// acme, allows `allow` and runs `outloop call <action> -p … --json` in acme's workspace.
/// Returns the env (for the leak check), the call's JSON and the requests the fake saw.
fn call_through_fake(
    pack: &str,
    origin: &str,
    credentials: &[(&str, &str)],
    action: &str,
    params: &[&str],
    handler: Handler,
) -> (Env, Value, Vec<Req>) {
    let fake = Fake::start(handler);
    let prefix = action.split('.').next().unwrap();
    let mut env = Env::new(&format!(
        "[policy.tenants.acme]\nallow = [\"{prefix}.*\"]\n"
    ));
    let text = std::fs::read_to_string(packs_dir().join(pack)).unwrap();
    assert!(text.contains(origin), "{pack} uses {origin}");
    let dir = env.home.join("actions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(pack), text.replace(origin, &fake.url)).unwrap();
    for (name, value) in credentials {
        env.set_secret(&format!("vault://acme/{name}"), value, Some(("acme", name)));
        env.secrets.push(value.as_bytes().to_vec());
    }
    let mut args = vec!["call", action, "--json"];
    for p in params {
        args.extend(["-p", p]);
    }
    let r = env.run(&args, &env.acme);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["action"], action);
    assert_eq!(v["tenant"], "acme");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "one request reached the fake: {reqs:?}");
    (env, v, reqs)
}

fn body(v: &Value) -> Value {
    serde_json::from_str(v["body"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {v}"))
}

fn echo(v: &Value) -> String {
    v["headers"]["x-fake-echo"]
        .as_str()
        .unwrap_or_else(|| panic!("no echo header: {v}"))
        .to_owned()
}

fn assert_ok(v: &Value, status: u64) {
    assert_eq!(v["status"], status, "the fake accepted the request: {v}");
    assert!(v["redactions"].as_u64().unwrap() >= 1, "{v}");
}

const HUBSPOT: &str = "FAKE-pat-na1-hubspot-7c1e0b";

#[test]
fn hubspot_contacts_list_and_create_against_a_faithful_fake() {
    // https://developers.hubspot.com/docs/reference/api/crm/objects/contacts
    // GET /crm/v3/objects/contacts?limit=… → {"results": [...], "paging": {"next": {"after"}}}
    let (env, v, reqs) = call_through_fake(
        "hubspot.toml",
        "https://api.hubapi.com",
        &[("hubspot", HUBSPOT)],
        "hubspot.contacts.list",
        &["limit=2"],
        Arc::new(|r: &Req| {
            r.expect("GET", "/crm/v3/objects/contacts")?;
            r.expect_bearer(HUBSPOT)?;
            if r.query("limit") != Some("2") || r.query("after").is_some() {
                return Err(format!("query: {:?}", r.query));
            }
            Ok((
                200,
                "application/json;charset=utf-8",
                json!({
                    "results": [{
                        "id": "512",
                        "properties": {"email": "ada@example.com", "firstname": "Ada", "hs_object_id": "512"},
                        "createdAt": "2026-01-02T03:04:05.000Z",
                        "updatedAt": "2026-01-02T03:04:05.000Z",
                        "archived": false
                    }],
                    "paging": {"next": {"after": "513", "link": "https://api.hubapi.com/crm/v3/objects/contacts?after=513"}}
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(
        body(&v)["results"][0]["properties"]["email"],
        "ada@example.com"
    );
    assert_eq!(body(&v)["paging"]["next"]["after"], "513");
    assert_eq!(echo(&v), "Bearer [REDACTED:hubspot] |  | limit=2");
    assert!(reqs[0].body.is_empty());
    env.assert_no_leak();

    // POST /crm/v3/objects/contacts {"properties": {...}} → 201 with the new object.
    let (env, v, reqs) = call_through_fake(
        "hubspot.toml",
        "https://api.hubapi.com",
        &[("hubspot", HUBSPOT)],
        "hubspot.contacts.create",
        &["email=grace@example.com", "firstname=Grace"],
        Arc::new(|r: &Req| {
            r.expect("POST", "/crm/v3/objects/contacts")?;
            r.expect_bearer(HUBSPOT)?;
            r.expect_header("content-type", "application/json")?;
            let b = r.json()?;
            if b != json!({"properties": {"email": "grace@example.com", "firstname": "Grace"}}) {
                return Err(format!("body: {b}"));
            }
            Ok((
                201,
                "application/json",
                json!({"id": "777", "properties": b["properties"], "archived": false}).to_string(),
            ))
        }),
    );
    assert_ok(&v, 201);
    assert_eq!(body(&v)["id"], "777");
    assert_eq!(reqs[0].method, "POST");
    env.assert_no_leak();
}

const SALESFORCE: &str = "FAKE00D000000000001!AQ4AQsalesforce";

#[test]
fn salesforce_query_against_a_faithful_fake() {
    // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm
    // GET /services/data/v66.0/query?q=<SOQL> → {"totalSize", "done", "records": [...]}
    let (env, v, _) = call_through_fake(
        "salesforce.toml",
        "https://MyDomainName.my.salesforce.com",
        &[("salesforce", SALESFORCE)],
        "salesforce.query",
        &["soql=SELECT Id, Name FROM Account LIMIT 1"],
        Arc::new(|r: &Req| {
            r.expect("GET", "/services/data/v66.0/query")?;
            r.expect_bearer(SALESFORCE)?;
            if r.query("q") != Some("SELECT Id, Name FROM Account LIMIT 1") {
                return Err(format!("q: {:?}", r.query("q")));
            }
            Ok((
                200,
                "application/json;charset=UTF-8",
                json!({
                    "totalSize": 1,
                    "done": true,
                    "records": [{
                        "attributes": {"type": "Account", "url": "/services/data/v66.0/sobjects/Account/001D000000IRFmaIAH"},
                        "Id": "001D000000IRFmaIAH",
                        "Name": "Acme"
                    }]
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["records"][0]["Name"], "Acme");
    assert!(
        echo(&v).starts_with("Bearer [REDACTED:salesforce] |"),
        "{}",
        echo(&v)
    );
    env.assert_no_leak();
}

const GADS_TOKEN: &str = "FAKE-ya29-googleads-oauth-4d2f";
const GADS_DEV: &str = "FAKE-devtoken-googleads-91ab";

#[test]
fn google_ads_search_stream_sends_both_credentials_and_the_manager_header() {
    // https://developers.google.com/google-ads/api/rest/auth: Authorization Bearer,
    // developer-token, login-customer-id (manager). https://developers.google.com/google-ads/api/rest/common/search:
    // POST …/googleAds:searchStream {"query"} → [{"results": [...], "fieldMask", "requestId"}]
    let (env, v, _) = call_through_fake(
        "google-ads.toml",
        "https://googleads.googleapis.com",
        &[
            ("googleads", GADS_TOKEN),
            ("googleads-developer-token", GADS_DEV),
        ],
        "googleads.search_stream",
        &[
            "customer_id=1234567890",
            "login_customer_id=9876543210",
            "query=SELECT campaign.id, campaign.name, metrics.clicks FROM campaign",
        ],
        Arc::new(|r: &Req| {
            r.expect("POST", "/v24/customers/1234567890/googleAds:searchStream")?;
            r.expect_bearer(GADS_TOKEN)?;
            r.expect_header("developer-token", GADS_DEV)?;
            r.expect_header("login-customer-id", "9876543210")?;
            r.expect_header("content-type", "application/json")?;
            let b = r.json()?;
            if b != json!({"query": "SELECT campaign.id, campaign.name, metrics.clicks FROM campaign"})
            {
                return Err(format!("body: {b}"));
            }
            Ok((
                200,
                "application/json; charset=UTF-8",
                json!([{
                    "results": [{
                        "campaign": {"resourceName": "customers/1234567890/campaigns/111", "id": "111", "name": "Brand"},
                        "metrics": {"clicks": "42"}
                    }],
                    "fieldMask": "campaign.id,campaign.name,metrics.clicks",
                    "requestId": "fake-request-1"
                }])
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)[0]["results"][0]["metrics"]["clicks"], "42");
    assert_eq!(
        echo(&v),
        "Bearer [REDACTED:googleads] | [REDACTED:googleads-developer-token] |"
    );
    assert!(v["redactions"].as_u64().unwrap() >= 2, "{v}");
    env.assert_no_leak();
}

const META: &str = "FAKE-EAAB-meta-access-token-55";

#[test]
fn meta_campaign_insights_against_a_faithful_fake() {
    // https://developers.facebook.com/docs/marketing-api/insights:
    // GET /v25.0/<CAMPAIGN_ID>/insights?access_token=… → {"data": [...], "paging": {...}}
    let (env, v, reqs) = call_through_fake(
        "meta-ads.toml",
        "https://graph.facebook.com",
        &[("meta", META)],
        "meta.campaign.insights",
        &["campaign_id=120200000000000001", "date_preset=last_7d"],
        Arc::new(|r: &Req| {
            r.expect("GET", "/v25.0/120200000000000001/insights")?;
            if r.query("access_token") != Some(META) {
                return Err("access_token query parameter missing or wrong".into());
            }
            if r.header("authorization").is_some() {
                return Err("unexpected Authorization header".into());
            }
            if r.query("date_preset") != Some("last_7d")
                || r.query("fields") != Some("campaign_name,impressions,clicks,spend,ctr,cpc")
            {
                return Err(format!("query: {:?}", r.query));
            }
            Ok((
                200,
                "application/json; charset=UTF-8",
                json!({
                    "data": [{
                        "campaign_name": "Brand", "impressions": "361324", "clicks": "4210",
                        "spend": "5339.5", "ctr": "1.16", "cpc": "1.27",
                        "date_start": "2026-11-23", "date_stop": "2026-11-29"
                    }],
                    "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["data"][0]["spend"], "5339.5");
    assert!(
        echo(&v).contains("access_token=[REDACTED:meta]"),
        "{}",
        echo(&v)
    );
    assert_eq!(reqs[0].query.len(), 3, "{:?}", reqs[0].query);
    env.assert_no_leak();
}

const SENDGRID: &str = "FAKE.SG-sendgrid-key-0a1b2c3d";

#[test]
fn sendgrid_send_against_a_faithful_fake() {
    // https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send:
    // POST /v3/mail/send {personalizations[].to[].email, from.email, subject, content[]}
    // → 202 Accepted, empty body.
    let (env, v, _) = call_through_fake(
        "sendgrid.toml",
        "https://api.sendgrid.com",
        &[("sendgrid", SENDGRID)],
        "sendgrid.send",
        &[
            "to=ada@example.com",
            "from=ops@example.com",
            "subject=Report",
            "text=Numbers attached.",
        ],
        Arc::new(|r: &Req| {
            r.expect("POST", "/v3/mail/send")?;
            r.expect_bearer(SENDGRID)?;
            r.expect_header("content-type", "application/json")?;
            let b = r.json()?;
            let want = json!({
                "personalizations": [{"to": [{"email": "ada@example.com"}]}],
                "from": {"email": "ops@example.com"},
                "subject": "Report",
                "content": [{"type": "text/plain", "value": "Numbers attached."}]
            });
            if b != want {
                return Err(format!("body: {b}"));
            }
            Ok((202, "text/plain", String::new()))
        }),
    );
    assert_ok(&v, 202);
    assert_eq!(v["body"], "");
    assert!(echo(&v).starts_with("Bearer [REDACTED:sendgrid] |"));
    env.assert_no_leak();
}

const MAILCHIMP: &str = "FAKE0123456789abcdef0123456789ab-us1";

#[test]
fn mailchimp_campaign_report_uses_basic_auth_against_a_faithful_fake() {
    // https://mailchimp.com/developer/marketing/docs/fundamentals/#authentication: basic auth,
    // any user name, the API key as password. https://mailchimp.com/developer/marketing/api/reports/get-campaign-report/
    let (env, v, _) = call_through_fake(
        "mailchimp.toml",
        "https://us1.api.mailchimp.com",
        &[("mailchimp", MAILCHIMP)],
        "mailchimp.reports.get",
        &["campaign_id=42a6b1c0d3"],
        Arc::new(|r: &Req| {
            r.expect("GET", "/3.0/reports/42a6b1c0d3")?;
            let auth = r.header("authorization").ok_or("no Authorization")?;
            let b64 = auth.strip_prefix("Basic ").ok_or("not basic auth")?;
            let plain = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "basic credentials are not base64")?;
            let plain = String::from_utf8(plain).map_err(|_| "not UTF-8")?;
            match plain.split_once(':') {
                Some((user, key)) if !user.is_empty() && key == MAILCHIMP => {}
                _ => return Err("basic auth is not <any user>:<api key>".into()),
            }
            Ok((
                200,
                "application/json; charset=utf-8",
                json!({
                    "id": "42a6b1c0d3", "campaign_title": "November news", "type": "regular",
                    "list_id": "57afe96172", "emails_sent": 100,
                    "opens": {"opens_total": 50, "unique_opens": 40, "open_rate": 0.4},
                    "clicks": {"clicks_total": 10, "unique_clicks": 8, "click_rate": 0.08}
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["opens"]["unique_opens"], 40);
    let e = echo(&v);
    assert!(
        e.starts_with("Basic ") && e.contains("REDACTED"),
        "basic credentials masked: {e}"
    );
    env.assert_no_leak();
}

const STRIPE: &str = "FAKE_rk_test_stripe_51Hx0";

#[test]
fn stripe_customers_list_and_create_against_a_faithful_fake() {
    // https://docs.stripe.com/api/customers/list: GET /v1/customers?limit=… →
    // {"object": "list", "url": "/v1/customers", "has_more", "data": [...]}
    let (env, v, _) = call_through_fake(
        "stripe.toml",
        "https://api.stripe.com",
        &[("stripe", STRIPE)],
        "stripe.customers.list",
        &["limit=3"],
        Arc::new(|r: &Req| {
            r.expect("GET", "/v1/customers")?;
            r.expect_bearer(STRIPE)?;
            if r.query != vec![("limit".to_owned(), "3".to_owned())] {
                return Err(format!("query: {:?}", r.query));
            }
            Ok((
                200,
                "application/json",
                json!({
                    "object": "list", "url": "/v1/customers", "has_more": false,
                    "data": [{"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "jenny@example.com"}]
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["data"][0]["id"], "cus_NffrFeUfNV2Hib");
    env.assert_no_leak();

    // https://docs.stripe.com/api/customers/create: POST /v1/customers with an
    // application/x-www-form-urlencoded body → the customer object.
    let (env, v, _) = call_through_fake(
        "stripe.toml",
        "https://api.stripe.com",
        &[("stripe", STRIPE)],
        "stripe.customers.create",
        &["email=jenny+1@example.com", "name=Jenny Rosen"],
        Arc::new(|r: &Req| {
            r.expect("POST", "/v1/customers")?;
            r.expect_bearer(STRIPE)?;
            r.expect_header("content-type", "application/x-www-form-urlencoded")?;
            let body = String::from_utf8(r.body.clone()).map_err(|_| "body not UTF-8")?;
            let mut fields: Vec<(String, String)> = body
                .split('&')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect();
            fields.sort();
            let want = vec![
                ("email".to_owned(), "jenny+1@example.com".to_owned()),
                ("name".to_owned(), "Jenny Rosen".to_owned()),
            ];
            if fields != want {
                return Err(format!("form: {body}"));
            }
            Ok((
                200,
                "application/json",
                json!({"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "jenny+1@example.com", "name": "Jenny Rosen"})
                    .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["object"], "customer");
    env.assert_no_leak();
}

const GITHUB: &str = "FAKE_github_pat_11AAAA0000";

#[test]
fn github_issue_create_against_a_faithful_fake() {
    // https://docs.github.com/en/rest/issues/issues#create-an-issue: POST
    // /repos/{owner}/{repo}/issues {"title", "body"} with Accept, X-GitHub-Api-Version and a
    // User-Agent → 201 with the issue.
    let (env, v, _) = call_through_fake(
        "github.toml",
        "https://api.github.com",
        &[("github", GITHUB)],
        "github.issues.create",
        &[
            "owner=acme-corp",
            "repo=website",
            "title=Broken link",
            "body=On /pricing",
        ],
        Arc::new(|r: &Req| {
            r.expect("POST", "/repos/acme-corp/website/issues")?;
            r.expect_bearer(GITHUB)?;
            r.expect_header("accept", "application/vnd.github+json")?;
            r.expect_header("x-github-api-version", "2022-11-28")?;
            if !r
                .header("user-agent")
                .is_some_and(|u| u.starts_with("outloop/"))
            {
                return Err("GitHub refuses requests without a User-Agent".into());
            }
            let b = r.json()?;
            if b != json!({"title": "Broken link", "body": "On /pricing"}) {
                return Err(format!("body: {b}"));
            }
            Ok((
                201,
                "application/json; charset=utf-8",
                json!({
                    "id": 1, "number": 1347, "state": "open", "title": "Broken link",
                    "html_url": "https://github.com/acme-corp/website/issues/1347"
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 201);
    assert_eq!(body(&v)["number"], 1347);
    env.assert_no_leak();
}

const SLACK: &str = "FAKE-xoxb-slack-bot-0000-1111";

#[test]
fn slack_post_message_against_a_faithful_fake() {
    // https://docs.slack.dev/reference/methods/chat.postMessage and
    // https://docs.slack.dev/apis/web-api/#posting_json: POST JSON with
    // `Content-Type: application/json; charset=utf-8` and a bearer token → {"ok": true, …}
    let (env, v, _) = call_through_fake(
        "slack.toml",
        "https://slack.com",
        &[("slack", SLACK)],
        "slack.chat.post",
        &["channel=C0123456789", "text=Deploy finished"],
        Arc::new(|r: &Req| {
            r.expect("POST", "/api/chat.postMessage")?;
            r.expect_bearer(SLACK)?;
            r.expect_header("content-type", "application/json; charset=utf-8")?;
            let b = r.json()?;
            if b != json!({"channel": "C0123456789", "text": "Deploy finished"}) {
                return Err(format!("body: {b}"));
            }
            Ok((
                200,
                "application/json; charset=utf-8",
                json!({
                    "ok": true, "channel": "C0123456789", "ts": "1503435956.000247",
                    "message": {"text": "Deploy finished", "type": "message", "ts": "1503435956.000247"}
                })
                .to_string(),
            ))
        }),
    );
    assert_ok(&v, 200);
    assert_eq!(body(&v)["ok"], true);
    assert!(echo(&v).starts_with("Bearer [REDACTED:slack] |"));
    env.assert_no_leak();
}
