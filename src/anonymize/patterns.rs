//! Personal data inside text: e-mail addresses, phone numbers, IP
//! addresses, payment card numbers and IBANs, found by shape and, where the
//! format has one, by checksum, in any spelling: a text holding escapes
//! (percent-encoding at any depth, HTML character references, JSON
//! escapes), compatibility forms (fullwidth `＠`) or invisible characters is
//! searched in its decoded view (`decode`), and each find points back at
//! the original spelling.
//!
//! Used twice: by the `redact` strategy, to replace what it finds inside free
//! text and JSON, and by coverage detection, to tell which unruled columns
//! hold personal data. Both need precision as much as recall: a date, a
//! price, an order number or a version string taken for a phone number
//! garbles staging's content, and a column of ids flagged as phone numbers
//! stops a run for nothing. So every pattern is anchored on boundaries
//! (a match never starts or ends inside a longer number or word), and:
//!
//! - phone numbers must have a recognisable layout (`+` and a country code,
//!   a UK number starting with `0`, or a US number with parentheses or
//!   consistent separators) and at least 9 digits; a bare run of digits is
//!   a phone number only in the UK's 11-digit `0…` form;
//! - card numbers must pass the Luhn check *and* start with an issuer
//!   prefix of their length, which rules out most long ids and millisecond
//!   timestamps (about one in ten of which pass Luhn by chance);
//! - IBANs must have their country's length and a valid mod-97 checksum;
//! - IP addresses must parse (no leading zeros in IPv4 octets, which keeps
//!   out dotted dates; IPv6 needs two groups and a digit, which keeps out
//!   `Foo::bar` and times such as `12:30:45`).
//!
//! E-mail addresses take letters of any script in the local part and the
//! domain (internationalised and look-alike domains; a punycode label is
//! read as the Unicode it encodes), emoji in the local part, and quoted
//! local parts (`"x y"@example.com`). In text written without spaces
//! (Chinese, Japanese, Thai, …) an address ends where that script meets its
//! Latin letters, so the words around it stay.
//!
//! Not found, on purpose or for now: obfuscated addresses (`alice at example
//! dot com`), and bare 10-digit US numbers (indistinguishable from ids and
//! Unix times).
//!
//! This module only finds; it never decides what replaces a match.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::decode;

/// Every kind accepted by `redact:`, by its name in the rules file (for "did
/// you mean" suggestions).
pub const PII_KINDS: &[&str] = &["email", "phone", "ip", "card", "iban"];

/// A kind of personal data that can be recognised inside text.
///
/// The order (`Ord`) is the order of [`PII_KINDS`]; it is not the priority
/// used when two matches overlap (see [`find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    /// An e-mail address, `alice@example.com`, in any spelling
    /// (`alice%40example.com`, `alice&#64;example.com`, …).
    Email,
    /// A phone number in a common US, UK or international format.
    Phone,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A payment card number (13–19 digits, Luhn-valid, known issuer prefix).
    Card,
    /// An International Bank Account Number with a valid checksum.
    Iban,
}

impl PiiKind {
    /// Every kind, in the order of [`PII_KINDS`].
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ip,
        PiiKind::Card,
        PiiKind::Iban,
    ];

    /// The kind's name in a rules file.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ip => "ip",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
        }
    }

    /// The kind named `name` in a rules file (exact, lower case).
    pub fn parse(name: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Which kind wins when two matches overlap: lower first. The more
    /// specific format wins: an e-mail address may hold digits that look
    /// like a phone number, an IBAN or a card number may hold a run that
    /// looks like one, and a phone number has the loosest shape of all.
    fn priority(self) -> u8 {
        match self {
            PiiKind::Email => 0,
            PiiKind::Iban => 1,
            PiiKind::Card => 2,
            PiiKind::Ip => 3,
            PiiKind::Phone => 4,
        }
    }
}

impl std::fmt::Display for PiiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One item of personal data found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: PiiKind,
    /// Byte range in the text searched; always on character boundaries.
    pub range: Range<usize>,
    /// The item itself, decoded: `alice@example.com` for
    /// `alice%40example.com`, `alice&#64;example.com`, `alice＠example.com`
    /// or `alice\u{200D}@example.com` (decoded, NFKC, invisible characters
    /// dropped; case kept). Other kinds are as decoded, separators included.
    pub value: String,
    /// Whether the text held the item URL-encoded (an e-mail address with
    /// `%40` for `@`): whether `percent_depth` is above 0.
    pub url_encoded: bool,
    /// How many times the most encoded character of the item was
    /// percent-encoded (1 for `%40`, 2 for `%2540`), so a replacement can
    /// be encoded the same way and a URL stays a URL.
    pub percent_depth: u8,
}

/// Every item of the given `kinds` in `text`, in order, none overlapping,
/// however it is spelled: percent-encoded at any depth, as HTML character
/// references, JSON escapes or Unicode compatibility forms, with invisible
/// characters inside (see [`decode`]). Each [`Found`] gives the item
/// decoded and the range of its spelling in `text`.
///
/// All kinds are looked for, whatever `kinds` says, and overlaps are settled
/// first (see [`PiiKind::priority`]); only then are the other kinds dropped.
/// So asking for phone numbers alone never returns the middle of a card
/// number or an IBAN.
pub fn find(text: &str, kinds: &[PiiKind]) -> Vec<Found> {
    if kinds.is_empty() {
        return Vec::new();
    }
    let Some(view) = decode::View::of(text) else {
        return find_decoded(text, kinds);
    };
    let mut found = find_decoded(view.text(), kinds);
    // Where the last item ends in `text`. Two items side by side in the
    // view can share an original character (one that decodes to several,
    // such as `㏂`): the first takes it.
    let mut end = 0;
    found.retain_mut(|item| {
        let range = view.original(item.range.clone());
        item.percent_depth = view.percent_depth(item.range.clone());
        item.url_encoded = item.percent_depth > 0;
        item.range = range.start.max(end)..range.end;
        end = end.max(range.end);
        !item.range.is_empty()
    });
    found
}

/// [`find`] in a text that needs no decoding (or is a decoded view).
fn find_decoded(text: &str, kinds: &[PiiKind]) -> Vec<Found> {
    let mut candidates = Vec::new();
    if text.contains('@') {
        emails(text, &mut candidates);
    }
    if text.bytes().any(|b| b.is_ascii_digit()) {
        ibans(text, &mut candidates);
        cards(text, &mut candidates);
        ipv6s(text, &mut candidates);
        ipv4s(text, &mut candidates);
        phones(text, &mut candidates);
    }
    // Stable: within a kind, earlier matches first.
    candidates.sort_by_key(|f| f.kind.priority());
    // start → end of every accepted match.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut accepted = Vec::new();
    for found in candidates {
        let Range { start, end } = found.range;
        let before = taken.range(..end).next_back();
        if before.is_some_and(|(_, &taken_end)| taken_end > start) {
            continue;
        }
        taken.insert(start, end);
        if kinds.contains(&found.kind) {
            accepted.push(found);
        }
    }
    accepted.sort_by_key(|f| f.range.start);
    accepted
}

