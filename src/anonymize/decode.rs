//! A decoded view of a text, so that personal data is found however it is
//! spelled: `alice&#64;example.com`, `alice\u0040example.com`,
//! `alice%2540example.com`, `alice＠example.com` and `alice\u{200D}@…` all
//! read `alice@example.com` in the view.
//!
//! The view undoes, repeatedly until nothing changes (a few rounds at
//! most), percent-encoding (any depth: `%2540` → `%40` → `@`; bytes that
//! are not UTF-8 read as Latin-1), HTML character references (`&#64;`,
//! `&#x40;`, `&commat;`, `&amp;`, …), JSON/JavaScript string escapes
//! (`\u0040`, surrogate pairs, `\x40`, `\"`, `\\`, …), Unicode
//! compatibility forms (NFKC: fullwidth `＠`, small `﹫`, fullwidth letters
//! and digits), and drops invisible characters (zero-width space, joiner
//! and non-joiner, direction marks, soft hyphen, variation
//! selectors: Unicode's default-ignorable code points). Every byte of the
//! view remembers which bytes of the original it comes from and through how
//! many percent-decodings, so a match in the view can be replaced in the
//! original, re-encoded to the same depth.
//!
//! Building a view costs an allocation per byte; [`View::of`] builds one
//! only for a text that holds something to decode, so plain text is
//! searched as it is.
//!
//! This module only decodes; what counts as personal data is `patterns`'
//! business, what replaces it `redact`'s.

use std::ops::Range;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Rounds of decoding at most: enough for `%25252540` or `&amp;#64;` inside
/// a JSON string inside a URL; a text still changing after that is left as
/// the last round made it.
const MAX_ROUNDS: usize = 8;

/// A text decoded, with a map back to the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    text: String,
    /// For each byte of `text`, the original bytes of the character it
    /// belongs to (start, end).
    from: Vec<(u32, u32)>,
    /// For each byte of `text`, how many percent-decodings made it.
    depth: Vec<u8>,
}

impl View {
    /// The decoded view of `text`, or `None` when there is nothing to
    /// decode (search `text` itself) or the text is too long to map
    /// (4 GiB; PostgreSQL values stop at 1 GiB).
    pub fn of(text: &str) -> Option<View> {
        if !needed(text) || u32::try_from(text.len()).is_err() {
            return None;
        }
        let mut view = View::identity(text);
        let mut changed = false;
        for _ in 0..MAX_ROUNDS {
            let unescaped = view.unescape();
            let normalized = unescaped.as_ref().unwrap_or(&view).normalize();
            match (unescaped, normalized) {
                (_, Some(next)) | (Some(next), None) => view = next,
                (None, None) => break,
            }
            changed = true;
        }
        changed.then_some(view)
    }

    /// The decoded text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The bytes of the original that `range` of the view (on character
    /// boundaries) comes from.
    pub fn original(&self, range: Range<usize>) -> Range<usize> {
        if range.is_empty() {
            let at = self.from.get(range.start).map_or(0, |f| f.0);
            return at as usize..at as usize;
        }
        self.from[range.start].0 as usize..self.from[range.end - 1].1 as usize
    }

    /// How many percent-decodings the most encoded character of `range`
    /// went through: 1 for `%40`, 2 for `%2540`.
    pub fn percent_depth(&self, range: Range<usize>) -> u8 {
        self.depth[range].iter().copied().max().unwrap_or(0)
    }

    /// The view of `text` as it is: every byte maps to its character.
    fn identity(text: &str) -> View {
        let mut from = Vec::with_capacity(text.len());
        for (at, c) in text.char_indices() {
            let span = (at as u32, (at + c.len_utf8()) as u32);
            from.extend(std::iter::repeat_n(span, c.len_utf8()));
        }
        View {
            text: text.to_owned(),
            from,
            depth: vec![0; text.len()],
        }
    }

    /// One layer of escapes undone: percent-escapes, HTML character
    /// references, JSON escapes. `None` when there was none.
    fn unescape(&self) -> Option<View> {
        let bytes = self.text.as_bytes();
        let mut out = Builder::new(self);
        let mut at = 0;
        while at < bytes.len() {
            at = match bytes[at] {
                b'%' => out.percent(at),
                b'&' => match reference(&self.text[at..]) {
                    Some((c, len)) => out.put(c.encode_utf8(&mut [0; 4]), at..at + len, false),
                    None => at + 1,
                },
                b'\\' => match escape(&self.text[at..]) {
                    Some((c, len)) => out.put(c.encode_utf8(&mut [0; 4]), at..at + len, false),
                    None => at + 1,
                },
                _ => at + 1,
            };
        }
        out.finish()
    }

