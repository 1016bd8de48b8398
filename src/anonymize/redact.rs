//! The `redact: [email, phone, ip, card, iban]` strategy: personal data
//! inside free text (comments, rich text, log lines, JSON strings) replaced
//! item by item with a fake of the same kind, the text around it untouched.
//!
//! Replacements are keyed like every other strategy, so the same address
//! becomes the same fake everywhere: an e-mail address inside a comment
//! becomes exactly what a `fake: email` column rule makes of it, and joins
//! or searches on it in staging still line up, however it was spelled:
//! `alice&#64;Example.com`, `alice%2540example.com` and `alice@example.com`
//! all become the `fake: email` of `alice@example.com` (the item decoded,
//! see `patterns`). Each replacement keeps the shape of what it replaces
//! (percent-encoding at the same depth, card separators, IBAN spacing), so
//! the surrounding URL, JSON or layout stays valid; an item spelled with
//! HTML references, JSON escapes or fullwidth forms becomes plain ASCII,
//! valid in all of them.
//!
//! Phone numbers and IP addresses become the `fake: phone` / `ipv4` / `ipv6`
//! of the item as written; card numbers a Luhn-valid test-card number; IBANs
//! an IBAN of the same country with a valid checksum. What counts as an item
//! is `patterns`' business; this module only decides what replaces it.

use rand::RngExt;

use super::fakes::{self, FakeKind, Locale};
use super::keyed::Keyed;
use super::patterns::{self, Found, PiiKind};

/// The first digits of every replacement card number: the issuer prefix of
/// the well-known Visa test cards (`4000 00…`), so anyone reading staging
/// data can tell the number is not real, and payment providers treat it as a
/// test card.
pub const TEST_CARD_PREFIX: &str = "400000";

/// A configured `redact` rule: which kinds to replace, in which locale
/// (phone number formats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    kinds: Vec<PiiKind>,
    locale: Locale,
}

impl Redactor {
    /// A redactor for `kinds` (duplicates ignored). IBANs are accepted too.
    pub fn new(kinds: &[PiiKind], locale: Locale) -> Redactor {
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Redactor { kinds, locale }
    }

    /// The kinds this redactor replaces, sorted.
    pub fn kinds(&self) -> &[PiiKind] {
        &self.kinds
    }

    /// `text` with every item of the configured kinds replaced, and how
    /// many were; `None` when there was nothing to replace, so the caller
    /// can pass the value on without re-encoding it.
    ///
    /// Each replacement is derived from the item alone (not its position or
    /// neighbours), and is never equal to it: in the rare case the fake
    /// comes out the same (an input that already is a fictional number or
    /// an address on a reserved domain) another one is derived.
    pub fn redact(&self, keyed: &Keyed, text: &str) -> Option<(String, usize)> {
        let found = patterns::find(text, &self.kinds);
        if found.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 16 * found.len());
        let mut at = 0;
        for item in &found {
            out.push_str(&text[at..item.range.start]);
            out.push_str(&self.replacement(keyed, item));
            at = item.range.end;
        }
        out.push_str(&text[at..]);
        Some((out, found.len()))
    }

    /// The text that replaces `item`, percent-encoded as deep as the item
    /// was (so a URL stays a URL); otherwise plain ASCII, which is valid
    /// wherever the item was, HTML or JSON-escaped text alike.
    fn replacement(&self, keyed: &Keyed, item: &Found) -> String {
        let value = item.value.as_str();
        let fake = match item.kind {
            PiiKind::Email => self.fake(FakeKind::Email, keyed, value),
            PiiKind::Phone => self.fake(FakeKind::Phone, keyed, value),
            PiiKind::Ip => {
                let kind = if value.contains(':') {
                    FakeKind::Ipv6
                } else {
                    FakeKind::Ipv4
                };
                self.fake(kind, keyed, value)
            }
            PiiKind::Card => distinct(value, |input| fake_card(keyed, value, input)),
            PiiKind::Iban => distinct(value, |input| fake_iban(keyed, value, input)),
        };
        (0..item.percent_depth).fold(fake, |text, _| percent_encode(&text))
    }

    /// Exactly the `fake: <kind>` of the item: never equal to it, and for
    /// an e-mail address the same whatever its case.
    fn fake(&self, kind: FakeKind, keyed: &Keyed, value: &str) -> String {
        fakes::fake(kind, self.locale, keyed, value.as_bytes(), false)
            .expect("only `unique: true` can fail, and it is not asked for")
    }
}

