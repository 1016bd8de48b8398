//! Quoting names and text into SQL: the one `quote_ident` and the one
//! `quote_literal` the pg layer and its users build statements with. Pure
//! string functions; nothing here talks to a server.

/// `"name"`: always double-quoted, inner quotes doubled. Quoting every
/// identifier is never wrong and spares a list of reserved words.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'it''s'`: a standard string literal, inner single quotes doubled.
/// Backslashes are not escaped: this is for servers with
/// `standard_conforming_strings` on, the default since PostgreSQL 9.1.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("users"), r#""users""#);
        assert_eq!(quote_ident(r#"say "hi""#), r#""say ""hi""""#);
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(quote_literal("en_US.UTF-8"), "'en_US.UTF-8'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"'a\b'");
    }
}
