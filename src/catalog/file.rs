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
    pub sse_endpoint: Option<String>,
    pub tools: Vec<RawTool>,
    pub config: Vec<serde_json::Value>,
    pub prefix: Option<String>,
    pub metadata: Option<RawMetadata>,
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
    pub url: Option<String>,
    pub transport_type: Option<String>,
    pub headers: BTreeMap<String, String>,
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

struct Entries(Vec<(Spanned<String>, serde_json::Value)>);

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

/// Parses one catalog. `Err` means the file as a whole is unusable (syntax
/// error, empty, no `registry`): the caller keeps its last good state.
pub fn parse_catalog(path: &Path, text: &str) -> Result<CatalogFile> {
    if text.trim().is_empty() {
        return Err(Error::Config {
            pos: SourcePos::file(path),
            message: "catalog is empty".into(),
        });
    }
    let doc: RawDocument = serde_saphyr::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let Some(Entries(raw)) = doc.registry else {
        return Err(Error::Config {
            pos: SourcePos::file(path),
            message:
                "catalog has no `registry` map (a catalog with no servers says `registry: {}`)"
                    .into(),
        });
    };
    let entries = raw
        .into_iter()
        .map(|(key, value)| CatalogEntry {
            pos: SourcePos::at(path, &key.referenced),
            entry: serde_json::from_value::<RawEntry>(value).map_err(|e| e.to_string()),
            name: key.value,
        })
        .collect();
    Ok(CatalogFile {
        name: doc.name,
        entries,
    })
}

/// Turns a YAML error into a positioned config error with a one-line message
/// (the library's rendering embeds a source snippet, which could hold secrets).
pub fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Error {
    let pos = match e.location() {
        Some(loc) => SourcePos::at(path, &loc),
        None => SourcePos::file(path),
    };
    let message = e
        .to_string()
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    Error::Config { pos, message }
}
