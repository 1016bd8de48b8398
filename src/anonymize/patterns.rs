//! Placeholder until the pattern finder lands (branch `detect`).

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Ip,
    Card,
    Iban,
}

impl PiiKind {
    pub fn parse(name: &str) -> Option<PiiKind> {
        Some(match name {
            "email" => PiiKind::Email,
            "phone" => PiiKind::Phone,
            "ip" => PiiKind::Ip,
            "card" => PiiKind::Card,
            "iban" => PiiKind::Iban,
            _ => return None,
        })
    }
}
