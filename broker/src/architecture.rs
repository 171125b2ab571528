//! The architecture test: the crate's modules form layers that depend one way, and no import
//! circle exists between files or between modules. It parses every file of `src/` (with `syn`),
//! collects each `crate::` / `super::` / `self::` path it names (in `use` items, types and
//! expressions), resolves re-exports (`pub use child::Name` in a `mod.rs` counts as a
//! dependency on `child` of whoever names `Name`, not of the `mod.rs`) and checks the edges
//! against [`LAYERS`]. The same circle check runs over the `wasmq` CLI's sources.
//!
//! [`LAYERS`] is the one statement of the allowed order; the `//!` map in `lib.rs` mirrors it
//! (checked below), so a new module must be placed in a layer to pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Bottom to top. A module may use modules of its own layer and of layers below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundation", &["protocol", "wake", "failpoint", "logging"]),
    (
        "storage, network, plugin host",
        &["store", "meta", "net", "namesrv", "plugin"],
    ),
    (
        "broker context",
        &[
            "context",
            "config",
            "clients",
            "subscription",
            "filtered_read",
            "long_poll",
            "queue_locks",
            "flow",
        ],
    ),
    (
        "processors and services",
        &[
            "processor",
            "routing",
            "schedule",
            "timer",
            "transaction",
            "filter_bits",
            "registration",
            "ha",
            "replica_meta",
        ],
    ),
    ("wiring", &["broker"]),
];

/// A module path inside a crate (`["plugin", "registry"]`); the crate root is `[]`.
type ModPath = Vec<String>;

/// The files of a crate and the dependencies between them.
struct Crate {
    /// Every file module.
    modules: BTreeSet<ModPath>,
    /// `pub use` re-exports: (module, name) -> the path it re-exports.
    reexports: HashMap<(ModPath, String), Vec<String>>,
    /// Per file: the absolute paths it names (with the line of each), re-exports excluded.
    uses: BTreeMap<ModPath, Vec<(Vec<String>, usize)>>,
}

fn module_path(src: &Path, file: &Path, root_file: &str) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && stem == root_file) {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if skip.contains(&name.as_str()) {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, skip, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Collects the paths a file names, relative to the module it is in (inline `mod` blocks
/// extend that module).
struct Collector<'a> {
    file_module: &'a ModPath,
    /// Inline modules entered inside the file.
    inline: Vec<String>,
    /// (path as written, resolved against this module, line)
    found: Vec<(Vec<String>, ModPath, usize)>,
    /// (module, name, path) of `pub use` items.
    reexports: Vec<(ModPath, String, Vec<String>)>,
    in_pub_use: bool,
}

impl Collector<'_> {
    fn current(&self) -> ModPath {
        let mut m = self.file_module.clone();
        m.extend(self.inline.iter().cloned());
        m
    }

    fn push(&mut self, segs: Vec<String>, line: usize) {
        let here = self.current();
        self.found.push((segs, here, line));
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.named(full, n.ident.to_string(), line);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.named(full, r.rename.to_string(), line);
            }
            syn::UseTree::Glob(_) => self.named(prefix.clone(), String::new(), line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, line);
                }
            }
        }
    }

    fn named(&mut self, full: Vec<String>, name: String, line: usize) {
        if self.in_pub_use && !name.is_empty() {
            self.reexports.push((self.current(), name, full));
        } else {
            self.push(full, line);
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.in_pub_use = !matches!(u.vis, syn::Visibility::Inherited);
        self.use_tree(&mut Vec::new(), &u.tree, line);
        self.in_pub_use = false;
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.inline.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.inline.pop();
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segs.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            let line = p
                .segments
                .first()
                .map(|s| s.ident.span().start().line)
                .unwrap_or(0);
            self.push(segs, line);
        }
        syn::visit::visit_path(self, p);
    }
}

