//! The catalog file as written by users (Docker's catalog format), parsed with
//! positions so that every error names file, line and column.
//!
//! Parsing is two-phase on purpose: the document is first read as a map of
//! server name -> untyped value (a syntax error fails the whole file), then each
//! entry is typed on its own, so one bad entry is reported and the others load.
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::SourcePos;
use super::secrets::Secret;
use super::url::RemoteUrl;
use crate::{Error, Result};

/// One catalog file: its entries in file order, each typed or with its error.
#[derive(Debug)]
pub struct CatalogFile {
    pub name: Option<String>,
    pub entries: Vec<CatalogEntry>,
}

#[derive(Debug)]
pub struct CatalogEntry {
    pub name: String,
    /// Where the entry's key stands in the file.
    pub pos: SourcePos,
    pub entry: Result<RawEntry, String>,
}

/// A server entry. Unknown keys are accepted and ignored: real catalogs carry
/// many (`ref`, `readme`, `toolsUrl`, `upstream`, ...).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RawEntry {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub image: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub long_lived: Option<bool>,
    pub command: Vec<String>,
    pub env: Vec<RawEnv>,
    pub secrets: Vec<RawSecret>,
    pub volumes: Vec<String>,
    pub user: Option<String>,
    pub disable_network: bool,
    pub allow_hosts: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub remote: Option<RawRemote>,
    pub sse_endpoint: Option<RemoteUrl>,
    pub tools: Vec<RawTool>,
    pub config: Vec<serde_json::Value>,
    pub prefix: Option<String>,
    pub metadata: Option<RawMetadata>,
    /// mcp-fleet's own keys (access rules), which Docker's tools ignore.
    #[serde(rename = "x-mcp-fleet")]
    pub fleet: Option<super::access::AccessRule>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawEnv {
    pub name: String,
    /// Scalars of any YAML type are accepted (`PORT: 8080`) and used as text.
    #[serde(default, deserialize_with = "scalar_text")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawSecret {
    pub name: String,
    pub env: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawRemote {
    /// May carry credentials (user info, query): never printed whole.
    pub url: Option<RemoteUrl>,
    pub transport_type: Option<String>,
    /// Values may be literal credentials or name secrets (`Bearer $TOKEN`).
    pub headers: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawTool {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawMetadata {
    pub category: Option<String>,
    pub tags: Vec<String>,
}

fn scalar_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde_json::Value;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a scalar value")),
    }
}

/// The top level, with the registry kept as (spanned key, untyped value) pairs.
#[derive(Deserialize)]
struct RawDocument {
    name: Option<String>,
    registry: Option<Entries>,
}

struct Entries(Vec<(Spanned<String>, Checked)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of server name to server entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = map.next_entry()? {
                    out.push(kv);
                }
                Ok(Entries(out))
            }
            fn visit_unit<E>(self) -> Result<Entries, E> {
                Ok(Entries(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An entry's value as JSON, with the keys given twice inside it. YAML
/// forbids repeated keys; the parser passes them through so that they make
/// only their own entry invalid instead of the whole catalog.
struct Checked {
    value: serde_json::Value,
    repeated: Vec<String>,
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl CheckedVisitor {
    fn plain<E>(value: serde_json::Value) -> Result<Checked, E> {
        Ok(Checked {
            value,
            repeated: Vec::new(),
        })
    }
}

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Checked, E> {
        Self::plain(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Checked, E> {
        Self::plain(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Checked, E> {
        Self::plain(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Checked, E> {
        Self::plain(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Checked, E> {
        Self::plain(v.into())
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Self::plain(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Checked, E> {
        Self::plain(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let (mut items, mut repeated) = (Vec::new(), Vec::new());
        while let Some(Checked { value, repeated: r }) = seq.next_element()? {
            items.push(value);
            repeated.extend(r);
        }
        Ok(Checked {
            value: items.into(),
            repeated,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let (mut obj, mut repeated) = (serde_json::Map::new(), Vec::new());
        while let Some((key, Checked { value, repeated: r })) =
            map.next_entry::<serde_json::Value, Checked>()?
        {
            let key = match key {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            repeated.extend(r.into_iter().map(|r| format!("{key}.{r}")));
            if obj.insert(key.clone(), value).is_some() {
                repeated.push(key);
            }
        }
        Ok(Checked {
            value: obj.into(),
            repeated,
        })
    }
}

/// Parses one catalog. `Err` means the file as a whole is unusable (syntax
/// error, empty, no `registry`): the caller keeps its last good state.
/// A server defined twice, or an entry with a key given twice, makes only
/// that server invalid.
pub fn parse_catalog(path: &Path, text: &str) -> Result<CatalogFile> {
    if text.trim().is_empty() {
        return Err(Error::Config {
            pos: SourcePos::file(path),
            message: "catalog is empty".into(),
        });
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    let doc: RawDocument =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_error(path, &e))?;
    let Some(Entries(raw)) = doc.registry else {
        return Err(Error::Config {
            pos: SourcePos::file(path),
            message:
                "catalog has no `registry` map (a catalog with no servers says `registry: {}`)"
                    .into(),
        });
    };
    let lines = |name: &str| -> Vec<String> {
        raw.iter()
            .filter(|(k, _)| k.value == name)
            .map(|(k, _)| k.referenced.line().to_string())
            .collect()
    };
    let entries = raw
        .iter()
        .map(|(key, checked)| {
            let name = key.value.clone();
            let defined = lines(&name);
            let entry = if defined.len() > 1 {
                Err(format!(
                    "defined {} times (lines {}); define it once",
                    defined.len(),
                    defined.join(", ")
                ))
            } else if !checked.repeated.is_empty() {
                Err(format!(
                    "key `{}` is given more than once; give each key once",
                    checked.repeated.join("`, `")
                ))
            } else {
                serde_json::from_value::<RawEntry>(checked.value.clone()).map_err(|e| e.to_string())
            };
            CatalogEntry {
                pos: SourcePos::at(path, &key.referenced),
                entry,
                name,
            }
        })
        .collect();
    Ok(CatalogFile {
        name: doc.name,
        entries,
    })
}

/// Turns a YAML error into a positioned config error with a one-line message
/// in plain words (the library's rendering embeds a source snippet, which
/// could hold secrets, and names its own option types).
pub fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Error {
    let pos = match e.location() {
        Some(loc) => SourcePos::at(path, &loc),
        None => SourcePos::file(path),
    };
    let message = match e.without_snippet() {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("key `{k}` is given more than once; give each key once")
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            "a key is given more than once; give each key once".to_string()
        }
        serde_saphyr::Error::Budget { .. } => "the file is too large or too deeply nested \
             to read safely (it holds far more values than any catalog needs)"
            .to_string(),
        other => other
            .to_string()
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid YAML")
            .trim()
            .to_string(),
    };
    Error::Config { pos, message }
}
