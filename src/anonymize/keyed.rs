//! Keyed determinism for the anonymizer: every derived value is a function of
//! `HMAC-SHA256(secret, strategy || 0x00 || input)`, so the same input gives
//! the same output in every table and every run, and nothing about the input
//! can be recovered without the secret. Choices beyond the seed's own bytes
//! come from [`SeedRng`], a fixed generator started from the seed.
//!
//! Also holds the pure string strategies that need no word lists: `hash`,
//! `mask`, `regex` and `date_shift`, none of which gives back the value it
//! replaces (each derives another one, keyed with a counter, when its first
//! output equals the input). Fake values live in `fakes`.

use std::sync::OnceLock;

use std::convert::Infallible;

use hmac::{Hmac, KeyInit, Mac};
use rand::{Rng, RngExt, TryRng};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest output of [`Keyed::hash`]: the hex of a full SHA-256 MAC.
pub const HASH_MAX_LEN: usize = 64;

/// Length of [`Keyed::unique_suffix`]: 12 base32 characters carry 60 bits,
/// so among 10 million distinct inputs the chance that any two share a
/// suffix is about 4 in 100,000 (and about 2 in 100 million at 200,000).
pub const UNIQUE_SUFFIX_LEN: usize = 12;

/// The key that derives every anonymized value.
///
/// With a secret (the rules file's `secret:`), outputs are stable across
/// runs. Without one, a random key is drawn once per process: outputs are
/// still consistent within the run (joins on natural keys hold), but differ
/// from run to run. The caller is expected to warn about that.
#[derive(Clone)]
pub struct Keyed {
    secret: Option<Vec<u8>>,
    /// The MAC with the key already absorbed: each seed clones it instead
    /// of hashing the key again (two fewer SHA-256 blocks per value).
    keyed_mac: HmacSha256,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Keyed")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The per-process random key used when no secret is configured.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    })
}

impl Keyed {
    /// A key from the configured secret, or the random per-process key when
    /// `secret` is `None`.
    pub fn new(secret: Option<&str>) -> Self {
        let secret = secret.map(|s| s.as_bytes().to_vec());
        let key: &[u8] = match &secret {
            Some(secret) => secret,
            None => process_key(),
        };
        let keyed_mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any size");
        Keyed { secret, keyed_mac }
    }

    /// Whether outputs are reproducible across runs (a secret was given).
    pub fn is_deterministic(&self) -> bool {
        self.secret.is_some()
    }

    /// `HMAC-SHA256(key, strategy || 0x00 || input)`: the seed every derived
    /// value comes from. The separator keeps `("ab", "c")` and `("a", "bc")`
    /// apart as long as strategy names contain no NUL.
    pub fn seed(&self, strategy: &str, input: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed_mac.clone();
        mac.update(strategy.as_bytes());
        mac.update(&[0]);
        mac.update(input);
        let bytes = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        out
    }

    /// A random number generator seeded from [`Keyed::seed`] (see
    /// [`SeedRng`]).
    pub fn rng(&self, strategy: &str, input: &[u8]) -> SeedRng {
        SeedRng::from_seed(&self.seed(strategy, input))
    }

    /// The `hash` strategy: lowercase hex of the keyed HMAC of `input`,
    /// truncated to `len` characters (at most [`HASH_MAX_LEN`]; `None` gives
    /// all 64). Never the input itself (ignoring case): when a short hash
    /// comes out equal, the MAC of `input ‖ 0x00 ‖ n` is taken for
    /// `n = 1, 2, …` instead.
    pub fn hash(&self, input: &[u8], len: Option<usize>) -> String {
        let len = len.unwrap_or(HASH_MAX_LEN).min(HASH_MAX_LEN);
        first_unlike(
            input,
            |seeded| self.hex("hash", seeded, len),
            |hex| len > 0 && hex.as_bytes().eq_ignore_ascii_case(input),
        )
    }

