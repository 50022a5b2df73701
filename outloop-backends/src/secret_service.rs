//! The Linux Secret Service backend (`kind = "secret-service"`): GNOME Keyring, KWallet and
//! other stores that speak the freedesktop Secret Service API over D-Bus.
//!
//! # References and items
//!
//! `secret-service://<service>/<account>` names the item whose attributes include
//! `service = <service>` and `account = <account>`: the attributes `secret-tool` uses, so
//! `secret-tool lookup service <service> account <account>` reads what Outloop stores and the
//! other way round. New items are created in the `default` collection (GNOME Keyring's
//! `login`) with those two attributes plus `xdg:schema = org.freedesktop.Secret.Generic`
//! (libsecret's generic schema), label `<service>/<account>` and content type `text/plain`.
//! Values are bytes and round-trip exactly (trailing newlines and spaces included).
//!
//! Speaks the Secret Service API 0.2 (<https://specifications.freedesktop.org/secret-service-spec/latest/>)
//! through the `secret-service` crate 5 (pure-Rust D-Bus via `zbus` 5, `dh-ietf1024-sha256-aes128-cbc-pkcs7`
//! transport encryption).
//!
//! # Locked keyrings
//!
//! Outloop never asks the keyring to unlock (that opens a password prompt, which blocks
//! forever on a machine without a desktop). A locked collection or item is reported at once
//! as [`ErrorKind::Unauthenticated`] with "unlock your keyring"; anything else that does not
//! answer is cut off by the backend's `timeout` (see
//! [`LayerSettings`]).
//!
//! # Settings
//!
//! `[backends.<name>]` with `kind = "secret-service"` takes no keys of its own beyond the
//! common layer keys. The session bus is the one `DBUS_SESSION_BUS_ADDRESS` names;
//! [`SecretServiceBackend::with_bus_address`] picks another (tests use a private bus).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use outloop_core::backend::settings::LayerSettings;
use outloop_core::backend::{Capabilities, Health, Probe, SecretBackend, expect_kind};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};
use secret_service::{EncryptionType, SecretService};

/// libsecret's generic schema name, which `secret-tool store` also sets.
const SCHEMA: &str = "org.freedesktop.Secret.Generic";

/// The Secret Service backend; see the module docs.
///
/// Holds no secret and no connection: each call opens a D-Bus connection and an encrypted
/// session, so a keyring restarted or unlocked meanwhile is picked up. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct SecretServiceBackend {
    name: String,
    bus_address: Option<String>,
}

impl SecretServiceBackend {
    /// Opens the backend described by `[backends.<name>]`; `settings` are its keys other
    /// than `kind`. Nothing is contacted until the first call.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key when `settings` holds a key other than the layer
    /// keys (`cache_ttl`, `timeout`, `retries`, `retry_max_wait`).
    pub fn open(name: &str, settings: &BTreeMap<String, toml::Value>) -> Result<Self> {
        if let Some(k) = settings.keys().find(|k| !LayerSettings::is_layer_key(k)) {
            return Err(Error::config(format!(
                "backends.{name}: unknown key `{k}`; a `secret-service` backend takes only cache_ttl, timeout, retries and retry_max_wait"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            bus_address: None,
        })
    }

    /// A backend named `name` on the D-Bus bus at `address` (a D-Bus address such as
    /// `unix:path=/tmp/x/bus`) instead of the session bus; for tests and embedders running
    /// a private keyring.
    pub fn with_bus_address(name: &str, address: &str) -> Self {
        Self {
            name: name.to_owned(),
            bus_address: Some(address.to_owned()),
        }
    }

    fn unavailable(&self, e: secret_service::Error) -> Error {
        let why = match &e {
            secret_service::Error::Unavailable => "no session bus or Secret Service was found",
            secret_service::Error::Zbus(_) | secret_service::Error::ZbusFdo(_) => {
                "the session bus or the Secret Service did not answer"
            }
            _ => "the Secret Service failed",
        };
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "backend `{}`: {why} (is a keyring daemon such as gnome-keyring running in this session?)",
                self.name
            ),
        )
        .with_source(e)
    }

    fn locked(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "backend `{}`: the Secret Service {what} is locked; unlock your keyring (log in to the desktop session, or run `gnome-keyring-daemon --unlock`) and try again",
                self.name
            ),
        )
    }

    /// Maps a failure of an operation on an item or collection.
    fn failed(&self, op: &str, e: secret_service::Error) -> Error {
        match e {
            secret_service::Error::Locked => self.locked("item"),
            secret_service::Error::Prompt | secret_service::Error::PromptDisconnected => {
                Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "backend `{}`: the keyring asked for a password prompt during `{op}`; unlock your keyring and try again",
                        self.name
                    ),
                )
                .with_source(e)
            }
            secret_service::Error::ZbusFdo(zbus::fdo::Error::AccessDenied(_)) => Error::new(
                ErrorKind::PermissionDenied,
                format!("backend `{}`: the Secret Service refused `{op}`", self.name),
            )
            .with_source(e),
            secret_service::Error::Zbus(zbus::Error::MethodError(ref name, _, _))
                if name.as_str() == "org.freedesktop.Secret.Error.IsLocked" =>
            {
                self.locked("item")
            }
            other => self.unavailable(other),
        }
    }

    async fn connect(&self) -> Result<SecretService<'static>> {
        let conn = match &self.bus_address {
            None => zbus::connection::Builder::session(),
            Some(a) => zbus::connection::Builder::address(a.as_str()),
        };
        let conn = match conn {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        }
        .map_err(|e| self.unavailable(secret_service::Error::Zbus(e)))?;
        SecretService::connect_with_existing(EncryptionType::Dh, conn)
            .await
            .map_err(|e| self.unavailable(e))
    }

    fn parts<'r>(&self, reference: &'r SecretRef) -> Result<(&'r str, &'r str)> {
        expect_kind(&self.name, BackendKind::SecretService, reference)?;
        reference
            .service_account()
            .ok_or_else(|| Error::internal("a secret-service reference has no service/account"))
    }

    fn not_found(&self, reference: &SecretRef) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no secret at `{reference}` in backend `{}`; store one with `outloop secret set {reference}`",
                self.name
            ),
        )
    }
}

