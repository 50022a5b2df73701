//! The environment of a command run by `outloop exec`: which variable a credential may be
//! placed in, which names are refused, and the minimal base environment passed on.
//!
//! A child started by `exec` gets an environment built from scratch: the [`BASE_VARIABLES`]
//! (and `LC_*`) copied from the caller's environment, the variables the caller names
//! explicitly (`--env NAME`), and one variable per credential. Nothing else is inherited,
//! so the broker's own backend tokens (`OP_SERVICE_ACCOUNT_TOKEN`, `DOPPLER_TOKEN`,
//! `INFISICAL_*`, …) and whatever else sits in the agent's environment never reach the child.
//!
//! A credential variable and a passed-through variable must be a portable name (ASCII letter
//! or `_`, then letters, digits and `_`; POSIX.1-2017 XBD 8.1) that is not on the
//! [`REFUSED`] list. The list holds names that change *how* a process runs rather than what
//! it works on: the dynamic loader's (`LD_*`, `DYLD_*`, `GLIBC_TUNABLES`), shell start-up
//! and parsing (`BASH_ENV`, `ENV`, `IFS`, `PS4`, `PROMPT_COMMAND`), interpreter start-up
//! (`PYTHON*`, `PERL*`, `RUBY*`, `NODE_OPTIONS`, `JAVA_TOOL_OPTIONS`, …), variables that make
//! programs run other programs (`GIT_*`, `EDITOR`, `PAGER`, `SSH_ASKPASS`, …), and the base
//! variables Outloop sets itself (`PATH`, `HOME`, `SHELL`, …). Names are compared
//! case-insensitively, since some tools read their variables that way (npm, zsh's `path`).
//! A secret placed in one of them would at best break the command and at worst be run as
//! code or a path; a passed-through one would let the caller's environment steer a process
//! that holds a secret.

use std::ffi::{OsStr, OsString};

use crate::error::{Error, ErrorKind, Result};

/// Variables copied from the caller's environment into every child, when set.
pub const BASE_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "TMPDIR",
];

/// Prefixes of variables copied from the caller's environment into every child (locale).
pub const BASE_PREFIXES: &[&str] = &["LC_"];