    fn hex(&self, strategy: &str, input: &[u8], len: usize) -> String {
        let seed = self.seed(strategy, input);
        let mut hex = String::with_capacity(HASH_MAX_LEN);
        for byte in seed {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        hex.truncate(len);
        hex
    }

    /// The `mask` strategy: keep the first `keep_first` and last `keep_last`
    /// characters (Unicode scalar values, not bytes) and replace the rest
    /// with `with`. The output has as many characters as the input.
    ///
    /// Fails closed: when the value is too short to mask at least one
    /// character while keeping both ends, every character is masked. And a
    /// mask never gives back its input: when the masked characters already
    /// were `with` (`Maxx` masked with `x` after 2), they become `*` instead
    /// (`#` when `with` is `*`).
    pub fn mask(input: &str, keep_first: usize, keep_last: usize, with: char) -> String {
        let masked = Self::mask_with(input, keep_first, keep_last, with);
        if masked != input || input.is_empty() {
            return masked;
        }
        let other = if with == '*' { '#' } else { '*' };
        Self::mask_with(input, keep_first, keep_last, other)
    }

    fn mask_with(input: &str, keep_first: usize, keep_last: usize, with: char) -> String {
        let count = input.chars().count();
        if keep_first.saturating_add(keep_last) >= count {
            return std::iter::repeat_n(with, count).collect();
        }
        input
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i < keep_first || i >= count - keep_last {
                    c
                } else {
                    with
                }
            })
            .collect()
    }

    /// The `regex` strategy: replace every match of `re` in `input` with
    /// `replacement` (which may refer to groups as `$1` or `${name}`).
    ///
    /// When something matched and the replacement gives the input back
    /// (`555-$2` on `555-0123`), each match is instead scrambled, keyed
    /// ([`Keyed::scramble`]): a rule meant to change what it matches never
    /// leaves it as it was. No match leaves the value alone.
    pub fn regex_replace(&self, re: &regex::Regex, input: &str, replacement: &str) -> String {
        let replaced = re.replace_all(input, replacement);
        if replaced != input || !re.is_match(input) {
            return replaced.into_owned();
        }
        re.replace_all(input, |caps: &regex::Captures<'_>| {
            self.scramble("regex", &caps[0])
        })
        .into_owned()
    }

    /// `text` with every ASCII digit replaced by a keyed digit and every
    /// ASCII letter by a keyed letter of the same case, everything else
    /// kept, so the shape stays; re-derived with a counter until it differs
    /// from `text` (ignoring case). Text without ASCII letters or digits
    /// has every other character replaced by `*`.
    pub fn scramble(&self, strategy: &str, text: &str) -> String {
        if !text.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return text
                .chars()
                .map(|c| if c == '*' { '#' } else { '*' })
                .collect();
        }
        let mut seeded = text.as_bytes().to_vec();
        for n in 0u32.. {
            seeded.truncate(text.len());
            if n > 0 {
                seeded.push(0);
                seeded.extend_from_slice(&n.to_be_bytes());
            }
            let mut rng = self.rng(strategy, &seeded);
            let out: String = text
                .chars()
                .map(|c| match c {
                    '0'..='9' => char::from(b'0' + rng.random_range(0..10u8)),
                    'a'..='z' => char::from(b'a' + rng.random_range(0..26u8)),
                    'A'..='Z' => char::from(b'A' + rng.random_range(0..26u8)),
                    other => other,
                })
                .collect();
            if !out.eq_ignore_ascii_case(text) {
                return out;
            }
        }
        unreachable!("a letter or digit changes sooner or later")
    }

    /// The `date_shift` strategy on a date given as days since 1970-01-01:
    /// moves it by between 1 and `max_days` days, earlier or later, the
    /// amount and direction derived from the value itself (so the same date
    /// always moves the same way), so never to itself. `max_days == 0`
    /// leaves the date alone. Saturates at the ends of `i32`, moving the
    /// other way where the chosen one is blocked.
    pub fn date_shift(&self, days_since_epoch: i32, max_days: u32) -> i32 {
        if max_days == 0 {
            return days_since_epoch;
        }
        let seed = self.seed("date_shift", &days_since_epoch.to_be_bytes());
        let r = u64::from_be_bytes(seed[..8].try_into().expect("8 bytes"));
        // 1..=max_days; the modulo bias over 64 bits is negligible.
        let magnitude = 1 + (r >> 1) % u64::from(max_days);
        let magnitude = i32::try_from(magnitude).unwrap_or(i32::MAX);
        let later = days_since_epoch.saturating_add(magnitude);
        let earlier = days_since_epoch.saturating_sub(magnitude);
        // At an end of `i32` the chosen direction cannot move: the other can.
        match (
            r & 1 == 0,
            later == days_since_epoch,
            earlier == days_since_epoch,
        ) {
            (true, false, _) | (false, _, true) => later,
            _ => earlier,
        }
    }

    /// A short suffix (lowercase base32, [`UNIQUE_SUFFIX_LEN`] characters)
    /// derived from the seed of `(strategy, input)`. Appended to a fake value
    /// it makes outputs for distinct inputs distinct without any table of
    /// values seen so far; see [`UNIQUE_SUFFIX_LEN`] for the odds of a clash.
    pub fn unique_suffix(&self, strategy: &str, input: &[u8]) -> String {
        suffix_of(&self.seed(strategy, input))
    }
}

