//! `outloop init --agent claude-code|cursor|codex [--workspace DIR]`: writes an agent's MCP
//! server entry for a workspace, in the agent's own format and place, and the agent's rules
//! against reading `.env`-style files where it has them.
//!
//! Every file is read and changed in memory first; a malformed file stops the command with one
//! line naming it, before anything is written. Existing content is kept: JSON files are edited
//! through a concrete syntax tree (dprint's `jsonc-parser`, `cst` feature), so other keys,
//! their order, whitespace and comments stay as they were; TOML through `toml_edit`, which
//! keeps comments. A second run changes nothing and says so.
//!
//! The entry starts `<absolute path of this outloop binary> mcp --workspace <workspace>`:
//! agents, editors in particular, start MCP servers without the login shell's `PATH`, so a
//! bare `outloop` is often not found, and the absolute path also pins the binary that was set
//! up. After moving or reinstalling `outloop`, run the command again: it updates the entry.
//! When `OUTLOOP_HOME` is set it is passed to the server in the entry's `env`.
//!
//! What each agent gets (formats as documented by each vendor, checked November 2026):
//!
//! | agent | MCP entry | file rules |
//! |---|---|---|
//! | Claude Code | `<ws>/.mcp.json`, `mcpServers.outloop` = `{type: "stdio", command, args, env}` (project scope; <https://code.claude.com/docs/en/mcp>) | `<ws>/.claude/settings.json`, `permissions.deny` += `Read(./.env)`, `Read(./.env.*)`, `Read(./**/.env)`, `Read(./**/.env.*)` (<https://code.claude.com/docs/en/settings>) |
//! | Cursor | `<ws>/.cursor/mcp.json`, `mcpServers.outloop` = `{command, args, env}` (<https://cursor.com/docs/mcp>) | `<ws>/.cursorignore` += `.env`, `.env.*` (gitignore syntax; <https://cursor.com/docs/context/ignore-files>) |
//! | Codex | `<ws>/.codex/config.toml`, `[mcp_servers.outloop]` `command`, `args`, `env` (project config, loaded for trusted projects; <https://developers.openai.com/codex/mcp>) | `<ws>/AGENTS.md`, a marked section telling the agent to use the tools and never read `.env` files |
//!
//! Codex enforces file rules only through its beta permission profiles
//! (`[permissions.<name>.filesystem]` with `"**/.env" = "none"`, selected by
//! `default_permissions`; <https://developers.openai.com/codex/permissions>). A project file
//! that selected a profile would replace the user's own sandbox choice, and profiles do not
//! compose with `sandbox_mode`, so this command writes guidance to `AGENTS.md` instead, which
//! the model reads but nothing enforces. Cursor's `.cursorignore` likewise does not stop the
//! agent's terminal or MCP tools.

use std::path::{Path, PathBuf};

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use outloop_core::{Error, ErrorKind, Result};
use serde_json::{Value, json};

/// The agents `outloop init --agent` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Agent {
    /// Anthropic's Claude Code: `.mcp.json` and `.claude/settings.json`.
    ClaudeCode,
    /// Cursor: `.cursor/mcp.json` and `.cursorignore`.
    Cursor,
    /// OpenAI's Codex: `.codex/config.toml` and `AGENTS.md`.
    Codex,
}

impl Agent {
    fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Cursor => "cursor",
            Agent::Codex => "codex",
        }
    }
}

/// The MCP server's name in every agent's config.
pub const SERVER_NAME: &str = "outloop";

/// Claude Code deny rules for `.env`-style files, at the top and at any depth.
const CLAUDE_DENY: [&str; 4] = [
    "Read(./.env)",
    "Read(./.env.*)",
    "Read(./**/.env)",
    "Read(./**/.env.*)",
];

/// `.cursorignore` patterns (gitignore syntax: no `/`, so they match at any depth).
const CURSOR_IGNORE: [&str; 2] = [".env", ".env.*"];

const AGENTS_BEGIN: &str = "<!-- outloop:begin -->";
const AGENTS_END: &str = "<!-- outloop:end -->";