/// The kind of `value` when the whole of it (leading and trailing
/// whitespace and invisible characters aside) is one item, in any spelling:
/// for telling what a column holds from a sample of its values.
pub fn classify(value: &str) -> Option<PiiKind> {
    let trimmed = value.trim_matches(|c: char| c.is_whitespace() || decode::is_invisible(c));
    if trimmed.is_empty() {
        return None;
    }
    match find(trimmed, &PiiKind::ALL).as_slice() {
        [only] if only.range == (0..trimmed.len()) => Some(only.kind),
        _ => None,
    }
}

/// The Luhn (mod 10) check of a card number: `digits` must be ASCII digits
/// only, at least two of them.
pub fn luhn_valid(digits: &str) -> bool {
    digits.len() >= 2
        && digits.bytes().all(|b| b.is_ascii_digit())
        && luhn_sum(digits.bytes().rev(), false).is_multiple_of(10)
}

/// Sum of the Luhn algorithm over digits given from the right; `double_first`
/// doubles the rightmost (used to compute a check digit).
fn luhn_sum(digits_from_right: impl Iterator<Item = u8>, double_first: bool) -> u32 {
    digits_from_right
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if (i % 2 == 1) != double_first {
                if d > 4 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum()
}

/// The check digit that makes `digits` (ASCII digits) Luhn-valid when
/// appended.
pub(crate) fn luhn_check_digit(digits: &[u8]) -> u8 {
    let sum = luhn_sum(digits.iter().rev().copied(), true);
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// Whether `s` is an IBAN: a known country code, that country's length,
/// letters and digits only (single spaces between characters allowed, case
/// ignored) and the ISO 13616 mod-97 checksum.
pub fn iban_valid(s: &str) -> bool {
    if s.starts_with(' ') || s.ends_with(' ') || s.contains("  ") {
        return false;
    }
    let compact: String = s
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = compact.as_bytes();
    bytes.len() >= 5
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes.iter().all(u8::is_ascii_alphanumeric)
        && iban_length(&compact[..2]) == Some(bytes.len())
        && iban_mod97(bytes) == 1
}

/// ISO 7064 mod 97-10 of an IBAN (uppercase ASCII letters and digits): the
/// first four characters moved to the end, letters as 10–35.
pub(crate) fn iban_mod97(iban: &[u8]) -> u32 {
    let (head, tail) = iban.split_at(4.min(iban.len()));
    tail.iter().chain(head).fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A') + 10) % 97
        }
    })
}

/// Length of an IBAN of the country `code`, from the SWIFT IBAN registry;
/// `None` for a country that does not use IBANs.
pub(crate) fn iban_length(code: &str) -> Option<usize> {
    const LENGTHS: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NL", 18),
        ("NO", 15),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("SA", 24),
        ("SC", 31),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
    ];
    LENGTHS
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| LENGTHS[i].1)
}

// ---------------------------------------------------------------------------
// Boundaries

fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn char_after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Characters that join two numbers into one (`2024-01`, `1.5`, `12/2030`,
/// `12:30`, `1,000`), for [`number_starts`] and [`number_ends`].
const JOINERS: &str = ".-/:,";

/// [`JOINERS`] for phone numbers: a slash or comma between two of them
/// lists them (`07700 900123/07700 900124`).
const PHONE_JOINERS: &str = ".-:";

/// Whether a number may start at `at`: not inside a word or a longer number
/// (a digit and one of `joiners` before it), not after a currency sign or
/// `#` (prices, order numbers).
fn number_starts(text: &str, at: usize, joiners: &str) -> bool {
    match char_before(text, at) {
        None => true,
        Some(c) if is_word(c) || "#$£€¥@+%".contains(c) => false,
        Some(c) if joiners.contains(c) => {
            !char_before(text, at - c.len_utf8()).is_some_and(|c| c.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// Whether a number may end at `at`: not inside a word or a longer number
/// (one of `joiners` and a digit after it; a comma after a number is
/// punctuation more often than a thousands separator), not before `%`.
fn number_ends(text: &str, at: usize, joiners: &str) -> bool {
    match char_after(text, at) {
        None => true,
        Some(c) if is_word(c) || c == '%' => false,
        Some(c) if c != ',' && joiners.contains(c) => {
            !char_after(text, at + c.len_utf8()).is_some_and(|c| c.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// Runs `re` over `text`; `accept` turns a match into a [`Found`] or rejects
/// it. After a rejection the search goes on one character later (not after
/// the rejected match), so a valid item overlapping a rejected one is still
/// found.
fn scan(
    text: &str,
    re: &Regex,
    out: &mut Vec<Found>,
    mut accept: impl FnMut(&regex::Captures<'_>) -> Option<Found>,
) {
    let mut at = 0;
    while at <= text.len() {
        let Some(caps) = re.captures_at(text, at) else {
            return;
        };
        let whole = caps.get(0).expect("group 0 always matches");
        match accept(&caps) {
            Some(found) => {
                at = found.range.end.max(whole.start() + 1);
                out.push(found);
            }
            None => at = whole.start() + char_after(text, whole.start()).map_or(1, char::len_utf8),
        }
        while !text.is_char_boundary(at.min(text.len())) {
            at += 1;
        }
    }
}

// ---------------------------------------------------------------------------
// E-mail addresses

/// An e-mail address in a decoded text (see [`decode`]): a local part of
/// letters (any script), digits, emoji and `._+-`, or a quoted one
/// (`"x y"@…`); a domain of labels of letters (any script, so
/// internationalised and look-alike domains too), digits and hyphens, and a
/// top-level domain of letters (or `xn--` punycode). `<W>` is the class of
/// word characters, `<X>` what else a local part may hold. Label and part
/// lengths are checked by [`emails`], not by counted repetitions, which
/// would blow up with Unicode classes.
const EMAIL_PATTERN: &str = r#"(?ix)
    (?:
        "(?P<quoted>[^"\\\r\n]+)"
      | (?P<local>[<W>_+<X>][<W>._+\-<X>]*)
    )
    @
    (?P<domain>(?:[<W>](?:[<W>\-]*[<W>])?\.)+(?:xn--[a-z0-9\-]+|[<L>]{2,}))"#;

/// [`EMAIL_PATTERN`] for ASCII text, which most text is: a smaller and
/// faster automaton for the same matches.
static EMAIL_ASCII: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = EMAIL_PATTERN
        .replace("<W>", "a-z0-9")
        .replace("<X>", "")
        .replace("<L>", "a-z");
    Regex::new(&pattern).expect("valid regex")
});

/// [`EMAIL_PATTERN`] for any text: letters, marks and digits of every
/// script, emoji in the local part.
static EMAIL_UNICODE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = EMAIL_PATTERN
        .replace("<W>", r"\p{L}\p{M}\p{N}")
        .replace(
            "<X>",
            r"\p{Extended_Pictographic}\p{Emoji_Modifier}\p{Regional_Indicator}",
        )
        .replace("<L>", r"\p{L}\p{M}");
    Regex::new(&pattern).expect("valid regex")
});

/// Whether `c` is of a script written without spaces between words (Han,
/// kana, Thai, Lao, Khmer, Myanmar): such text runs straight into an
/// address (`メールはtaro@example.jpまで`), so where it meets the address's
/// Latin letters is where the address starts or ends.
fn spaceless(c: char) -> bool {
    matches!(
        c,
        '\u{0E00}'..='\u{0EFF}'
            | '\u{1000}'..='\u{109F}'
            | '\u{1780}'..='\u{17FF}'
            | '\u{2E80}'..='\u{2FDF}'
            | '\u{3005}'..='\u{3007}'
            | '\u{3021}'..='\u{3029}'
            | '\u{3040}'..='\u{30FF}'
            | '\u{31F0}'..='\u{31FF}'
            | '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{3FFFF}'
    )
}

/// Where a local part starts in `local`, as matched: after the last
/// spaceless character that other letters follow (`メールはtaro` → `taro`).
fn after_spaceless(local: &str) -> usize {
    let mut start = 0;
    let mut before = None;
    for (at, c) in local.char_indices() {
        if before.is_some_and(spaceless) && !spaceless(c) {
            start = at;
        }
        before = Some(c);
    }
    start
}

/// How much of `domain`, as matched, is the domain: its last label cut
/// where spaceless characters follow other letters (`example.jpまで` →
/// `example.jp`).
fn before_spaceless(domain: &str) -> usize {
    let last = domain.rfind('.').map_or(0, |dot| dot + 1);
    let mut before = None;
    for (at, c) in domain[last..].char_indices() {
        if spaceless(c) && before.is_some_and(|b: char| !spaceless(b)) {
            return last + at;
        }
        before = Some(c);
    }
    domain.len()
}

/// `domain` with its punycode labels (`xn--…`) in Unicode, so
/// `x@xn--ralmail-bya.test` is the address `x@réalmail.test`; as it is when
/// it has none or they do not decode.
fn unicode_domain(domain: &str) -> std::borrow::Cow<'_, str> {
    let punycode = domain.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    });
    if !punycode {
        return domain.into();
    }
    match idna::domain_to_unicode(domain) {
        (unicode, Ok(())) => unicode.into(),
        (_, Err(_)) => domain.into(),
    }
}

/// Longest local part and domain label, in characters (RFC 5321).
const LOCAL_MAX: usize = 64;
const LABEL_MAX: usize = 63;

/// Endings of file names that look like domains: `logo@2x.png`.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css", "js",
    "mjs", "map", "json", "html", "htm", "pdf", "txt", "xml", "woff", "woff2", "ttf", "mp4",
    "webm",
];

fn emails(text: &str, out: &mut Vec<Found>) {
    let re = if text.is_ascii() {
        &*EMAIL_ASCII
    } else {
        &*EMAIL_UNICODE
    };
    scan(text, re, out, |caps| {
        let domain = caps.name("domain")?;
        if char_after(text, domain.end()).is_some_and(is_word) {
            return None;
        }
        let (start, local_len) = match caps.name("quoted") {
            Some(quoted) => (quoted.start() - 1, quoted.as_str().chars().count()),
            None => {
                let local = caps.name("local")?;
                let from = after_spaceless(local.as_str());
                (local.start() + from, local.as_str()[from..].chars().count())
            }
        };
        let domain = &domain.as_str()[..before_spaceless(domain.as_str())];
        let range = start..caps.name("domain")?.start() + domain.len();
        let tld = domain.rsplit('.').next()?.to_lowercase();
        if tld.chars().count() < 2
            || FILE_EXTENSIONS.contains(&tld.as_str())
            || local_len > LOCAL_MAX
            || domain
                .split('.')
                .any(|label| label.chars().count() > LABEL_MAX)
        {
            return None;
        }
        let local = &text[range.start..range.end - domain.len() - 1];
        Some(Found {
            kind: PiiKind::Email,
            value: format!("{local}@{}", unicode_domain(domain)),
            range,
            url_encoded: false,
            percent_depth: 0,
        })
    });
}

// ---------------------------------------------------------------------------
// Phone numbers

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
          (?P<intl>\+[1-9][0-9]{0,2}(?:[\ .-]?\(0\))?(?:[\ .-]?(?:\([0-9]{1,4}\)|[0-9])){6,14})
        | (?P<uk>\(?0[0-9]{2}\)?[\ -]?[0-9]{4}[\ -]?[0-9]{4}
               | \(?0[0-9]{3}\)?[\ -]?[0-9]{3}[\ -]?[0-9]{4}
               | \(?0[0-9]{4}\)?[\ -]?[0-9]{3}[\ -]?[0-9]{3}
               | \(?0[0-9]{4}\)?[\ -]?[0-9]{6})
        | (?P<us>(?:1[\ .-])?(?:\([2-9][0-9]{2}\)\ ?|[2-9][0-9]{2}(?P<sep1>[\ .-]))
                 [2-9][0-9]{2}(?P<sep2>[\ .-])[0-9]{4})",
    )
    .expect("valid regex")
});

