//! Wire formats: what arrives at a function's edge, parsed once into typed
//! values (or refused with what was wrong).

pub mod adjustment;
pub mod stream;