/// Turns a path as written in module `here` into an absolute one (without `crate`); `None`
/// for paths into other crates.
fn absolute(path: &[String], here: &ModPath, modules: &BTreeSet<ModPath>) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String>;
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base = Vec::new();
            rest = &path[1..];
        }
        "self" | "super" => {
            base = here.clone();
            while let Some(s) = rest.first() {
                match s.as_str() {
                    "self" => {}
                    "super" => {
                        base.pop();
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        // 2018 paths may start at a child module of the current one (`use registry::X`).
        name => {
            let mut child = here.clone();
            child.push(name.to_string());
            if !modules.contains(&child) {
                return None;
            }
            base = here.clone();
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file module an absolute path lands in, following re-exports.
fn target(krate: &Crate, path: &[String], depth: usize) -> Option<ModPath> {
    let mut m: ModPath = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let mut next = m.clone();
        next.push(path[i].clone());
        if krate.modules.contains(&next) {
            m = next;
            i += 1;
        } else {
            break;
        }
    }
    if depth < 8 {
        if let Some(name) = path.get(i) {
            if let Some(re) = krate.reexports.get(&(m.clone(), name.clone())) {
                let mut p = re.clone();
                p.extend(path[i + 1..].iter().cloned());
                return target(krate, &p, depth + 1);
            }
        }
    }
    Some(m)
}

fn load(src: &Path, root_file: &str, skip: &[&str]) -> Crate {
    let mut files = Vec::new();
    rust_files(src, skip, &mut files);
    let modules: BTreeSet<ModPath> = files
        .iter()
        .map(|f| module_path(src, f, root_file))
        .collect();
    let mut reexports = HashMap::new();
    let mut raw = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let m = module_path(src, f, root_file);
        let mut c = Collector {
            file_module: &m,
            inline: Vec::new(),
            found: Vec::new(),
            reexports: Vec::new(),
            in_pub_use: false,
        };
        c.visit_file(&ast);
        for (module, name, path) in c.reexports {
            if let Some(abs) = absolute(&path, &module, &modules) {
                reexports.insert((module, name), abs);
            }
        }
        raw.push((m.clone(), c.found));
    }
    let mut uses: BTreeMap<ModPath, Vec<(Vec<String>, usize)>> = BTreeMap::new();
    for (m, found) in raw {
        let v = uses.entry(m).or_default();
        for (path, here, line) in found {
            if let Some(abs) = absolute(&path, &here, &modules) {
                v.push((abs, line));
            }
        }
    }
    Crate {
        modules,
        reexports,
        uses,
    }
}

/// File-level edges: (from, to) -> a line of `from` that names `to`.
fn edges(krate: &Crate) -> BTreeMap<(ModPath, ModPath), usize> {
    let mut e = BTreeMap::new();
    for (from, paths) in &krate.uses {
        for (p, line) in paths {
            if let Some(to) = target(krate, p, 0) {
                if &to != from && !to.is_empty() && !from.is_empty() {
                    e.entry((from.clone(), to)).or_insert(*line);
                }
            }
        }
    }
    e
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Every circle (strongly connected component of more than one node), as a readable path.
fn circles<N: Ord + Clone>(edges: &BTreeSet<(N, N)>, name: impl Fn(&N) -> String) -> Vec<String> {
    let nodes: BTreeSet<N> = edges
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let succ = |n: &N| -> Vec<N> {
        edges
            .iter()
            .filter(|(a, _)| a == n)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let reaches = |from: &N, to: &N| -> Option<Vec<N>> {
        // Breadth-first, keeping the way back.
        let mut prev: BTreeMap<N, N> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from.clone()]);
        let mut seen = BTreeSet::from([from.clone()]);
        while let Some(n) = queue.pop_front() {
            for s in succ(&n) {
                if &s == to {
                    let mut path = vec![s.clone(), n.clone()];
                    let mut cur = n;
                    while let Some(p) = prev.get(&cur) {
                        path.push(p.clone());
                        cur = p.clone();
                    }
                    path.reverse();
                    return Some(path);
                }
                if seen.insert(s.clone()) {
                    prev.insert(s.clone(), n.clone());
                    queue.push_back(s);
                }
            }
        }
        None
    };
    let mut reported: BTreeSet<BTreeSet<N>> = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if let Some(path) = reaches(n, n) {
            let key: BTreeSet<N> = path.iter().cloned().collect();
            if reported.insert(key) {
                out.push(path.iter().map(&name).collect::<Vec<_>>().join(" -> "));
            }
        }
    }
    out
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

/// What is wrong with the broker crate's structure (empty when all is well).
fn broker_violations(src: &Path) -> Vec<String> {
    let krate = load(src, "lib", &["bin"]);
    let mut out = Vec::new();
    for m in &krate.modules {
        if let Some(top) = m.first() {
            if top != "architecture" && layer_of(top).is_none() {
                out.push(format!(
                    "module `{top}` is in no layer: add it to LAYERS in src/architecture.rs and to the lib.rs map"
                ));
            }
        }
    }
    let e = edges(&krate);
    for ((from, to), line) in &e {
        let (Some(a), Some(b)) = (
            from.first().and_then(|t| layer_of(t)),
            to.first().and_then(|t| layer_of(t)),
        ) else {
            continue;
        };
        if b > a {
            out.push(format!(
                "upward import: {} (layer {a} \"{}\") uses {} (layer {b} \"{}\") at {}.rs line {line}",
                show(from),
                LAYERS[a].0,
                show(to),
                LAYERS[b].0,
                from.join("/")
            ));
        }
    }
    let files: BTreeSet<(ModPath, ModPath)> = e.keys().cloned().collect();
    for c in circles(&files, show) {
        out.push(format!("import circle between files: {c}"));
    }
    let tops: BTreeSet<(String, String)> = e
        .keys()
        .filter(|(a, b)| a[0] != b[0])
        .map(|(a, b)| (a[0].clone(), b[0].clone()))
        .collect();
    for c in circles(&tops, |s: &String| s.clone()) {
        out.push(format!("import circle between modules: {c}"));
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn layers_depend_one_way_and_nothing_imports_in_a_circle() {
    let v = broker_violations(&src_dir());
    assert!(
        v.is_empty(),
        "architecture violations:\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn cli_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src");
    let krate = load(&src, "main", &[]);
    // The crate root (`main.rs`: the argument types and `main`) is the top; it is left out.
    let files: BTreeSet<(ModPath, ModPath)> = edges(&krate).into_keys().collect();
    let c = circles(&files, show);
    assert!(
        c.is_empty(),
        "import circles in cli/src:\n  {}",
        c.join("\n  ")
    );
}

#[test]
fn lib_map_mirrors_the_layers() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    for (i, (name, mods)) in LAYERS.iter().enumerate() {
        let row = lib
            .lines()
            .find(|l| l.starts_with(&format!("//! | {i} {name} |")))
            .unwrap_or_else(|| panic!("lib.rs map has no row `//! | {i} {name} |`"));
        for m in *mods {
            assert!(
                row.contains(&format!("[`{m}`]")),
                "lib.rs layer row {i} does not name `{m}`: {row}"
            );
        }
    }
}

/// The checker itself catches what it is for: an upward edge, a circle through a re-export,
/// and a module placed in no layer (on a scratch copy of a small crate).
#[test]
fn the_check_fails_on_an_upward_import_and_a_circle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "lib.rs",
        "pub mod store; pub mod processor; pub mod plugin;",
    );
    // store (layer 1) names the processor (layer 3): upward.
    write(
        "store/mod.rs",
        "pub fn f() { crate::processor::send::g(); }",
    );
    write("processor/mod.rs", "pub mod send;");
    write("processor/send.rs", "pub fn g() {}");
    // plugin: a -> b through the facade's re-export, b -> a directly: a circle.
    write(
        "plugin/mod.rs",
        "pub mod a; pub mod b; pub use b::Thing; pub struct Shared;",
    );
    write("plugin/a.rs", "use super::Thing; pub struct A(Thing);");
    write("plugin/b.rs", "pub struct Thing; fn f(_: super::a::A) {}");
    let v = broker_violations(src);
    assert!(
        v.iter()
            .any(|s| s.starts_with("upward import: store (layer 1")
                && s.contains("uses processor::send")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|s| s.contains("circle between files")
            && s.contains("plugin::a")
            && s.contains("plugin::b")),
        "{v:?}"
    );
    // What the facade itself defines is no edge to its children.
    assert!(!v.iter().any(|s| s.contains("-> plugin ->")), "{v:?}");
    write("extra.rs", "");
    write(
        "lib.rs",
        "pub mod store; pub mod processor; pub mod plugin; pub mod extra;",
    );
    assert!(broker_violations(src)
        .iter()
        .any(|s| s.contains("module `extra` is in no layer")));
}