/// How the agent starts the server: the command, its arguments and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCommand {
    /// Absolute path of the `outloop` binary.
    pub command: String,
    /// `["mcp", "--workspace", <workspace>]`.
    pub args: Vec<String>,
    /// `OUTLOOP_HOME` when it is set.
    pub env: Vec<(String, String)>,
}

/// One planned file change: the new content, or `None` when the file stays as it is.
#[derive(Debug)]
pub struct Change {
    /// The file.
    pub path: PathBuf,
    /// The whole new content, or `None` when nothing changes.
    pub content: Option<String>,
    /// Whether the file exists now.
    pub existed: bool,
    /// One line for the human: what was added.
    pub what: String,
}

fn utf8(p: &Path, what: &str) -> Result<String> {
    p.to_str().map(str::to_owned).ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            format!("{what} `{}` is not valid UTF-8", p.display()),
        )
    })
}

fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// A refusal naming the file (`at`: its path, with `:line` where known).
fn malformed(at: impl std::fmt::Display, detail: impl std::fmt::Display) -> Error {
    Error::config(format!("{at}: {detail}; nothing was written"))
}

fn to_input(v: &Value) -> CstInputValue {
    match v {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(a) => CstInputValue::Array(a.iter().map(to_input).collect()),
        Value::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), to_input(v))).collect())
        }
    }
}

/// Parses a JSON file (comments allowed only when `jsonc`) into a tree that keeps every byte.
fn parse_json(path: &Path, text: &str, jsonc: bool) -> Result<CstRootNode> {
    // The syntax tree keeps comments whatever the options say, so strict files are checked
    // by a strict parser first.
    if !jsonc && !text.trim().is_empty() {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
            malformed(
                format_args!("{}:{}:{}", path.display(), e.line(), e.column()),
                format_args!("not valid JSON: {e}"),
            )
        })?;
    }
    let opts = ParseOptions {
        allow_comments: jsonc,
        allow_loose_object_property_names: false,
        allow_trailing_commas: jsonc,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    CstRootNode::parse(text, &opts).map_err(|e| {
        malformed(
            format_args!(
                "{}:{}:{}",
                path.display(),
                e.line_display(),
                e.column_display()
            ),
            format_args!("not valid JSON: {}", e.kind()),
        )
    })
}

fn root_object(path: &Path, root: &CstRootNode) -> Result<CstObject> {
    match root.value() {
        None => Ok(root.object_value_or_set()),
        Some(v) => v
            .as_object()
            .ok_or_else(|| malformed(path.display(), "the top level is not a JSON object")),
    }
}

fn child_object(path: &Path, parent: &CstObject, key: &str, at: &str) -> Result<CstObject> {
    parent
        .object_value_or_create(key)
        .ok_or_else(|| malformed(path.display(), format_args!("`{at}` is not a JSON object")))
}