    /// Compatibility forms normalized (NFKC, one combining sequence at a
    /// time) and invisible characters dropped. `None` when the text already
    /// was so.
    fn normalize(&self) -> Option<View> {
        if self.text.is_ascii() {
            return None;
        }
        let text = self.text.as_str();
        let mut out = Builder::new(self);
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if is_invisible(c) {
                out.put("", start..start + c.len_utf8(), false);
                continue;
            }
            // The sequence: `c` and the combining marks after it.
            let mut end = start + c.len_utf8();
            while let Some(&(at, mark)) = chars.peek() {
                if canonical_combining_class(mark) == 0 {
                    break;
                }
                end = at + mark.len_utf8();
                chars.next();
            }
            let sequence = &text[start..end];
            if sequence.is_ascii() || is_nfkc_quick(sequence.chars()) == IsNormalized::Yes {
                continue;
            }
            let normal: String = sequence.nfkc().filter(|c| !is_invisible(*c)).collect();
            if normal != sequence {
                out.put(&normal, start..end, false);
            }
        }
        out.finish()
    }
}

/// A new view built from an old one: kept runs of bytes, and replacements
/// mapped to the original bytes of what they replace.
struct Builder<'a> {
    old: &'a View,
    new: View,
    /// Old bytes before this are in `new` already.
    done: usize,
    changed: bool,
}

impl<'a> Builder<'a> {
    fn new(old: &'a View) -> Builder<'a> {
        Builder {
            old,
            new: View {
                text: String::new(),
                from: Vec::new(),
                depth: Vec::new(),
            },
            done: 0,
            changed: false,
        }
    }

    /// Old bytes `done..to` kept as they are.
    fn keep(&mut self, to: usize) {
        let range = self.done..to;
        self.new.text.push_str(&self.old.text[range.clone()]);
        self.new
            .from
            .extend_from_slice(&self.old.from[range.clone()]);
        self.new.depth.extend_from_slice(&self.old.depth[range]);
        self.done = to;
    }

    /// `text` in place of the old bytes `range`, one percent-decoding deeper
    /// when `percent`; where to go on.
    fn put(&mut self, text: &str, range: Range<usize>, percent: bool) -> usize {
        if self.new.text.capacity() == 0 {
            let len = self.old.text.len();
            self.new.text.reserve(len);
            self.new.from.reserve(len);
            self.new.depth.reserve(len);
        }
        self.keep(range.start);
        let from = self.old.original(range.clone());
        let depth = self.old.percent_depth(range.clone()) + u8::from(percent);
        self.new.text.push_str(text);
        let span = (from.start as u32, from.end as u32);
        self.new.from.extend(std::iter::repeat_n(span, text.len()));
        self.new
            .depth
            .extend(std::iter::repeat_n(depth, text.len()));
        self.done = range.end;
        self.changed = true;
        range.end
    }

    /// The run of percent-escapes at `at` decoded, as UTF-8 where it is,
    /// else as Latin-1. Where to go on.
    fn percent(&mut self, at: usize) -> usize {
        let bytes = self.old.text.as_bytes();
        let mut end = at;
        let mut decoded = Vec::new();
        while let Some(b) = percent_byte(&bytes[end..]) {
            decoded.push(b);
            end += 3;
        }
        if decoded.is_empty() {
            return at + 1;
        }
        let mut from = at;
        for chunk in decoded.utf8_chunks() {
            for c in chunk.valid().chars() {
                let len = 3 * c.len_utf8();
                from = self.put(c.encode_utf8(&mut [0; 4]), from..from + len, true);
            }
            // Bytes that are not UTF-8 are Latin-1, as legacy forms send
            // them (`r%E9al` for `réal`).
            for &b in chunk.invalid() {
                from = self.put(char::from(b).encode_utf8(&mut [0; 4]), from..from + 3, true);
            }
        }
        end
    }

    fn finish(mut self) -> Option<View> {
        if !self.changed {
            return None;
        }
        self.keep(self.old.text.len());
        Some(self.new)
    }
}

/// Whether `text` holds anything a view would decode.
fn needed(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut non_ascii = false;
    for (at, &b) in bytes.iter().enumerate() {
        // The three triggers are ASCII, so `at` is a character boundary.
        let found = match b {
            b'%' => percent_byte(&bytes[at..]).is_some(),
            b'&' => reference(&text[at..]).is_some(),
            b'\\' => escape(&text[at..]).is_some(),
            0x80.. => {
                non_ascii = true;
                false
            }
            _ => false,
        };
        if found {
            return true;
        }
    }
    non_ascii
        && (text.chars().any(is_invisible) || is_nfkc_quick(text.chars()) != IsNormalized::Yes)
}

/// The byte of a `%XX` escape at the start of `bytes`.
fn percent_byte(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', hi, lo, ..] => {
            let hex = |b: u8| char::from(b).to_digit(16);
            Some((hex(*hi)? * 16 + hex(*lo)?) as u8)
        }
        _ => None,
    }
}

