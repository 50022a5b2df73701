//! The macOS Keychain backend (`kind = "keychain"`): generic passwords by service and account.
//!
//! `keychain://<service>/<account>` names the generic-password item with that service
//! (`kSecAttrService`) and account (`kSecAttrAccount`) in the user's default keychain, the
//! item `security find-generic-password -s <service> -a <account> -w` reads. Speaks the
//! Security framework's `SecItem*` API through the `security-framework` crate 3
//! (`passwords::{generic_password, set_generic_password, delete_generic_password}`; see
//! <https://developer.apple.com/documentation/security/keychain_services>). Values are bytes
//! and round-trip exactly.
//!
//! Status codes map to error kinds as follows (Apple's `SecBase.h`):
//!
//! | OSStatus | name | kind |
//! |---|---|---|
//! | -25300 | errSecItemNotFound | [`ErrorKind::NotFound`] |
//! | -25293 | errSecAuthFailed | [`ErrorKind::Unauthenticated`] |
//! | -128 | errSecUserCanceled | [`ErrorKind::PermissionDenied`] |
//! | -25308 | errSecInteractionNotAllowed | [`ErrorKind::Unauthenticated`] (locked keychain, no UI) |
//! | -34018 | errSecMissingEntitlement | [`ErrorKind::PermissionDenied`] |
//! | -25291, -25292, -25294, -25295 | not available, read-only, no such or invalid keychain | [`ErrorKind::Unavailable`] |
//! | other | | [`ErrorKind::Unavailable`] |
//!
//! Listing is not supported (capability `list` is false). Keychain calls can block on a
//! prompt, so each runs on a blocking thread and the backend's `timeout` cuts it off.
//!
//! On other platforms the backend builds but every call is [`ErrorKind::Unavailable`]
//! with "not available on this platform".

use std::collections::BTreeMap;

use async_trait::async_trait;
#[cfg(target_os = "macos")]
use outloop_core::backend::Probe;
use outloop_core::backend::settings::LayerSettings;
use outloop_core::backend::{Capabilities, Health, SecretBackend, expect_kind};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

/// The macOS Keychain backend; see the module docs. Holds no secret; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct KeychainBackend {
    name: String,
}

impl KeychainBackend {
    /// Opens the backend described by `[backends.<name>]`; `settings` are its keys other than
    /// `kind`. Nothing is contacted until the first call.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key when `settings` holds a key other than the layer
    /// keys (`cache_ttl`, `timeout`, `retries`, `retry_max_wait`).
    pub fn open(name: &str, settings: &BTreeMap<String, toml::Value>) -> Result<Self> {
        if let Some(k) = settings.keys().find(|k| !LayerSettings::is_layer_key(k)) {
            return Err(Error::config(format!(
                "backends.{name}: unknown key `{k}`; a `keychain` backend takes only cache_ttl, timeout, retries and retry_max_wait"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
        })
    }

    fn parts(&self, reference: &SecretRef) -> Result<(String, String)> {
        expect_kind(&self.name, BackendKind::Keychain, reference)?;
        let (s, a) = reference
            .service_account()
            .ok_or_else(|| Error::internal("a keychain reference has no service/account"))?;
        Ok((s.to_owned(), a.to_owned()))
    }

    /// Maps an OSStatus from `op` on `reference` to an error (the table in the module docs).
    pub fn map_status(&self, op: &str, reference: &str, code: i32) -> Error {
        let (kind, why) = match code {
            -25300 => (ErrorKind::NotFound, "no such item"),
            -25293 => (
                ErrorKind::Unauthenticated,
                "the keychain refused the password",
            ),
            -128 => (
                ErrorKind::PermissionDenied,
                "access was denied at the prompt",
            ),
            -25308 => (
                ErrorKind::Unauthenticated,
                "the keychain is locked and cannot ask to be unlocked here; unlock it (`security unlock-keychain`) and try again",
            ),
            -34018 => (
                ErrorKind::PermissionDenied,
                "this binary lacks the keychain entitlement",
            ),
            -25291 | -25292 | -25294 | -25295 => {
                (ErrorKind::Unavailable, "the keychain is not available")
            }
            _ => (ErrorKind::Unavailable, "the keychain failed"),
        };
        Error::new(
            kind,
            format!(
                "backend `{}`: `{op}` of `{reference}`: {why} (OSStatus {code})",
                self.name
            ),
        )
    }

    #[cfg(not(target_os = "macos"))]
    fn not_here(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "backend `{}`: the macOS Keychain is not available on this platform",
                self.name
            ),
        )
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use security_framework::passwords::{
        PasswordOptions, delete_generic_password, generic_password, set_generic_password,
    };

    /// Reads the generic password; `Err(OSStatus)` on failure.
    pub fn get(service: &str, account: &str) -> Result<Vec<u8>, i32> {
        generic_password(PasswordOptions::new_generic_password(service, account))
            .map_err(|e| e.code())
    }

    /// Creates or updates the generic password.
    pub fn set(service: &str, account: &str, value: &[u8]) -> Result<(), i32> {
        set_generic_password(service, account, value).map_err(|e| e.code())
    }

    /// Deletes the generic password.
    pub fn delete(service: &str, account: &str) -> Result<(), i32> {
        delete_generic_password(service, account).map_err(|e| e.code())
    }
}

#[cfg(target_os = "macos")]
impl KeychainBackend {
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        reference: &SecretRef,
        f: impl FnOnce(&str, &str) -> std::result::Result<T, i32> + Send + 'static,
    ) -> Result<T> {
        let (service, account) = self.parts(reference)?;
        let shown = reference.to_string();
        match tokio::task::spawn_blocking(move || f(&service, &account)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(code)) => Err(self.map_status(op, &shown, code)),
            Err(_) => Err(Error::internal("a keychain task failed")),
        }
    }
}

