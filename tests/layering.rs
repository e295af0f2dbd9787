//! The crate's modules form one-way stairs: each top-level module of `src/` may import
//! (`crate::…`) only modules on a lower step, so no import circle can form between them, and
//! inside a module no two files import each other round a circle.
//!
//! The graph is read from the source text: every `crate::a::b::…` path (in `use` lines and
//! inline) and every `super::…` path, resolved to the deepest file that exists for it. Test code
//! (`tests.rs` files and `#[cfg(test)]` items) is left out: tests may build their fixtures
//! through the config.
//!
//! When this fails: move the shared type down to its owner (or to a leaf such as
//! `hex`, `units`, `tls` or `event`) instead of importing upwards; a new top-level module needs a
//! step here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The steps, lowest first. A module may import any module on a lower step, none on its own
/// or a higher one.
const STEPS: &[&[&str]] = &[
    // Leaves: the hex codec, unit parsers, TLS helpers, the event model (and its OCSF mapping).
    &["hex", "units", "tls", "event"],
    &["store"],
    &["identity"],
    &["classify"],
    // Counters only: the scrape that reads the pipeline, ops and proxy is `admin::metrics`.
    &["metrics"],
    &["pipeline"],
    &["ops"],
    // Compiles the YAML into the checked types the modules above own: they never import it.
    &["config"],
    &["proxy"],
    &["admin"],
    &["sidecar"],
    &["cli"],
];

fn step_of(module: &str) -> Option<usize> {
    STEPS.iter().position(|s| s.contains(&module))
}

/// One source file: its module path (`["config", "validate"]`) and its text without comments,
/// string literals and test code.
struct Source {
    file: String,
    module: Vec<String>,
    text: String,
}

fn read_sources(src: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path
                .strip_prefix(src)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let stem = rel.strip_suffix(".rs")?;
            // The crate roots, and test modules.
            if stem == "lib"
                || stem == "main"
                || stem.ends_with("tests")
                || stem.contains("/tests/")
            {
                return None;
            }
            let text = std::fs::read_to_string(&path).ok()?;
            Some(Source {
                file: rel.clone(),
                module: stem.split('/').map(str::to_string).collect(),
                text: without_test_items(&code_only(&text)),
            })
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text with comments, string and char literals blanked out (so a doc comment or a
/// message naming `crate::config` is not an import).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            i = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '"'), else a lifetime.
            let lit = rest.char_indices().nth(2).filter(|&(_, c)| c == '\'');
            if rest[1..].starts_with('\\') {
                let end = rest[2..].find('\'').map_or(rest.len(), |n| n + 3);
                i += end;
                out.push_str("' '");
            } else if let Some((n, _)) = lit {
                i += n + 1;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`…: the number of `#`s.
fn raw_string_start(rest: &str) -> Option<usize> {
    let r = rest.strip_prefix('b').unwrap_or(rest).strip_prefix('r')?;
    let hashes = r.len() - r.trim_start_matches('#').len();
    r[hashes..]
        .starts_with('"')
        .then_some(hashes + usize::from(rest.starts_with('b')))
}

/// Drop every `#[cfg(test)]` item (a `mod tests { … }`, a test-only `use` or function).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its `;` or at the brace closing its first `{`, whichever is first.
        let mut depth = 0usize;
        let mut end = item.len();
        for (n, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = n + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = n + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path written after `crate::` or `super::` (groups expanded): `[["config", "Config"],
/// ["pipeline", "tap", "Tap"]]`, with `super` resolved against `module`.
fn imported_paths(src: &Source) -> Vec<Vec<String>> {
    let text = &src.text;
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(n) = text[from..].find(start) {
            let at = from + n;
            from = at + start.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `self::super::`, `super::super::`, part of another path.
            }
            let base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                // `super` of a file module `a/b.rs` is `a`; `super::super` climbs further.
                let mut base = src.module[..src.module.len() - 1].to_vec();
                let mut tail = &text[from..];
                while let Some(t) = tail.strip_prefix("super::") {
                    base.pop();
                    tail = t;
                    from += "super::".len();
                }
                base
            };
            let mut paths = Vec::new();
            parse_tree(text, &mut from.clone(), base, &mut paths);
            out.extend(paths);
        }
    }
    out
}

/// Parse `a::b::{c, d::e}` at `*i` into full paths, each prefixed by `prefix`.
fn parse_tree(text: &str, i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    skip_space(text, i);
    if text[*i..].starts_with('{') {
        *i += 1;
        loop {
            skip_space(text, i);
            if *i >= text.len() || text[*i..].starts_with('}') {
                *i += 1;
                return;
            }
            parse_tree(text, i, prefix.clone(), out);
            skip_space(text, i);
            if text[*i..].starts_with(',') {
                *i += 1;
            }
        }
    }
    let ident: String = text[*i..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        *i += 1;
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    *i += ident.len();
    let mut path = prefix;
    path.push(ident);
    skip_space(text, i);
    if text[*i..].starts_with("::") {
        *i += 2;
        parse_tree(text, i, path, out);
    } else {
        out.push(path);
    }
}

fn skip_space(text: &str, i: &mut usize) {
    while text[*i..].starts_with(char::is_whitespace) {
        *i += text[*i..].chars().next().map_or(1, char::len_utf8);
    }
}

/// The deepest module of `path` that is one of `modules` (`["config", "Config"]` → `config`).
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].to_vec())
        .find(|m| modules.contains(m))
}

