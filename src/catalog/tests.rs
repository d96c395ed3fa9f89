use super::*;
use serde_json::json;

const FIXTURE: &str = include_str!("../../tests/fixtures/docker-catalog-v2.yaml");

fn parse(text: &str) -> CatalogFile {
    parse_catalog(Path::new("docker-mcp.yaml"), text).expect("parses")
}

#[test]
fn every_fixture_entry_loads_and_poci_is_recognised() {
    let cat = parse(FIXTURE);
    assert_eq!(cat.entries.len(), 110);
    for e in &cat.entries {
        assert!(e.entry.is_ok(), "{}: {:?}", e.name, e.entry);
    }
    let state = resolve(
        &cat,
        None,
        &json!({}),
        &Secrets::default(),
        Limits::default(),
    );
    let poci: Vec<_> = state
        .servers
        .iter()
        .filter(|(_, d)| matches!(d, Desired::Unsupported { .. }))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(poci.len(), 3, "{poci:?}");
    assert!(poci.contains(&"curl") && poci.contains(&"docker"));
    match &state.servers["fetch"] {
        Desired::Container(c) => assert!(c.spec.image.starts_with("mcp/fetch@sha256:")),
        other => panic!("fetch: {other:?}"),
    }
    // Servers whose required config is missing are Invalid, with a position.
    match &state.servers["slack"] {
        Desired::Invalid { error } => {
            assert!(error.starts_with("docker-mcp.yaml:"), "{error}");
            assert!(error.contains("slack.team_id"), "{error}");
        }
        other => panic!("slack: {other:?}"),
    }
}

#[test]
fn fixture_templates_render_with_config() {
    let cat = parse(FIXTURE);
    let config = json!({
        "filesystem": {"paths": ["/srv/a", "/srv/b"]},
        "slack": {"team_id": "T1"},
    });
    let secrets = Secrets::parse("SLACK_BOT_TOKEN=xoxb\n");
    let state = resolve(&cat, None, &config, &secrets, Limits::default());
    let Desired::Container(fs) = &state.servers["filesystem"] else {
        panic!("filesystem: {:?}", state.servers["filesystem"]);
    };
    assert!(fs.spec.volumes.contains(&"/srv/a:/srv/a".to_string()));
    assert!(fs.spec.command.contains(&Secret::new("/srv/b")));
    let Desired::Container(slack) = &state.servers["slack"] else {
        panic!("slack: {:?}", state.servers["slack"]);
    };
    assert_eq!(slack.spec.env["SLACK_TEAM_ID"].expose(), "T1");
    assert_eq!(slack.spec.env["SLACK_BOT_TOKEN"].expose(), "xoxb");
}

#[test]
fn syntax_error_names_line_and_column() {
    let text = "registry:\n  fetch:\n    image: [unclosed\n";
    let err = parse_catalog(Path::new("cat.yaml"), text).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cat.yaml:"), "{msg}");
    let Error::Config { pos, .. } = err else {
        panic!()
    };
    assert!(pos.line.is_some(), "no line in {pos}");
}

#[test]
fn empty_or_registryless_catalog_is_an_error() {
    for text in ["", "  \n", "name: docker-mcp\n"] {
        assert!(
            parse_catalog(Path::new("c.yaml"), text).is_err(),
            "{text:?}"
        );
    }
    let cat = parse("registry: {}\n");
    assert!(cat.entries.is_empty());
}

#[test]
fn one_bad_entry_does_not_block_the_others() {
    let text = "registry:\n  good:\n    image: a\n  bad:\n    image: b\n    command: 5\n";
    let cat = parse(text);
    let state = resolve(
        &cat,
        None,
        &json!({}),
        &Secrets::default(),
        Limits::default(),
    );
    assert!(matches!(state.servers["good"], Desired::Container(_)));
    match &state.servers["bad"] {
        Desired::Invalid { error } => assert!(error.starts_with("docker-mcp.yaml:4:3"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn registry_limits_approval_and_reports_unknown_names() {
    let cat = parse("registry:\n  a:\n    image: a\n  b:\n    image: b\n");
    let approved = BTreeMap::from([("a".to_string(), json!({})), ("zz".to_string(), json!({}))]);
    let state = resolve(
        &cat,
        Some(&approved),
        &json!({}),
        &Secrets::default(),
        Limits::default(),
    );
    assert_eq!(state.servers.keys().collect::<Vec<_>>(), vec!["a"]);
    assert!(state.warnings.iter().any(|w| w.contains("`zz`")));
}

#[test]
fn remote_entries_are_not_containers() {
    let cat = parse(
        "registry:\n  r:\n    remote:\n      url: https://x/mcp\n      transport_type: streamable-http\n  s:\n    sseEndpoint: http://y/sse\n",
    );
    let state = resolve(
        &cat,
        None,
        &json!({}),
        &Secrets::default(),
        Limits::default(),
    );
    match &state.servers["r"] {
        Desired::Remote { url, transport, .. } => {
            assert_eq!(url.expose(), "https://x/mcp");
            assert_eq!(transport, "streamable-http");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(state.servers["s"], Desired::Remote { .. }));
}

#[test]
fn reordering_keys_and_descriptions_keep_the_hash() {
    let a = parse(
        "registry:\n  f:\n    description: one\n    image: img\n    env:\n      - {name: A, value: '1'}\n      - {name: B, value: 2}\n",
    );
    let b = parse(
        "registry:\n  f:\n    env:\n      - {value: '2', name: B}\n      - {name: A, value: '1'}\n    image: img\n    description: two\n    title: T\n",
    );
    let hash = |c: &CatalogFile| match &resolve(
        c,
        None,
        &json!({}),
        &Secrets::default(),
        Limits::default(),
    )
    .servers["f"]
    {
        Desired::Container(c) => c.hash.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hash(&a), hash(&b));
}

#[test]
fn registry_config_overlays_config_yaml() {
    let mut config = json!({"x": {"host": "a", "port": 1}});
    let reg = BTreeMap::from([("x".to_string(), json!({"config": {"host": "b"}}))]);
    overlay_registry_config(&mut config, &reg);
    assert_eq!(config, json!({"x": {"host": "b", "port": 1}}));
}

#[test]
fn load_reads_the_directory_and_waits_for_a_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        approval: ApprovalMode::All,
        limits: Limits::default(),
        settle: Duration::from_secs(30),
    };
    std::fs::write(
        dir.path().join(CATALOG_FILE),
        "registry:\n  a:\n    image: x",
    )
    .unwrap();
    assert!(matches!(
        load(dir.path(), &opts),
        Err(Error::Incomplete { .. })
    ));
    std::fs::write(
        dir.path().join(CATALOG_FILE),
        "registry:\n  a:\n    image: x\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(SECRETS_FILE), "X=1\n").unwrap();
    let state = load(dir.path(), &opts).unwrap();
    assert!(matches!(state.servers["a"], Desired::Container(_)));
    // An empty registry file is treated as half-written, not as "approve none".
    std::fs::write(dir.path().join(REGISTRY_FILE), "").unwrap();
    let reg = LoadOptions {
        approval: ApprovalMode::Registry,
        ..opts
    };
    assert!(load(dir.path(), &reg).is_err());
}

#[test]
fn names_are_validated() {
    assert!(valid_name("fetch") && valid_name("astra-db") && valid_name("a.b_c"));
    assert!(!valid_name("") && !valid_name("-x") && !valid_name("a/b") && !valid_name("a b"));
}