fn attributes<'a>(service: &'a str, account: &'a str) -> HashMap<&'a str, &'a str> {
    HashMap::from([("service", service), ("account", account)])
}

#[async_trait]
impl SecretBackend for SecretServiceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::SecretService
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            write: true,
            delete: true,
            list: true,
        }
    }

    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        let (service, account) = self.parts(reference)?;
        let ss = self.connect().await?;
        let found = ss
            .search_items(attributes(service, account))
            .await
            .map_err(|e| self.failed("get", e))?;
        match found.unlocked.first() {
            Some(item) => item
                .get_secret()
                .await
                .map(SecretValue::new)
                .map_err(|e| self.failed("get", e)),
            None if !found.locked.is_empty() => Err(self.locked("collection holding it")),
            None => Err(self.not_found(reference)),
        }
    }

    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        let (service, account) = self.parts(reference)?;
        let ss = self.connect().await?;
        let collection = ss
            .get_default_collection()
            .await
            .map_err(|e| self.failed("set", e))?;
        if collection
            .is_locked()
            .await
            .map_err(|e| self.failed("set", e))?
        {
            return Err(self.locked("collection `default`"));
        }
        // Update an item that already has these attributes (e.g. one `secret-tool` made with
        // a different attribute set), so no duplicate appears; else create one.
        let existing = collection
            .search_items(attributes(service, account))
            .await
            .map_err(|e| self.failed("set", e))?;
        match existing.first() {
            Some(item) => item
                .set_secret(value.expose_secret(), "text/plain")
                .await
                .map_err(|e| self.failed("set", e)),
            None => {
                let mut attrs = attributes(service, account);
                attrs.insert("xdg:schema", SCHEMA);
                collection
                    .create_item(
                        &format!("{service}/{account}"),
                        attrs,
                        value.expose_secret(),
                        true,
                        "text/plain",
                    )
                    .await
                    .map(drop)
                    .map_err(|e| self.failed("set", e))
            }
        }
    }

    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        let (service, account) = self.parts(reference)?;
        let ss = self.connect().await?;
        let found = ss
            .search_items(attributes(service, account))
            .await
            .map_err(|e| self.failed("delete", e))?;
        if found.unlocked.is_empty() {
            return Err(if found.locked.is_empty() {
                self.not_found(reference)
            } else {
                self.locked("collection holding it")
            });
        }
        for item in &found.unlocked {
            item.delete().await.map_err(|e| self.failed("delete", e))?;
        }
        Ok(())
    }

    /// Lists the items of the `default` collection that carry both a `service` and an
    /// `account` attribute (attributes only; no secret is read).
    async fn list(&self) -> Result<Vec<SecretRef>> {
        let ss = self.connect().await?;
        let collection = ss
            .get_default_collection()
            .await
            .map_err(|e| self.failed("list", e))?;
        let items = collection
            .get_all_items()
            .await
            .map_err(|e| self.failed("list", e))?;
        let mut out = Vec::new();
        for item in &items {
            let attrs = item
                .get_attributes()
                .await
                .map_err(|e| self.failed("list", e))?;
            if let (Some(s), Some(a)) = (attrs.get("service"), attrs.get("account"))
                && let Ok(r) = SecretRef::from_parts(BackendKind::SecretService, &[s, a])
            {
                out.push(r);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Installed: built in. Reachable: an encrypted session opens on the bus. Authenticated:
    /// the `default` collection exists and is unlocked. No item is read.
    async fn health(&self) -> Health {
        let installed = Probe::ok("built in");
        let ss = match self.connect().await {
            Ok(ss) => ss,
            Err(e) => return Health::unreachable(installed, &e),
        };
        let reachable = Probe::ok("the Secret Service answered on the session bus");
        let authenticated = match ss.get_default_collection().await {
            Err(e) => Probe::failed(&self.failed("health", e)),
            Ok(c) => match c.is_locked().await {
                Ok(false) => Probe::ok("the `default` collection is unlocked"),
                Ok(true) => Probe::failed(&self.locked("collection `default`")),
                Err(e) => Probe::failed(&self.failed("health", e)),
            },
        };
        Health {
            installed,
            reachable,
            authenticated,
        }
    }
}