/// Edges between files, with the paths that make them (for messages).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn import_graph(sources: &[Source]) -> Graph {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let file_of: BTreeMap<&Vec<String>, &str> = sources
        .iter()
        .map(|s| (&s.module, s.file.as_str()))
        .collect();
    let mut graph = Graph::new();
    for s in sources {
        for path in imported_paths(s) {
            let Some(target) = resolve(&path, &modules) else {
                continue; // `crate::SomeRootItem`, a macro, …
            };
            if target == s.module {
                continue;
            }
            graph
                .entry(s.file.clone())
                .or_default()
                .entry(file_of[&target].to_string())
                .or_default()
                .insert(path.join("::"));
        }
    }
    graph
}

fn top(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Every circle of `edges` (strongly connected sets of more than one node).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on the reversed graph.
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a).chain(bs))
        .collect();
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for &n in &nodes {
        finish(n, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (a, bs) in edges {
        for b in bs {
            reversed.entry(b).or_default().push(a);
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for n in order.into_iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut component = vec![n.clone()];
        let mut stack = vec![n];
        assigned.insert(n);
        while let Some(x) = stack.pop() {
            for &y in reversed.get(x).into_iter().flatten() {
                if assigned.insert(y) {
                    component.push(y.clone());
                    stack.push(y);
                }
            }
        }
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

fn finish<'a>(
    n: &'a String,
    edges: &'a BTreeMap<String, BTreeSet<String>>,
    seen: &mut BTreeSet<&'a String>,
    order: &mut Vec<&'a String>,
) {
    if !seen.insert(n) {
        return;
    }
    for next in edges.get(n).into_iter().flatten() {
        finish(next, edges, seen, order);
    }
    order.push(n);
}

fn src_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    assert!(sources.len() > 20, "src/ not found at {}", src.display());
    import_graph(&sources)
}

fn describe(graph: &Graph, from: &str, to: &str) -> String {
    let via: Vec<&String> = graph[from][to].iter().collect();
    format!("  {from} -> {to}: {via:?}")
}

#[test]
fn every_import_points_down_the_steps() {
    let graph = src_graph();
    let mut unknown = BTreeSet::new();
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        for to in targets.keys() {
            let (a, b) = (top(from), top(to));
            if a == b {
                continue;
            }
            match (step_of(a), step_of(b)) {
                (Some(x), Some(y)) if y < x => {}
                (Some(_), Some(_)) => upward.push(describe(&graph, from, to)),
                (x, y) => {
                    if x.is_none() {
                        unknown.insert(a.to_string());
                    }
                    if y.is_none() {
                        unknown.insert(b.to_string());
                    }
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "top-level modules without a step in tests/layering.rs: {unknown:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that do not point to a lower step:\n{}",
        upward.join("\n")
    );
}

#[test]
fn only_the_wiring_imports_the_config() {
    // The config compiles YAML into types the components own; the components never read it.
    let allowed = ["proxy", "admin", "sidecar", "cli"];
    let graph = src_graph();
    let wrong: Vec<String> = graph
        .iter()
        .flat_map(|(from, targets)| targets.keys().map(move |to| (from, to)))
        .filter(|(from, to)| {
            top(to) == "config" && top(from) != "config" && !allowed.contains(&top(from))
        })
        .map(|(from, to)| describe(&graph, from, to))
        .collect();
    assert!(
        wrong.is_empty(),
        "components importing crate::config:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_circle_between_top_level_modules() {
    let graph = src_graph();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &graph {
        for to in targets.keys() {
            if top(from) != top(to) {
                edges
                    .entry(top(from).to_string())
                    .or_default()
                    .insert(top(to).to_string());
            }
        }
    }
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "import circles between modules: {found:?}"
    );
}

#[test]
fn no_circle_between_files() {
    let graph = src_graph();
    let edges: BTreeMap<String, BTreeSet<String>> = graph
        .iter()
        .map(|(from, targets)| (from.clone(), targets.keys().cloned().collect()))
        .collect();
    let found = circles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let inner: Vec<String> = c
                .iter()
                .flat_map(|a| c.iter().map(move |b| (a, b)))
                .filter(|(a, b)| graph.get(*a).is_some_and(|t| t.contains_key(*b)))
                .map(|(a, b)| describe(&graph, a, b))
                .collect();
            format!("{c:?}\n{}", inner.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles between files:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_and_skips_comments_strings_and_tests() {
    let src = Source {
        file: "ops/sinks.rs".into(),
        module: vec!["ops".into(), "sinks".into()],
        text: without_test_items(&code_only(
            "use crate::{event::AuditEvent, pipeline::tap::{self, Tap}};\n\
             use super::webhook::Webhook;\n\
             // use crate::config::Config;\n\
             const S: &str = \"crate::admin::x\";\n\
             const R: &str = r#\"crate::proxy\"#;\n\
             const C: char = '\"'; fn f<'a>(x: &'a str) { crate::metrics::count(x) }\n\
             #[cfg(test)]\nmod tests { use crate::config::load_str; }\n",
        )),
    };
    let paths: Vec<String> = imported_paths(&src).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "event::AuditEvent",
            "pipeline::tap::self",
            "pipeline::tap::Tap",
            "metrics::count",
            "ops::webhook::Webhook",
        ]
    );
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    assert!(circles(&edges).is_empty());
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circles(&edges), [["a", "b", "c"]]);
}
