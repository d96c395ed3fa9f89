//! The union of every ready server's tools, prompts and resources, and where
//! each exposed name routes. Pure data: built from listings, unit-tested.
//!
//! Names stay as the server gives them. When two servers (or a server and a
//! management tool) expose the same name, each is exposed as `server__name`
//! and the clash is reported; a clash never fails anything.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::session::Listing;

/// How tool and prompt names are exposed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ToolNames {
    /// As the server gives them; prefixed only on a clash.
    #[default]
    AsGiven,
    /// Always `server__name`.
    Prefixed,
}

/// One ready server's contribution.
pub struct Source<'a> {
    pub server: &'a str,
    /// The catalog's `prefix` for this server, if any.
    pub prefix: Option<&'a str>,
    pub listing: &'a Listing,
}

/// Where an exposed name goes: which server, under which upstream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub server: String,
    pub name: String,
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    pub tools: Vec<Tool>,
    pub tool_routes: HashMap<String, Route>,
    pub prompts: Vec<Prompt>,
    pub prompt_routes: HashMap<String, Route>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    resource_routes: HashMap<String, String>,
    template_routes: Vec<(String, String)>,
    /// Human-readable clash reports, for the status.
    pub clashes: Vec<String>,
    /// The servers whose listings are in the index.
    pub servers: BTreeSet<String>,
}

pub const SEPARATOR: &str = "__";

