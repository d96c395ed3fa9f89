use super::*;
use crate::catalog::Summary;

#[test]
fn wrong_argument_names_get_the_expected_ones() {
    let mut args = JsonObject::new();
    args.insert("server".into(), json!("fetch"));
    let err = parse_args::<AddArgs>(ADD, Some(&args)).unwrap_err();
    assert!(
        err.contains("`name`") || err.contains("name (string, required)"),
        "{err}"
    );
    assert!(err.contains("Expected arguments: name"), "{err}");
    let err = parse_args::<FindArgs>(FIND, None).unwrap_err();
    assert!(err.contains("query"), "{err}");
}

#[test]
fn registry_add_keeps_comments_and_other_entries() {
    let text = "# approved by ops\nregistry:\n  time:\n    ref: \"\"\n# trailing\n";
    let out = registry_add(Some(text), "fetch", None).unwrap();
    assert!(
        out.starts_with("# approved by ops\nregistry:\n  fetch:\n    ref: \"\"\n  time:"),
        "{out}"
    );
    assert!(out.contains("# trailing"));
    assert_eq!(
        registry_add(Some(&out), "fetch", None).unwrap(),
        out,
        "idempotent"
    );
    assert_eq!(
        registry_add(None, "fetch", None).unwrap(),
        "registry:\n  fetch:\n    ref: \"\"\n"
    );
    assert_eq!(
        registry_add(Some("registry: {}\n"), "a", None).unwrap(),
        "registry:\n  a:\n    ref: \"\"\n"
    );
    let four = "registry:\n    time:\n        ref: x\n";
    let out = registry_add(Some(four), "fetch", None).unwrap();
    assert!(registry_keys(&out).unwrap().contains("time"));
}

#[test]
fn registry_add_records_the_creator() {
    let out = registry_add(Some("registry:\n  a:\n    ref: \"\"\n"), "b", Some("ann")).unwrap();
    let doc: Value = serde_saphyr::from_str(&out).unwrap();
    let rule = crate::catalog::access::rule("b", None, doc["registry"].get("b")).unwrap();
    assert_eq!(rule.creator.as_deref(), Some("ann"));
    assert_eq!(doc["registry"]["a"]["ref"], "");
}

#[test]
fn registry_remove_takes_the_whole_block_only() {
    let text = "registry:\n  fetch:\n    ref: \"\"\n    config:\n      a: 1\n  time:\n    ref: \"\"\nother: 1\n";
    let out = registry_remove(text, "fetch").unwrap();
    assert_eq!(out, "registry:\n  time:\n    ref: \"\"\nother: 1\n");
    let out = registry_remove(&out, "time").unwrap();
    assert_eq!(registry_keys(&out).unwrap(), BTreeSet::new());
    assert!(out.contains("other: 1"));
    assert_eq!(
        registry_remove("registry:\n  a: {}\n", "b").unwrap(),
        "registry:\n  a: {}\n"
    );
}

#[test]
fn requests_are_appended_and_read_back() {
    let r = Request {
        server: "fetch".into(),
        action: "add",
        reason: Some("needs \"web\": access".into()),
        client: "agent/1.0".into(),
        user: "ann".into(),
        time: "2026-11-22T00:00:00Z".into(),
    };
    let once = request_append(None, &r).unwrap();
    let twice = request_append(
        Some(&once),
        &Request {
            server: "time".into(),
            ..r.clone()
        },
    )
    .unwrap();
    assert_eq!(
        pending(Some(&twice)),
        BTreeSet::from(["fetch".to_string(), "time".to_string()])
    );
    let removal = request_append(
        Some(&twice),
        &Request {
            server: "x".into(),
            action: "remove",
            ..r
        },
    )
    .unwrap();
    assert!(!pending(Some(&removal)).contains("x"));
}

#[test]
fn find_ranks_by_name_then_words_and_reports_approval() {
    let desired = DesiredState {
        catalog: vec![
            Summary {
                name: "fetch".into(),
                description: Some("Fetches a URL from the internet".into()),
                ..Default::default()
            },
            Summary {
                name: "time".into(),
                description: Some("Time and timezone conversion".into()),
                tools: vec!["get_current_time".into()],
                ..Default::default()
            },
            Summary {
                name: "web".into(),
                title: Some("Fetch helper".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let hits = find(
        "internet",
        10,
        &desired,
        &FleetStatus::default(),
        &BTreeSet::new(),
    );
    assert_eq!(
        hits.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        vec!["fetch"]
    );
    let hits = find(
        "fetch",
        10,
        &desired,
        &FleetStatus::default(),
        &BTreeSet::from(["web".to_string()]),
    );
    assert_eq!(hits[0].name, "fetch");
    assert_eq!(hits[1].name, "web");
    assert_eq!(hits[1].approval, "pending");
    assert_eq!(
        find("", 2, &desired, &FleetStatus::default(), &BTreeSet::new()).len(),
        2
    );
}