/// Named HTML character references that can spell (part of) personal
/// data or the text around it, and the ones every HTML text holds; the
/// accented letters (`&eacute;`) are composed by [`accented`].
const NAMED: &[(&str, char)] = &[
    ("AElig", 'Æ'),
    ("ETH", 'Ð'),
    ("OElig", 'Œ'),
    ("Oslash", 'Ø'),
    ("THORN", 'Þ'),
    ("ZeroWidthSpace", '\u{200B}'),
    ("aelig", 'æ'),
    ("amp", '&'),
    ("apos", '\''),
    ("bsol", '\\'),
    ("colon", ':'),
    ("comma", ','),
    ("commat", '@'),
    ("dash", '‐'),
    ("equals", '='),
    ("eth", 'ð'),
    ("gt", '>'),
    ("hyphen", '‐'),
    ("lowbar", '_'),
    ("lpar", '('),
    ("lrm", '\u{200E}'),
    ("lt", '<'),
    ("nbsp", '\u{a0}'),
    ("num", '#'),
    ("oelig", 'œ'),
    ("oslash", 'ø'),
    ("percnt", '%'),
    ("period", '.'),
    ("plus", '+'),
    ("quot", '"'),
    ("rlm", '\u{200F}'),
    ("rpar", ')'),
    ("semi", ';'),
    ("shy", '\u{AD}'),
    ("sol", '/'),
    ("szlig", 'ß'),
    ("thorn", 'þ'),
    ("zwj", '\u{200D}'),
    ("zwnj", '\u{200C}'),
];

/// The letter of an accent reference: `eacute` → `é`, `Ccedil` → `Ç`,
/// `uuml` → `ü`, `scaron` → `š`.
fn accented(name: &str) -> Option<char> {
    const MARKS: &[(&str, char)] = &[
        ("acute", '\u{301}'),
        ("caron", '\u{30C}'),
        ("cedil", '\u{327}'),
        ("circ", '\u{302}'),
        ("grave", '\u{300}'),
        ("ring", '\u{30A}'),
        ("tilde", '\u{303}'),
        ("uml", '\u{308}'),
    ];
    let mut chars = name.chars();
    let base = chars.next().filter(char::is_ascii_alphabetic)?;
    let rest = chars.as_str();
    let mark = MARKS.iter().find(|(n, _)| *n == rest)?.1;
    unicode_normalization::char::compose(base, mark)
}

/// The character of the HTML character reference at the start of `s`
/// (`&#64;`, `&#x40;`, `&#64` without the `;`, `&commat;`) and its length.
fn reference(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('&')?;
    if let Some(number) = body.strip_prefix('#') {
        let (hex, digits) = match number.strip_prefix(['x', 'X']) {
            Some(digits) => (true, digits),
            None => (false, number),
        };
        let radix = if hex { 16 } else { 10 };
        let len = digits
            .bytes()
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        if len == 0 || len > 7 {
            return None;
        }
        let code = u32::from_str_radix(&digits[..len], radix).ok()?;
        let c = char::from_u32(code).filter(|c| *c != '\0')?;
        let semicolon = usize::from(digits[len..].starts_with(';'));
        return Some((c, 2 + usize::from(hex) + len + semicolon));
    }
    let len = body.bytes().take_while(u8::is_ascii_alphanumeric).count();
    if !body[len..].starts_with(';') {
        return None;
    }
    let name = &body[..len];
    NAMED
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| NAMED[i].1)
        .or_else(|| accented(name))
        .map(|c| (c, len + 2))
}

/// The character of the JSON (or JavaScript, Python, PHP) string escape at
/// the start of `s` and its length: `\u0040`, a surrogate pair
/// `\uD83D\uDE00`, `\x40`, `\"`, `\\`, `\/`, `\n`, ….
fn escape(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('\\')?;
    let simple = match body.bytes().next()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'\'' => '\'',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'x' => {
            let digits = body
                .get(1..3)
                .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))?;
            let c = char::from(u8::from_str_radix(digits, 16).ok()?);
            return Some((c, 4));
        }
        b'u' => {
            let high = hex4(body)?;
            if let Some(c) = char::from_u32(high) {
                return Some((c, 6));
            }
            let low = hex4(body[5..].strip_prefix('\\')?)?;
            if !(0xD800..0xDC00).contains(&high) || !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?;
            return Some((c, 12));
        }
        _ => return None,
    };
    Some((simple, 2))
}