impl Index {
    /// Builds the index. `reserved` names (the management tools) always win.
    pub fn build(sources: &[Source<'_>], names: ToolNames, reserved: &[&str]) -> Index {
        let mut index = Index {
            servers: sources.iter().map(|s| s.server.to_string()).collect(),
            ..Default::default()
        };
        let tools = expose(
            sources,
            |s| {
                s.listing
                    .tools
                    .iter()
                    .map(|t| (t.name.to_string(), t.clone()))
            },
            names,
            reserved,
            "tool",
            &mut index.clashes,
        );
        for (exposed, route, mut tool) in tools {
            tool.name = exposed.clone().into();
            index.tools.push(tool);
            index.tool_routes.insert(exposed, route);
        }
        let prompts = expose(
            sources,
            |s| {
                s.listing
                    .prompts
                    .iter()
                    .map(|p| (p.name.clone(), p.clone()))
            },
            names,
            &[],
            "prompt",
            &mut index.clashes,
        );
        for (exposed, route, mut prompt) in prompts {
            prompt.name = exposed.clone();
            index.prompts.push(prompt);
            index.prompt_routes.insert(exposed, route);
        }
        // URIs cannot be renamed: the first server (by name) keeps a clashing URI.
        for s in sources {
            for r in &s.listing.resources {
                match index.resource_routes.get(&r.uri) {
                    Some(owner) => index.clashes.push(format!(
                        "resource `{}` is offered by {owner} and {}; {owner} serves it",
                        r.uri, s.server
                    )),
                    None => {
                        index
                            .resource_routes
                            .insert(r.uri.clone(), s.server.to_string());
                        index.resources.push(r.clone());
                    }
                }
            }
            for t in &s.listing.resource_templates {
                let fixed = t
                    .uri_template
                    .split('{')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                index.template_routes.push((fixed, s.server.to_string()));
                index.resource_templates.push(t.clone());
            }
        }
        // Longest literal prefix first, so the most specific template wins.
        index
            .template_routes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        index
    }

    /// The server that serves `uri`: an exact resource, else a template.
    pub fn resource_server(&self, uri: &str) -> Option<&str> {
        self.resource_routes
            .get(uri)
            .map(String::as_str)
            .or_else(|| {
                self.template_routes
                    .iter()
                    .find(|(prefix, _)| uri.starts_with(prefix.as_str()))
                    .map(|(_, s)| s.as_str())
            })
    }
}

/// Names every item of every source: as given, or `server__name` on a clash,
/// with a catalog prefix, or when everything is prefixed.
fn expose<'a, T, I>(
    sources: &'a [Source<'a>],
    items: impl Fn(&'a Source<'a>) -> I,
    names: ToolNames,
    reserved: &[&str],
    kind: &str,
    clashes: &mut Vec<String>,
) -> Vec<(String, Route, T)>
where
    I: Iterator<Item = (String, T)>,
{
    let base = |s: &Source<'_>, name: &str| match (names, s.prefix) {
        (ToolNames::Prefixed, _) => format!("{}{SEPARATOR}{name}", s.server),
        (ToolNames::AsGiven, Some(p)) if !p.is_empty() => format!("{p}{SEPARATOR}{name}"),
        _ => name.to_string(),
    };
    let mut owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for s in sources {
        for (name, _) in items(s) {
            owners.entry(base(s, &name)).or_default().push(s.server);
        }
    }
    for (name, who) in &owners {
        if who.len() > 1 || reserved.contains(&name.as_str()) {
            let mut all: Vec<String> = who
                .iter()
                .map(|s| format!("{s}{SEPARATOR}{name}"))
                .collect();
            let with = if reserved.contains(&name.as_str()) {
                " and mcp-fleet".to_string()
            } else {
                String::new()
            };
            all.sort();
            clashes.push(format!(
                "{kind} `{name}` is offered by {}{with}: exposed as {}",
                who.join(", "),
                all.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for s in sources {
        for (name, item) in items(s) {
            let b = base(s, &name);
            let clash = owners[&b].len() > 1 || reserved.contains(&b.as_str());
            let exposed = if clash {
                format!("{}{SEPARATOR}{b}", s.server)
            } else {
                b
            };
            let route = Route {
                server: s.server.to_string(),
                name: name.clone(),
            };
            out.push((exposed, route, item));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_string(), "d", Arc::new(Default::default()))
    }

    fn listing(tools: &[&str]) -> Listing {
        Listing {
            tools: tools.iter().map(|t| tool(t)).collect(),
            ..Default::default()
        }
    }

    fn src<'a>(server: &'a str, listing: &'a Listing) -> Source<'a> {
        Source {
            server,
            prefix: None,
            listing,
        }
    }

    fn names(i: &Index) -> Vec<String> {
        i.tools.iter().map(|t| t.name.to_string()).collect()
    }

    #[test]
    fn names_stay_as_given_without_clashes() {
        let (a, b) = (listing(&["fetch"]), listing(&["get_current_time"]));
        let i = Index::build(
            &[src("fetch", &a), src("time", &b)],
            ToolNames::AsGiven,
            &["mcp-find"],
        );
        assert_eq!(names(&i), vec!["fetch", "get_current_time"]);
        assert_eq!(
            i.tool_routes["get_current_time"],
            Route {
                server: "time".into(),
                name: "get_current_time".into()
            }
        );
        assert!(i.clashes.is_empty());
    }

    #[test]
    fn clashing_names_are_prefixed_with_their_server_and_reported() {
        let (a, b) = (listing(&["echo", "add"]), listing(&["echo"]));
        let i = Index::build(&[src("one", &a), src("two", &b)], ToolNames::AsGiven, &[]);
        assert_eq!(names(&i), vec!["add", "one__echo", "two__echo"]);
        assert_eq!(i.tool_routes["two__echo"].server, "two");
        assert_eq!(i.tool_routes["two__echo"].name, "echo");
        assert_eq!(i.clashes.len(), 1);
        assert!(
            i.clashes[0].contains("one__echo, two__echo"),
            "{:?}",
            i.clashes
        );
    }

    #[test]
    fn management_tool_names_are_reserved() {
        let a = listing(&["mcp-find"]);
        let i = Index::build(&[src("x", &a)], ToolNames::AsGiven, &["mcp-find"]);
        assert_eq!(names(&i), vec!["x__mcp-find"]);
        assert_eq!(i.clashes.len(), 1);
    }

    #[test]
    fn catalog_prefix_and_prefixed_mode() {
        let a = listing(&["search"]);
        let with_prefix = Index::build(
            &[Source {
                server: "gh",
                prefix: Some("github"),
                listing: &a,
            }],
            ToolNames::AsGiven,
            &[],
        );
        assert_eq!(names(&with_prefix), vec!["github__search"]);
        assert_eq!(with_prefix.tool_routes["github__search"].name, "search");
        let prefixed = Index::build(
            &[Source {
                server: "gh",
                prefix: Some("github"),
                listing: &a,
            }],
            ToolNames::Prefixed,
            &[],
        );
        assert_eq!(names(&prefixed), vec!["gh__search"]);
    }

    #[test]
    fn resources_route_by_uri_and_template() {
        let mut a = Listing::default();
        a.resources.push(Resource::new("file:///a", "a"));
        a.resource_templates
            .push(ResourceTemplate::new("repo://{owner}/{name}", "repo"));
        let mut b = Listing::default();
        b.resources.push(Resource::new("file:///a", "a-again"));
        let i = Index::build(&[src("one", &a), src("two", &b)], ToolNames::AsGiven, &[]);
        assert_eq!(i.resources.len(), 1);
        assert_eq!(i.resource_server("file:///a"), Some("one"));
        assert_eq!(i.resource_server("repo://me/x"), Some("one"));
        assert_eq!(i.resource_server("nope://"), None);
        assert_eq!(i.clashes.len(), 1);
    }
}
