//! `outloop init --agent`: each agent's files written fresh, merged into existing files with
//! their content kept, an idempotent second run, and malformed files refused untouched.

use std::path::{Path, PathBuf};

use crate::support::Env;

fn bin() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_outloop"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn init(env: &Env, agent: &str) -> crate::support::Run {
    env.run(
        &[
            "init",
            "--agent",
            agent,
            "--workspace",
            env.acme.to_str().unwrap(),
        ],
        &env.root,
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file the agent's setup writes, for the agent.
fn files(env: &Env, agent: &str) -> Vec<PathBuf> {
    let rel: &[&str] = match agent {
        "claude-code" => &[".mcp.json", ".claude/settings.json"],
        "cursor" => &[".cursor/mcp.json", ".cursorignore"],
        _ => &[".codex/config.toml", "AGENTS.md"],
    };
    rel.iter().map(|r| env.acme.join(r)).collect()
}

/// Runs the setup a second time and checks that nothing changed.
fn assert_idempotent(env: &Env, agent: &str) {
    let before: Vec<String> = files(env, agent).iter().map(|p| read(p)).collect();
    let r = init(env, agent);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("nothing to change: {agent} is already set up")),
        "{}",
        r.stdout
    );
    let after: Vec<String> = files(env, agent).iter().map(|p| read(p)).collect();
    assert_eq!(before, after, "a second run changed a file");
}

/// The files written go through the leak check too.
fn see_files(env: &Env, agent: &str) {
    for p in files(env, agent) {
        env.seen
            .lock()
            .unwrap()
            .extend_from_slice(read(&p).as_bytes());
    }
}

fn expected_args(env: &Env) -> serde_json::Value {
    serde_json::json!(["mcp", "--workspace", env.acme.to_str().unwrap()])
}

#[test]
fn claude_code_fresh_then_idempotent() {
    let env = Env::new("");
    let r = init(&env, "claude-code");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("created .mcp.json: MCP server `outloop` added"),
        "{}",
        r.stdout
    );
    let mcp = json(&env.acme.join(".mcp.json"));
    let e = &mcp["mcpServers"]["outloop"];
    assert_eq!(e["type"], "stdio");
    assert_eq!(e["command"], bin());
    assert_eq!(e["args"], expected_args(&env));
    assert_eq!(e["env"]["OUTLOOP_HOME"], env.home.to_str().unwrap());
    let settings = json(&env.acme.join(".claude/settings.json"));
    assert_eq!(
        settings["permissions"]["deny"],
        serde_json::json!([
            "Read(./.env)",
            "Read(./.env.*)",
            "Read(./**/.env)",
            "Read(./**/.env.*)"
        ])
    );
    assert_idempotent(&env, "claude-code");
    see_files(&env, "claude-code");
    env.assert_no_leak();
}

#[test]
fn claude_code_merges_into_existing_files() {
    let env = Env::new("");
    std::fs::create_dir_all(env.acme.join(".claude")).unwrap();
    let mcp_before = "{\n  \"mcpServers\": {\n    \"github\": {\n      \"command\": \"gh-mcp\",\n      \"args\": []\n    }\n  },\n  \"zzz\": true,\n  \"aaa\": 1\n}\n";
    std::fs::write(env.acme.join(".mcp.json"), mcp_before).unwrap();
    let settings_before = "{\n  \"model\": \"opus\",\n  \"permissions\": {\n    \"allow\": [\"Bash(npm test)\"],\n    \"deny\": [\"Read(./.env)\", \"WebFetch\"]\n  }\n}\n";
    std::fs::write(env.acme.join(".claude/settings.json"), settings_before).unwrap();

    let r = init(&env, "claude-code");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("updated .mcp.json"), "{}", r.stdout);
    let text = read(&env.acme.join(".mcp.json"));
    // The other server and keys stay, in their order, with their formatting.
    assert!(
        text.starts_with("{\n  \"mcpServers\": {\n    \"github\": {\n      \"command\": \"gh-mcp\",\n      \"args\": []\n    },\n    \"outloop\": {"),
        "{text}"
    );
    assert!(
        text.find("\"zzz\"").unwrap() < text.find("\"aaa\"").unwrap(),
        "{text}"
    );
    let mcp = json(&env.acme.join(".mcp.json"));
    assert_eq!(mcp["mcpServers"]["github"]["command"], "gh-mcp");
    assert_eq!(mcp["mcpServers"]["outloop"]["command"], bin());

    let settings = json(&env.acme.join(".claude/settings.json"));
    assert_eq!(settings["model"], "opus");
    assert_eq!(
        settings["permissions"]["allow"],
        serde_json::json!(["Bash(npm test)"])
    );
    // The rule already there is not repeated; the others are added after the user's.
    assert_eq!(
        settings["permissions"]["deny"],
        serde_json::json!([
            "Read(./.env)",
            "WebFetch",
            "Read(./.env.*)",
            "Read(./**/.env)",
            "Read(./**/.env.*)"
        ])
    );
    assert_idempotent(&env, "claude-code");
    see_files(&env, "claude-code");
    env.assert_no_leak();
}