fn phones(text: &str, out: &mut Vec<Found>) {
    scan(text, &PHONE, out, |caps| {
        let whole = caps.get(0)?;
        let mut range = whole.range();
        if caps.name("intl").is_some() {
            range.end = range.start + intl_phone_len(whole.as_str())?;
        } else if caps.name("uk").is_some() {
            if !uk_phone_ok(whole.as_str()) {
                return None;
            }
        } else {
            let sep1 = caps.name("sep1").map(|m| m.as_str());
            let sep2 = caps.name("sep2").map(|m| m.as_str());
            if sep1.is_some() && sep1 != sep2 {
                return None;
            }
        }
        // `+` is part of an international number; before the others it
        // means something else.
        let starts = if whole.as_str().starts_with('+') {
            !char_before(text, range.start).is_some_and(|c| is_word(c) || c == '+')
        } else {
            number_starts(text, range.start, PHONE_JOINERS)
        };
        (starts && number_ends(text, range.end, PHONE_JOINERS)).then(|| Found {
            kind: PiiKind::Phone,
            value: text[range.clone()].to_owned(),
            range,
            url_encoded: false,
            percent_depth: 0,
        })
    });
}

/// The length of an international number at the start of `s` (which the
/// pattern matched): a trailing group of one digit after a separator is
/// dropped (`+44 7700 900123 2 times`), and 9 to 15 digits must remain (the
/// `(0)` of `+44 (0)20` not counted).
fn intl_phone_len(s: &str) -> Option<usize> {
    let mut s = s;
    if let Some(i) = s.rfind([' ', '.', '-']) {
        let last = &s[i + 1..];
        if last.len() == 1 && last.bytes().all(|b| b.is_ascii_digit()) {
            s = &s[..i];
        }
    }
    let digits = s
        .replace("(0)", "")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    (9..=15).contains(&digits).then_some(s.len())
}

/// A UK number: parentheses balanced, a dialling prefix in use (`01`,
/// `02`, `03`, `05`, `07`, `08`, `09`).
fn uk_phone_ok(s: &str) -> bool {
    if s.contains('(') != s.contains(')') {
        return false;
    }
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    digits.len() == 11 && b"1235789".contains(&digits[1])
}

// ---------------------------------------------------------------------------
// IP addresses

static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}").expect("valid regex"));

static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?",
    )
    .expect("valid regex")
});

fn ipv4s(text: &str, out: &mut Vec<Found>) {
    scan(text, &IPV4, out, |caps| {
        let m = caps.get(0)?;
        let starts = !char_before(text, m.start()).is_some_and(|c| is_word(c) || c == '.');
        // Not inside a word, nor followed by a fifth number (`1.2.3.4.5`).
        let ends = match char_after(text, m.end()) {
            Some('.') => !char_after(text, m.end() + 1).is_some_and(|c| c.is_ascii_digit()),
            Some(c) => !is_word(c),
            None => true,
        };
        (starts && ends && m.as_str().parse::<Ipv4Addr>().is_ok()).then(|| Found {
            kind: PiiKind::Ip,
            range: m.range(),
            value: m.as_str().to_owned(),
            url_encoded: false,
            percent_depth: 0,
        })
    });
}

fn ipv6s(text: &str, out: &mut Vec<Found>) {
    scan(text, &IPV6, out, |caps| {
        let m = caps.get(0)?;
        if char_before(text, m.start()).is_some_and(|c| is_word(c) || c == ':' || c == '.') {
            return None;
        }
        // A trailing `:` (`2001:db8::1: refused`) belongs to the text.
        let mut candidate = m.as_str();
        loop {
            let end = m.start() + candidate.len();
            if ipv6_plausible(candidate) && !char_after(text, end).is_some_and(is_word) {
                return Some(Found {
                    kind: PiiKind::Ip,
                    range: m.start()..end,
                    value: candidate.to_owned(),
                    url_encoded: false,
                    percent_depth: 0,
                });
            }
            candidate = candidate.strip_suffix(':')?;
        }
    })
}

/// Parses, has at least two non-empty groups and a decimal digit: not `::`,
/// `::1` or `dead::beef`.
fn ipv6_plausible(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
        && s.split(':').filter(|g| !g.is_empty()).count() >= 2
        && s.bytes().any(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Card numbers

static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{2,6}){2,4}").expect("valid regex")
});

fn cards(text: &str, out: &mut Vec<Found>) {
    scan(text, &CARD, out, |caps| {
        let m = caps.get(0)?;
        if !number_starts(text, m.start(), JOINERS) {
            return None;
        }
        let len = card_len(m.as_str())?;
        let range = m.start()..m.start() + len;
        number_ends(text, range.end, JOINERS).then(|| Found {
            kind: PiiKind::Card,
            value: text[range.clone()].to_owned(),
            range,
            url_encoded: false,
            percent_depth: 0,
        })
    });
}

/// The length of the card number at the start of `s`: all of a run of
/// digits, or the longest run of whole groups with one separator that has a
/// card layout (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4, …), a valid checksum and
/// a plausible issuer prefix. Trailing groups are dropped one by one, so a
/// year or an amount after the number does not hide it.
fn card_len(s: &str) -> Option<usize> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return card_number_ok(s).then_some(s.len());
    }
    let sep = s.bytes().find(|b| !b.is_ascii_digit())?;
    let groups: Vec<&str> = s.split(char::from(sep)).collect();
    if groups
        .iter()
        .any(|g| !g.bytes().all(|b| b.is_ascii_digit()))
    {
        // Mixed separators.
        return None;
    }
    (3..=groups.len()).rev().find_map(|n| {
        let groups = &groups[..n];
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let layout_ok = matches!(sizes.as_slice(), [4, 6, 4] | [4, 6, 5])
            || (sizes.len() >= 4
                && sizes[..sizes.len() - 1].iter().all(|&n| n == 4)
                && (1..=4).contains(&sizes[sizes.len() - 1]));
        // The groups and the separators between them.
        let len = sizes.iter().sum::<usize>() + n - 1;
        (layout_ok && card_number_ok(&groups.concat())).then_some(len)
    })
}

