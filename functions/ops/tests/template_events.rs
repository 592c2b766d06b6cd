//! The saved test events the template creates are commands this function accepts: each one,
//! with its placeholders filled in, parses; as saved (placeholders still in), the ones that
//! need an id are refused, so a careless Test does nothing.

use lc_core::operations::Command;
use serde_json::Value;

const TEMPLATE: &str = include_str!("../../../template.yaml");

/// The `Content: |` block of the `OpsTestEvents` resource, as JSON.
fn saved_events() -> Value {
    let start = TEMPLATE
        .find("  OpsTestEvents:")
        .expect("OpsTestEvents in template.yaml");
    let rest = &TEMPLATE[start..];
    let content = rest.find("      Content: |\n").expect("its Content block");
    let body: String = rest[content..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("        ") || l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", &l[8..]))
        .collect();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("Content is JSON: {e}\n{body}"))
}

#[test]
fn every_saved_event_is_a_command() {
    let doc = saved_events();
    assert_eq!(doc["openapi"], "3.0.0");
    let examples = doc["components"]["examples"]
        .as_object()
        .expect("components.examples");
    let mut names: Vec<&str> = Vec::new();
    for (name, example) in examples {
        assert!(
            name.len() <= 25
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{name}: the console allows 25 letters, digits, - _ ."
        );
        let event = &example["value"];
        let filled: Value = serde_json::from_str(
            &event
                .to_string()
                .replace("<PAGE_ID>", "1234567890")
                .replace("<PSID>", "987654321")
                .replace("<why, and who you are>", "token rotation (alice)"),
        )
        .expect("json");
        let cmd = Command::parse(&filled).unwrap_or_else(|e| panic!("{name}: {e}"));
        names.push(cmd.name());
        if event.to_string().contains('<') {
            assert!(
                Command::parse(event).is_err(),
                "{name}: a placeholder must be refused"
            );
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut all = Command::NAMES.to_vec();
    all.sort_unstable();
    assert_eq!(names, all, "one saved event at least per command");
}

#[test]
fn the_schema_is_named_as_the_console_looks_it_up() {
    // _<FunctionName>-schema, and the function is named <stack>-ops.
    assert!(TEMPLATE.contains(r#"SchemaName: !Sub "_${AWS::StackName}-ops-schema""#));
    assert!(TEMPLATE.contains(r#"FunctionName: !Sub "${AWS::StackName}-ops""#));
    assert!(TEMPLATE.contains("RegistryName: lambda-testevent-schemas"));
}