#[test]
fn cursor_fresh_merge_and_idempotent() {
    let env = Env::new("");
    // Cursor's mcp.json may carry comments (JSONC); they stay.
    std::fs::create_dir_all(env.acme.join(".cursor")).unwrap();
    std::fs::write(
        env.acme.join(".cursor/mcp.json"),
        "{\n  // team servers\n  \"mcpServers\": {\n    \"docs\": { \"url\": \"https://docs.example.invalid/mcp\" }\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(env.acme.join(".cursorignore"), "dist/\n*.log").unwrap();
    let r = init(&env, "cursor");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = read(&env.acme.join(".cursor/mcp.json"));
    assert!(text.contains("// team servers"), "{text}");
    assert!(text.find("\"docs\"").unwrap() < text.find("\"outloop\"").unwrap());
    assert!(
        text.contains(&format!("\"command\": \"{}\"", bin())),
        "{text}"
    );
    assert!(text.contains("\"--workspace\""), "{text}");
    assert!(
        !text.contains("\"type\""),
        "Cursor entries carry no type: {text}"
    );
    assert_eq!(
        read(&env.acme.join(".cursorignore")),
        "dist/\n*.log\n\n# outloop: keep key files out of the agent's context\n.env\n.env.*\n"
    );
    assert_idempotent(&env, "cursor");

    // A fresh workspace gets both files from nothing.
    let env2 = Env::new("");
    let r = init(&env2, "cursor");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("created .cursor/mcp.json"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("created .cursorignore"), "{}", r.stdout);
    let mcp = json(&env2.acme.join(".cursor/mcp.json"));
    assert_eq!(mcp["mcpServers"]["outloop"]["args"], expected_args(&env2));
    assert_idempotent(&env2, "cursor");
    see_files(&env, "cursor");
    see_files(&env2, "cursor");
    env.assert_no_leak();
    env2.assert_no_leak();
}

#[test]
fn codex_fresh_merge_and_idempotent() {
    let env = Env::new("");
    std::fs::create_dir_all(env.acme.join(".codex")).unwrap();
    std::fs::write(
        env.acme.join(".codex/config.toml"),
        "# project settings\nmodel = \"gpt-5\"  # chosen by the team\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n",
    )
    .unwrap();
    std::fs::write(
        env.acme.join("AGENTS.md"),
        "# Conventions\n\nRun `make test`.\n",
    )
    .unwrap();
    let r = init(&env, "codex");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = read(&env.acme.join(".codex/config.toml"));
    assert!(
        text.starts_with("# project settings\nmodel = \"gpt-5\"  # chosen by the team\n"),
        "{text}"
    );
    let cfg: toml::Table = text.parse().unwrap();
    assert_eq!(
        cfg["mcp_servers"]["docs"]["command"].as_str(),
        Some("docs-mcp")
    );
    let ours = &cfg["mcp_servers"]["outloop"];
    assert_eq!(ours["command"].as_str(), Some(bin().as_str()));
    let args: Vec<&str> = ours["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["mcp", "--workspace", env.acme.to_str().unwrap()]);
    assert_eq!(
        ours["env"]["OUTLOOP_HOME"].as_str(),
        Some(env.home.to_str().unwrap())
    );
    let agents = read(&env.acme.join("AGENTS.md"));
    assert!(
        agents.starts_with("# Conventions\n\nRun `make test`.\n\n<!-- outloop:begin -->"),
        "{agents}"
    );
    assert!(
        agents.contains("Never open, print, copy or search `.env`"),
        "{agents}"
    );
    assert_idempotent(&env, "codex");
    see_files(&env, "codex");
    env.assert_no_leak();
}

#[test]
fn malformed_files_are_refused_and_nothing_is_written() {
    let env = Env::new("");
    // Claude Code: a broken settings file stops the run before .mcp.json is created.
    std::fs::create_dir_all(env.acme.join(".claude")).unwrap();
    let broken = "{ \"permissions\": { \"deny\": [\"Read(./.env)\" }\n";
    std::fs::write(env.acme.join(".claude/settings.json"), broken).unwrap();
    let r = init(&env, "claude-code");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("outloop: "))
        .unwrap();
    assert!(
        line.contains(&format!(
            "{}:1:",
            env.acme.join(".claude/settings.json").display()
        )),
        "{line}"
    );
    assert!(line.ends_with("nothing was written"), "{line}");
    assert_eq!(read(&env.acme.join(".claude/settings.json")), broken);
    assert!(!env.acme.join(".mcp.json").exists());

    // Cursor: a top level that is not an object.
    std::fs::create_dir_all(env.acme.join(".cursor")).unwrap();
    std::fs::write(env.acme.join(".cursor/mcp.json"), "[1, 2]\n").unwrap();
    let r = init(&env, "cursor");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("the top level is not a JSON object"),
        "{}",
        r.stderr
    );
    assert_eq!(read(&env.acme.join(".cursor/mcp.json")), "[1, 2]\n");
    assert!(!env.acme.join(".cursorignore").exists());

    // Codex: broken TOML, with its line.
    std::fs::create_dir_all(env.acme.join(".codex")).unwrap();
    let toml = "model = \"x\"\n[mcp_servers\n";
    std::fs::write(env.acme.join(".codex/config.toml"), toml).unwrap();
    let r = init(&env, "codex");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}:2:",
            env.acme.join(".codex/config.toml").display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(read(&env.acme.join(".codex/config.toml")), toml);
    assert!(!env.acme.join("AGENTS.md").exists());

    // A missing workspace is a usage error naming it.
    let r = env.run(
        &[
            "init",
            "--agent",
            "cursor",
            "--workspace",
            "/nonexistent/ws-outloop",
        ],
        &env.root,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--workspace `/nonexistent/ws-outloop`"),
        "{}",
        r.stderr
    );
    env.assert_no_leak();
}

#[test]
fn an_unbound_workspace_gets_a_note_and_the_entry_all_the_same() {
    let env = Env::new("");
    let r = env.run(
        &[
            "init",
            "--agent",
            "cursor",
            "--workspace",
            env.unbound.to_str().unwrap(),
        ],
        &env.root,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("is bound to no tenant yet"),
        "{}",
        r.stderr
    );
    assert!(env.unbound.join(".cursor/mcp.json").exists());
    env.assert_no_leak();
}
