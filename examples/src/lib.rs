//! Examples live in this folder; see `embed.rs`.
