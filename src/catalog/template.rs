//! Docker catalog templates: `{{server.key|filter|...}}` in env values,
//! command entries, volumes and user, filled from `config.yaml`.
//!
//! A placeholder may expand to a list (`{{filesystem.paths|volume|into}}`); in a
//! list position (command, volumes) that yields one entry per element.
use serde_json::Value;

/// What a template renders to before it is placed: text or a list of texts.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Text(String),
    List(Vec<String>),
}

/// Why a template could not be rendered; the caller adds which field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{{path}}}}}` has no value: set `{path}` in config.yaml")]
    Missing { path: String },
    #[error("`{{{{{path}}}}}` is optional and has no value")]
    OptionalMissing { path: String },
    #[error("unknown template filter `{0}`")]
    UnknownFilter(String),
    #[error("unterminated `{{{{` in `{0}`")]
    Unterminated(String),
}

/// Decides whether a config path with no value may render empty: it may when
/// the entry's config schema declares it without listing it as required.
pub trait Schema {
    fn is_optional(&self, path: &str) -> bool;
}

/// Renders `text` against `config`. Text with no placeholder is returned as is.
pub fn render(text: &str, config: &Value, schema: &dyn Schema) -> Result<Rendered, TemplateError> {
    let mut parts: Vec<Rendered> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Rendered::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unterminated(text.to_string()))?;
        parts.push(expand(&after[..end], config, schema)?);
        rest = &after[end + 2..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(Rendered::Text(rest.to_string()));
    }
    // A lone placeholder keeps its shape (it may be a list); mixed text joins.
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    Ok(Rendered::Text(
        parts
            .into_iter()
            .map(|p| match p {
                Rendered::Text(t) => t,
                Rendered::List(l) => l.join(","),
            })
            .collect(),
    ))
}

fn expand(expr: &str, config: &Value, schema: &dyn Schema) -> Result<Rendered, TemplateError> {
    let mut filters = expr.split('|').map(str::trim);
    let path = filters.next().unwrap_or_default().to_string();
    let mut value = dig(config, &path).and_then(to_rendered);
    for f in filters {
        value = match f {
            "safe" | "into" => value,
            "volume" => value.map(|v| map_each(v, |p| format!("{p}:{p}"))),
            "volume-target" => value.map(|v| map_each(v, |p| target_of(&p))),
            "first" => value.and_then(|v| pick(v, |l| l.first().cloned())),
            "last" => value.and_then(|v| pick(v, |l| l.last().cloned())),
            _ => match f.strip_prefix("or:") {
                Some(default) => value.or_else(|| Some(parse_default(default))),
                None => return Err(TemplateError::UnknownFilter(f.to_string())),
            },
        };
    }
    match value {
        Some(v) => Ok(v),
        None if schema.is_optional(&path) => Err(TemplateError::OptionalMissing { path }),
        None => Err(TemplateError::Missing { path }),
    }
}

/// Looks a dotted path up from the root of the config map, as Docker does.
fn dig<'a>(config: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(config, |v, key| v.get(key.trim()))
        .filter(|v| !v.is_null())
}

/// Empty strings and empty lists count as "no value", so `or:` applies to them.
fn to_rendered(v: &Value) -> Option<Rendered> {
    let r = match v {
        Value::Array(items) => Rendered::List(items.iter().map(scalar).collect()),
        other => Rendered::Text(scalar(other)),
    };
    match &r {
        Rendered::Text(t) if t.is_empty() => None,
        _ => Some(r),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_each(v: Rendered, f: impl Fn(String) -> String) -> Rendered {
    match v {
        Rendered::Text(t) => Rendered::Text(f(t)),
        Rendered::List(l) => Rendered::List(l.into_iter().map(f).collect()),
    }
}

fn pick(v: Rendered, f: impl Fn(&[String]) -> Option<String>) -> Option<Rendered> {
    match v {
        Rendered::List(l) => f(&l).map(Rendered::Text),
        text => Some(text),
    }
}

/// The container side of `src:dst[:mode]`, or the path itself.
fn target_of(p: &str) -> String {
    p.split(':').nth(1).unwrap_or(p).to_string()
}

fn parse_default(d: &str) -> Rendered {
    match serde_json::from_str::<Value>(d) {
        Ok(Value::Array(items)) => Rendered::List(items.iter().map(scalar).collect()),
        _ => Rendered::Text(d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoSchema;
    impl Schema for NoSchema {
        fn is_optional(&self, path: &str) -> bool {
            path == "redis.ssl"
        }
    }

    fn r(t: &str, c: &Value) -> Result<Rendered, TemplateError> {
        render(t, c, &NoSchema)
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(r("abc", &json!({})), Ok(Rendered::Text("abc".into())));
        assert_eq!(r("", &json!({})), Ok(Rendered::Text("".into())));
    }

    #[test]
    fn nested_lookup_and_mixed_text() {
        let c = json!({"atlassian": {"confluence": {"url": "https://c"}}, "port": 5});
        assert_eq!(
            r("{{atlassian.confluence.url}}", &c),
            Ok(Rendered::Text("https://c".into()))
        );
        assert_eq!(
            r("--url={{ atlassian.confluence.url|safe }}:{{port}}", &c),
            Ok(Rendered::Text("--url=https://c:5".into()))
        );
    }

    #[test]
    fn volume_filters_and_lists() {
        let c = json!({"filesystem": {"paths": ["/srv/a", "/srv/b"]}});
        assert_eq!(
            r("{{filesystem.paths|volume|into}}", &c),
            Ok(Rendered::List(vec![
                "/srv/a:/srv/a".into(),
                "/srv/b:/srv/b".into()
            ]))
        );
        assert_eq!(
            r("{{filesystem.paths|volume-target|into}}", &c),
            Ok(Rendered::List(vec!["/srv/a".into(), "/srv/b".into()]))
        );
        assert_eq!(
            r("{{filesystem.paths|first}}", &c),
            Ok(Rendered::Text("/srv/a".into()))
        );
        assert_eq!(
            r("{{filesystem.paths|last}}", &c),
            Ok(Rendered::Text("/srv/b".into()))
        );
    }

    #[test]
    fn or_default_applies_to_missing_values() {
        assert_eq!(
            r("{{openApiSchemaPath|or:[]|volume|into}}", &json!({})),
            Ok(Rendered::List(vec![]))
        );
        assert_eq!(
            r("{{a.b|or:7}}", &json!({"a": {"b": ""}})),
            Ok(Rendered::Text("7".into()))
        );
    }

    #[test]
    fn missing_values_are_errors_never_empty() {
        assert_eq!(
            r("{{slack.team_id}}", &json!({})),
            Err(TemplateError::Missing {
                path: "slack.team_id".into()
            })
        );
        assert_eq!(
            r("{{redis.ssl}}", &json!({})),
            Err(TemplateError::OptionalMissing {
                path: "redis.ssl".into()
            })
        );
        assert!(matches!(
            r("{{a|bogus}}", &json!({"a": 1})),
            Err(TemplateError::UnknownFilter(_))
        ));
        assert!(matches!(
            r("{{a", &json!({})),
            Err(TemplateError::Unterminated(_))
        ));
    }
}