#[async_trait]
impl SecretBackend for KeychainBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Keychain
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: cfg!(target_os = "macos"),
            write: cfg!(target_os = "macos"),
            delete: cfg!(target_os = "macos"),
            list: false,
        }
    }

    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        #[cfg(target_os = "macos")]
        {
            self.blocking("get", reference, |s, a| imp::get(s, a))
                .await
                .map(SecretValue::new)
        }
        #[cfg(not(target_os = "macos"))]
        {
            self.parts(reference)?;
            Err(self.not_here())
        }
    }

    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        #[cfg(target_os = "macos")]
        {
            self.blocking("set", reference, move |s, a| {
                imp::set(s, a, value.expose_secret())
            })
            .await
        }
        #[cfg(not(target_os = "macos"))]
        {
            drop(value);
            self.parts(reference)?;
            Err(self.not_here())
        }
    }

    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        #[cfg(target_os = "macos")]
        {
            self.blocking("delete", reference, |s, a| imp::delete(s, a))
                .await
        }
        #[cfg(not(target_os = "macos"))]
        {
            self.parts(reference)?;
            Err(self.not_here())
        }
    }

    /// On macOS: looks up an item that does not exist (service `outloop-doctor`); "not found"
    /// means the keychain answered and is unlocked. No item is read.
    async fn health(&self) -> Health {
        #[cfg(target_os = "macos")]
        {
            let probe = SecretRef::from_parts(BackendKind::Keychain, &["outloop-doctor", "probe"]);
            let Ok(probe) = probe else {
                return Health::not_installed(&Error::internal("bad probe reference"));
            };
            let installed = Probe::ok("built in");
            match self.blocking("health", &probe, |s, a| imp::get(s, a)).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Health {
                    installed,
                    reachable: Probe::ok("the keychain answered"),
                    authenticated: Probe::ok("the keychain is unlocked"),
                },
                // The probe item exists (someone made it): the keychain answered all the same.
                Ok(_) => Health {
                    installed,
                    reachable: Probe::ok("the keychain answered"),
                    authenticated: Probe::ok("the keychain is unlocked"),
                },
                Err(e) if e.kind() == ErrorKind::Unauthenticated => Health {
                    installed,
                    reachable: Probe::ok("the keychain answered"),
                    authenticated: Probe::failed(&e),
                },
                Err(e) => Health::unreachable(installed, &e),
            }
        }
        #[cfg(not(target_os = "macos"))]
        {
            Health::not_installed(&self.not_here())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let k = KeychainBackend::open("keychain", &BTreeMap::new()).unwrap();
        let cases = [
            (-25300, ErrorKind::NotFound),
            (-25293, ErrorKind::Unauthenticated),
            (-128, ErrorKind::PermissionDenied),
            (-25308, ErrorKind::Unauthenticated),
            (-34018, ErrorKind::PermissionDenied),
            (-25291, ErrorKind::Unavailable),
            (-25295, ErrorKind::Unavailable),
            (-1, ErrorKind::Unavailable),
        ];
        for (code, kind) in cases {
            let e = k.map_status("get", "keychain://svc/acct", code);
            assert_eq!(e.kind(), kind, "{code}");
            assert!(e.message().contains(&format!("OSStatus {code}")), "{e}");
        }
        let bad = toml::from_str::<BTreeMap<String, toml::Value>>("account = \"x\"").unwrap();
        let e = KeychainBackend::open("kc", &bad).unwrap_err();
        assert!(
            e.message()
                .starts_with("backends.kc: unknown key `account`"),
            "{e}"
        );
    }

    #[cfg(not(target_os = "macos"))]
    #[tokio::test]
    async fn elsewhere_every_call_says_not_available_on_this_platform() {
        let k = KeychainBackend::open("keychain", &BTreeMap::new()).unwrap();
        let r = SecretRef::parse("keychain://outloop/token").unwrap();
        let e = k.get(&r).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.message().contains("not available on this platform"),
            "{e}"
        );
        let e = k
            .set(&r, SecretValue::from_string("FAKE-kc-1".into()))
            .await
            .unwrap_err();
        assert!(
            e.message().contains("not available on this platform"),
            "{e}"
        );
        assert!(k.delete(&r).await.is_err());
        assert!(!k.health().await.is_ok());
        let other = SecretRef::parse("vault://a/b").unwrap();
        assert_eq!(
            k.get(&other).await.unwrap_err().kind(),
            ErrorKind::InvalidReference
        );
    }
}