/// [`Keyed::unique_suffix`] from a seed already computed (the one a fake's
/// generator starts from), so a fake costs one MAC, not two.
pub fn suffix_of(seed: &[u8; 32]) -> String {
    let mut suffix = String::with_capacity(UNIQUE_SUFFIX_LEN);
    push_suffix(&mut suffix, seed);
    suffix
}

/// [`suffix_of`], written at the end of `out`.
pub fn push_suffix(out: &mut String, seed: &[u8; 32]) {
    let bits = u64::from_be_bytes(seed[..8].try_into().expect("8 bytes"));
    out.extend(
        (0..UNIQUE_SUFFIX_LEN)
            .map(|i| char::from(BASE32[((bits >> (59 - 5 * i)) & 0x1f) as usize])),
    );
}

/// The generator a fake draws its choices from: xoshiro256** with the
/// 32 bytes of a keyed seed as its state. The secrecy is all in the seed
/// (an HMAC of the input under the secret); the generator only spreads its
/// 256 bits over the few choices one value needs (a word, a number, a
/// format), so it needs to be fast and fixed, not a cipher: a named
/// algorithm, the same stream on every machine and in every run, and a
/// few nanoseconds to start where a ChaCha20 block costs about a hundred.
#[derive(Debug, Clone)]
pub struct SeedRng {
    state: [u64; 4],
}

impl SeedRng {
    pub fn from_seed(seed: &[u8; 32]) -> SeedRng {
        let mut state: [u64; 4] = std::array::from_fn(|i| {
            u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        });
        // The one state xoshiro cannot leave; an HMAC output of 2^-256.
        if state == [0; 4] {
            state[0] = 0x9e37_79b9_7f4a_7c15;
        }
        SeedRng { state }
    }
}