/// Sets `mcpServers.outloop` in a `.mcp.json`-style file to `entry`.
fn mcp_json(path: &Path, text: Option<&str>, entry: &Value, jsonc: bool) -> Result<Change> {
    let existed = text.is_some();
    let root = parse_json(path, text.unwrap_or(""), jsonc)?;
    let top = root_object(path, &root)?;
    let servers = child_object(path, &top, "mcpServers", "mcpServers")?;
    let what = match servers.get(SERVER_NAME) {
        Some(prop) => {
            let now = prop.value().and_then(|v| v.to_serde_value());
            if now.as_ref() == Some(entry) {
                return Ok(Change {
                    path: path.to_owned(),
                    content: None,
                    existed,
                    what: format!("MCP server `{SERVER_NAME}` already set up"),
                });
            }
            prop.set_value(to_input(entry));
            format!("MCP server `{SERVER_NAME}` updated")
        }
        None => {
            servers.append(SERVER_NAME, to_input(entry));
            format!("MCP server `{SERVER_NAME}` added")
        }
    };
    Ok(Change {
        path: path.to_owned(),
        content: Some(with_newline(root.to_string())),
        existed,
        what,
    })
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Adds the `.env` deny rules to `permissions.deny` of a Claude Code settings file.
fn claude_settings(path: &Path, text: Option<&str>) -> Result<Change> {
    let existed = text.is_some();
    let root = parse_json(path, text.unwrap_or(""), false)?;
    let top = root_object(path, &root)?;
    let perms = child_object(path, &top, "permissions", "permissions")?;
    let deny = perms
        .array_value_or_create("deny")
        .ok_or_else(|| malformed(path.display(), "`permissions.deny` is not a JSON array"))?;
    let have: Vec<Value> = deny
        .elements()
        .iter()
        .filter_map(|e| e.to_serde_value())
        .collect();
    let missing: Vec<&str> = CLAUDE_DENY
        .iter()
        .copied()
        .filter(|r| !have.contains(&Value::String((*r).to_owned())))
        .collect();
    if missing.is_empty() {
        return Ok(Change {
            path: path.to_owned(),
            content: None,
            existed,
            what: "`.env` read rules already in permissions.deny".into(),
        });
    }
    for r in &missing {
        deny.append(CstInputValue::String((*r).to_owned()));
    }
    Ok(Change {
        path: path.to_owned(),
        content: Some(with_newline(root.to_string())),
        existed,
        what: format!("permissions.deny += {}", missing.join(", ")),
    })
}

/// Adds the `.env` patterns to a `.cursorignore` file.
fn cursorignore(path: &Path, text: Option<&str>) -> Change {
    let existed = text.is_some();
    let text = text.unwrap_or("");
    let missing: Vec<&str> = CURSOR_IGNORE
        .iter()
        .copied()
        .filter(|p| !text.lines().any(|l| l.trim() == *p))
        .collect();
    if missing.is_empty() {
        return Change {
            path: path.to_owned(),
            content: None,
            existed,
            what: "`.env` patterns already ignored".into(),
        };
    }
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str("# outloop: keep key files out of the agent's context\n");
    for p in &missing {
        out.push_str(p);
        out.push('\n');
    }
    Change {
        path: path.to_owned(),
        content: Some(out),
        existed,
        what: format!("ignore += {}", missing.join(", ")),
    }
}

/// Sets `[mcp_servers.outloop]` in a Codex `config.toml`.
fn codex_toml(path: &Path, text: Option<&str>, cmd: &ServerCommand) -> Result<Change> {
    use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};
    let existed = text.is_some();
    let src = text.unwrap_or("");
    let mut doc: DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| {
        let line = e
            .span()
            .map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        malformed(
            format_args!("{}:{line}", path.display()),
            format_args!("not valid TOML: {}", e.message().trim().replace('\n', " ")),
        )
    })?;
    let servers = doc
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| malformed(path.display(), "`mcp_servers` is not a table"))?;
    let mut args = Array::new();
    for a in &cmd.args {
        args.push(a.as_str());
    }
    let mut env = InlineTable::new();
    for (k, v) in &cmd.env {
        env.insert(k, v.as_str().into());
    }
    let entry = servers
        .entry(SERVER_NAME)
        .or_insert_with(|| Item::Table(Table::new()));
    let table = entry.as_table_mut().ok_or_else(|| {
        malformed(
            path.display(),
            format_args!("`mcp_servers.{SERVER_NAME}` is not a table"),
        )
    })?;
    let same = table.get("command").and_then(|c| c.as_str()) == Some(cmd.command.as_str())
        && table
            .get("args")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().map(|v| v.as_str()).collect::<Vec<_>>())
            == Some(cmd.args.iter().map(|a| Some(a.as_str())).collect())
        && cmd.env.iter().all(|(k, v)| {
            table
                .get("env")
                .and_then(|e| e.as_table_like())
                .and_then(|e| e.get(k))
                .and_then(|x| x.as_str())
                == Some(v.as_str())
        });
    if same {
        return Ok(Change {
            path: path.to_owned(),
            content: None,
            existed,
            what: format!("MCP server `{SERVER_NAME}` already set up"),
        });
    }
    let added = table.is_empty();
    table["command"] = value(cmd.command.as_str());
    table["args"] = value(args);
    if !cmd.env.is_empty() {
        match table.get_mut("env").and_then(|e| e.as_table_like_mut()) {
            Some(e) => {
                for (k, v) in &cmd.env {
                    e.insert(k, value(v.as_str()));
                }
            }
            None => table["env"] = value(env),
        }
    }
    Ok(Change {
        path: path.to_owned(),
        content: Some(doc.to_string()),
        existed,
        what: format!(
            "MCP server `{SERVER_NAME}` {}",
            if added { "added" } else { "updated" }
        ),
    })
}

