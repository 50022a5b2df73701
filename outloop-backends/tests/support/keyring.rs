//! A private, unlocked GNOME Keyring for tests: its own `dbus-daemon` (no service
//! activation, so nothing else starts on it) and a `gnome-keyring-daemon --unlock` with a
//! throwaway HOME and XDG directories. The user's keyring and session bus are never touched,
//! and this process's environment is not changed (the vault's identity store never sees it).
//!
//! Recipe: /work/shared/reference/backends.md §5.2 (Debian 12: packages `dbus`,
//! `gnome-keyring`, `libsecret-tools`). Dropping the fixture kills both daemons.
//!
//! Shared by outloop-backends' and outloop-cli's tests through `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

/// How long the daemons may take to come up before the test fails.
const STARTUP: Duration = Duration::from_secs(20);

/// The Debian packages the fixture needs, for error messages.
pub const PACKAGES: &str = "dbus gnome-keyring libsecret-tools";

/// A running private keyring; see the module docs.
pub struct PrivateKeyring {
    dir: tempfile::TempDir,
    dbus: Child,
    keyring: Option<Child>,
    /// The D-Bus address of the private bus, e.g. `unix:path=/tmp/…/run/bus,guid=…`.
    pub address: String,
}

fn spawn(cmd: &mut Command, program: &str) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{program}` ({e}): the Secret Service tests need the Debian packages `{PACKAGES}` (`apt-get install -y {PACKAGES}`; .ci/run installs them)"
        )
    })
}

impl PrivateKeyring {
    /// Starts a bus and an unlocked keyring on it, and waits until the keyring owns
    /// `org.freedesktop.secrets`.
    ///
    /// # Panics
    ///
    /// When a daemon is missing or does not come up within 20 s.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// Starts only the bus: no Secret Service answers on it.
    pub async fn bus_only() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(keyring: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("run dir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
                .expect("chmod run dir");
        }
        std::fs::create_dir_all(dir.path().join("home/.local/share")).expect("home");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                run.join("bus").display()
            ),
        )
        .expect("bus config");
        let mut dbus = spawn(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", conf.display()))
                .args(["--nofork", "--print-address=1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "dbus-daemon",
        );
        // The readiness line: dbus-daemon prints its address once it listens.
        let mut address = String::new();
        BufReader::new(dbus.stdout.take().expect("piped stdout"))
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        let address = address.trim().to_owned();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon did not print an address"
        );
        let mut me = PrivateKeyring {
            dir,
            dbus,
            keyring: None,
            address,
        };
        if keyring {
            me.start_keyring().await;
        }
        me
    }

    async fn start_keyring(&mut self) {
        let conn = zbus::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the private bus");
        let bus = zbus::fdo::DBusProxy::new(&conn).await.expect("bus proxy");
        let mut changes = bus
            .receive_name_owner_changed()
            .await
            .expect("subscribe to NameOwnerChanged");
        let mut cmd = Command::new("gnome-keyring-daemon");
        cmd.args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let mut child = spawn(&mut cmd, "gnome-keyring-daemon");
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(b"FAKE-test-keyring-password")
                .expect("write the unlock password");
        }
        self.keyring = Some(child);
        let ready = async {
            let name = "org.freedesktop.secrets";
            let owned = zbus::names::BusName::try_from(name).expect("a valid bus name");
            if bus.name_has_owner(owned).await.unwrap_or(false) {
                return;
            }
            while let Some(signal) = changes.next().await {
                if let Ok(args) = signal.args()
                    && args.name().as_str() == name
                    && args.new_owner().is_some()
                {
                    return;
                }
            }
        };
        tokio::time::timeout(STARTUP, ready)
            .await
            .expect("gnome-keyring-daemon did not take org.freedesktop.secrets within 20 s");
    }

    /// Points `cmd` (e.g. `secret-tool`, `outloop`) at the private bus and the throwaway
    /// home, so it uses this keyring and nothing of the user's.
    pub fn env(&self, cmd: &mut Command) {
        let home = self.home();
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("DISPLAY");
    }

    /// The throwaway home directory.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The scratch directory holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `secret-tool lookup service <service> account <account>`: its exit code and stdout.
    pub fn lookup(&self, service: &str, account: &str) -> (i32, Vec<u8>) {
        let mut cmd = Command::new("secret-tool");
        cmd.args(["lookup", "service", service, "account", account])
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run secret-tool ({e}); install `{PACKAGES}`"));
        (out.status.code().unwrap_or(-1), out.stdout)
    }

    /// `secret-tool store --label=<label> service <service> account <account>` with `value`
    /// on stdin.
    pub fn store(&self, service: &str, account: &str, value: &[u8]) {
        let mut cmd = Command::new("secret-tool");
        cmd.args([
            "store",
            "--label=outloop test",
            "service",
            service,
            "account",
            account,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.env(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run secret-tool ({e}); install `{PACKAGES}`"));
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(value)
            .expect("write the value");
        let status = child.wait().expect("secret-tool exits");
        assert!(status.success(), "secret-tool store failed: {status}");
    }
}

impl Drop for PrivateKeyring {
    fn drop(&mut self) {
        if let Some(k) = &mut self.keyring {
            let _ = k.kill();
            let _ = k.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}