/// Names refused as a credential's variable and for `--env`, with the reason shown in the
/// error. A pattern ending in `*` matches every name with that prefix. Compared
/// case-insensitively.
pub const REFUSED: &[(&str, &str)] = &[
    // Set by Outloop from its own environment (the base) or by the shell itself.
    ("PATH", "it selects the programs the command runs"),
    ("HOME", "it selects the configuration files programs read"),
    ("USER", "Outloop passes it from its own environment"),
    ("LOGNAME", "Outloop passes it from its own environment"),
    ("SHELL", "programs run it as a shell"),
    ("PWD", "the shell sets it"),
    ("OLDPWD", "the shell sets it"),
    ("TERM", "Outloop passes it from its own environment"),
    ("COLORTERM", "Outloop passes it from its own environment"),
    ("TZ", "Outloop passes it from its own environment"),
    ("TMPDIR", "Outloop passes it from its own environment"),
    ("LANG", "Outloop passes it from its own environment"),
    ("LANGUAGE", "Outloop passes it from its own environment"),
    ("LC_*", "Outloop passes the locale from its own environment"),
    ("OUTLOOP_*", "Outloop reads it"),
    // The dynamic loader and the C library.
    ("LD_*", "the dynamic loader reads it (library injection)"),
    (
        "DYLD_*",
        "the macOS dynamic loader reads it (library injection)",
    ),
    ("GLIBC_TUNABLES", "the C library reads it at start-up"),
    ("GCONV_PATH", "the C library loads modules from it"),
    ("LOCPATH", "the C library loads locale data from it"),
    ("NLSPATH", "the C library loads message catalogues from it"),
    ("HOSTALIASES", "the resolver reads files from it"),
    ("RES_OPTIONS", "the resolver reads it"),
    ("LOCALDOMAIN", "the resolver reads it"),
    ("MALLOC_*", "the C allocator reads it"),
    // Shells.
    ("ENV", "POSIX shells source the file it names"),
    ("BASH_ENV", "bash sources the file it names"),
    ("BASH_FUNC_*", "bash imports functions from it"),
    ("SHELLOPTS", "bash reads it at start-up"),
    ("BASHOPTS", "bash reads it at start-up"),
    ("IFS", "shells split words with it"),
    ("PS1", "shells expand it as a prompt"),
    ("PS2", "shells expand it as a prompt"),
    ("PS3", "shells expand it as a prompt"),
    (
        "PS4",
        "shells expand it when tracing (command substitution)",
    ),
    ("PROMPT_COMMAND", "bash runs it as a command"),
    ("CDPATH", "shells resolve `cd` with it"),
    ("GLOBIGNORE", "bash applies it to globs"),
    ("HISTFILE", "shells write history to it"),
    ("ZDOTDIR", "zsh sources files from it"),
    ("FPATH", "zsh and ksh load functions from it"),
    // Interpreters and runtimes that load code or options from the environment.
    (
        "PYTHON*",
        "Python reads it at start-up (PYTHONPATH, PYTHONSTARTUP, …)",
    ),
    ("PERL*", "Perl reads it at start-up (PERL5OPT, PERL5LIB, …)"),
    ("RUBY*", "Ruby reads it at start-up (RUBYOPT, RUBYLIB, …)"),
    ("GEM_PATH", "RubyGems loads code from it"),
    ("GEM_HOME", "RubyGems loads code from it"),
    ("BUNDLE_GEMFILE", "Bundler loads code from it"),
    (
        "NODE_OPTIONS",
        "Node.js reads options (such as --require) from it",
    ),
    ("NODE_PATH", "Node.js loads modules from it"),
    (
        "NODE_REPL_EXTERNAL_MODULE",
        "Node.js loads a module from it",
    ),
    (
        "NODE_EXTRA_CA_CERTS",
        "Node.js trusts the certificates it names",
    ),
    (
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "Node.js turns off certificate checks with it",
    ),
    ("NPM_CONFIG_*", "npm reads its configuration from it"),
    (
        "JAVA_TOOL_OPTIONS",
        "the JVM reads options (such as -javaagent) from it",
    ),
    ("_JAVA_OPTIONS", "the JVM reads options from it"),
    (
        "JDK_JAVA_OPTIONS",
        "the java launcher reads options from it",
    ),
    ("CLASSPATH", "the JVM loads classes from it"),
    ("DOTNET_STARTUP_HOOKS", ".NET loads assemblies from it"),
    ("CORECLR_*", ".NET loads a profiler from it"),
    ("COR_PROFILER*", ".NET Framework loads a profiler from it"),
    (
        "LUA_*",
        "Lua runs or loads code from it (LUA_INIT, LUA_PATH)",
    ),
    ("PHPRC", "PHP loads its configuration from it"),
    ("PHP_INI_SCAN_DIR", "PHP loads its configuration from it"),
    ("TCLLIBPATH", "Tcl loads packages from it"),
    ("R_PROFILE*", "R runs the file it names"),
    ("R_ENVIRON*", "R reads the file it names"),
    (
        "GOFLAGS",
        "the go command reads flags (such as -toolexec) from it",
    ),
    ("RUSTC_WRAPPER", "cargo runs the program it names"),
    ("RUSTC_WORKSPACE_WRAPPER", "cargo runs the program it names"),
    (
        "OPENSSL_CONF",
        "OpenSSL loads configuration and engines from it",
    ),
    ("OPENSSL_ENGINES", "OpenSSL loads engines from it"),
    ("SSLKEYLOGFILE", "TLS libraries write session keys to it"),
    // Variables that make programs run other programs.
    (
        "GIT_*",
        "git runs programs or reads configuration from it (GIT_SSH_COMMAND, GIT_CONFIG_*, …)",
    ),
    ("SSH_ASKPASS*", "ssh runs the program it names"),
    ("SUDO_ASKPASS", "sudo runs the program it names"),
    ("EDITOR", "programs run it as an editor"),
    ("VISUAL", "programs run it as an editor"),
    ("PAGER", "programs run it as a pager"),
    ("MANPAGER", "man runs it as a pager"),
    ("LESSOPEN", "less runs it as an input filter"),
    ("LESSCLOSE", "less runs it as an input filter"),
    ("BROWSER", "programs run it as a browser"),
];