/// The `AGENTS.md` section for Codex.
fn agents_section() -> String {
    format!(
        "{AGENTS_BEGIN}\n## API keys (set up by `outloop init --agent codex`)\n\nCall this workspace's services through the `{SERVER_NAME}` MCP tools; they apply the credentials on the host and return redacted results. Never open, print, copy or search `.env`, `.env.*` or other key files, and never ask for an API key. When a tool says a request is denied or held for approval, tell the human what it says.\n{AGENTS_END}\n"
    )
}

/// Adds (or refreshes) the marked section of `AGENTS.md`.
fn agents_md(path: &Path, text: Option<&str>) -> Result<Change> {
    let existed = text.is_some();
    let text = text.unwrap_or("");
    let section = agents_section();
    let out = match (text.find(AGENTS_BEGIN), text.find(AGENTS_END)) {
        (Some(b), Some(e)) if e > b => {
            let end = e + AGENTS_END.len();
            let end = if text[end..].starts_with('\n') {
                end + 1
            } else {
                end
            };
            if text[b..end] == section {
                return Ok(Change {
                    path: path.to_owned(),
                    content: None,
                    existed,
                    what: "key-file guidance already present".into(),
                });
            }
            format!("{}{section}{}", &text[..b], &text[end..])
        }
        (None, None) => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&section);
            out
        }
        _ => {
            return Err(malformed(
                path.display(),
                format_args!("has only one of the markers `{AGENTS_BEGIN}` and `{AGENTS_END}`"),
            ));
        }
    };
    Ok(Change {
        path: path.to_owned(),
        content: Some(out),
        existed,
        what: "key-file guidance added".into(),
    })
}

/// Plans every file change for `agent` in `workspace` (a canonical directory), reading the
/// files but writing nothing.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the file (and line where known) when an existing file is not
/// valid JSON or TOML, or has a key of the wrong type; [`ErrorKind::Io`] when one cannot be
/// read.
pub fn plan(agent: Agent, workspace: &Path, cmd: &ServerCommand) -> Result<Vec<Change>> {
    let env: serde_json::Map<String, Value> = cmd
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let file = |rel: &str| workspace.join(rel);
    let read = |p: &Path| read_existing(p);
    Ok(match agent {
        Agent::ClaudeCode => {
            let mut entry = json!({ "type": "stdio", "command": cmd.command, "args": cmd.args });
            if !env.is_empty() {
                entry["env"] = Value::Object(env);
            }
            let mcp = file(".mcp.json");
            let settings = file(".claude/settings.json");
            vec![
                mcp_json(&mcp, read(&mcp)?.as_deref(), &entry, false)?,
                claude_settings(&settings, read(&settings)?.as_deref())?,
            ]
        }
        Agent::Cursor => {
            let mut entry = json!({ "command": cmd.command, "args": cmd.args });
            if !env.is_empty() {
                entry["env"] = Value::Object(env);
            }
            let mcp = file(".cursor/mcp.json");
            let ignore = file(".cursorignore");
            vec![
                mcp_json(&mcp, read(&mcp)?.as_deref(), &entry, true)?,
                cursorignore(&ignore, read(&ignore)?.as_deref()),
            ]
        }
        Agent::Codex => {
            let cfg = file(".codex/config.toml");
            let agents = file("AGENTS.md");
            vec![
                codex_toml(&cfg, read(&cfg)?.as_deref(), cmd)?,
                agents_md(&agents, read(&agents)?.as_deref())?,
            ]
        }
    })
}