/// Luhn-valid, 13 to 19 digits, and an issuer prefix that issues numbers of
/// that length (Visa, Mastercard, American Express, Discover, JCB, Diners
/// Club, UnionPay, Maestro).
fn card_number_ok(digits: &str) -> bool {
    let len = digits.len();
    if !(13..=19).contains(&len) || !luhn_valid(digits) {
        return false;
    }
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    match digits.as_bytes()[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'2' => (2221..=2720).contains(&prefix(4)) && len == 16,
        b'5' => match prefix(2) {
            51..=55 => len == 16,
            50 | 56..=59 => len >= 13,
            _ => false,
        },
        b'3' => match prefix(2) {
            34 | 37 => len == 15,
            36 | 38 | 39 => len >= 14,
            35 => (3528..=3589).contains(&prefix(4)) && len >= 16,
            30 => prefix(3) <= 305 && len >= 14,
            _ => false,
        },
        b'6' => len >= 13,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// IBANs

static IBAN_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Z]{2}[0-9]{2}").expect("valid regex"));

fn ibans(text: &str, out: &mut Vec<Found>) {
    scan(text, &IBAN_START, out, |caps| {
        let m = caps.get(0)?;
        if char_before(text, m.start()).is_some_and(is_word) {
            return None;
        }
        let end = m.start() + iban_extent(&text[m.start()..])?;
        let value = &text[m.start()..end];
        (!char_after(text, end).is_some_and(is_word) && iban_valid(value)).then(|| Found {
            kind: PiiKind::Iban,
            range: m.start()..end,
            value: value.to_owned(),
            url_encoded: false,
            percent_depth: 0,
        })
    })
}

/// How many bytes of `s` (which starts with a country code and check
/// digits) make up the IBAN: the country's length in characters, written
/// either without spaces or with one space after every group of four.
fn iban_extent(s: &str) -> Option<usize> {
    let want = iban_length(&s[..2])?;
    let bytes = s.as_bytes();
    let spaced = bytes.get(4) == Some(&b' ');
    let (mut at, mut have) = (4, 4);
    while have < want {
        if spaced && have % 4 == 0 {
            if bytes.get(at) != Some(&b' ') {
                return None;
            }
            at += 1;
        }
        let b = *bytes.get(at)?;
        if !(b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return None;
        }
        at += 1;
        have += 1;
    }
    Some(at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every item of every kind in `text`, as `(kind, text as written)`.
    fn all(text: &str) -> Vec<(PiiKind, &str)> {
        find(text, &PiiKind::ALL)
            .into_iter()
            .map(|f| (f.kind, &text[f.range]))
            .collect()
    }

    fn of_kind(text: &str, kind: PiiKind) -> Vec<&str> {
        find(text, &[kind])
            .into_iter()
            .map(|f| &text[f.range])
            .collect()
    }

    #[test]
    fn kinds_parse_and_name() {
        assert_eq!(PII_KINDS.len(), PiiKind::ALL.len());
        for (name, kind) in PII_KINDS.iter().zip(PiiKind::ALL) {
            assert_eq!(PiiKind::parse(name), Some(kind));
            assert_eq!(kind.name(), *name);
            assert_eq!(kind.to_string(), *name);
        }
        assert_eq!(PiiKind::parse("Email"), None);
        assert_eq!(PiiKind::parse("mail"), None);
    }

    #[test]
    fn emails_in_prose_html_and_json() {
        let text = "Contact alice@example.com or Bob.Smith+news@mail.example.org. Thanks!";
        assert_eq!(
            all(text),
            [
                (PiiKind::Email, "alice@example.com"),
                (PiiKind::Email, "Bob.Smith+news@mail.example.org")
            ]
        );
        let html = r#"<p>Write to <a href="mailto:carol@example.net">carol@example.net</a>.</p>"#;
        assert_eq!(
            of_kind(html, PiiKind::Email),
            ["carol@example.net", "carol@example.net"]
        );
        let json = r#"{"email":"dave_o-neil@example.com","note":"hi","tags":["a@b"]}"#;
        assert_eq!(all(json), [(PiiKind::Email, "dave_o-neil@example.com")]);
        let found = find(json, &[PiiKind::Email]);
        assert_eq!(found[0].value, "dave_o-neil@example.com");
        assert!(!found[0].url_encoded);
    }

    #[test]
    fn url_encoded_emails_are_decoded() {
        let url = "https://example.com/unsubscribe?email=alice%40example.com&list=7";
        let found = find(url, &[PiiKind::Email]);
        assert_eq!(found.len(), 1);
        assert_eq!(&url[found[0].range.clone()], "alice%40example.com");
        assert_eq!(found[0].value, "alice@example.com");
        assert!(found[0].url_encoded);

        let found = find("mailto:bob%40example.org?subject=Hi", &[PiiKind::Email]);
        assert_eq!(found[0].value, "bob@example.org");
        // Upper-case addresses, a leading escape that is not part of the
        // address, and an encoded `+` in the local part.
        let text = "q=%20ALICE%40EXAMPLE.COM%26x=1 and to=alice%2Bnews%40example.net";
        let found = find(text, &[PiiKind::Email]);
        let values: Vec<&str> = found.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["ALICE@EXAMPLE.COM", "alice+news@example.net"]);
        assert_eq!(&text[found[0].range.clone()], "ALICE%40EXAMPLE.COM");
        assert_eq!(&text[found[1].range.clone()], "alice%2Bnews%40example.net");
        assert!(found.iter().all(|f| f.url_encoded));
    }

    /// Every spelling of an address `find` and `redact` must see
    /// through, with the address it spells as `find` reports it (what
    /// `fake: email` is given, which ignores its case) and how many times
    /// it, and so its replacement, is percent-encoded.
    pub(crate) const SPELLED_EMAILS: &[(&str, &str, u8)] = &[
        ("x@realmail-prod.test", "x@realmail-prod.test", 0),
        ("x&#64;Realmail-prod.test", "x@Realmail-prod.test", 0),
        ("x&#x40;realmail-prod.test", "x@realmail-prod.test", 0),
        ("x&commat;realmail-prod.test", "x@realmail-prod.test", 0),
        ("x&amp;#64;realmail-prod.test", "x@realmail-prod.test", 0),
        (r"x\u0040realmail-prod.test", "x@realmail-prod.test", 0),
        ("x%40realmail-prod.test", "x@realmail-prod.test", 1),
        ("x%2540realmail-prod.test", "x@realmail-prod.test", 2),
        ("x\u{200D}@realmail-prod.test", "x@realmail-prod.test", 0),
        ("x\u{200B}@realmail-prod.test", "x@realmail-prod.test", 0),
        ("x\u{200C}@realmail-prod.test", "x@realmail-prod.test", 0),
        ("x\u{200F}@realmail-prod.test", "x@realmail-prod.test", 0),
        ("x&zwj;&shy;@realmail-prod.test", "x@realmail-prod.test", 0),
        (
            "jos&eacute;@realmail-prod.test",
            "josé@realmail-prod.test",
            0,
        ),
        ("x＠realmail-prod.test", "x@realmail-prod.test", 0),
        ("x﹫realmail-prod.test", "x@realmail-prod.test", 0),
        (
            "ｘ＠ｒｅａｌｍａｉｌ－ｐｒｏｄ．ｔｅｓｔ",
            "x@realmail-prod.test",
            0,
        ),
        ("x@réalmail.test", "x@réalmail.test", 0),
        ("x@re\u{301}almail.test", "x@réalmail.test", 0),
        ("x%40r%C3%A9almail.test", "x@réalmail.test", 1),
        ("x@r%E9almail.test", "x@réalmail.test", 1),
        ("x@xn--ralmail-bya.test", "x@réalmail.test", 0),
        (r"x\x40realmail-prod.test", "x@realmail-prod.test", 0),
        ("x@r\u{435}almail.test", "x@r\u{435}almail.test", 0),
        (
            "\"x y\"@realmail-prod.test",
            "\"x y\"@realmail-prod.test",
            0,
        ),
        (
            "&quot;x y&quot;@realmail-prod.test",
            "\"x y\"@realmail-prod.test",
            0,
        ),
        (
            r#"\"x y\"@realmail-prod.test"#,
            "\"x y\"@realmail-prod.test",
            0,
        ),
        ("x😀@realmail-prod.test", "x😀@realmail-prod.test", 0),
        (
            "x\u{1F600}\u{200D}@realmail-prod.test",
            "x😀@realmail-prod.test",
            0,
        ),
        ("x&#64;realmail-prod.test", "x@realmail-prod.test", 0),
        ("X@Réalmail.test", "X@Réalmail.test", 0),
        ("x@пример.рф", "x@пример.рф", 0),
        ("x@example.xn--p1ai", "x@example.рф", 0),
        ("x@XN--RALMAIL-BYA.test", "x@réalmail.test", 0),
        ("josé.núñez@example.es", "josé.núñez@example.es", 0),
    ];

    #[test]
    fn emails_in_every_spelling() {
        for &(spelling, value, depth) in SPELLED_EMAILS {
            for text in [
                spelling.to_owned(),
                format!("Mail {spelling}, or call."),
                format!("<a href=\"mailto:{spelling}\">me</a>"),
            ] {
                let found = find(&text, &PiiKind::ALL);
                assert_eq!(found.len(), 1, "{text}: {found:?}");
                assert_eq!(found[0].kind, PiiKind::Email);
                assert_eq!(found[0].value, value, "{text}");
                assert_eq!(&text[found[0].range.clone()], spelling, "{text}");
                assert_eq!(found[0].percent_depth, depth, "{text}");
                assert_eq!(found[0].url_encoded, depth > 0, "{text}");
            }
            assert_eq!(classify(spelling), Some(PiiKind::Email), "{spelling}");
        }
        // Invisible characters around a whole value do not hide it.
        assert_eq!(
            classify("\u{200B}x@realmail-prod.test\u{FEFF}"),
            Some(PiiKind::Email)
        );
        // What `scan` samples: a column of such values is a column of
        // e-mail addresses.
        let mut sample = crate::anonymize::detect::Sample::default();
        for value in [
            "x&#64;realmail-prod.test",
            r#"{"to":"x\\u0040realmail-prod.test"}"#,
            "y＠realmail-prod.test",
        ] {
            crate::anonymize::detect::sample_value(&mut sample, value);
        }
        assert_eq!(sample.matches.get(&PiiKind::Email), Some(&3));
    }

    #[test]
    fn emails_in_text_written_without_spaces_end_where_the_script_changes() {
        for (text, address) in [
            ("请联系alice@example.com谢谢", "alice@example.com"),
            ("メールはtaro@example.jpまで", "taro@example.jp"),
            ("mail:x@y.test。谢谢", "x@y.test"),
            ("太郎@例え.テスト", "太郎@例え.テスト"),
            ("x@例え.jp", "x@例え.jp"),
            ("taro太郎@example.jp", "taro太郎@example.jp"),
            ("Ünïcödé@exämple.de!", "Ünïcödé@exämple.de"),
        ] {
            assert_eq!(of_kind(text, PiiKind::Email), [address], "{text}");
        }
    }

    #[test]
    fn other_kinds_are_found_decoded_too() {
        assert_eq!(
            all("call &#43;44 7700 900123 or %2B44%207700%20900124"),
            [
                (PiiKind::Phone, "&#43;44 7700 900123"),
                (PiiKind::Phone, "%2B44%207700%20900124")
            ]
        );
        assert_eq!(
            all("card ４１１１ １１１１ １１１１ １１１１ from 203.0.113.7"),
            [
                (PiiKind::Card, "４１１１ １１１１ １１１１ １１１１"),
                (PiiKind::Ip, "203.0.113.7")
            ]
        );
    }

    #[test]
    fn email_lookalikes_are_not_emails() {
        for text in [
            r#"<img src="/static/logo@2x.png" srcset="icon@3x.webp 3x">"#,
            "npm install lodash@4.17.21 @types/node@20.1.0",
            "@media screen and (max-width: 600px) { a { color: red } }",
            "ssh deploy@localhost",
            "thanks @alice, see you",
            "alice at example dot com",
            "price: 3 @ £4.99",
            "@property def name(self): return self._name",
            "class A { @Override public String toString() }",
            "import x from '@scope/pkg'; npm i %40scope%2Fpkg",
            "&#64;media print { } and \\u0040media screen",
            "ping ＠alice and &commat;bob, thanks!",
            "Grüße aus München — café, naïve, 東京, Ελλάδα",
            "https://example.com/search?q=caf%C3%A9&amp;page=2",
            "50% off & more; 100%",
            r#"{"a":"b","c":"d"}@"#,
        ] {
            assert_eq!(all(text), [], "{text}");
        }
    }

    #[test]
    fn phones_in_common_formats() {
        for phone in [
            "+44 7700 900123",
            "(201) 555-0143",
            "020 7946 0958",
            "+1-202-555-0191",
            "07700900123",
            "07700 900123",
            "+44 (0)20 7946 0958",
            "+442079460958",
            "+1 (202) 555-0191",
            "201-555-0143",
            "201.555.0143",
            "201 555 0143",
            "1-800-555-0199",
            "0113 496 0000",
            "(01632) 960123",
            "+33 1 23 45 67 89",
        ] {
            let text = format!("Call me on {phone}, thanks.");
            assert_eq!(all(&text), [(PiiKind::Phone, phone)], "{text}");
            assert_eq!(classify(phone), Some(PiiKind::Phone), "{phone}");
        }
        assert_eq!(
            of_kind("tel:+12025550191", PiiKind::Phone),
            ["+12025550191"]
        );
        assert_eq!(
            of_kind(
                r#"{"mobile":"07700 900456","home":"(201) 555-0199"}"#,
                PiiKind::Phone
            ),
            ["07700 900456", "(201) 555-0199"]
        );
        // Lists.
        assert_eq!(
            of_kind("07700 900123/07700 900124,020 7946 0958", PiiKind::Phone),
            ["07700 900123", "07700 900124", "020 7946 0958"]
        );
        // A lone digit after the number is not part of it.
        assert_eq!(
            of_kind("ring +44 7700 900123 2 times", PiiKind::Phone),
            ["+44 7700 900123"]
        );
    }

    #[test]
    fn phone_lookalikes_are_not_phones() {
        for text in [
            "2024-01-15",
            "on 15/01/2024 at 12:30:45",
            "15.01.2024",
            "01-02-2024 12:00",
            "2024-01-15T10:00:00+01:00",
            "in 1999 and 2024",
            "Total: $1,234,567.89",
            "£1 299,00 and € 12 345 678",
            "Order #1234567890 shipped",
            "order 10023344",
            "ORD-201-555-0143-22",
            "ticket 2015550143",
            "epoch 1700000000 or 1700000000123 ms",
            "version 10.0.19041.1 and v2.3.14",
            "ISBN 978-3-16-148410-0",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "555-0143",
            "call 12345678",
            "ratio +1.5% over 30 days",
            "ref 00123456789",
            "0123456789",
            "pages 100-200-3000",
            "12345678901234567890",
        ] {
            assert_eq!(of_kind(text, PiiKind::Phone), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn ip_addresses() {
        let log = "2024-01-15 12:30:45.123 UTC [12345] LOG: connection received: \
                   host=203.0.113.7 port=5432 user=alice@example.com took 0.123 ms";
        assert_eq!(
            all(log),
            [
                (PiiKind::Ip, "203.0.113.7"),
                (PiiKind::Email, "alice@example.com")
            ]
        );
        for (text, ip) in [
            ("from 192.0.2.1.", "192.0.2.1"),
            ("proxy 198.51.100.23:8080", "198.51.100.23"),
            ("net 203.0.113.0/24", "203.0.113.0"),
            ("client 2001:db8::1 refused", "2001:db8::1"),
            ("client 2001:db8::1: refused", "2001:db8::1"),
            (
                "[2001:db8:85a3::8a2e:370:7334]:443",
                "2001:db8:85a3::8a2e:370:7334",
            ),
            ("mapped ::ffff:192.0.2.128 ok", "::ffff:192.0.2.128"),
            (
                "full 2001:0db8:0000:0000:0000:ff00:0042:8329",
                "2001:0db8:0000:0000:0000:ff00:0042:8329",
            ),
            (
                r#"{"ip":"fe80::1ff:fe23:4567:890a"}"#,
                "fe80::1ff:fe23:4567:890a",
            ),
        ] {
            assert_eq!(all(text), [(PiiKind::Ip, ip)], "{text}");
        }
        for text in [
            "256.1.1.1",
            "1.2.3.4.5",
            "v1.2.3.4",
            "01.02.2024",
            "10.0.0",
            "at 12:30:45 and 23:59:59.999",
            "std::vector<int> and Foo::bar()",
            "mac 00:1A:2B:3C:4D:5E",
            "a :: b",
            "loopback ::1",
            "192.168.001.001",
        ] {
            assert_eq!(of_kind(text, PiiKind::Ip), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn card_numbers_need_luhn_and_an_issuer() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5555 5555 5555 4444",
            "2223 0000 4841 0010",
            "3782 822463 10005",
            "6011 1111 1111 1117",
            "4012888888881881",
            "4222222222222",
        ] {
            let text = format!("paid with {card} yesterday");
            assert_eq!(all(&text), [(PiiKind::Card, card)], "{text}");
            assert_eq!(classify(card), Some(PiiKind::Card));
        }
        // A year after the number is not part of it.
        assert_eq!(
            of_kind("card 4111 1111 1111 1111 2030", PiiKind::Card),
            ["4111 1111 1111 1111"]
        );
        // Luhn-valid numbers that no issuer hands out: ids and timestamps.
        let mut id = b"170000000012".to_vec();
        id.push(luhn_check_digit(&id));
        let id = String::from_utf8(id).unwrap();
        assert!(luhn_valid(&id));
        let mut snowflake = b"123456789012345678".to_vec();
        snowflake.push(luhn_check_digit(&snowflake));
        let snowflake = String::from_utf8(snowflake).unwrap();
        for text in [
            "4111 1111 1111 1112".to_owned(),
            "4111-1111 1111-1111".to_owned(),
            "x4111111111111111".to_owned(),
            "41111111111111110".to_owned(),
            "4111 11 1111 1111 11".to_owned(),
            format!("created_ms={id}"),
            format!("tweet {snowflake}"),
            "79927398713".to_owned(),
        ] {
            assert_eq!(of_kind(&text, PiiKind::Card), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn ibans_need_their_length_and_checksum() {
        for iban in [
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "DE89 3704 0044 0532 0130 00",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68 5390 0754 7034",
        ] {
            let text = format!("IBAN: {iban}.");
            assert_eq!(all(&text), [(PiiKind::Iban, iban)], "{text}");
            assert_eq!(classify(iban), Some(PiiKind::Iban));
            assert!(iban_valid(iban));
        }
        for text in [
            "GB82 WEST 1234 5698 7654 33",
            "GB82 WEST 1234 5698 7654",
            "GB82WEST123456987654321",
            "XX82WEST12345698765432",
            "gb82west12345698765432",
            "AB12 and CD34",
            "XGB82WEST12345698765432",
        ] {
            assert_eq!(of_kind(text, PiiKind::Iban), Vec::<&str>::new(), "{text}");
        }
        // The digits inside an IBAN are not a phone number or a card.
        assert_eq!(
            find(
                "DE89 3704 0044 0532 0130 00",
                &[PiiKind::Phone, PiiKind::Card]
            ),
            []
        );
    }

    #[test]
    fn iban_valid_and_luhn_valid() {
        assert!(iban_valid("gb82 west 1234 5698 7654 32"));
        assert!(!iban_valid("GB82  WEST12345698765432"));
        assert!(!iban_valid(" GB82WEST12345698765432"));
        assert!(!iban_valid("GB82-WEST-1234-5698-7654-32"));
        assert!(!iban_valid(""));
        assert!(!iban_valid("GB"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("0"));
        assert!(!luhn_valid(""));
        assert_eq!(luhn_check_digit(b"7992739871"), b'3');
    }

    #[test]
    fn overlaps_go_to_the_more_specific_kind_whatever_was_asked() {
        // A card number is never cut into a phone number.
        assert_eq!(find("4111 1111 1111 1111", &[PiiKind::Phone]), []);
        // An address made of digits stays an address.
        let text = "07700900123@example.com";
        assert_eq!(all(text), [(PiiKind::Email, text)]);
        assert_eq!(find(text, &[PiiKind::Phone]), []);
        assert_eq!(find("alice@example.com", &[]), []);
    }

    #[test]
    fn realistic_rich_text() {
        let html = r#"<p>Hi team, <b>Alice</b> (alice@example.com, +44 7700 900123) asked on
            2024-03-01 about order #100234 (£1,299.00, 3 items, v2.4.1). Her card
            4111 1111 1111 1111 was declined; refund to GB82 WEST 1234 5698 7654 32.
            Logged from 198.51.100.42 at 12:30:45. See
            <a href="https://example.com/u?e=alice%40example.com&amp;id=123456789012">profile</a>.</p>"#;
        assert_eq!(
            all(html),
            [
                (PiiKind::Email, "alice@example.com"),
                (PiiKind::Phone, "+44 7700 900123"),
                (PiiKind::Card, "4111 1111 1111 1111"),
                (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
                (PiiKind::Ip, "198.51.100.42"),
                (PiiKind::Email, "alice%40example.com"),
            ]
        );
        let json = r#"{"customer":{"phone":"(201) 555-0143","zip":"10001","dob":"1980-04-01"},"total":"129.99","ts":1700000000,"ua":"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.109"}"#;
        assert_eq!(all(json), [(PiiKind::Phone, "(201) 555-0143")]);
    }

    #[test]
    fn classify_wants_the_whole_value() {
        assert_eq!(classify("alice@example.com"), Some(PiiKind::Email));
        assert_eq!(classify("alice%40example.com"), Some(PiiKind::Email));
        assert_eq!(classify("  +44 7700 900123\n"), Some(PiiKind::Phone));
        assert_eq!(classify("192.0.2.1"), Some(PiiKind::Ip));
        assert_eq!(classify("2001:db8::42"), Some(PiiKind::Ip));
        assert_eq!(classify("mailto:alice@example.com"), None);
        assert_eq!(classify("alice@example.com bob@example.com"), None);
        assert_eq!(classify("hello"), None);
        assert_eq!(classify(""), None);
        assert_eq!(classify("   "), None);
        assert_eq!(classify("2024-01-15"), None);
        assert_eq!(classify("1700000000"), None);
    }

    /// A valid IBAN of country `cc` with this BBAN.
    fn make_iban(cc: &str, bban: &str) -> String {
        let mut s = format!("{cc}00{bban}");
        let check = 98 - iban_mod97(s.as_bytes());
        s.replace_range(2..4, &format!("{check:02}"));
        s
    }

    proptest! {
        #[test]
        fn found_items_are_ordered_disjoint_and_on_boundaries(text in "\\PC{0,200}") {
            let found = find(&text, &PiiKind::ALL);
            for pair in found.windows(2) {
                prop_assert!(pair[0].range.end <= pair[1].range.start);
            }
            for f in &found {
                prop_assert!(text.is_char_boundary(f.range.start));
                prop_assert!(text.is_char_boundary(f.range.end));
                // The value is decoded and NFKC-normalized (`𝒢` is `G`), so
                // only text spelled plainly must come back as it is.
                let spelled = &text[f.range.clone()];
                if spelled.is_ascii() && !spelled.contains(['%', '&', '\\']) {
                    prop_assert_eq!(spelled, f.value.as_str());
                }
            }
        }

        #[test]
        fn spelled_soup_maps_back_ordered_and_on_boundaries(
            text in "[a-z0-9 .@%&#;\\\\ux＠﹫\u{200D}\u{200F}é\u{301}ｘ\"-]{0,120}",
        ) {
            let found = find(&text, &PiiKind::ALL);
            for pair in found.windows(2) {
                prop_assert!(pair[0].range.end <= pair[1].range.start);
            }
            for f in &found {
                prop_assert!(!f.range.is_empty());
                prop_assert!(text.is_char_boundary(f.range.start));
                prop_assert!(text.is_char_boundary(f.range.end));
                prop_assert_eq!(f.url_encoded, f.percent_depth > 0);
            }
        }

        #[test]
        fn digit_soup_never_panics_and_stays_ordered(text in "[0-9 .:+()/@%a-fA-F-]{0,120}") {
            let found = find(&text, &PiiKind::ALL);
            for pair in found.windows(2) {
                prop_assert!(pair[0].range.end <= pair[1].range.start);
            }
        }

        #[test]
        fn luhn_catches_every_single_digit_error(
            body in "4[0-9]{14}",
            at in 0usize..16,
            delta in 1u8..10,
        ) {
            let mut digits = body.into_bytes();
            digits.push(luhn_check_digit(&digits));
            let valid = String::from_utf8(digits.clone()).unwrap();
            prop_assert!(luhn_valid(&valid));
            prop_assert_eq!(classify(&valid), Some(PiiKind::Card));
            digits[at] = b'0' + (digits[at] - b'0' + delta) % 10;
            prop_assert!(!luhn_valid(&String::from_utf8(digits).unwrap()));
        }

        #[test]
        fn iban_checksum_catches_every_single_substitution(
            bban in "[A-Z]{4}[0-9]{14}",
            at in 4usize..22,
            letter in b'A'..=b'Z',
            digit in b'0'..=b'9',
        ) {
            let iban = make_iban("GB", &bban);
            prop_assert!(iban_valid(&iban));
            prop_assert_eq!(classify(&iban), Some(PiiKind::Iban));
            // A letter for a letter, a digit for a digit: mod 97 catches
            // every such substitution (a letter for a digit it may not).
            let mut changed = iban.clone().into_bytes();
            let replacement = if changed[at].is_ascii_digit() { digit } else { letter };
            prop_assume!(changed[at] != replacement);
            changed[at] = replacement;
            prop_assert!(!iban_valid(&String::from_utf8(changed).unwrap()));
        }

        #[test]
        fn items_among_words_are_all_found(
            words in prop::collection::vec("[a-z]{1,8}", 0..6),
            pick in prop::collection::vec(0usize..6, 1..5),
        ) {
            const ITEMS: [(PiiKind, &str); 6] = [
                (PiiKind::Email, "jane.doe@example.org"),
                (PiiKind::Phone, "(201) 555-0143"),
                (PiiKind::Phone, "07700 900123"),
                (PiiKind::Ip, "203.0.113.9"),
                (PiiKind::Card, "5555 5555 5555 4444"),
                (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
            ];
            let mut text = words.join(" ");
            let mut expected = Vec::new();
            for i in pick {
                text.push_str(", ");
                text.push_str(ITEMS[i].1);
                text.push(' ');
                text.push_str(&words.join(" "));
                expected.push(ITEMS[i]);
            }
            prop_assert_eq!(all(&text), expected);
        }
    }
}