/// Names never passed through from the caller's environment with `--env`: the tokens the
/// broker's own backends log in with. (The base environment never holds them; this list
/// refuses a request to pass one on explicitly.) A credential may still be placed in such a
/// variable, since its value comes from the tenant's credential, not from the broker.
pub const NEVER_INHERITED: &[(&str, &str)] = &[
    (
        "OP_*",
        "1Password CLI credentials (OP_SERVICE_ACCOUNT_TOKEN, OP_CONNECT_TOKEN, OP_SESSION_*)",
    ),
    ("DOPPLER_*", "Doppler credentials (DOPPLER_TOKEN)"),
    (
        "INFISICAL_*",
        "Infisical credentials (INFISICAL_TOKEN, INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET)",
    ),
    ("VAULT_TOKEN", "a HashiCorp Vault token"),
    ("AGE_*", "age identities"),
];

/// The longest variable name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

fn matches(pattern: &str, upper: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => upper.starts_with(prefix),
        None => upper == pattern,
    }
}

fn lookup(list: &'static [(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    list.iter()
        .find(|(p, _)| matches(p, &upper))
        .map(|(_, why)| *why)
}

/// The variable a credential goes in when the caller names none: the credential name
/// upper-cased, every character other than an ASCII letter or digit replaced by `_`
/// (`hubspot` → `HUBSPOT`, `acme.key-2` → `ACME_KEY_2`). The result may still be refused by
/// [`check_variable`].
pub fn default_variable(credential: &str) -> String {
    credential
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn check_shape(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("a variable name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("a variable name is at most {MAX_NAME_LEN} bytes"));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{}` is not a variable name (an ASCII letter or `_`, then letters, digits and `_`)",
            shown(name)
        ));
    }
    Ok(())
}

/// The name as shown in an error: at most 64 characters, control characters as `?`.
fn shown(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Checks a credential's variable name: its shape and the [`REFUSED`] list.
///
/// # Errors
///
/// [`ErrorKind::Usage`] with a one-line reason naming the variable (never a value) when the
/// name is empty, too long, not a portable name, or refused.
pub fn check_variable(name: &str) -> Result<()> {
    check_shape(name).map_err(|m| Error::new(ErrorKind::Usage, m))?;
    if let Some(why) = lookup(REFUSED, name) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("variable `{name}` is refused: {why}"),
        ));
    }
    Ok(())
}

/// Checks a name the caller asks to pass through from its own environment (`--env NAME`):
/// base variables are accepted (they are passed anyway); others must pass
/// [`check_variable`] and not be on the [`NEVER_INHERITED`] list.
///
/// # Errors
///
/// [`ErrorKind::Usage`] with a one-line reason naming the variable.
pub fn check_passthrough(name: &str) -> Result<()> {
    if is_base(OsStr::new(name)) {
        return Ok(());
    }
    check_variable(name)?;
    if let Some(why) = lookup(NEVER_INHERITED, name) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("variable `{name}` is never passed on: it may hold {why}"),
        ));
    }
    Ok(())
}

