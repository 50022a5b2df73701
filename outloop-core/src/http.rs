//! HTTP actions. (Implementation lands in a later commit.)