/// The number of `uXXXX` at the start of `s`.
fn hex4(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('u')?.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Characters that show nothing: Unicode's default-ignorable code points
/// (zero-width space, joiner and non-joiner, direction marks and
/// embeddings, soft hyphen, word joiner, variation selectors, Hangul
/// fillers, tags). Dropped from the view, so one hidden before the `@` of
/// an address neither hides it nor changes its fake.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The view of `text`, `text` itself when there is nothing to decode.
    fn decoded(text: &str) -> String {
        View::of(text).map_or_else(|| text.to_owned(), |v| v.text)
    }

    #[test]
    fn every_spelling_of_an_at_sign() {
        for (text, expected) in [
            ("x&#64;h.test", "x@h.test"),
            ("x&#x40;h.test", "x@h.test"),
            ("x&#X40;h.test", "x@h.test"),
            ("x&#64h.test", "x@h.test"),
            ("x&commat;h.test", "x@h.test"),
            ("x&amp;#64;h.test", "x@h.test"),
            (r"x\u0040h.test", "x@h.test"),
            (r"x\\u0040h.test", "x@h.test"),
            ("x%40h.test", "x@h.test"),
            ("x%2540h.test", "x@h.test"),
            ("x%252540h.test", "x@h.test"),
            ("x%26%2364%3Bh.test", "x@h.test"),
            ("x＠h.test", "x@h.test"),
            ("x﹫h.test", "x@h.test"),
            ("ｘ＠ｈ．ｔｅｓｔ", "x@h.test"),
            ("x\u{200D}@h.test", "x@h.test"),
            ("x\u{200B}\u{200C}\u{200F}@h.test", "x@h.test"),
            ("x&#x200B;@h.test", "x@h.test"),
            ("x&zwj;&shy;&rlm;@h.test", "x@h.test"),
            (
                "jos&eacute;.n&uacute;&ntilde;ez@h.test",
                "josé.núñez@h.test",
            ),
            ("&Ccedil;a&szlig;&oslash;&scaron;", "Çaßøš"),
            ("r%C3%A9al", "réal"),
            ("r%E9al, %FF%FE", "réal, ÿþ"),
            (r"x\x40h.test", "x@h.test"),
            ("re\u{301}al", "réal"),
            (r"\ud83d\ude00", "😀"),
        ] {
            assert_eq!(decoded(text), expected, "{text}");
        }
    }

    #[test]
    fn what_is_not_an_escape_stays() {
        for text in [
            "plain ascii text, 100% sure & more",
            "50%off %zz %4",
            "AT&T and &nonsense; and &#; and &#x; and &qacute; and &eacutes;",
            r"C:\Users and \xg0 and \u12 and \ud800 alone",
            "café, naïve, Grüße, 東京",
        ] {
            assert_eq!(decoded(text), text, "{text}");
        }
        assert_eq!(View::of("plain ascii, 100% & \\q"), None);
        assert_eq!(View::of("café"), None);
        assert_eq!(View::of("AT&T, 100%, %zz"), None);
        assert!(NAMED.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    #[test]
    fn maps_back_to_the_original_bytes_and_depth() {
        let text = "a x%2540h.test b";
        let view = View::of(text).unwrap();
        assert_eq!(view.text(), "a x@h.test b");
        let at = view.text().find('@').unwrap();
        assert_eq!(&text[view.original(at..at + 1)], "%2540");
        assert_eq!(view.percent_depth(at..at + 1), 2);
        assert_eq!(view.percent_depth(0..at), 0);
        assert_eq!(&text[view.original(2..10)], "x%2540h.test");
        // A dropped character is inside the span of what surrounds it.
        let text = "see x\u{200D}@h.test.";
        let view = View::of(text).unwrap();
        assert_eq!(&text[view.original(4..12)], "x\u{200D}@h.test");
        // Bytes that are not UTF-8 between ones that are keep their place.
        let text = "%41%FF%42";
        let view = View::of(text).unwrap();
        assert_eq!(view.text(), "AÿB");
        assert_eq!(&text[view.original(3..4)], "%42");
        assert_eq!(&text[view.original(1..3)], "%FF");
    }

    proptest! {
        #[test]
        fn any_text_maps_onto_itself_in_order(text in "[a-z%&#;\\\\u0-9@.＠\u{200D}é\u{301}]{0,60}") {
            let Some(view) = View::of(&text) else { return Ok(()) };
            let mut last = 0;
            for (at, c) in view.text().char_indices() {
                let from = view.original(at..at + c.len_utf8());
                prop_assert!(from.start >= last, "{text:?}");
                prop_assert!(text.is_char_boundary(from.start) && text.is_char_boundary(from.end));
                last = from.start;
            }
        }
    }
}
