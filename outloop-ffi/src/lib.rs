//! Outloop's C ABI. This first slice exports only the ABI version; the broker handle, calls
//! and error codes come with the FFI issue.

/// The ABI version of this library. Incremented on every incompatible change of the C ABI.
pub const ABI_VERSION: u32 = 0;

/// Returns [`ABI_VERSION`]. Safe to call from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn outloop_abi_version() -> u32 {
    ABI_VERSION
}

#[cfg(test)]
mod tests {
    #[test]
    fn abi_version_is_exported() {
        assert_eq!(super::outloop_abi_version(), super::ABI_VERSION);
    }
}
