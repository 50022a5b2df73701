//! Redaction: replacing every known secret value, in every encoding, in everything that
//! leaves the broker. (Implementation lands in the next commit.)
