//! [`SecretValue`]: the one type a secret lives in.

use std::fmt;

use zeroize::Zeroizing;

/// A secret's bytes: zeroized on drop, never printed.
///
/// `SecretValue` has no `Display` and no `Clone`-by-accident (cloning is explicit and
/// also zeroizes on drop); its `Debug` prints the fixed placeholder `SecretValue([REDACTED])`.
/// The only way to read the bytes is [`SecretValue::expose_secret`], so every read site can be
/// found with one search.
///
/// Values are arbitrary bytes: a secret may end in a newline or spaces, and is never trimmed.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps bytes as a secret. The caller's buffer is moved, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Wraps a string as a secret, taking ownership of its buffer.
    pub fn from_string(s: String) -> Self {
        Self::new(s.into_bytes())
    }

    /// The secret's bytes. This is the one read path; keep every call site reviewed.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty (an empty secret is refused by the redactor and the broker).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        Self::new(self.0.to_vec())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        Self::from_string(s)
    }
}

impl PartialEq for SecretValue {
    /// Constant-time comparison of the bytes (length may leak, content does not).
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose_secret(), other.expose_secret());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretValue::from_string("FAKE-debug-secret-123".into());
        let shown = format!("{s:?} {:#?}", s);
        assert!(!shown.contains("FAKE-debug-secret-123"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }

    #[test]
    fn bytes_are_kept_exactly() {
        let s = SecretValue::new(b"  FAKE value\n".to_vec());
        assert_eq!(s.expose_secret(), b"  FAKE value\n");
        assert_eq!(s.len(), 13);
        assert_eq!(s.clone(), s);
        assert_ne!(s, SecretValue::new(b"  FAKE value".to_vec()));
    }
}
