//! Lowercase hex digests, for the fingerprints the sync compares.

use md5::{Digest, Md5};

pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

pub use crate::storage::hex;
