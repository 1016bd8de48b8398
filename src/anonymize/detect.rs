//! Placeholder until coverage evidence lands (branch `detect`).

pub fn name_hint(column: &str) -> Option<&'static str> {
    let lower = column.to_ascii_lowercase();
    [
        "email", "name", "phone", "address", "birth", "password", "token",
    ]
    .into_iter()
    .find(|w| lower.contains(w))
}

pub fn safe_by_type(type_name: &str) -> bool {
    matches!(
        type_name,
        "integer" | "bigint" | "smallint" | "boolean" | "numeric" | "uuid" | "date"
    ) || type_name.starts_with("timestamp")
}