/// `text` with every byte but the unreserved characters of RFC 3986
/// (letters, digits, `-._~`) percent-encoded: `@` becomes `%40`, and `%40`
/// becomes `%2540`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `make(original)`, or when that equals `original` (ignoring ASCII case),
/// `make(original ‖ 0x00 ‖ n)` for the first `n` that differs: the same
/// re-derivation [`fakes::fake`] does, for the kinds only `redact` makes.
fn distinct(original: &str, make: impl Fn(&[u8]) -> String) -> String {
    let first = make(original.as_bytes());
    if !first.eq_ignore_ascii_case(original) {
        return first;
    }
    (1u32..)
        .map(|n| {
            let mut input = original.as_bytes().to_vec();
            input.push(0);
            input.extend(n.to_be_bytes());
            make(&input)
        })
        .find(|fake| !fake.eq_ignore_ascii_case(original))
        .expect("an endless supply of attempts")
}

/// A Luhn-valid card number as long as the digits of `written`, starting
/// with [`TEST_CARD_PREFIX`], its other digits drawn from `input`, laid out
/// with `written`'s separators.
fn fake_card(keyed: &Keyed, written: &str, input: &[u8]) -> String {
    let len = written.bytes().filter(u8::is_ascii_digit).count();
    let mut rng = keyed.rng("redact:card", input);
    let mut digits: Vec<u8> = TEST_CARD_PREFIX
        .bytes()
        .take(len.saturating_sub(1))
        .collect();
    while digits.len() + 1 < len {
        digits.push(b'0' + rng.random_range(0..10u8));
    }
    digits.push(patterns::luhn_check_digit(&digits));
    relayout(written, &digits, u8::is_ascii_digit)
}

/// An IBAN of `written`'s country and length with a valid checksum: each
/// letter of the account part replaced by a letter, each digit by a digit,
/// drawn from `input`; laid out with `written`'s spaces.
fn fake_iban(keyed: &Keyed, written: &str, input: &[u8]) -> String {
    let compact: Vec<u8> = written.bytes().filter(|b| *b != b' ').collect();
    let mut rng = keyed.rng("redact:iban", input);
    let mut iban: Vec<u8> = compact[..2].to_vec();
    iban.extend(b"00");
    for &b in &compact[4..] {
        iban.push(if b.is_ascii_digit() {
            b'0' + rng.random_range(0..10u8)
        } else {
            b'A' + rng.random_range(0..26u8)
        });
    }
    let check = 98 - patterns::iban_mod97(&iban);
    iban[2] = b'0' + (check / 10) as u8;
    iban[3] = b'0' + (check % 10) as u8;
    relayout(written, &iban, |b| *b != b' ')
}