impl TryRng for SeedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl SeedRng {
    /// xoshiro256** (Blackman and Vigna, 2018).
    fn next(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `derive(input)`, unless `same` says it repeats the input: then
/// `derive(input ‖ 0x00 ‖ n)` for `n = 1, 2, …`, the first that does not.
/// Values that never repeat their input keep their first derivation.
pub fn first_unlike<T>(
    input: &[u8],
    mut derive: impl FnMut(&[u8]) -> T,
    same: impl Fn(&T) -> bool,
) -> T {
    let first = derive(input);
    if !same(&first) {
        return first;
    }
    let mut seeded = Vec::with_capacity(input.len() + 5);
    for n in 1u32.. {
        seeded.clear();
        seeded.extend_from_slice(input);
        seeded.push(0);
        seeded.extend_from_slice(&n.to_be_bytes());
        let next = derive(&seeded);
        if !same(&next) {
            return next;
        }
    }
    unreachable!("a keyed derivation repeated its input 2^32 times")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn same_secret_same_seed_across_instances_and_different_secret_differs() {
        let a = Keyed::new(Some("s3cret"));
        let b = Keyed::new(Some("s3cret"));
        let c = Keyed::new(Some("other"));
        assert_eq!(a.seed("fake:email", b"x"), b.seed("fake:email", b"x"));
        assert_ne!(a.seed("fake:email", b"x"), c.seed("fake:email", b"x"));
        assert_ne!(a.seed("fake:email", b"x"), a.seed("fake:name", b"x"));
        // The separator keeps strategy and input apart.
        assert_ne!(a.seed("ab", b"c"), a.seed("a", b"bc"));
        let mut ra = a.rng("s", b"v");
        let mut rb = b.rng("s", b"v");
        let xa: [u64; 4] = std::array::from_fn(|_| ra.random());
        let xb: [u64; 4] = std::array::from_fn(|_| rb.random());
        assert_eq!(xa, xb);
    }

    #[test]
    fn seed_rng_is_xoshiro256_star_star() {
        // The reference implementation's first outputs from the state
        // [1, 2, 3, 4] (as the `rand_xoshiro` crate tests it).
        let mut seed = [0u8; 32];
        for (i, word) in [1u64, 2, 3, 4].iter().enumerate() {
            seed[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        let mut rng = SeedRng::from_seed(&seed);
        let got: Vec<u64> = (0..6).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                11520,
                0,
                1509978240,
                1215971899390074240,
                1216172134540287360,
                607988272756665600
            ]
        );
    }

    #[test]
    fn seed_is_hmac_sha256_of_strategy_nul_input() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        // Split as strategy "what do ya want" + NUL would change it, so check
        // the construction against a MAC computed directly instead.
        let k = Keyed::new(Some("Jefe"));
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"hash\0value");
        let expected = mac.finalize().into_bytes();
        assert_eq!(k.seed("hash", b"value")[..], expected[..]);
        // And the MAC itself is the standard one.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let rfc: Vec<u8> = mac.finalize().into_bytes().to_vec();
        assert_eq!(
            rfc,
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ]
        );
    }

    #[test]
    fn without_secret_the_process_key_is_stable_within_the_run() {
        let a = Keyed::new(None);
        let b = Keyed::new(None);
        assert!(!a.is_deterministic());
        assert_eq!(a.seed("s", b"v"), b.seed("s", b"v"));
        assert_ne!(a.seed("s", b"v"), Keyed::new(Some("")).seed("s", b"v"));
        assert!(!format!("{:?}", Keyed::new(Some("hunter2"))).contains("hunter2"));
    }

    #[test]
    fn hash_lengths_and_hex() {
        let k = Keyed::new(Some("s"));
        let full = k.hash(b"alice", None);
        assert_eq!(full.len(), 64);
        assert!(
            full.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(k.hash(b"alice", Some(12)), full[..12]);
        assert_eq!(k.hash(b"alice", Some(0)), "");
        assert_eq!(k.hash(b"alice", Some(500)), full);
        assert_ne!(k.hash(b"bob", None), full);
        assert_eq!(Keyed::new(Some("s")).hash(b"alice", None), full);
    }

    #[test]
    fn mask_counts_characters_not_bytes() {
        assert_eq!(Keyed::mask("Zoë Ångström", 2, 2, '*'), "Zo********öm");
        assert_eq!(Keyed::mask("日本語テキスト", 1, 1, '•'), "日•••••ト");
        assert_eq!(
            Keyed::mask("4111111111111111", 0, 4, 'x'),
            "xxxxxxxxxxxx1111"
        );
        assert_eq!(Keyed::mask("ab", 0, 0, '*'), "**");
        // Too short to keep both ends and mask anything: everything is masked.
        assert_eq!(Keyed::mask("ü€", 1, 1, '*'), "**");
        assert_eq!(Keyed::mask("abc", usize::MAX, usize::MAX, '*'), "***");
        assert_eq!(Keyed::mask("", 1, 1, '*'), "");
        assert_eq!(Keyed::mask("äbcdé", 1, 1, '*').chars().count(), 5);
    }

    #[test]
    fn regex_replaces_every_match() {
        let re = regex::Regex::new(r"(\d{3})-(\d{4})").unwrap();
        let k = Keyed::new(Some("s"));
        assert_eq!(
            k.regex_replace(&re, "call 555-1234 or 555-9876", "XXX-$2"),
            "call XXX-1234 or XXX-9876"
        );
        assert_eq!(k.regex_replace(&re, "none", "x"), "none");
        // A replacement that gives the match back scrambles it instead,
        // keeping its shape, the same way every time.
        let kept = k.regex_replace(&re, "call 555-1234", "555-$2");
        assert_ne!(kept, "call 555-1234");
        assert!(
            regex::Regex::new(r"^call \d{3}-\d{4}$")
                .unwrap()
                .is_match(&kept),
            "{kept}"
        );
        assert_eq!(
            Keyed::new(Some("s")).regex_replace(&re, "call 555-1234", "555-$2"),
            kept
        );
    }

    #[test]
    fn mask_and_hash_never_give_back_their_input() {
        assert_eq!(Keyed::mask("Maxx", 2, 0, 'x'), "Ma**");
        assert_eq!(Keyed::mask("Ma**", 2, 0, '*'), "Ma##");
        assert_eq!(Keyed::mask("xx", 0, 0, 'x'), "**");
        assert_eq!(Keyed::mask("", 0, 0, 'x'), "");
        let k = Keyed::new(Some("s"));
        for len in [1, 2, 3] {
            for i in 0..(16u32.pow(len as u32)) {
                let input = format!("{i:0len$x}");
                let hash = k.hash(input.as_bytes(), Some(len));
                assert_eq!(hash.len(), len);
                assert_ne!(hash, input);
                assert_ne!(
                    k.hash(input.to_ascii_uppercase().as_bytes(), Some(len)),
                    input
                );
            }
        }
    }

    #[test]
    fn date_shift_stays_in_bounds_never_zero_and_is_deterministic() {
        let k = Keyed::new(Some("s"));
        let k2 = Keyed::new(Some("s"));
        let mut saw_earlier = false;
        let mut saw_later = false;
        for day in -20_000..20_000 {
            let shifted = k.date_shift(day, 30);
            let delta = shifted - day;
            assert!(
                (1..=30).contains(&delta.abs()),
                "day {day} moved by {delta}"
            );
            saw_earlier |= delta < 0;
            saw_later |= delta > 0;
            assert_eq!(k2.date_shift(day, 30), shifted);
        }
        assert!(saw_earlier && saw_later);
        for day in 0..1000 {
            assert_eq!(k.date_shift(day, 0), day);
            assert_eq!((k.date_shift(day, 1) - day).abs(), 1);
        }
        // Saturates instead of overflowing (which would panic in debug builds),
        // and moves the other way where one is blocked.
        for edge in [i32::MIN, i32::MIN + 1, i32::MAX - 1, i32::MAX] {
            let shifted = i64::from(k.date_shift(edge, 3));
            assert!((shifted - i64::from(edge)).abs() <= 3);
            assert_ne!(shifted, i64::from(edge));
            std::hint::black_box(k.date_shift(edge, u32::MAX));
        }
    }

    #[test]
    fn unique_suffix_is_short_base32_and_deterministic() {
        let k = Keyed::new(Some("s"));
        let s = k.unique_suffix("fake:email", b"a@b.c");
        assert_eq!(s.len(), UNIQUE_SUFFIX_LEN);
        assert!(s.bytes().all(|b| BASE32.contains(&b)));
        assert_eq!(
            Keyed::new(Some("s")).unique_suffix("fake:email", b"a@b.c"),
            s
        );
        assert_ne!(k.unique_suffix("fake:email", b"a@b.d"), s);
        let distinct: std::collections::HashSet<String> = (0..50_000u32)
            .map(|i| k.unique_suffix("t", &i.to_be_bytes()))
            .collect();
        assert_eq!(distinct.len(), 50_000);
    }
}