fn is_base(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    BASE_VARIABLES.contains(&name) || BASE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Builds the environment a child starts from: every [`BASE_VARIABLES`] and [`BASE_PREFIXES`]
/// entry of `parent` (the caller's environment, e.g. `std::env::vars_os()`), plus the
/// `passthrough` names that `parent` sets. Names are matched exactly (case-sensitively), as
/// the OS stores them; entries that are not valid UTF-8 names are skipped. The credentials'
/// variables are added by the caller on top.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when a `passthrough` name fails [`check_passthrough`].
pub fn base_environment(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    passthrough: &[String],
) -> Result<Vec<(OsString, OsString)>> {
    for name in passthrough {
        check_passthrough(name).map_err(|e| e.context(format!("--env {}", shown(name))))?;
    }
    Ok(parent
        .into_iter()
        .filter(|(k, _)| {
            is_base(k)
                || k.to_str()
                    .is_some_and(|k| passthrough.iter().any(|p| p == k))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_variable_upper_cases_and_replaces() {
        for (cred, var) in [
            ("hubspot", "HUBSPOT"),
            ("acme.key-2", "ACME_KEY_2"),
            ("a b", "A_B"),
            ("ünï", "_N_"),
        ] {
            assert_eq!(default_variable(cred), var, "{cred}");
        }
    }

    #[test]
    fn variable_names_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("HUBSPOT_TOKEN", None),
            ("_X", None),
            ("a1", None),
            ("DOPPLER_TOKEN", None),
            ("NODE_AUTH_TOKEN", None),
            ("GITHUB_TOKEN", None),
            ("", Some("cannot be empty")),
            ("1A", Some("is not a variable name")),
            ("A-B", Some("is not a variable name")),
            ("A=B", Some("is not a variable name")),
            ("A B", Some("is not a variable name")),
            ("É", Some("is not a variable name")),
            ("LD_PRELOAD", Some("dynamic loader")),
            ("ld_library_path", Some("dynamic loader")),
            ("DYLD_INSERT_LIBRARIES", Some("dynamic loader")),
            ("PATH", Some("selects the programs")),
            ("path", Some("selects the programs")),
            ("HOME", Some("configuration files")),
            ("BASH_ENV", Some("bash sources")),
            ("ENV", Some("POSIX shells")),
            ("IFS", Some("split words")),
            ("PS4", Some("tracing")),
            ("PROMPT_COMMAND", Some("bash runs it")),
            ("PYTHONPATH", Some("Python")),
            ("PYTHONSTARTUP", Some("Python")),
            ("PERL5OPT", Some("Perl")),
            ("RUBYOPT", Some("Ruby")),
            ("NODE_OPTIONS", Some("Node.js")),
            ("JAVA_TOOL_OPTIONS", Some("JVM")),
            ("GIT_SSH_COMMAND", Some("git runs")),
            ("GIT_CONFIG_COUNT", Some("git runs")),
            ("GLIBC_TUNABLES", Some("C library")),
            ("OUTLOOP_HOME", Some("Outloop reads it")),
            ("LC_ALL", Some("locale")),
            ("SSLKEYLOGFILE", Some("session keys")),
        ];
        for (name, want) in cases {
            match (check_variable(name), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => {
                    assert_eq!(e.kind(), ErrorKind::Usage, "{name}");
                    assert!(e.message().contains(w), "{name}: {}", e.message());
                    assert!(!e.message().contains('\n'));
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        assert!(check_variable(&"A".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_variable(&"A".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn passthrough_refuses_backend_tokens_and_accepts_base() {
        for name in [
            "OP_SERVICE_ACCOUNT_TOKEN",
            "OP_SESSION_my",
            "DOPPLER_TOKEN",
            "INFISICAL_TOKEN",
            "OUTLOOP_HOME",
            "LD_PRELOAD",
        ] {
            let e = check_passthrough(name).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{name}");
        }
        for name in ["PATH", "LC_ALL", "HTTPS_PROXY", "SSH_AUTH_SOCK", "CI"] {
            check_passthrough(name).unwrap();
        }
    }

    #[test]
    fn base_environment_keeps_only_the_base_and_named() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/me"),
            ("LC_ALL", "C.UTF-8"),
            ("DOPPLER_TOKEN", "FAKE-doppler-token-x1"),
            ("OUTLOOP_HOME", "/tmp/o"),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("CI", "true"),
            ("UNLISTED", "1"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = base_environment(parent.clone(), &["CI".into()]).unwrap();
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(names, ["PATH", "HOME", "LC_ALL", "CI"]);
        let e = base_environment(parent, &["DOPPLER_TOKEN".into()]).unwrap_err();
        assert!(
            e.message().starts_with("--env DOPPLER_TOKEN: "),
            "{}",
            e.message()
        );
        assert!(!e.message().contains("FAKE"));
    }
}