/// `written` with the bytes that `replaced` selects taken, in order, from
/// `new` (ASCII), and the others (separators) kept.
fn relayout(written: &str, new: &[u8], replaced: impl Fn(&u8) -> bool) -> String {
    let mut new = new.iter();
    written
        .bytes()
        .map(|b| {
            if replaced(&b) {
                char::from(*new.next().expect("as many characters as replaced"))
            } else {
                char::from(b)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::decode;
    use crate::anonymize::patterns::tests::SPELLED_EMAILS;
    use proptest::prelude::*;

    const ALL: &[PiiKind] = &PiiKind::ALL;

    fn keyed() -> Keyed {
        Keyed::new(Some("s"))
    }

    fn redact(kinds: &[PiiKind], text: &str) -> (String, usize) {
        Redactor::new(kinds, Locale::En)
            .redact(&keyed(), text)
            .unwrap_or_else(|| panic!("nothing redacted in {text:?}"))
    }

    /// Every e-mail address in `text` (decoded) is on a reserved domain.
    fn assert_emails_reserved(text: &str) {
        for found in patterns::find(text, &[PiiKind::Email]) {
            let domain = found.value.rsplit_once('@').unwrap().1;
            assert!(
                fakes::RESERVED_DOMAINS.contains(&domain),
                "{} in {text}",
                found.value
            );
        }
    }

    const RICH: &str = r#"<p>Hi, <b>Alice</b> (alice@example.com, +44 7700 900123) paid with
        4111 1111 1111 1111; refund to GB82 WEST 1234 5698 7654 32. Seen from 198.51.100.42
        and 2001:db8:85a3::8a2e:370:7334. <a href="https://example.com/u?e=alice%40example.com">me</a></p>"#;
    const RICH_ITEMS: &[&str] = &[
        "alice@example.com",
        "alice%40example.com",
        "+44 7700 900123",
        "4111 1111 1111 1111",
        "4111111111111111",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "198.51.100.42",
        "2001:db8:85a3::8a2e:370:7334",
    ];

    #[test]
    fn replaces_every_item_and_nothing_else() {
        let (out, n) = redact(ALL, RICH);
        assert_eq!(n, 7);
        for item in RICH_ITEMS {
            assert!(!out.contains(item), "{item} survived in {out}");
        }
        assert!(out.starts_with("<p>Hi, <b>Alice</b> ("));
        assert!(out.ends_with("\">me</a></p>"));
        assert!(out.contains("https://example.com/u?e="));
        assert_emails_reserved(&out);
        // The replacements are items of the same kinds, in the same order.
        let kinds: Vec<PiiKind> = patterns::find(&out, ALL).iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                PiiKind::Email,
                PiiKind::Phone,
                PiiKind::Card,
                PiiKind::Iban,
                PiiKind::Ip,
                PiiKind::Ip,
                PiiKind::Email
            ]
        );
    }

    #[test]
    fn deterministic_per_secret() {
        let redactor = Redactor::new(ALL, Locale::En);
        let a = redactor.redact(&Keyed::new(Some("s")), RICH).unwrap();
        let b = redactor.redact(&Keyed::new(Some("s")), RICH).unwrap();
        let c = redactor.redact(&Keyed::new(Some("t")), RICH).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert_eq!(a.1, c.1);
        // Every item differs under another secret, not just one of them.
        let fa = patterns::find(&a.0, ALL);
        let fc = patterns::find(&c.0, ALL);
        for (x, y) in fa.iter().zip(&fc) {
            assert_ne!(x.value, y.value);
        }
    }

    #[test]
    fn emails_become_the_fake_email_of_the_column_rule() {
        let k = keyed();
        let expected =
            fakes::fake(FakeKind::Email, Locale::En, &k, b"alice@example.com", false).unwrap();
        let (out, n) = redact(&[PiiKind::Email], "from alice@example.com:");
        assert_eq!(n, 1);
        assert_eq!(out, format!("from {expected}:"));
        // The same address URL-encoded becomes the same fake, URL-encoded.
        let (out, _) = redact(&[PiiKind::Email], "/unsub?email=alice%40example.com&x=1");
        assert_eq!(
            out,
            format!("/unsub?email={}&x=1", expected.replace('@', "%40"))
        );
        assert!(!out.contains('@'));
        // In a JSON string, the document stays valid JSON.
        let json = r#"{"note":"mail alice@example.com or \"bob@example.org\"","n":1}"#;
        let (out, n) = redact(&[PiiKind::Email], json);
        assert_eq!(n, 2);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        let note = parsed["note"].as_str().unwrap();
        assert!(note.starts_with(&format!("mail {expected} or \"")));
        assert!(!out.contains("alice@") && !out.contains("bob@"));
        assert_emails_reserved(&out);
    }

    #[test]
    fn phones_and_ips_use_the_fakes_of_their_kind() {
        let k = keyed();
        for locale in [Locale::En, Locale::EnGb] {
            let phone = fakes::fake(FakeKind::Phone, locale, &k, b"(201) 555-0143", false).unwrap();
            let (out, _) = Redactor::new(&[PiiKind::Phone], locale)
                .redact(&k, "call (201) 555-0143 now")
                .unwrap();
            assert_eq!(out, format!("call {phone} now"));
        }
        let (out, n) = redact(&[PiiKind::Ip], "a 203.0.113.7 b 2001:db8::7 c");
        assert_eq!(n, 2);
        let found = patterns::find(&out, ALL);
        let v4: std::net::Ipv4Addr = found[0].value.parse().unwrap();
        let v6: std::net::Ipv6Addr = found[1].value.parse().unwrap();
        assert!([[192, 0, 2], [198, 51, 100], [203, 0, 113]].contains(&[
            v4.octets()[0],
            v4.octets()[1],
            v4.octets()[2]
        ]));
        assert_eq!(&v6.segments()[..2], [0x2001, 0x0db8]);
        assert_ne!(v4.to_string(), "203.0.113.7");
    }

    #[test]
    fn cards_keep_length_and_separators_and_are_test_numbers() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "3782 822463 10005",
            "4222222222222",
            "4000 0000 0000 0002",
        ] {
            let (out, n) = redact(&[PiiKind::Card], card);
            assert_eq!(n, 1);
            assert_ne!(out, card);
            assert_eq!(out.len(), card.len());
            for (a, b) in out.bytes().zip(card.bytes()) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{out} vs {card}");
                if !a.is_ascii_digit() {
                    assert_eq!(a, b);
                }
            }
            let digits: String = out.chars().filter(char::is_ascii_digit).collect();
            assert!(digits.starts_with(TEST_CARD_PREFIX), "{out}");
            assert!(patterns::luhn_valid(&digits), "{out}");
        }
        // Different cards, different fakes.
        let a = redact(&[PiiKind::Card], "4111111111111111").0;
        let b = redact(&[PiiKind::Card], "4012888888881881").0;
        assert_ne!(a, b);
    }

    #[test]
    fn ibans_keep_country_layout_and_a_valid_checksum() {
        for iban in [
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR14 2004 1010 0505 0001 3M02 606",
        ] {
            let (out, n) = redact(&[PiiKind::Iban], iban);
            assert_eq!(n, 1);
            assert_ne!(out, iban);
            assert!(patterns::iban_valid(&out), "{out}");
            assert_eq!(out.len(), iban.len());
            assert_eq!(out[..2], iban[..2]);
            for (a, b) in out.bytes().zip(iban.bytes()).skip(4) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{out} vs {iban}");
                assert_eq!(a == b' ', b == b' ', "{out} vs {iban}");
            }
        }
    }

    #[test]
    fn only_the_configured_kinds_and_none_without_matches() {
        let text = "alice@example.com (201) 555-0143";
        let (out, n) = redact(&[PiiKind::Phone], text);
        assert_eq!(n, 1);
        assert!(out.starts_with("alice@example.com "));
        assert!(!out.contains("555-0143"));
        let redactor = Redactor::new(&[PiiKind::Email, PiiKind::Email, PiiKind::Ip], Locale::En);
        assert_eq!(redactor.kinds(), [PiiKind::Email, PiiKind::Ip]);
        for text in [
            "",
            "nothing personal here",
            "order #1234567890 on 2024-01-15",
            "(201) 555-0143",
        ] {
            assert_eq!(redactor.redact(&keyed(), text), None, "{text}");
        }
        assert_eq!(Redactor::new(&[], Locale::En).redact(&keyed(), RICH), None);
    }

    #[test]
    fn a_fake_never_equals_its_original() {
        let k = keyed();
        // Find an address that is its own fake under this key is
        // impractical; check the fallback directly instead.
        let fake = distinct("same", |input| {
            if input == b"same" {
                "SAME".to_owned()
            } else {
                "other".to_owned()
            }
        });
        assert_eq!(fake, "other");
        // Redacting an already-fictional number twice still changes it.
        let (once, _) = redact(&[PiiKind::Phone], "(201) 555-0143");
        let again = Redactor::new(&[PiiKind::Phone], Locale::En)
            .redact(&k, &once)
            .unwrap()
            .0;
        assert_ne!(again, once);
    }

    /// `text` percent-encoded `depth` times, as a replacement is.
    fn encoded(text: &str, depth: u8) -> String {
        (0..depth).fold(text.to_owned(), |t, _| percent_encode(&t))
    }

    #[test]
    fn every_spelling_becomes_the_fake_email_of_the_address_it_spells() {
        let k = keyed();
        for &(spelling, address, depth) in SPELLED_EMAILS {
            let fake =
                fakes::fake(FakeKind::Email, Locale::En, &k, address.as_bytes(), false).unwrap();
            let text = format!("<p>Hi, (write to {spelling}), thanks</p>");
            let (out, n) = redact(&[PiiKind::Email], &text);
            assert_eq!(n, 1, "{spelling}");
            assert_eq!(
                out,
                format!("<p>Hi, (write to {}), thanks</p>", encoded(&fake, depth)),
                "{spelling}"
            );
            // Nothing of the address is left, in any spelling.
            let decoded = decode::View::of(&out).map_or(out.clone(), |v| v.text().to_owned());
            let (local, domain) = address.rsplit_once('@').unwrap();
            assert!(!decoded.contains(domain), "{spelling}: {out}");
            assert!(!decoded.contains(&format!("{local}@")), "{spelling}: {out}");
            assert_emails_reserved(&decoded);
        }
        // Every spelling of one address, in one text: one fake, as many times.
        let plain = redact(&[PiiKind::Email], "x@realmail-prod.test").0;
        for &(spelling, address, depth) in SPELLED_EMAILS {
            if address == "x@realmail-prod.test" {
                assert_eq!(
                    redact(&[PiiKind::Email], spelling).0,
                    encoded(&plain, depth)
                );
            }
        }
    }

    #[test]
    fn replacements_stay_valid_in_urls_and_json() {
        let k = keyed();
        let fake = fakes::fake(
            FakeKind::Email,
            Locale::En,
            &k,
            b"x@realmail-prod.test",
            false,
        )
        .unwrap();
        // A URL inside a URL: still decodes, at every depth, to the fake.
        let url = "https://t.test/r?u=https%3A%2F%2Fs.test%2F%3Fe%3Dx%2540realmail-prod.test&n=1";
        let (out, _) = redact(&[PiiKind::Email], url);
        assert_eq!(
            out,
            url.replace("x%2540realmail-prod.test", &fake.replace('@', "%2540"))
        );
        // JSON text with escapes stays JSON, and its string the fake.
        let json = r#"{"note":"to x\u0040realmail-prod.test, \"x y\"@realmail-prod.test"}"#;
        let (out, n) = redact(&[PiiKind::Email], json);
        assert_eq!(n, 2);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        let quoted = fakes::fake(
            FakeKind::Email,
            Locale::En,
            &k,
            b"\"x y\"@realmail-prod.test",
            false,
        )
        .unwrap();
        assert_eq!(parsed["note"], format!("to {fake}, {quoted}"));
        // Phone numbers spelled with references or percent-escapes too.
        let phone =
            fakes::fake(FakeKind::Phone, Locale::En, &k, b"+44 7700 900123", false).unwrap();
        let (out, _) = redact(&[PiiKind::Phone], "tel &#43;44 7700 900123.");
        assert_eq!(out, format!("tel {phone}."));
        let (out, _) = redact(&[PiiKind::Phone], "?tel=%2B44%207700%20900123&x");
        assert_eq!(out, format!("?tel={}&x", percent_encode(&phone)));
    }

    proptest! {
        #[test]
        fn originals_never_survive(
            locals in prop::collection::vec("[a-z][a-z0-9._]{0,10}[a-z0-9]", 1..5),
            domain in prop::sample::select(vec!["example.com", "mail.example.org", "sub.example.net"]),
            encoded in any::<bool>(),
            secret in "[a-z]{1,8}",
        ) {
            let sep = if encoded { "%40" } else { "@" };
            let addresses: Vec<String> =
                locals.iter().map(|l| format!("{l}{sep}{domain}")).collect();
            let text = format!("<p>{}</p>", addresses.join(", "));
            let (out, n) = Redactor::new(&[PiiKind::Email], Locale::En)
                .redact(&Keyed::new(Some(&secret)), &text)
                .unwrap();
            prop_assert_eq!(n, addresses.len());
            let originals: Vec<String> = locals.iter().map(|l| format!("{l}@{domain}")).collect();
            let found = patterns::find(&out, &[PiiKind::Email]);
            prop_assert_eq!(found.len(), originals.len());
            for item in &found {
                prop_assert_eq!(item.url_encoded, encoded);
                prop_assert!(
                    !originals.iter().any(|o| o.eq_ignore_ascii_case(&item.value)),
                    "{} survived", item.value
                );
            }
            prop_assert_eq!(out.contains('@'), !encoded);
            assert_emails_reserved(&out);
        }
    }
}
