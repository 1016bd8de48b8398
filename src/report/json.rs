//! The JSON report (`report.json`, `--json` on stdout): the model as it is,
//! pretty-printed, with its `schema_version`. Consumers parse this, so a field
//! that changes meaning or goes away bumps [`SCHEMA_VERSION`](super::model::SCHEMA_VERSION).

use super::model::Report;

/// Renders `report` as pretty JSON with a trailing newline.
pub fn json(report: &Report) -> String {
    // The model has only string map keys and derived `Serialize` impls, so
    // serializing it cannot fail.
    let mut text =
        serde_json::to_string_pretty(report).expect("the report model always serializes to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::json;
    use crate::report::fixtures;
    use crate::report::model::Report;

    #[test]
    fn succeeded_diamond() {
        insta::assert_snapshot!(json(&fixtures::succeeded_diamond()));
    }

    #[test]
    fn failed_with_restore() {
        insta::assert_snapshot!(json(&fixtures::failed_with_restore()));
    }

    #[test]
    fn dry_run() {
        insta::assert_snapshot!(json(&fixtures::dry_run()));
    }

    #[test]
    fn round_trips_through_the_model() {
        for report in [
            fixtures::succeeded_diamond(),
            fixtures::failed_with_restore(),
            fixtures::dry_run(),
        ] {
            let text = json(&report);
            assert!(text.ends_with("}\n"));
            let parsed: Report = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(parsed, report);
        }
    }
}