/// Writes `content` to `path` through a temporary file in the same directory, keeping the
/// file's permissions when it exists (0644 for a new file), creating parent directories.
fn write_file(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("cannot write", dir, e))?;
    tmp.write_all(content.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("cannot write", tmp.path(), e))?;
    let perms = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::Permissions::from_mode(0o644)
            }
            #[cfg(not(unix))]
            {
                tmp.as_file()
                    .metadata()
                    .map_err(|e| Error::io("cannot read", tmp.path(), e))?
                    .permissions()
            }
        }
    };
    std::fs::set_permissions(tmp.path(), perms)
        .map_err(|e| Error::io("cannot set permissions on", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("cannot replace", path, e.error))?;
    Ok(())
}

/// Runs `outloop init --agent`: plans every change, then writes the changed files and prints
/// one line per file. Returns exit code 0.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when the workspace does not exist or a path is not UTF-8; the errors
/// of [`plan`] (nothing is written then); [`ErrorKind::Io`] when a file cannot be written.
pub fn run(agent: Agent, workspace: Option<&Path>) -> Result<u8> {
    let dir = match workspace {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read the current directory: {e}"),
            )
        })?,
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("--workspace `{}`: {e}", dir.display()),
        )
    })?;
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("--workspace `{}`: not a directory", dir.display()),
        ));
    }
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot find the outloop binary: {e}"),
            )
        })?;
    let cmd = ServerCommand {
        command: utf8(&exe, "the outloop binary path")?,
        args: vec![
            "mcp".into(),
            "--workspace".into(),
            utf8(&dir, "the workspace path")?,
        ],
        env: std::env::var("OUTLOOP_HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| vec![("OUTLOOP_HOME".to_owned(), h)])
            .unwrap_or_default(),
    };
    // A hint, not a refusal: the binding may come later (the server picks it up then).
    match outloop_core::config::Paths::from_env()
        .and_then(|p| outloop_core::config::HostConfig::load(&p))
    {
        Ok(cfg) if outloop_core::workspace::find_binding(&cfg, &dir).is_none() => errln!(
            "outloop: note: {} is bound to no tenant yet; bind it with `outloop bind {} <tenant>`",
            dir.display(),
            dir.display()
        ),
        Err(e) => errln!("outloop: note: {}", e.message()),
        Ok(_) => {}
    }
    let changes = plan(agent, &dir, &cmd)?;
    let mut changed = 0;
    for c in &changes {
        let shown = c.path.strip_prefix(&dir).unwrap_or(&c.path);
        match &c.content {
            Some(text) => {
                write_file(&c.path, text)?;
                changed += 1;
                outln!(
                    "{} {}: {}",
                    if c.existed { "updated" } else { "created" },
                    shown.display(),
                    c.what
                );
            }
            None => outln!("kept    {}: {}", shown.display(), c.what),
        }
    }
    if changed == 0 {
        outln!(
            "nothing to change: {} is already set up for {}",
            agent.name(),
            dir.display()
        );
    } else {
        outln!(
            "{} starts `{} {}` for {}",
            agent.name(),
            cmd.command,
            cmd.args.join(" "),
            dir.display()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> ServerCommand {
        ServerCommand {
            command: "/opt/outloop/bin/outloop".into(),
            args: vec!["mcp".into(), "--workspace".into(), "/w".into()],
            env: vec![],
        }
    }

    #[test]
    fn json_edits_keep_other_keys_order_and_comments() {
        let entry = json!({"command": "/x", "args": ["mcp"]});
        let text = "{\n  // mine\n  \"zeta\": 1,\n  \"mcpServers\": {\n    \"other\": {\"command\": \"o\"}\n  },\n  \"alpha\": [1, 2]\n}\n";
        let c = mcp_json(Path::new("m.json"), Some(text), &entry, true).unwrap();
        let out = c.content.unwrap();
        assert!(out.contains("// mine"), "{out}");
        let z = out.find("\"zeta\"").unwrap();
        let m = out.find("\"mcpServers\"").unwrap();
        let a = out.find("\"alpha\"").unwrap();
        assert!(z < m && m < a, "order changed: {out}");
        let o = out.find("\"other\"").unwrap();
        let us = out.find("\"outloop\"").unwrap();
        assert!(o < us, "{out}");
        // Idempotent on its own output.
        let again = mcp_json(Path::new("m.json"), Some(&out), &entry, true).unwrap();
        assert!(again.content.is_none());
    }

    #[test]
    fn malformed_files_are_refused_with_file_and_line() {
        let e = mcp_json(
            Path::new("/w/.mcp.json"),
            Some("{\n  \"a\": 1,\n  oops\n}"),
            &json!({}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().starts_with("/w/.mcp.json:3:"), "{e}");
        assert!(e.message().ends_with("nothing was written"), "{e}");
        assert!(!e.message().contains('\n'));

        let e = claude_settings(
            Path::new("s.json"),
            Some("{\"permissions\": {\"deny\": 3}}"),
        )
        .unwrap_err();
        assert!(
            e.message()
                .contains("`permissions.deny` is not a JSON array"),
            "{e}"
        );
        // Comments are not JSON for Claude Code's strict files.
        assert!(claude_settings(Path::new("s.json"), Some("{ // c\n}")).is_err());

        let e = codex_toml(Path::new("/w/c.toml"), Some("a = 1\nb = [\n"), &cmd()).unwrap_err();
        assert!(e.message().starts_with("/w/c.toml:"), "{e}");
        assert!(!e.message().contains('\n'), "{e}");
        let e = codex_toml(Path::new("c.toml"), Some("mcp_servers = 3\n"), &cmd()).unwrap_err();
        assert!(e.message().contains("`mcp_servers` is not a table"), "{e}");

        let e = agents_md(Path::new("A.md"), Some("x\n<!-- outloop:begin -->\n")).unwrap_err();
        assert!(e.message().contains("only one of the markers"), "{e}");
    }

    #[test]
    fn toml_edits_keep_comments_and_update_a_moved_binary() {
        let text = "# my codex config\nmodel = \"gpt\"\n\n[mcp_servers.docs]\ncommand = \"docs\" # keep me\n";
        let c = codex_toml(Path::new("c.toml"), Some(text), &cmd()).unwrap();
        let out = c.content.unwrap();
        assert!(
            out.starts_with("# my codex config\nmodel = \"gpt\"\n"),
            "{out}"
        );
        assert!(out.contains("command = \"docs\" # keep me"), "{out}");
        assert!(out.contains("[mcp_servers.outloop]"), "{out}");
        assert!(
            codex_toml(Path::new("c.toml"), Some(&out), &cmd())
                .unwrap()
                .content
                .is_none()
        );
        let mut moved = cmd();
        moved.command = "/usr/local/bin/outloop".into();
        let c = codex_toml(Path::new("c.toml"), Some(&out), &moved).unwrap();
        assert_eq!(c.what, "MCP server `outloop` updated");
        assert!(c.content.unwrap().contains("/usr/local/bin/outloop"));
    }

    #[test]
    fn agents_md_section_is_appended_once_and_refreshed() {
        let c = agents_md(Path::new("A.md"), Some("# Team notes\nBe nice.")).unwrap();
        let out = c.content.unwrap();
        assert!(
            out.starts_with("# Team notes\nBe nice.\n\n<!-- outloop:begin -->"),
            "{out}"
        );
        assert!(
            agents_md(Path::new("A.md"), Some(&out))
                .unwrap()
                .content
                .is_none()
        );
        let stale = out.replace("Never open", "Do not open");
        let c = agents_md(Path::new("A.md"), Some(&stale)).unwrap();
        assert_eq!(c.content.unwrap(), out);
    }
}
