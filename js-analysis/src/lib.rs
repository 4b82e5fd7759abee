//! `hitsave-js-analysis`: code dependencies of a memoized JavaScript function, by static analysis
//! of the module sources (oxc's parser and scope analysis; never regular
//! expressions).
//!
//! Each module is summarised once per process into **units**: one per
//! top-level declaration (a function, a class, one declarator of a `const`,
//! `export default …`, a `module.exports = …` statement, a top-level
//! assignment to a module-level binding). A unit's content is its
//! normalised source: the declaration parsed on its own and printed back by
//! oxc's code generator without comments or formatting, so neither counts.
//! Its edges are the references inside it that resolve, through oxc's scope
//! analysis, to another unit or to an import. Imports of the project's own
//! files (relative paths, ESM and CommonJS) are followed to the exported
//! unit; bare imports are packages, by name and the version in their
//! `node_modules/<name>/package.json`, except packages linked there from
//! outside any `node_modules` (workspaces, `npm link`), which are followed
//! as the project's own files; `node:` builtins by name.
//!
//! The memoized function is found from the `memo()` call that wrapped it
//! (`file:line:column` of the call, from the stack): its first argument is
//! an inline function (its own unit) or a name resolved like any reference.
//! When that fails, the function's source text (`fn.toString()`) is looked
//! up in the file.

mod declared;
mod kept;
mod normalise;
mod resolve;

pub use declared::declared_functions;
pub use normalise::{FunctionInfo, free_names, function_info, normalized_function};
use normalise::{content_digest, normalize, source_type_of};
use resolve::{Resolved, project_root, resolve};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use hitsave_core::Digest;
use hitsave_core::stream::StreamWriter;
use hitsave_host::{Core, HitSaveError};
use oxc_allocator::Allocator;
use oxc_ast::AstKind;
use oxc_ast::ast::{
    Argument, AssignmentTarget, BindingPattern, Declaration, ExportDefaultDeclarationKind, Expression,
    ImportDeclarationSpecifier, ModuleExportName, ObjectPropertyKind, Statement,
};
use oxc_parser::Parser;
use oxc_semantic::SymbolFlags;
use oxc_semantic::{Semantic, SemanticBuilder};
use oxc_span::{GetSpan, SourceType, Span};

/// A node of the dependency graph, as the core takes it.
#[derive(Clone, Debug)]
pub struct GraphNode {
    /// `function`, `class`, `constant`, `module`, `package`, … (`docs/spec/keys.md`).
    pub kind: String,
    /// Unique in the graph: `path/relative/to/project.js:unit`, `package:name`, ….
    pub name: String,
    /// The digest of what the node is (its normalised source, a version).
    pub content: String,
    /// The nodes it depends on, by index.
    pub deps: Vec<u32>,
}

/// Graph nodes as the core takes them (`invalid_graph` for an unknown kind
/// or a malformed digest).
pub fn core_nodes(nodes: &[GraphNode]) -> Result<Vec<hitsave_core::graph::Node>, HitSaveError> {
    use hitsave_core::graph::{Node, NodeKind};
    nodes
        .iter()
        .map(|node| {
            let kind = NodeKind::ALL.into_iter().find(|k| k.as_str() == node.kind).ok_or_else(|| {
                HitSaveError::Core(hitsave_core::CoreError::new(
                    hitsave_core::ErrorCode::InvalidGraph,
                    format!("unknown node kind {:?}", node.kind),
                ))
            })?;
            Ok(Node { kind, name: node.name.clone(), content: Digest::parse(&node.content)?, deps: node.deps.clone() })
        })
        .collect()
}

/// A function's graph: the root node's name and every node.
pub struct AnalyzedGraph {
    /// The memoized function's node.
    pub root: String,
    /// Every node, the root among them.
    pub nodes: Vec<GraphNode>,
    /// What the graph read besides code, to check before it is used again in
    /// this process: files and directory listings by their state before they
    /// were read, environment variables by their values.
    pub watched: Watched,
    /// The module-level variables of the graph whose values the running
    /// program decides (`let scale = 2` that `setScale(3)` changes, a `const
    /// cfg = {…}` that code mutates): the binding reads them in the process
    /// and counts them by value, per module.
    pub state: Vec<StateModule>,
    /// The names the project's modules of the graph bind to their own code
    /// or to other project modules (not to packages or Node's modules): the
    /// variables the search for `state` follows in the running program.
    pub state_names: Vec<String>,
    /// Globals (names no declaration binds, `globalThis.X`) that code the
    /// memoized function runs reads when it runs, standard ones left out:
    /// counted by their values in the running program, as `state` is.
    pub state_globals: Vec<String>,
    /// Whether code of the graph reads a file at a path known only when it
    /// runs: then the paths module state holds count too ([`file_nodes`]).
    pub reads_unknown: bool,
    /// Whether code of the graph reads a file at a path known only when it
    /// runs, or writes files: then the files the call's arguments name count
    /// by contents (`hitsave_host::files::argument_files`; a unit that
    /// writes is left out of the reading rules, so its reads are not seen
    /// otherwise: `report(src, out)` reading `src`).
    pub files_in_key: bool,
    /// The variables of the code around the memoized function (a factory's
    /// parameters, its `let`s, the objects and functions it made) that the
    /// function uses, with whether code assigns them: the binding reads them
    /// from the function's closure in the running program and counts them by
    /// value, as module state (`[2, 3].map((k) => memo((x) => x * k))`).
    pub captures: Vec<(String, bool)>,
}

/// Graph nodes for files by their contents (`file:<path>`, named relative to
/// the project root of `anchor`, as a graph names them), and what to watch
/// of them in the process, for the texts that look like paths and name
/// existing files: the files module-level values name (a path a
/// configuration file lists, `cfg.data`), found by the binding in the
/// running program.
pub fn file_nodes(core: &Core, anchor: &Path, texts: &[String]) -> Result<(Vec<GraphNode>, Watched), HitSaveError> {
    let anchor = anchor.canonicalize().unwrap_or_else(|_| anchor.to_path_buf());
    let mut graph = Graph::new(core, project_root(&anchor), &Program::default());
    // The same rule as for the paths code names ([`looks_like_path`]).
    for text in texts.iter().filter(|text| looks_like_path(text)) {
        let Some(path) = absolute(Path::new(text)) else { continue };
        let path = lexical_normal(&path);
        if path.is_file() {
            graph.file(&path, true)?;
        }
    }
    Ok((graph.nodes, graph.watched))
}

/// The module-level variables of one module that a graph reads.
#[derive(Clone, Debug)]
pub struct StateModule {
    /// The module's file.
    pub file: PathBuf,
    /// Every name the module binds at its top level (to tell its scope from
    /// another module's when the binding looks for it in the running program).
    pub bindings: Vec<String>,
    /// `(node, name, reassigned)`: the variable's graph node, its name, and
    /// whether code may assign it (a `let`/`var` some unit writes), so its
    /// value has to be read again before each call; otherwise the value read
    /// once is the one the program keeps (its contents may still change).
    /// `name.member` for the one export the code reads of a module bound
    /// whole (`text.fmt` of `const text = require('./text')`): read from
    /// that object before each call.
    pub variables: Vec<(u32, String, bool)>,
}

/// What a graph read besides code (files, directory listings, environment
/// variables), by the state it read; [`Watched::current`] says whether all
/// of it is still so.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    /// Files and directories (their listings), by their state before they were read.
    pub files: Vec<(PathBuf, hitsave_host::files::FileState)>,
    /// Environment variables, by their values then.
    pub environment: Vec<(String, Option<std::ffi::OsString>)>,
}

impl Watched {
    /// Whether nothing watched changed (a file or listing with a new size,
    /// time or inode, or one modified in the last two seconds; a variable
    /// with another value).
    pub fn current(&self) -> bool {
        self.files.iter().all(|(path, state)| state.still(path))
            && self.environment.iter().all(|(name, value)| std::env::var_os(name) == *value)
    }

    /// Whether the graph read nothing but code.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.environment.is_empty()
    }

    /// `path` by its state now. Each file, directory and worker node is added
    /// once (by name), so no search for an earlier entry: a directory of
    /// thousands of files would make it quadratic.
    fn file(&mut self, path: &Path) {
        self.files.push((path.to_path_buf(), hitsave_host::files::FileState::of(path)));
    }
}

fn unavailable(message: impl Into<String>) -> HitSaveError {
    HitSaveError::CodeUnavailable(message.into())
}

/// What an imported name is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Imported {
    Named(String),
    Default,
    Namespace,
    /// `name.property` of a named import: the export `name`, and when that
    /// is a namespace (`export * as name from './m'`, or `import * as name`
    /// exported again), that module's export `property` only.
    Member(String, String),
}

impl Imported {
    /// The name imported (`Member`'s export, whatever property is read of it).
    fn base(&self) -> Imported {
        match self {
            Imported::Member(name, _) => Imported::Named(name.clone()),
            other => other.clone(),
        }
    }
}

/// An edge out of a unit.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Dep {
    Unit(usize),
    Import {
        spec: String,
        imported: Imported,
    },
    /// An environment variable read by name (`process.env.NAME`,
    /// `process.env['NAME']`, `const { NAME } = process.env`): its value
    /// when the graph is built is a node of the graph.
    Env(String),
    /// The command-line arguments (`process.argv`, `import { argv } from
    /// 'node:process'`): their values when the graph is built are a node.
    Argv,
    /// A program the code runs in a worker or another process (`new
    /// Worker('./worker.js')`, `fork('child.js')`, `execFileSync('python3',
    /// ['script.py'])`): a JavaScript module by every unit of it (what it
    /// imports followed), any other file by its contents.
    Runs(PathBuf),
    /// The platform the program runs on (`process.platform`, `os.type()`,
    /// `os.EOL`, …): the operating system and architecture are a node.
    Platform,
    /// The local time zone and locale (`new Date(ts).getHours()`,
    /// `x.toLocaleString()`, `Intl`, `a.localeCompare(b)`): a result computed
    /// in Tokyo is not one for Berlin. A node of what they come from
    /// ([`LOCAL_TIME_VARIABLES`], `/etc/localtime`).
    LocalTime,
    /// A file the code reads at a path known without running it
    /// (`fs.readFileSync(path.join(__dirname, 'config.json'))`): its
    /// contents when the graph is built are a node of the graph.
    File {
        path: PathBuf,
        contents: bool,
    },
    /// A file read under a directory known without running the code, at a
    /// name only known when it runs (`readFileSync(path.join(DATA, name))`,
    /// `` `${DATA}/${name}.csv` ``): every file under the directory is a node
    /// (`hitsave_host::files`), or the graph is refused when there are too
    /// many to count.
    Directory(PathBuf),
    /// A module loaded by a name only known when the code runs
    /// (`require(name)`, `import(path)`): a graph reaching this unit is
    /// refused with `code_unavailable`, this message saying where.
    Dynamic(String),
}

impl Dep {
    /// The module an import names.
    fn import_spec(&self) -> Option<&String> {
        match self {
            Dep::Import { spec, .. } => Some(spec),
            Dep::Unit(_)
            | Dep::Dynamic(_)
            | Dep::Env(_)
            | Dep::Argv
            | Dep::Platform
            | Dep::LocalTime
            | Dep::Runs(_)
            | Dep::File { .. }
            | Dep::Directory(_) => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Unit {
    name: String,
    #[serde(with = "kept::forms::word")]
    kind: Word,
    /// The text whose normalised form is the unit's content.
    text: String,
    /// The content digest, computed when a graph first reaches the unit:
    /// normalising means parsing the unit again, and most units of a big
    /// module are never reached.
    #[serde(with = "kept::forms::content")]
    content: OnceLock<Digest>,
    #[serde(with = "kept::forms::span")]
    span: Span,
    deps: Vec<Dep>,
    /// A top-level statement run for its effects (`config.nested.k = 3`,
    /// `handlers.set('op', fn)`, `Object.assign(config, …)`, an `if` block):
    /// every module-level binding it refers to may be changed by it, so
    /// each of them depends on it.
    effect: bool,
    /// It reads a file at a path known only when it runs (a helper reading
    /// its parameter): the files other units of its graph name count.
    reads_unknown: bool,
    /// It writes files ([`AnalyzedGraph::files_in_key`]).
    writes_files: bool,
    /// Path-like texts it passes as a call's first argument
    /// (`parse('table.csv')`), for a graph holding a unit that `reads_unknown`.
    named_paths: Vec<String>,
    /// `module.exports = {…}`, `exports.k = […]`, `export default new X()`:
    /// an export holding data (not a function, a class or a name), which a
    /// module importing it reads as module state.
    exported_data: bool,
    /// The deps (by index) it reads inside a function or a class, so when
    /// that code runs rather than when the module loads; in order.
    at_run_time: Vec<u32>,
    /// A module-level variable whose value may differ from what its text
    /// says once the program runs (`let`, `var`, a `const` holding anything
    /// but a literal): its keyword. Its value is read in the process
    /// ([`AnalyzedGraph::state`]).
    #[serde(with = "kept::forms::optional_word")]
    declared: Option<Word>,
}

/// A unit's kind or declaring keyword (named so serde's derive reads it as
/// a type of its own: a `&'static str` field would tie what it reads to
/// `'static`).
type Word = &'static str;

/// The words units are described by (kinds, declaring keywords), as the
/// static strings the analysis compares; a kept summary holding another is
/// read as none (`kept::forms`).
const WORDS: &[&str] = &["function", "class", "constant", "module", "const", "let", "var"];

impl Unit {
    /// A unit with no edges or flags yet.
    fn new(name: String, kind: Word, span: Span, text: String, content: OnceLock<Digest>) -> Unit {
        Unit {
            name,
            kind,
            text,
            content,
            span,
            deps: Vec::new(),
            effect: false,
            reads_unknown: false,
            writes_files: false,
            named_paths: Vec::new(),
            exported_data: false,
            at_run_time: Vec::new(),
            declared: None,
        }
    }
}

/// What a module-level name is bound to.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Binding {
    Unit(usize),
    Import { spec: String, imported: Imported },
}

/// What an exported name is.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Export {
    Local(String),
    Unit(usize),
    From { spec: String, imported: Imported },
}

/// One module, summarised without its AST.
#[derive(Debug, Serialize, Deserialize)]
struct Module {
    /// The file's state before it was read.
    #[serde(skip, default = "missing_state")]
    read_state: hitsave_host::files::FileState,
    #[serde(skip)]
    path: PathBuf,
    rel: String,
    units: Vec<Unit>,
    bindings: HashMap<String, Binding>,
    exports: HashMap<String, Export>,
    star_exports: Vec<String>,
    /// `module.exports = …` (what `require` and a default import give).
    cjs_exports: Option<usize>,
    /// The memoized function, when this is the file `memo()` was called in.
    root: Option<Binding>,
    /// Top-level statements that may change an imported binding
    /// (`settings.k = 3` on `import { settings } from './config'`): the
    /// export they change depends on them, when a graph reaches both.
    import_effects: Vec<(String, Imported, usize)>,
    /// Modules imported only for their effects (`import './setup.mjs'`,
    /// `require('./setup')` as a statement): loaded with this one.
    side_effect_imports: Vec<String>,
    /// Globals this module's units write (`globalThis.RATE = 5`, a sloppy
    /// `RATE = 5`): `(name, unit)`.
    global_writes: Vec<(String, usize)>,
    /// Globals this module's units read (`RATE`, `globalThis.RATE`, names no
    /// declaration binds): `(name, unit)`. A read depends on every write of
    /// the name in the modules a graph reaches.
    global_reads: Vec<(String, usize)>,
    /// The globals read inside a function or class (when that code runs):
    /// `(name, unit)`, standard globals left out ([`AnalyzedGraph::state_globals`]).
    global_reads_at_run_time: Vec<(String, usize)>,
    /// `(binding, unit)`: the units that change a module-level binding of
    /// this module themselves (its writers; their callers are the graph's).
    changes: Vec<(usize, usize)>,
    /// `(binding, unit)`: the edges from a binding to what may change it
    /// (added to the binding's deps, but not references the binding makes).
    effect_edges: std::collections::HashSet<(usize, usize)>,
    /// Its scopes, when some declare functions nothing reassigns (`declared`).
    declared_scopes: Vec<declared::DeclaredScope>,
    /// The variables of the code around the memoized function it uses, read
    /// in the running program ([`AnalyzedGraph::captures`]).
    root_captures: Vec<(String, bool)>,
    /// How the units' texts parse.
    #[serde(skip)]
    source_type: SourceType,
    /// Kept across processes (`kept`): a unit digest computed for it is
    /// written to the store's analysis directory.
    #[serde(skip)]
    kept: bool,
}

fn missing_state() -> hitsave_host::files::FileState {
    hitsave_host::files::FileState::Missing
}

impl Module {
    /// A module of `path` with nothing in it yet, its file read at `read_state`.
    fn empty(path: &Path, rel: String, read_state: hitsave_host::files::FileState) -> Module {
        Module {
            read_state,
            path: path.to_path_buf(),
            rel,
            units: Vec::new(),
            bindings: HashMap::new(),
            exports: HashMap::new(),
            star_exports: Vec::new(),
            cjs_exports: None,
            root: None,
            import_effects: Vec::new(),
            side_effect_imports: Vec::new(),
            global_writes: Vec::new(),
            global_reads_at_run_time: Vec::new(),
            global_reads: Vec::new(),
            changes: Vec::new(),
            effect_edges: std::collections::HashSet::new(),
            declared_scopes: Vec::new(),
            root_captures: Vec::new(),
            source_type: source_type_of(path),
            kept: false,
        }
    }

    /// This (empty) module as one constant unit `name` whose content is
    /// `content`, which is also all it exports (a JSON file, a native addon).
    fn with_only_unit(mut self, name: &str, content: Digest) -> Module {
        self.units.push(Unit::new(name.into(), "constant", Span::default(), String::new(), OnceLock::from(content)));
        self.cjs_exports = Some(0);
        self.exports.insert("default".into(), Export::Unit(0));
        self
    }

    /// Whether code changes the module-level binding `unit` after it is
    /// made: a writer (`scale = v`, `cfg.k = 3`) or a statement run for its
    /// effects on it.
    fn changed(&self, unit: usize) -> bool {
        self.changes.iter().any(|&(binding, _)| binding == unit)
            || self.effect_edges.iter().any(|&(binding, _)| binding == unit)
    }

    /// Whether `unit` is a `let`/`var` that code assigns: its value has to be
    /// read again before each call ([`StateModule::variables`]).
    fn assigned(&self, unit: usize) -> bool {
        self.units[unit].declared == Some("let") && self.changed(unit)
    }

    /// The modules this one loads for their effects: its side-effect imports,
    /// and every module required or imported inside a top-level statement
    /// run for its effects (`require('./setup').setup()`).
    fn effect_specs(&self) -> impl Iterator<Item = &String> {
        self.side_effect_imports.iter().chain(
            self.units.iter().filter(|unit| unit.effect).flat_map(|unit| unit.deps.iter().filter_map(Dep::import_spec)),
        )
    }

    /// The modules this one imports at its top level (bindings, re-exports,
    /// `export *`) or loads for their effects.
    fn import_specs(&self) -> impl Iterator<Item = &String> {
        self.bindings
            .values()
            .filter_map(|binding| match binding {
                Binding::Import { spec, .. } => Some(spec),
                _ => None,
            })
            .chain(self.exports.values().filter_map(|export| match export {
                Export::From { spec, .. } => Some(spec),
                _ => None,
            }))
            .chain(self.star_exports.iter())
            .chain(self.effect_specs())
    }

    /// Every module this one names in a static import or `require`,
    /// at its top level or inside a function.
    fn all_specs(&self) -> impl Iterator<Item = &String> {
        self.import_specs().chain(self.units.iter().flat_map(|unit| unit.deps.iter().filter_map(Dep::import_spec)))
    }
}

/// The properties of object literals (`{ fmt, other: helper, run(x) {} }`)
/// as `(name, span)`, in order; none when one of `objects` is not such a
/// literal or has a spread or a computed name (what it adds is not known).
fn named_properties(objects: &[&Expression<'_>]) -> Option<Vec<(String, Span)>> {
    let mut properties = Vec::new();
    for object in objects {
        let Expression::ObjectExpression(object) = object.without_parentheses() else { return None };
        for property in &object.properties {
            let ObjectPropertyKind::ObjectProperty(property) = property else { return None };
            if property.computed {
                return None;
            }
            properties.push((property.key.static_name()?.to_string(), property.span));
        }
    }
    Some(properties)
}

/// Whether `expression` is a CommonJS module's exports object: `exports`
/// or `module.exports`.
fn is_exports_object(expression: &Expression<'_>) -> bool {
    match expression {
        Expression::Identifier(name) => name.name == "exports",
        Expression::StaticMemberExpression(member) => {
            matches!(&member.object, Expression::Identifier(object) if object.name == "module")
                && member.property.name == "exports"
        }
        _ => false,
    }
}

/// The string argument of `require("x")`, if `expr` is such a call.
fn require_spec<'a>(expr: &'a Expression<'a>) -> Option<&'a str> {
    if let Expression::CallExpression(call) = expr
        && let Expression::Identifier(callee) = &call.callee
        && callee.name == "require"
        && call.arguments.len() == 1
        && let Some(Expression::StringLiteral(spec)) = call.arguments[0].as_expression()
    {
        return Some(spec.value.as_str());
    }
    None
}

fn export_name(name: &ModuleExportName<'_>) -> String {
    match name {
        ModuleExportName::IdentifierName(id) => id.name.to_string(),
        ModuleExportName::IdentifierReference(id) => id.name.to_string(),
        ModuleExportName::StringLiteral(lit) => lit.value.to_string(),
    }
}

fn imported_of(name: &str) -> Imported {
    if name == "default" { Imported::Default } else { Imported::Named(name.to_owned()) }
}

struct Builder<'s> {
    text: &'s str,
    source_type: SourceType,
    module: Module,
    /// Units of statements that assign to a binding, applied once all bindings are known.
    assignments: Vec<(String, usize)>,
    /// Units of top-level calls given `exports` that may define any export
    /// (`defineAll(exports)`): every export depends on them.
    export_writers: Vec<usize>,
}

impl Builder<'_> {
    fn slice(&self, span: Span) -> &str {
        &self.text[span.start as usize..span.end as usize]
    }

    fn unit(&mut self, name: String, kind: &'static str, span: Span, text: &str) -> Result<usize, HitSaveError> {
        self.module.units.push(Unit::new(name, kind, span, text.to_owned(), OnceLock::new()));
        Ok(self.module.units.len() - 1)
    }

    /// A name for a unit that has none of its own (a top-level statement, an
    /// assignment): `prefix` and a digest of its text, so adding a statement
    /// elsewhere in the file renames nothing (a count would); a repeat of the
    /// same text gets `#2`, `#3` in file order.
    fn text_name(&self, prefix: &str, text: &str) -> String {
        let short = hitsave_host::hash::blob_digest(text.as_bytes()).hex();
        self.unique_name(&format!("{prefix}{}", &short[..12]))
    }

    /// `base`, or `base#2`, `#3`… when a unit of the module already has it.
    fn unique_name(&self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut number = 2;
        while self.module.units.iter().any(|unit| unit.name == name) {
            name = format!("{base}#{number}");
            number += 1;
        }
        name
    }

    /// CommonJS exports a top-level call defines, as TypeScript and Babel
    /// emit them: `Object.defineProperty(exports, 'name', { get: … })` (a
    /// re-export, `export { helper } from './b'`) is the export `name`, made
    /// by that statement (it replaces an earlier `exports.name = void 0`);
    /// `__exportStar(require('./b'), exports)` (tslib's too) re-exports what
    /// `./b` exports; any other call given `exports` may define any export,
    /// so every export depends on it. (Taking `exports.name = void 0` for the
    /// export left what the getter returns uncounted: stale hits.)
    fn exports_call(&mut self, call: &oxc_ast::ast::CallExpression<'_>, span: Span) -> Result<(), HitSaveError> {
        let is_exports = |expression: &Expression<'_>| is_exports_object(expression.without_parentheses());
        let arguments: Vec<&Expression<'_>> = call.arguments.iter().filter_map(Argument::as_expression).collect();
        if !arguments.iter().any(|argument| is_exports(argument)) {
            return Ok(());
        }
        let callee = match call.callee.without_parentheses() {
            Expression::Identifier(name) => Some(name.name.as_str()),
            Expression::StaticMemberExpression(member) => Some(member.property.name.as_str()),
            _ => None,
        };
        let text = self.slice(span).to_owned();
        let on_object = matches!(call.callee.without_parentheses(), Expression::StaticMemberExpression(member)
            if matches!(&member.object, Expression::Identifier(object) if object.name == "Object"));
        if callee == Some("defineProperty")
            && on_object
            && arguments.len() >= 2
            && is_exports(arguments[0])
            && let Expression::StringLiteral(key) = arguments[1].without_parentheses()
        {
            let name = self.unique_name(&format!("exports.{}", key.value));
            let unit = self.unit(name, "constant", span, &text)?;
            self.module.exports.insert(key.value.to_string(), Export::Unit(unit));
            return Ok(());
        }
        // `Object.assign(module.exports, { fmt, other })`: each property an
        // export of its own (a later one of a name replaces an earlier).
        if callee == Some("assign")
            && on_object
            && arguments.len() >= 2
            && is_exports(arguments[0])
            && let Some(properties) = named_properties(&arguments[1..])
        {
            for (key, property) in properties {
                let text = self.slice(property).to_owned();
                let name = self.unique_name(&format!("exports.{key}"));
                let unit = self.unit(name, "constant", property, &text)?;
                self.module.exports.insert(key, Export::Unit(unit));
            }
            return Ok(());
        }
        if matches!(callee, Some("__exportStar" | "__export"))
            && let Some(spec) = arguments.first().and_then(|argument| require_spec(argument))
        {
            self.module.star_exports.push(spec.to_owned());
            return Ok(());
        }
        let name = self.text_name("<exports ", &text) + ">";
        let unit = self.unit(name, "constant", span, &text)?;
        self.module.units[unit].effect = true;
        self.export_writers.push(unit);
        Ok(())
    }

    fn bind(&mut self, name: &str, unit: usize) {
        self.module.bindings.insert(name.to_owned(), Binding::Unit(unit));
    }

    /// A declaration of one name: its unit (the source at `span`), its binding, its export.
    fn declare(&mut self, name: &str, kind: &'static str, span: Span, exported: bool) -> Result<(), HitSaveError> {
        let text = self.slice(span).to_owned();
        let unit = self.unit(name.to_owned(), kind, span, &text)?;
        self.bind(name, unit);
        if exported {
            self.module.exports.insert(name.to_owned(), Export::Unit(unit));
        }
        Ok(())
    }

    fn declaration(&mut self, declaration: &Declaration<'_>, exported: bool) -> Result<(), HitSaveError> {
        match declaration {
            Declaration::FunctionDeclaration(function) => {
                if let Some(id) = &function.id {
                    self.declare(&id.name, "function", function.span, exported)?;
                }
            }
            Declaration::ClassDeclaration(class) => {
                if let Some(id) = &class.id {
                    self.declare(&id.name, "class", class.span, exported)?;
                }
            }
            Declaration::VariableDeclaration(variables) => {
                let keyword = variables.kind.as_str();
                for declarator in &variables.declarations {
                    let names: Vec<String> =
                        declarator.id.get_binding_identifiers().iter().map(|id| id.name.to_string()).collect();
                    // `const x = require("m")`, `const { a, b: c } = require("m")`, `const a = require("m").a`
                    let required = declarator.init.as_ref().and_then(|init| match init {
                        Expression::StaticMemberExpression(member) => {
                            require_spec(&member.object).map(|spec| (spec, Some(member.property.name.to_string())))
                        }
                        other => require_spec(other).map(|spec| (spec, None)),
                    });
                    if let Some((spec, member)) = required {
                        match (&declarator.id, member) {
                            (BindingPattern::BindingIdentifier(id), Some(member)) => {
                                self.module.bindings.insert(
                                    id.name.to_string(),
                                    Binding::Import { spec: spec.to_owned(), imported: Imported::Named(member) },
                                );
                                continue;
                            }
                            (BindingPattern::BindingIdentifier(id), None) => {
                                self.module.bindings.insert(
                                    id.name.to_string(),
                                    Binding::Import { spec: spec.to_owned(), imported: Imported::Namespace },
                                );
                                continue;
                            }
                            (BindingPattern::ObjectPattern(pattern), None) if pattern.rest.is_none() => {
                                let mut simple = true;
                                let mut pairs = Vec::new();
                                for property in &pattern.properties {
                                    match (property.key.static_name(), &property.value) {
                                        (Some(key), BindingPattern::BindingIdentifier(local)) => {
                                            pairs.push((local.name.to_string(), key.to_string()))
                                        }
                                        _ => simple = false,
                                    }
                                }
                                if simple {
                                    for (local, key) in pairs {
                                        self.module.bindings.insert(
                                            local,
                                            Binding::Import { spec: spec.to_owned(), imported: Imported::Named(key) },
                                        );
                                    }
                                    continue;
                                }
                            }
                            _ => {}
                        }
                    }
                    let kind = match &declarator.init {
                        Some(Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_)) => "function",
                        Some(Expression::ClassExpression(_)) => "class",
                        _ => "constant",
                    };
                    let text = format!("{keyword} {}", self.slice(declarator.span));
                    let unit = self.unit(names.join(","), kind, declarator.span, &text)?;
                    if kind == "constant" && !(keyword == "const" && declarator.init.as_ref().is_some_and(literal)) {
                        self.module.units[unit].declared = Some(if keyword == "const" { "const" } else { "let" });
                    }
                    for name in &names {
                        self.bind(name, unit);
                        if exported {
                            self.module.exports.insert(name.clone(), Export::Unit(unit));
                        }
                    }
                }
            }
            Declaration::TSEnumDeclaration(declaration) => {
                self.declare(&declaration.id.name, "constant", declaration.span, exported)?;
            }
            // `namespace NS { … }` runs: a unit of its own; a second block of one
            // namespace merges into it (the newer unit depends on the older).
            Declaration::TSNamespaceDeclaration(namespace) if !namespace.declare => {
                let name = namespace.id.name.to_string();
                let earlier = self.module.bindings.get(&name).cloned();
                let text = self.slice(namespace.span).to_owned();
                let unit = self.unit(name.clone(), "constant", namespace.span, &text)?;
                if let Some(Binding::Unit(earlier)) = earlier {
                    self.module.units[unit].deps.push(Dep::Unit(earlier));
                }
                self.bind(&name, unit);
                if exported {
                    self.module.exports.insert(name, Export::Unit(unit));
                }
            }
            // `import x = require("./y")`: an import of the whole module;
            // `import x = NS.y`: a const of that expression.
            Declaration::TSImportEqualsDeclaration(import) => match &import.module_reference {
                oxc_ast::ast::TSModuleReference::ExternalModuleReference(external) => {
                    self.module.bindings.insert(
                        import.id.name.to_string(),
                        Binding::Import { spec: external.expression.value.to_string(), imported: Imported::Namespace },
                    );
                }
                _ => self.declare(&import.id.name, "constant", import.span, exported)?,
            },
            // Types and interfaces do not run.
            _ => {}
        }
        Ok(())
    }

    fn statement(&mut self, statement: &Statement<'_>) -> Result<(), HitSaveError> {
        match statement {
            Statement::ImportDeclaration(import) => {
                let spec = import.source.value.to_string();
                if import.specifiers.as_ref().is_none_or(|specifiers| specifiers.is_empty()) {
                    self.module.side_effect_imports.push(spec.clone());
                }
                for specifier in import.specifiers.iter().flatten() {
                    let (local, imported) = match specifier {
                        ImportDeclarationSpecifier::ImportSpecifier(s) => {
                            (s.local.name.to_string(), imported_of(&export_name(&s.imported)))
                        }
                        ImportDeclarationSpecifier::ImportDefaultSpecifier(s) => {
                            (s.local.name.to_string(), Imported::Default)
                        }
                        ImportDeclarationSpecifier::ImportNamespaceSpecifier(s) => {
                            (s.local.name.to_string(), Imported::Namespace)
                        }
                    };
                    self.module.bindings.insert(local, Binding::Import { spec: spec.clone(), imported });
                }
            }
            Statement::ExportDeclaration(export) => self.declaration(&export.declaration, true)?,
            Statement::ExportNamedDeclaration(export) => {
                for specifier in &export.specifiers {
                    self.module
                        .exports
                        .insert(export_name(&specifier.exported), Export::Local(export_name(&specifier.local)));
                }
            }
            Statement::ExportFromDeclaration(export) => {
                let spec = export.source.value.to_string();
                for specifier in &export.specifiers {
                    self.module.exports.insert(
                        export_name(&specifier.exported),
                        Export::From { spec: spec.clone(), imported: imported_of(&export_name(&specifier.local)) },
                    );
                }
            }
            Statement::ExportAllDeclaration(export) => {
                let spec = export.source.value.to_string();
                match &export.exported {
                    Some(name) => {
                        self.module
                            .exports
                            .insert(export_name(name), Export::From { spec, imported: Imported::Namespace });
                    }
                    None => self.module.star_exports.push(spec),
                }
            }
            Statement::ExportDefaultDeclaration(export) => {
                let data = match &export.declaration {
                    ExportDefaultDeclarationKind::FunctionDeclaration(_)
                    | ExportDefaultDeclarationKind::ClassDeclaration(_)
                    | ExportDefaultDeclarationKind::TSInterfaceDeclaration(_) => false,
                    other => holds_data(other.to_expression()),
                };
                let (text, kind, id) = match &export.declaration {
                    ExportDefaultDeclarationKind::FunctionDeclaration(function) => (
                        self.slice(function.span).to_owned(),
                        "function",
                        function.id.as_ref().map(|id| id.name.to_string()),
                    ),
                    ExportDefaultDeclarationKind::ClassDeclaration(class) => {
                        (self.slice(class.span).to_owned(), "class", class.id.as_ref().map(|id| id.name.to_string()))
                    }
                    ExportDefaultDeclarationKind::TSInterfaceDeclaration(_) => return Ok(()),
                    other => {
                        let expression = other.to_expression();
                        (format!("({})", self.slice(expression.span())), "constant", None)
                    }
                };
                let unit = self.unit("default".to_owned(), kind, export.span, &text)?;
                self.module.units[unit].exported_data = data;
                if let Some(id) = id {
                    self.bind(&id, unit);
                }
                self.module.exports.insert("default".to_owned(), Export::Unit(unit));
            }
            Statement::ExpressionStatement(expression) => {
                if let Some(spec) = require_spec(&expression.expression) {
                    self.module.side_effect_imports.push(spec.to_owned());
                }
                if let Expression::CallExpression(call) = expression.expression.without_parentheses() {
                    self.exports_call(call, expression.span)?;
                }
                if let Expression::AssignmentExpression(assignment) = &expression.expression {
                    let text = self.slice(expression.span).to_owned();
                    match &assignment.left {
                        // module.exports = …, module.exports.a = …, exports.a = …
                        AssignmentTarget::StaticMemberExpression(member) => {
                            let object = &member.object;
                            let property = member.property.name.to_string();
                            if matches!(object, Expression::Identifier(o) if o.name == "module")
                                && property == "exports"
                            {
                                let unit =
                                    self.unit("module.exports".to_owned(), "constant", expression.span, &text)?;
                                self.module.units[unit].exported_data = holds_data(&assignment.right);
                                self.module.cjs_exports = Some(unit);
                                if let Expression::ObjectExpression(object) = &assignment.right {
                                    for property in &object.properties {
                                        if let oxc_ast::ast::ObjectPropertyKind::ObjectProperty(property) = property
                                            && let (Some(key), Expression::Identifier(value)) =
                                                (property.key.static_name(), &property.value)
                                        {
                                            self.module
                                                .exports
                                                .insert(key.to_string(), Export::Local(value.name.to_string()));
                                        }
                                    }
                                }
                            } else if is_exports_object(object) {
                                let unit =
                                    self.unit(format!("exports.{property}"), "constant", expression.span, &text)?;
                                self.module.units[unit].exported_data = holds_data(&assignment.right);
                                self.module.exports.insert(property, Export::Unit(unit));
                            } else if let Expression::Identifier(target) = object {
                                let unit = self.unit(
                                    self.text_name(&format!("{}=", target.name), &text),
                                    "constant",
                                    expression.span,
                                    &text,
                                )?;
                                self.assignments.push((target.name.to_string(), unit));
                            }
                        }
                        AssignmentTarget::AssignmentTargetIdentifier(target) => {
                            let unit = self.unit(
                                self.text_name(&format!("{}=", target.name), &text),
                                "constant",
                                expression.span,
                                &text,
                            )?;
                            self.assignments.push((target.name.to_string(), unit));
                        }
                        _ => {}
                    }
                }
            }
            other => {
                if let Some(declaration) = other.as_declaration() {
                    self.declaration(declaration, false)?;
                }
            }
        }
        Ok(())
    }
}

/// Finds the innermost unit containing a span in O(log n) for the usual
/// case of units that do not overlap (a scan per reference made a module of
/// thousands of functions quadratic).
struct UnitIndex {
    /// `(start, end, unit)` sorted by start.
    spans: Vec<(u32, u32, usize)>,
    /// The largest end among `spans[..=i]`: no unit at or before `i` can
    /// contain a span ending beyond it, so the backward walk stops there.
    reach: Vec<u32>,
}

impl UnitIndex {
    fn new(units: &[Unit]) -> Self {
        let mut spans: Vec<(u32, u32, usize)> =
            units.iter().enumerate().map(|(index, unit)| (unit.span.start, unit.span.end, index)).collect();
        // By start, and the outer of two units starting together first, so a
        // backward walk meets inner units before the units around them.
        spans.sort_unstable_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
        let reach = spans
            .iter()
            .scan(0u32, |reach, &(_, end, _)| {
                *reach = (*reach).max(end);
                Some(*reach)
            })
            .collect();
        Self { spans, reach }
    }

    /// The innermost unit whose span holds `span`: walking back from the
    /// last unit starting at or before it, the first that also ends at or
    /// after it (units nest or are disjoint).
    fn unit_at(&self, span: Span) -> Option<usize> {
        let mut at = self.spans.partition_point(|&(start, _, _)| start <= span.start);
        while at > 0 && self.reach[at - 1] >= span.end {
            at -= 1;
            let (_, end, unit) = self.spans[at];
            if span.end <= end {
                return Some(unit);
            }
        }
        None
    }
}

/// Fills the units' edges from the scope analysis.
fn link(module: &mut Module, semantic: &Semantic<'_>) {
    let scoping = semantic.scoping();
    let nodes = semantic.nodes();
    let root_scope = scoping.root_scope_id();
    let index = UnitIndex::new(&module.units);
    let mut effects: Vec<(usize, usize)> = Vec::new();
    let mut writers: Vec<(usize, usize)> = Vec::new();
    let mut import_effects: Vec<(String, Imported, usize)> = Vec::new();
    for symbol in scoping.symbol_ids() {
        let name = scoping.symbol_name(symbol);
        let declared = scoping.symbol_span(symbol);
        let at_root = scoping.symbol_scope_id(symbol) == root_scope;
        let home: Option<Dep> = match (at_root, module.bindings.get(name)) {
            (true, Some(Binding::Import { spec, imported })) => {
                Some(Dep::Import { spec: spec.clone(), imported: imported.clone() })
            }
            (true, Some(Binding::Unit(unit))) => Some(Dep::Unit(*unit)),
            _ => index.unit_at(declared).map(Dep::Unit),
        };
        let Some(home) = home else { continue };
        for reference in scoping.get_resolved_references(symbol) {
            let node = nodes.get_node(reference.node_id());
            let span = node.kind().span();
            let Some(user) = index.unit_at(span) else { continue };
            // `ns.name` on a namespace import is a use of that export only;
            // `text.fmt` on a named import, of `fmt` when `text` is a
            // namespace the other module exports (`export * as text`).
            let used = match (&home, nodes.parent_kind(node.id())) {
                (Dep::Import { spec, imported }, AstKind::StaticMemberExpression(member))
                    if member.object.span() == span =>
                {
                    let property = member.property.name.to_string();
                    let imported = match imported {
                        Imported::Namespace => Imported::Named(property),
                        Imported::Named(name) => Imported::Member(name.clone(), property),
                        other => other.clone(),
                    };
                    Dep::Import { spec: spec.clone(), imported }
                }
                _ => home.clone(),
            };
            if at_root {
                // A top-level statement that refers to a module-level binding
                // may change it (`config.nested.k = 3`, `steps.push(fn)`); a
                // function (or any other unit) changes it when `may_change`
                // says so (`RATE = r`, `config.k = v`, `init(config)`).
                // Whatever reads the binding depends on them (and, for a
                // writer, on its callers: `Graph::add_changes`), since what
                // the binding holds when the memoized function runs is theirs
                // to decide. An imported binding: that export, in the graph.
                let effect = module.units[user].effect && !called_for_a_shown_result(semantic, node.id());
                // `memo(work)`: HitSave's memo() changes nothing of what it is given.
                let memoized = passed_to_sdk_memo(module, semantic, node.id());
                match &used {
                    Dep::Unit(_) if memoized => {}
                    Dep::Unit(binding) if *binding != user && effect => effects.push((*binding, user)),
                    Dep::Unit(binding) if *binding != user && may_change(semantic, node.id(), reference.is_write()) => {
                        writers.push((*binding, user));
                    }
                    Dep::Import { spec, imported }
                        if effect || may_change(semantic, node.id(), reference.is_write()) =>
                    {
                        import_effects.push((spec.clone(), imported.clone(), user));
                    }
                    _ => {}
                }
            }
            if matches!(used, Dep::Unit(unit) if unit == user) {
                continue;
            }
            // Read inside a function or a class: when the code runs, not
            // when the module loads (`Unit::at_run_time`).
            if at_root
                && !write_only(semantic, node.id(), reference.is_read())
                && in_code_run_later(semantic, node.id())
            {
                let at = module.units[user].deps.len() as u32;
                module.units[user].at_run_time.push(at);
            }
            module.units[user].deps.push(used);
        }
    }
    // Globals: names no declaration binds, and `globalThis.X` (also `global`,
    // `window`, `self`), read or written.
    let mut global_reads: Vec<(String, usize)> = Vec::new();
    let mut global_writes: Vec<(String, usize)> = Vec::new();
    let mut global_reads_at_run_time: Vec<(String, usize)> = Vec::new();
    for (name, references) in scoping.root_unresolved_references() {
        if GLOBAL_OBJECTS.contains(&name.as_str()) {
            continue;
        }
        for &reference in references {
            let reference = scoping.get_reference(reference);
            let Some(unit) = index.unit_at(nodes.get_node(reference.node_id()).kind().span()) else { continue };
            if !reference.is_write()
                && !STANDARD_GLOBALS.contains(&name.as_str())
                && in_code_run_later(semantic, reference.node_id())
            {
                global_reads_at_run_time.push((name.to_string(), unit));
            }
            let target = if reference.is_write() { &mut global_writes } else { &mut global_reads };
            target.push((name.to_string(), unit));
        }
    }
    for node in nodes.iter() {
        let AstKind::StaticMemberExpression(member) = node.kind() else { continue };
        let Expression::Identifier(object) = &member.object else { continue };
        if !GLOBAL_OBJECTS.contains(&object.name.as_str()) || !is_unresolved(semantic, object) {
            continue;
        }
        let Some(unit) = index.unit_at(member.span) else { continue };
        let written = matches!(nodes.parent_kind(node.id()), AstKind::AssignmentExpression(assignment)
            if assignment.left.span() == member.span);
        if !written
            && !STANDARD_GLOBALS.contains(&member.property.name.as_str())
            && in_code_run_later(semantic, node.id())
        {
            global_reads_at_run_time.push((member.property.name.to_string(), unit));
        }
        let target = if written { &mut global_writes } else { &mut global_reads };
        target.push((member.property.name.to_string(), unit));
    }
    // Writes to a builtin's members, anywhere (`Array.prototype.total = …`,
    // `Math.clamp = …`, `Object.defineProperty(String.prototype, 'x', …)`,
    // `Object.assign(Array.prototype, {…})`): a write of the builtin's name,
    // read by every use of it, and, for a prototype's member, a write of
    // `.member`, read by every unit whose text names that member
    // (`[1, 2].total()` names no global). `.*`: a member not known.
    // (The builtin is looked for first: most assignments write a binding of
    // the module, and their members are never listed.)
    for node in nodes.iter() {
        let (target, call) = match node.kind() {
            AstKind::AssignmentExpression(assignment) => match &assignment.left {
                AssignmentTarget::StaticMemberExpression(member) => (&member.object, None),
                AssignmentTarget::ComputedMemberExpression(member) => (&member.object, None),
                _ => continue,
            },
            AstKind::CallExpression(call) => {
                let Some(method) = defining_call(semantic, &call.callee) else { continue };
                let Some(target) = call.arguments.first().and_then(Argument::as_expression) else { continue };
                (target, Some((method, call)))
            }
            _ => continue,
        };
        let Some((root, prototype)) = builtin_root(semantic, target) else { continue };
        let Some(unit) = index.unit_at(node.kind().span()) else { continue };
        global_writes.push((root, unit));
        if !prototype {
            continue;
        }
        let members: Vec<String> = match (node.kind(), call) {
            (AstKind::AssignmentExpression(assignment), _) => match &assignment.left {
                AssignmentTarget::StaticMemberExpression(member) => vec![member.property.name.to_string()],
                AssignmentTarget::ComputedMemberExpression(member) => vec![match &member.expression {
                    Expression::StringLiteral(literal) => literal.value.to_string(),
                    _ => "*".to_owned(),
                }],
                _ => continue,
            },
            (_, Some((method, call))) => match (method, call.arguments.get(1).and_then(Argument::as_expression)) {
                ("defineProperty" | "set", Some(Expression::StringLiteral(key))) => vec![key.value.to_string()],
                ("defineProperties" | "assign", Some(Expression::ObjectExpression(object))) => object
                    .properties
                    .iter()
                    .map(|property| match property {
                        ObjectPropertyKind::ObjectProperty(property) => {
                            property.key.static_name().map_or_else(|| "*".to_owned(), |name| name.to_string())
                        }
                        ObjectPropertyKind::SpreadProperty(_) => "*".to_owned(),
                    })
                    .collect(),
                _ => vec!["*".to_owned()],
            },
            _ => continue,
        };
        global_writes.extend(members.into_iter().map(|member| (format!(".{member}"), unit)));
    }
    // A direct `eval(…)` runs code that may read any binding in scope: the
    // unit depends on all of its module's bindings and on every global.
    // `new Function(…)` and an indirect eval see the globals only.
    for node in nodes.iter() {
        let (callee, direct) = match node.kind() {
            AstKind::CallExpression(call) => (&call.callee, true),
            AstKind::NewExpression(call) => (&call.callee, false),
            _ => continue,
        };
        let runs_text = match callee.without_parentheses() {
            Expression::Identifier(name) => {
                (name.name == "eval" || name.name == "Function") && is_unresolved(semantic, name)
            }
            Expression::StaticMemberExpression(member) => {
                (member.property.name == "eval" || member.property.name == "Function")
                    && matches!(&member.object, Expression::Identifier(object)
                        if GLOBAL_OBJECTS.contains(&object.name.as_str()) && is_unresolved(semantic, object))
            }
            Expression::SequenceExpression(sequence) => {
                matches!(sequence.expressions.last(), Some(Expression::Identifier(name))
                    if name.name == "eval" && is_unresolved(semantic, name))
            }
            _ => false,
        };
        if !runs_text {
            continue;
        }
        let Some(unit) = index.unit_at(node.kind().span()) else { continue };
        global_reads.push(("*".to_owned(), unit));
        let direct = direct && matches!(callee, Expression::Identifier(name) if name.name == "eval");
        if direct {
            let mut deps: Vec<Dep> = module
                .bindings
                .values()
                .map(|binding| match binding {
                    Binding::Unit(bound) => Dep::Unit(*bound),
                    Binding::Import { spec, imported } => {
                        Dep::Import { spec: spec.clone(), imported: imported.clone() }
                    }
                })
                .filter(|dep| !matches!(dep, Dep::Unit(bound) if *bound == unit))
                .collect();
            deps.sort_by_key(|dep| format!("{dep:?}"));
            let first = module.units[unit].deps.len() as u32;
            module.units[unit].at_run_time.extend(first..first + deps.len() as u32);
            module.units[unit].deps.extend(deps);
        }
    }
    for list in [&mut global_reads, &mut global_writes] {
        list.sort();
        list.dedup();
    }
    global_reads_at_run_time.sort();
    global_reads_at_run_time.dedup();
    module.global_reads_at_run_time = global_reads_at_run_time;
    module.global_reads = global_reads;
    module.global_writes = global_writes;
    // CommonJS code that reads its own exports (`exports.fmt(x)`,
    // `module.exports.b`): the export it names, like a reference.
    for node in nodes.iter() {
        let AstKind::StaticMemberExpression(member) = node.kind() else { continue };
        let own_exports = match &member.object {
            Expression::Identifier(object) => object.name == "exports" && is_unresolved(semantic, object),
            Expression::StaticMemberExpression(inner) => {
                inner.property.name == "exports"
                    && matches!(&inner.object, Expression::Identifier(object) if object.name == "module" && is_unresolved(semantic, object))
            }
            _ => false,
        };
        if !own_exports {
            continue;
        }
        let Some(user) = index.unit_at(member.span) else { continue };
        let dep = match module.exports.get(member.property.name.as_str()) {
            Some(Export::Unit(unit)) => Some(Dep::Unit(*unit)),
            Some(Export::Local(local)) => match module.bindings.get(local) {
                Some(Binding::Unit(unit)) => Some(Dep::Unit(*unit)),
                Some(Binding::Import { spec, imported }) => {
                    Some(Dep::Import { spec: spec.clone(), imported: imported.clone() })
                }
                None => None,
            },
            Some(Export::From { spec, imported }) => {
                Some(Dep::Import { spec: spec.clone(), imported: imported.clone() })
            }
            // Not a known export: everything the module exports (more, never less).
            None => module.cjs_exports.map(Dep::Unit),
        };
        if let Some(dep) = dep
            && !matches!(dep, Dep::Unit(unit) if unit == user)
        {
            module.units[user].deps.push(dep);
        }
    }
    // A binding depends on its writers; their callers, here and in other
    // modules, are added by the graph (`Graph::add_changes`).
    writers.sort_unstable();
    writers.dedup();
    effects.extend(writers.iter().copied());
    module.changes = writers;
    for (binding, statement) in effects {
        module.effect_edges.insert((binding, statement));
        if !module.units[binding].deps.iter().any(|dep| matches!(dep, Dep::Unit(unit) if *unit == statement)) {
            module.units[binding].deps.push(Dep::Unit(statement));
        }
    }
    // `require('./config').k = 5`, `require('./setup').setup(3)`: an effect
    // on an export with no name bound to its module in between.
    for node in nodes.iter() {
        let AstKind::StaticMemberExpression(member) = node.kind() else { continue };
        let Some(spec) = require_spec(&member.object) else { continue };
        let Some(unit) = index.unit_at(member.span) else { continue };
        if module.units[unit].effect {
            import_effects.push((spec.to_owned(), Imported::Named(member.property.name.to_string()), unit));
        }
    }
    import_effects.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    import_effects.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2 && format!("{:?}", a.1) == format!("{:?}", b.1));
    module.import_effects = import_effects;
    let mut dynamic: Vec<Span> = Vec::new();
    // `require("x")` and `import("x")` inside functions: the whole module.
    // Also a require made by `createRequire(import.meta.url)`, called at once
    // or through any name: a relative path given to a call whose callee
    // mentions `require` is followed (more than needed, never less).
    for node in nodes.iter() {
        let (spec, span) = match node.kind() {
            AstKind::CallExpression(call) => match (&call.callee, call.arguments.first()) {
                (Expression::Identifier(callee), Some(Argument::StringLiteral(spec)))
                    if callee.name == "require" && call.arguments.len() == 1 =>
                {
                    (spec.value.to_string(), call.span)
                }
                (callee, Some(Argument::StringLiteral(spec)))
                    if call.arguments.len() == 1
                        && (spec.value.starts_with("./") || spec.value.starts_with("../"))
                        && (callee_mentions_require(callee) || made_by_create_require(semantic, callee)) =>
                {
                    (spec.value.to_string(), call.span)
                }
                (Expression::Identifier(callee), Some(argument))
                    if callee.name == "require" && is_unresolved(semantic, callee) && call.arguments.len() == 1 =>
                {
                    match argument.as_expression().and_then(|argument| constant_string(semantic, argument, 0)) {
                        Some(spec) => (spec, call.span),
                        None => {
                            dynamic.push(call.span);
                            continue;
                        }
                    }
                }
                _ => continue,
            },
            AstKind::ImportExpression(import) => match constant_string(semantic, &import.source, 0) {
                Some(spec) => (spec, import.span),
                None => {
                    dynamic.push(import.span);
                    continue;
                }
            },
            _ => continue,
        };
        if let Some(user) = index.unit_at(span) {
            module.units[user].deps.push(Dep::Import { spec, imported: Imported::Namespace });
        }
    }
    process_reads(module, semantic, &index);
    if let Some(here) = Here::of(module) {
        environment_reads(module, semantic, &index, &here);
        file_reads(module, semantic, &index, &here);
    }
    for span in dynamic {
        let Some(user) = index.unit_at(span) else { continue };
        let text = semantic.source_text();
        let line = text[..span.start as usize].matches('\n').count() + 1;
        let call: String = text[span.start as usize..span.end as usize].chars().take(80).collect();
        module.units[user].deps.push(Dep::Dynamic(format!(
            "{}:{line} loads a module by a name only known when it runs (`{call}`), so the code it runs cannot be \
             read: load it by a literal path (a `const` bound to one is fine)",
            module.rel
        )));
    }
}

/// Whether `expression` is the builtin module `name` (`"process"`, `"os"`):
/// a module-level name bound to it (`import os from 'node:os'`, `import * as
/// p from 'process'`, `const os = require('node:os')`), or, for `process`,
/// the global (`process`, `globalThis.process`).
fn is_builtin(module: &Module, semantic: &Semantic<'_>, expression: &Expression<'_>, name: &str) -> bool {
    match expression.without_parentheses() {
        Expression::Identifier(identifier) => {
            if is_unresolved(semantic, identifier) {
                return name == "process" && identifier.name == "process";
            }
            let Some(symbol) = symbol_of(semantic, identifier) else {
                return false;
            };
            if semantic.scoping().symbol_scope_id(symbol) != semantic.scoping().root_scope_id() {
                return false;
            }
            match module.bindings.get(identifier.name.as_str()) {
                Some(Binding::Import { spec, imported: Imported::Default | Imported::Namespace }) => {
                    is_builtin_module(spec, name)
                }
                _ => matches!(semantic.symbol_declaration(symbol).kind(), AstKind::VariableDeclarator(declarator)
                    if declarator.init.as_ref().and_then(|init| require_spec(init.without_parentheses()))
                        .is_some_and(|spec| is_builtin_module(spec, name))),
            }
        }
        Expression::StaticMemberExpression(inner) => {
            name == "process"
                && inner.property.name == "process"
                && matches!(&inner.object, Expression::Identifier(object)
                    if GLOBAL_OBJECTS.contains(&object.name.as_str()) && is_unresolved(semantic, object))
        }
        _ => false,
    }
}

fn is_builtin_module(spec: &str, name: &str) -> bool {
    spec.strip_prefix("node:").unwrap_or(spec) == name
}

/// What a property of the `process` or `os` module says about the program
/// or the machine, when its value can change a result: the command-line
/// arguments, or the platform (a result computed on Linux is not one for
/// Windows when the code reads which it runs on).
fn process_fact(module_name: &str, property: &str) -> Option<Dep> {
    match (module_name, property) {
        ("process", "argv" | "execArgv") => Some(Dep::Argv),
        ("process", "platform" | "arch") => Some(Dep::Platform),
        ("os", "platform" | "arch" | "type" | "endianness" | "EOL" | "machine" | "devNull") => Some(Dep::Platform),
        _ => None,
    }
}

/// What the code reads of the process besides its environment: the
/// command-line arguments (`process.argv`, `const { argv } = process`,
/// `import { argv } from 'node:process'`), a `Dep::Argv` of the unit (their
/// values count), and the platform (`process.platform`, `os.type()`,
/// `os.EOL`: a `Dep::Platform`); and, in code that runs when the module
/// loads (outside every function), the clock or a random source (`const
/// START = Date.now()`, `Math.random()`, `new Date()`, `crypto.randomUUID()`)
/// or the network (`fetch(url)`): a value that may differ in every process,
/// so a graph reaching it is refused
/// (`Dep::Dynamic`), never fingerprinted as code that always gives the same.
fn process_reads(module: &mut Module, semantic: &Semantic<'_>, index: &UnitIndex) {
    let nodes = semantic.nodes();
    let text = semantic.source_text();
    let mut facts: Vec<(usize, Dep)> = Vec::new();
    // Values computed when the module loads, by where they come from.
    let mut loaded: Vec<(usize, Span, &str)> = Vec::new();
    let builtin_of = |expression: &Expression<'_>| {
        ["process", "os"].into_iter().find(|name| is_builtin(module, semantic, expression, name))
    };
    for node in nodes.iter() {
        match node.kind() {
            AstKind::StaticMemberExpression(member) => {
                if let Some(name) = builtin_of(&member.object)
                    && let Some(dep) = process_fact(name, &member.property.name)
                {
                    facts.extend(index.unit_at(member.span).map(|unit| (unit, dep)));
                }
            }
            AstKind::VariableDeclarator(declarator) => {
                // `const { argv, platform } = process`: each property it takes (every one, with a rest).
                let (Some(init), BindingPattern::ObjectPattern(pattern)) = (&declarator.init, &declarator.id) else {
                    continue;
                };
                let Some(name) = builtin_of(init) else { continue };
                let Some(unit) = index.unit_at(declarator.span) else { continue };
                let names: Option<Vec<_>> =
                    pattern.properties.iter().map(|property| property.key.static_name()).collect();
                let taken: Vec<Dep> = match names {
                    Some(names) if pattern.rest.is_none() => {
                        names.iter().filter_map(|key| process_fact(name, key)).collect()
                    }
                    // A computed key or a rest: whatever it takes.
                    _ => vec![Dep::Argv, Dep::Platform],
                };
                facts.extend(taken.into_iter().map(|dep| (unit, dep)));
            }
            // `Date` and `Intl` themselves (`new Date(ts).toString()`,
            // `Intl.NumberFormat()`): the local zone and locale count.
            AstKind::IdentifierReference(identifier)
                if matches!(identifier.name.as_str(), "Date" | "Intl") && is_unresolved(semantic, identifier) =>
            {
                facts.extend(index.unit_at(identifier.span).map(|unit| (unit, Dep::LocalTime)));
            }
            AstKind::CallExpression(call)
                if matches!(call.callee.without_parentheses(), Expression::StaticMemberExpression(member)
                    if LOCAL_TIME_METHODS.contains(&member.property.name.as_str())) =>
            {
                facts.extend(index.unit_at(call.span).map(|unit| (unit, Dep::LocalTime)));
            }
            AstKind::CallExpression(call) if reads_clock(semantic, &call.callee, call.arguments.is_empty()) => {
                loaded.push((node.id().index(), call.span, CLOCK));
            }
            // `const DATA = await fetch(url).then((r) => r.json())`: what the network answers.
            AstKind::CallExpression(call)
                if matches!(call.callee.without_parentheses(), Expression::Identifier(fetch)
                    if fetch.name == "fetch" && is_unresolved(semantic, fetch)) =>
            {
                loaded.push((node.id().index(), call.span, "the network"));
            }
            AstKind::NewExpression(call)
                if call.arguments.is_empty()
                    && matches!(&call.callee, Expression::Identifier(date) if date.name == "Date" && is_unresolved(semantic, date)) =>
            {
                loaded.push((node.id().index(), call.span, CLOCK));
            }
            _ => {}
        }
    }
    // `import { argv } from 'node:process'`, `import { EOL } from 'os'`: every use of that name.
    let scoping = semantic.scoping();
    for symbol in scoping.symbol_ids() {
        if scoping.symbol_scope_id(symbol) != scoping.root_scope_id() {
            continue;
        }
        let Some(Binding::Import { spec, imported: Imported::Named(imported) }) =
            module.bindings.get(scoping.symbol_name(symbol))
        else {
            continue;
        };
        let Some(dep) = ["process", "os"]
            .into_iter()
            .find(|name| is_builtin_module(spec, name))
            .and_then(|name| process_fact(name, imported))
        else {
            continue;
        };
        for reference in scoping.get_resolved_references(symbol) {
            let span = nodes.get_node(reference.node_id()).kind().span();
            facts.extend(index.unit_at(span).map(|unit| (unit, dep.clone())));
        }
    }
    for (unit, dep) in facts {
        let deps = &mut module.units[unit].deps;
        if !deps.iter().any(|have| std::mem::discriminant(have) == std::mem::discriminant(&dep)) {
            deps.push(dep);
        }
    }
    for (id, span, source) in loaded {
        let at_load = !nodes.ancestor_kinds(oxc_semantic::NodeId::from_usize(id)).any(|kind| match kind {
            AstKind::Function(_) | AstKind::ArrowFunctionExpression(_) => true,
            // An instance field's initializer runs per instance, as a method does.
            AstKind::PropertyDefinition(field) => !field.r#static,
            _ => false,
        });
        let Some(user) = index.unit_at(span).filter(|_| at_load) else { continue };
        let line = text[..span.start as usize].matches('\n').count() + 1;
        let call: String = text[span.start as usize..span.end as usize].chars().take(60).collect();
        module.units[user].deps.push(Dep::Dynamic(format!(
            "{}:{line} computes a value from {source} when the module loads (`{call}`): it may differ in every \
             process, and the analysis sees code, not values, so no stored result can be known to match it; compute \
             it inside the function that uses it, or pass it as an argument",
            module.rel
        )));
    }
}

/// The environment variables the local time zone and locale come from.
const LOCAL_TIME_VARIABLES: [&str; 7] = ["TZ", "LC_ALL", "LC_MESSAGES", "LC_TIME", "LC_NUMERIC", "LANG", "LANGUAGE"];

/// Methods whose answer depends on the local time zone or locale
/// (`date.getHours()`, `n.toLocaleString()`, `a.localeCompare(b)`), called on
/// a value of any origin (a `Date` passed as an argument too).
const LOCAL_TIME_METHODS: [&str; 22] = [
    "getHours",
    "getMinutes",
    "getDate",
    "getDay",
    "getMonth",
    "getFullYear",
    "getYear",
    "getTimezoneOffset",
    "setHours",
    "setMinutes",
    "setDate",
    "setMonth",
    "setFullYear",
    "toLocaleString",
    "toLocaleDateString",
    "toLocaleTimeString",
    "toLocaleUpperCase",
    "toLocaleLowerCase",
    "localeCompare",
    "toDateString",
    "toTimeString",
    "toLocaleFormat",
];

/// Where [`reads_clock`]'s values come from, in `process_reads`' refusal.
const CLOCK: &str = "the clock or a random source";

/// Whether a call's callee reads the clock or a random source: `Date.now`,
/// `Date()` (with no argument), `Math.random`, `performance.now`,
/// `process.hrtime(.bigint)`, `process.uptime`, `crypto.randomUUID`,
/// `crypto.getRandomValues`, `crypto.randomBytes`, `crypto.randomInt`.
fn reads_clock(semantic: &Semantic<'_>, callee: &Expression<'_>, no_arguments: bool) -> bool {
    let global = |expression: &Expression<'_>, name: &str| {
        matches!(expression.without_parentheses(), Expression::Identifier(object)
            if object.name == name && is_unresolved(semantic, object))
    };
    match callee.without_parentheses() {
        Expression::Identifier(date) => no_arguments && date.name == "Date" && is_unresolved(semantic, date),
        Expression::StaticMemberExpression(member) => {
            let name = member.property.name.as_str();
            (global(&member.object, "Date") && name == "now")
                || (global(&member.object, "Math") && name == "random")
                || (global(&member.object, "performance") && name == "now")
                || (global(&member.object, "process") && matches!(name, "hrtime" | "uptime"))
                || (matches!(name, "bigint")
                    && matches!(member.object.without_parentheses(),
                    Expression::StaticMemberExpression(inner) if inner.property.name == "hrtime" && global(&inner.object, "process")))
                || (global(&member.object, "crypto")
                    && matches!(name, "randomUUID" | "getRandomValues" | "randomBytes" | "randomInt"))
        }
        _ => false,
    }
}

/// `process.env` reads: by a name the code holds, a `Dep::Env` of the unit
/// (its value counts); any other use (`process.env[name]`, `{ ...process.env }`,
/// passing it on) a `Dep::Dynamic`: which variables it reads cannot be seen.
fn environment_reads(module: &mut Module, semantic: &Semantic<'_>, index: &UnitIndex, here: &Here) {
    let nodes = semantic.nodes();
    let text = semantic.source_text();
    let mut per_call: Vec<(usize, String)> = Vec::new();
    for node in nodes.iter() {
        let AstKind::StaticMemberExpression(member) = node.kind() else { continue };
        if member.property.name != "env" {
            continue;
        }
        let process = match &member.object {
            Expression::Identifier(object) => object.name == "process" && is_unresolved(semantic, object),
            // `globalThis.process.env`
            Expression::StaticMemberExpression(inner) => {
                inner.property.name == "process"
                    && matches!(&inner.object, Expression::Identifier(object)
                        if GLOBAL_OBJECTS.contains(&object.name.as_str()) && is_unresolved(semantic, object))
            }
            _ => false,
        };
        if !process {
            continue;
        }
        let Some(user) = index.unit_at(member.span) else { continue };
        let names: Option<Vec<String>> = match nodes.parent_kind(node.id()) {
            AstKind::StaticMemberExpression(outer) if outer.object.span() == member.span => {
                Some(vec![outer.property.name.to_string()])
            }
            AstKind::ComputedMemberExpression(outer) if outer.object.span() == member.span => {
                match known_text(semantic, here, index, &outer.expression, node.id()) {
                    Known::Here(name) => Some(vec![name]),
                    // `num('PORT', 80)` calling `process.env[name]`: each call reads its name.
                    Known::PerCall(calls) => {
                        per_call.extend(calls);
                        Some(Vec::new())
                    }
                    Known::Unknown => None,
                }
            }
            AstKind::VariableDeclarator(declarator)
                if declarator.init.as_ref().is_some_and(|init| init.span() == member.span) =>
            {
                match &declarator.id {
                    BindingPattern::ObjectPattern(pattern) if pattern.rest.is_none() => pattern
                        .properties
                        .iter()
                        .map(|property| property.key.static_name().map(|name| name.to_string()))
                        .collect(),
                    _ => None,
                }
            }
            _ => None,
        };
        match names {
            Some(names) => module.units[user].deps.extend(names.into_iter().map(Dep::Env)),
            None => {
                let line = text[..member.span.start as usize].matches('\n').count() + 1;
                module.units[user].deps.push(Dep::Dynamic(format!(
                    "{}:{line} reads the environment other than by a variable's name (`process.env` used whole \
                     or with a name computed when it runs), so which values the code depends on cannot be seen: \
                     read each variable by name (`process.env.NAME`), or pass the values as arguments",
                    module.rel
                )));
            }
        }
    }
    for (user, name) in per_call {
        module.units[user].deps.push(Dep::Env(name));
    }
}

/// Functions that read a file's contents (or whether it exists) by path:
/// `fs`'s and `fs/promises`' (`fs.readFileSync`, a destructured
/// `readFile`, …), matched by name, so a same-named method elsewhere only
/// adds a file to the graph.
/// A file's status (`statSync(p).size`) and a directory's listing
/// (`opendirSync`; `readdir*` is a `read*`) count as its contents.
const FILE_READS: &[&str] = &[
    "readFileSync",
    "readFile",
    "createReadStream",
    "readJsonSync",
    "readJson",
    "statSync",
    "lstatSync",
    "stat",
    "lstat",
    "opendirSync",
    "opendir",
];

/// Constructors and functions that open a database or an archive by path
/// (`new Database('data.db')`, `new AdmZip('data.zip')`).
const FILE_OPENERS: &[&str] = &["Database", "AdmZip", "StreamZip", "connect", "openDb"];

/// Whether a call or `new` of `name` reads the file its first argument
/// names: `fs`'s readers, openers, and any `read*`, `load*` or `open*`
/// function that is not a writer (more misses at worst, never a read
/// unseen; the same rule as Python's).
fn reads_by_name(name: &str) -> bool {
    FILE_READS.contains(&name)
        || FILE_OPENERS.contains(&name)
        || (["read", "load", "open"].iter().any(|prefix| name.starts_with(prefix)) && !FILE_WRITES.contains(&name))
}

/// Functions that only ask whether a path exists: the file counts by that alone.
const FILE_EXISTS: &[&str] = &["existsSync", "accessSync", "access"];

/// Functions that write, move or remove files. A unit calling one is left
/// out of the rule: a file it writes would change its own fingerprint, so
/// it would never hit again (its inputs are the user's to pass as `File`).
const FILE_WRITES: &[&str] = &[
    "writeFileSync",
    "writeFile",
    "appendFileSync",
    "appendFile",
    "createWriteStream",
    "openSync",
    "open",
    "mkdirSync",
    "mkdir",
    "rmSync",
    "rm",
    "unlinkSync",
    "unlink",
    "renameSync",
    "rename",
    "copyFileSync",
    "copyFile",
    "cpSync",
    "cp",
    "truncateSync",
    "truncate",
    "writeJsonSync",
    "writeJson",
    "outputFileSync",
];

/// Calls that read a file at a path known without running the code
/// (`readFileSync('data/k.txt')`, relative to the working directory;
/// `path.join(__dirname, 'config.json')`, `new URL('./x.json',
/// import.meta.url)`, a `const` bound to one): a `Dep::File` of the unit
/// holding the call. A path only known when the code runs is the user's to
/// pass (`File`, docs/node.md).
fn file_reads(module: &mut Module, semantic: &Semantic<'_>, index: &UnitIndex, here: &Here) {
    let writers: std::collections::HashSet<usize> = semantic
        .nodes()
        .iter()
        .filter_map(|node| match node.kind() {
            AstKind::CallExpression(call) if callee_name(call).is_some_and(|name| FILE_WRITES.contains(&name)) => {
                index.unit_at(call.span)
            }
            _ => None,
        })
        .collect();
    for &writer in &writers {
        module.units[writer].writes_files = true;
    }
    // Paths held in values (`const CFG = { weights: 'weights.txt' }`, `const
    // FILES = [path.join(__dirname, 'a.txt')]`, a default, a class field): kept, for when code of the
    // graph reads a path only known when it runs (`readFileSync(CFG.weights)`).
    for node in semantic.nodes().iter() {
        let values: Vec<&Expression<'_>> = match node.kind() {
            AstKind::ArrayExpression(array) => {
                array.elements.iter().filter_map(|element| element.as_expression()).collect()
            }
            AstKind::ObjectProperty(property) => vec![&property.value],
            // A default (`function load(p = 'w.txt')`, `{ p = 'w.txt' }`).
            AstKind::FormalParameter(parameter) => parameter.initializer.iter().map(|value| &**value).collect(),
            AstKind::AssignmentPattern(pattern) => vec![&pattern.right],
            // A class field (`static PATH = 'x.txt'`) and a TypeScript enum member (`X = 'x.txt'`).
            AstKind::PropertyDefinition(field) => field.value.iter().collect(),
            AstKind::TSEnumMember(member) => member.initializer.iter().collect(),
            _ => continue,
        };
        let texts = values.into_iter().filter_map(|value| static_text(semantic, value, here, 0));
        let Some(user) = index.unit_at(node.kind().span()).filter(|user| !writers.contains(user)) else { continue };
        for text in texts.filter(|text| looks_like_path(text)) {
            module.units[user].named_paths.push(text);
        }
    }
    for node in semantic.nodes().iter() {
        let (name, span, arguments) = match node.kind() {
            AstKind::CallExpression(call) => (callee_name(call), call.span, &call.arguments),
            AstKind::NewExpression(new) => (
                match new.callee.without_parentheses() {
                    Expression::Identifier(identifier) => Some(identifier.name.as_str()),
                    Expression::StaticMemberExpression(member) => Some(member.property.name.as_str()),
                    _ => None,
                },
                new.span,
                &new.arguments,
            ),
            _ => continue,
        };
        if let AstKind::CallExpression(call) = node.kind()
            && is_glob_call(&call.callee)
        {
            // `glob('data/*.csv')`, `fg.sync('data/**/*.json')`, `fs.globSync(…)`:
            // every file under the directory before the first wildcard counts.
            if let Some(user) = index.unit_at(span)
                && let Some(text) =
                    arguments.first().and_then(Argument::as_expression).and_then(|a| static_text(semantic, a, here, 0))
                && let Some(wildcard) = text.find(['*', '?', '[', '{'])
            {
                // No directory in front (`*.csv`): which files cannot be bounded here.
                let base = text[..wildcard].rsplit_once('/').map(|(base, _)| base).filter(|base| !base.is_empty());
                match base.and_then(|base| absolute(Path::new(base))) {
                    Some(directory) => module.units[user].deps.push(Dep::Directory(lexical_normal(&directory))),
                    None => module.units[user].reads_unknown = true,
                }
            } else if let Some(user) = index.unit_at(span) {
                // `glob(pattern)`: a pattern only known when it runs, counted
                // by what it matches when it is an argument (`files::argument_files`).
                module.units[user].reads_unknown = true;
            }
            continue;
        }
        let Some(name) = name else { continue };
        if RUNNERS.contains(&name) || (name == "Worker" && matches!(node.kind(), AstKind::NewExpression(_))) {
            if let Some(user) = index.unit_at(span) {
                let runs = programs_run(semantic, here, arguments);
                module.units[user].deps.extend(runs.into_iter().map(Dep::Runs));
            }
            continue;
        }
        let contents = reads_by_name(name);
        if !contents && !FILE_EXISTS.contains(&name) {
            // Any other call naming a path (`parse('table.csv')`): kept, in
            // case code it reaches reads the path it is given.
            if let Some(user) = index.unit_at(span).filter(|user| !writers.contains(user))
                && let Some(text) = arguments
                    .first()
                    .and_then(Argument::as_expression)
                    .and_then(|argument| static_text(semantic, argument, here, 0))
                && looks_like_path(&text)
            {
                module.units[user].named_paths.push(text);
            }
            continue;
        }
        // A unit that writes files is left out (above): for a loader, the
        // unit holding the read (the loader itself).
        let Some(holder) = index.unit_at(span).filter(|holder| !writers.contains(holder)) else { continue };
        let Some(argument) = arguments.first().and_then(Argument::as_expression) else { continue };
        let reads = match known_text(semantic, here, index, argument, node.id()) {
            Known::Here(text) => vec![(holder, text)],
            Known::PerCall(calls) => calls,
            Known::Unknown => {
                if !contents {
                    // `existsSync(p)`: whether the path an argument names
                    // exists counts (`files::argument_files`).
                    module.units[holder].reads_unknown = true;
                    continue;
                }
                if let Some(text) = env_text(semantic, argument)
                    && let Some(path) = absolute(Path::new(&text))
                {
                    // `readFileSync(process.env.INPUT)`: the file (or every file of
                    // the directory) the variable names when the graph is built.
                    let path = lexical_normal(&path);
                    kept::situated();
                    module.units[holder].deps.push(if path.is_dir() {
                        Dep::Directory(path)
                    } else {
                        Dep::File { path, contents }
                    });
                } else if let Some(directory) = known_directory(semantic, here, argument)
                    && let Some(directory) = absolute(&directory)
                {
                    // Under a known directory at a name only known when the code
                    // runs: every file under that directory counts.
                    module.units[holder].deps.push(Dep::Directory(lexical_normal(&directory)));
                } else {
                    module.units[holder].reads_unknown = true;
                }
                continue;
            }
        };
        for (user, text) in reads {
            let text = text.strip_prefix("file://").unwrap_or(&text);
            let mut path = PathBuf::from(text);
            if path.is_relative() {
                kept::situated();
                let Ok(cwd) = std::env::current_dir() else { continue };
                path = cwd.join(path);
            }
            if !writers.contains(&user) {
                module.units[user].deps.push(Dep::File { path: lexical_normal(&path), contents });
            }
        }
    }
}

/// Whether a callee lists files by a glob pattern: a name with `glob` in it
/// (`glob`, `globSync`, `globby`, `fs.globSync`, `fastGlob`), or a member of
/// one (`glob.sync`, `fg.sync`, `fg` being fast-glob's usual name).
fn is_glob_call(callee: &Expression<'_>) -> bool {
    let globby = |name: &str| name.to_ascii_lowercase().contains("glob") || name == "fg";
    match callee.without_parentheses() {
        Expression::Identifier(name) => globby(&name.name),
        Expression::StaticMemberExpression(member) => {
            member.property.name.to_ascii_lowercase().contains("glob")
                || matches!(&member.object, Expression::Identifier(object) if globby(&object.name))
        }
        _ => false,
    }
}

/// `child_process` functions (and execa's) that run a program: the files
/// their arguments name are code the call runs.
const RUNNERS: &[&str] = &[
    "spawn",
    "spawnSync",
    "exec",
    "execSync",
    "execFile",
    "execFileSync",
    "fork",
    "execa",
    "execaSync",
    "execaNode",
    "execaCommand",
    "execaCommandSync",
];

/// The existing files a call that runs a program names: any argument, an
/// element of an argument array (`['script.py', '--fast']`), or a word of a
/// command line (`exec('python3 tools/fit.py')`), known without running the
/// code; relative ones from the working directory, as the child sees them.
fn programs_run(semantic: &Semantic<'_>, here: &Here, arguments: &[Argument<'_>]) -> Vec<PathBuf> {
    let mut texts = Vec::new();
    for argument in arguments.iter().filter_map(Argument::as_expression) {
        match argument.without_parentheses() {
            Expression::ArrayExpression(array) => texts.extend(
                array
                    .elements
                    .iter()
                    .filter_map(|element| element.as_expression())
                    .filter_map(|element| static_text(semantic, element, here, 0)),
            ),
            other => texts.extend(static_text(semantic, other, here, 0)),
        }
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for text in &texts {
        let text = text.strip_prefix("file://").unwrap_or(text);
        for word in std::iter::once(text).chain(text.split_whitespace()) {
            if !looks_like_path(word) {
                continue;
            }
            let Some(path) = absolute(Path::new(word)) else { continue };
            let path = lexical_normal(&path);
            kept::situated();
            if path.is_file() && !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

/// A text that may name a file: no whitespace, a directory part or an
/// extension (`data/train.csv`, `table.csv`).
fn looks_like_path(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 4096
        && !text.chars().any(char::is_whitespace)
        && (text.contains('/') || text.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && !ext.is_empty()))
}

/// The value of an environment variable the expression reads by name
/// (`process.env.DATA_DIR`, `process.env['DATA_DIR']`) in this process,
/// where the graph is built (the variable's value is a node of the graph
/// too: `environment_reads`).
fn env_text(semantic: &Semantic<'_>, expression: &Expression<'_>) -> Option<String> {
    let (object, name) = match expression.without_parentheses() {
        Expression::StaticMemberExpression(member) => (&member.object, member.property.name.to_string()),
        Expression::ComputedMemberExpression(member) => match &member.expression {
            Expression::StringLiteral(literal) => (&member.object, literal.value.to_string()),
            _ => return None,
        },
        _ => return None,
    };
    let Expression::StaticMemberExpression(env) = object else { return None };
    let Expression::Identifier(process) = &env.object else { return None };
    (env.property.name == "env" && process.name == "process" && is_unresolved(semantic, process))
        .then(|| {
            kept::situated();
            std::env::var(name).ok()
        })
        .flatten()
}

/// A path part known without running the code, or an environment variable's value.
fn part_text(semantic: &Semantic<'_>, here: &Here, expression: &Expression<'_>) -> Option<String> {
    static_text(semantic, expression, here, 0).or_else(|| env_text(semantic, expression))
}

/// A relative path made absolute against the working directory (how the
/// read resolves it).
fn absolute(path: &Path) -> Option<PathBuf> {
    if path.is_absolute() {
        Some(path.to_path_buf())
    } else {
        kept::situated();
        Some(std::env::current_dir().ok()?.join(path))
    }
}

/// The directory a path built at run time starts with, when that much is
/// known without running the code: `path.join(DATA, name)` (the known
/// leading parts), `` `${DATA}/${name}.csv` `` and `DATA + '/' + name` (the
/// known text up to its last `/`). Never the root or the working directory
/// itself (a path with no known directory part).
fn known_directory(semantic: &Semantic<'_>, here: &Here, expression: &Expression<'_>) -> Option<PathBuf> {
    let prefix = |text: String| -> Option<PathBuf> {
        let text = text.strip_prefix("file://").unwrap_or(&text).to_owned();
        let cut = text.rfind('/')?;
        let directory = &text[..cut];
        (!directory.trim_matches(|c| c == '/' || c == '.').is_empty()).then(|| PathBuf::from(directory))
    };
    match expression.without_parentheses() {
        Expression::TemplateLiteral(template) => {
            let mut text = String::new();
            for (at, quasi) in template.quasis.iter().enumerate() {
                text.push_str(quasi.value.cooked.as_ref()?.as_str());
                match template.expressions.get(at).map(|expression| part_text(semantic, here, expression)) {
                    Some(Some(known)) => text.push_str(&known),
                    Some(None) => return prefix(text),
                    None => return None,
                }
            }
            None
        }
        Expression::BinaryExpression(binary) if binary.operator == oxc_ast::ast::BinaryOperator::Addition => {
            match part_text(semantic, here, &binary.left) {
                Some(left) => prefix(left),
                None => known_directory(semantic, here, &binary.left),
            }
        }
        // `new URL(`./data/${name}`, import.meta.url)`, `new URL(name, DATA)`
        // with `DATA = new URL('./data/', import.meta.url)`: the directory the
        // known part of the name resolves in (a name only known when the code
        // runs resolves in the base's own directory).
        Expression::NewExpression(new) => {
            let Expression::Identifier(callee) = &new.callee else { return None };
            if callee.name != "URL" || new.arguments.len() != 2 {
                return None;
            }
            let base = part_text(semantic, here, new.arguments[1].as_expression()?)?;
            let base = url_directory(Path::new(base.strip_prefix("file://")?))?;
            let relative = new.arguments[0].as_expression()?;
            let within = match relative.without_parentheses() {
                Expression::TemplateLiteral(_) | Expression::BinaryExpression(_) => {
                    known_directory(semantic, here, relative).unwrap_or_default()
                }
                _ => PathBuf::new(),
            };
            let directory = lexical_normal(&base.join(within));
            (directory.components().count() > 1).then_some(directory)
        }
        Expression::CallExpression(call) => {
            if !matches!(path_call_name(here, call), Some("join" | "resolve")) {
                return None;
            }
            let mut path = PathBuf::new();
            let mut known = 0;
            for argument in &call.arguments {
                match argument.as_expression().and_then(|expression| part_text(semantic, here, expression)) {
                    Some(part) => {
                        path.push(part);
                        known += 1;
                    }
                    None => break,
                }
            }
            (known > 0 && known < call.arguments.len()).then_some(path)
        }
        _ => None,
    }
}

/// The directory a relative URL resolves in against `base` (a `file://`
/// URL's path): the base itself when it ends with `/` (a directory URL),
/// else its parent.
fn url_directory(base: &Path) -> Option<PathBuf> {
    if base.to_string_lossy().ends_with('/') { Some(base.to_path_buf()) } else { Some(base.parent()?.to_path_buf()) }
}

/// The name a call's callee goes by: `f(…)` or `….f(…)`.
fn callee_name<'a>(call: &'a oxc_ast::ast::CallExpression<'_>) -> Option<&'a str> {
    match call.callee.without_parentheses() {
        Expression::Identifier(identifier) => Some(identifier.name.as_str()),
        Expression::StaticMemberExpression(member) => Some(member.property.name.as_str()),
        _ => None,
    }
}

/// Where a module is, for `__dirname`, `__filename` and `import.meta`.
#[derive(Clone)]
struct Here {
    file: PathBuf,
    dir: PathBuf,
    /// Local names of the `path` module, and of its `join`/`resolve` (local, imported).
    modules: Vec<String>,
    functions: Vec<(String, String)>,
    /// A function's parameters bound to the arguments of one call of it.
    params: HashMap<oxc_semantic::SymbolId, String>,
}

impl Here {
    fn of(module: &Module) -> Option<Self> {
        let dir = module.path.parent()?.to_path_buf();
        // The names `path`'s functions go by here: `path` itself
        // (`path.join`), `join`/`resolve` imported from it.
        let mut modules = Vec::new();
        let mut functions = Vec::new();
        for (name, binding) in &module.bindings {
            if let Binding::Import { spec, imported } = binding
                && matches!(spec.as_str(), "path" | "node:path" | "path/posix" | "node:path/posix")
            {
                match imported {
                    Imported::Named(function) if function == "join" || function == "resolve" => {
                        functions.push((name.clone(), function.clone()))
                    }
                    Imported::Named(_) | Imported::Member(..) => {}
                    Imported::Default | Imported::Namespace => modules.push(name.clone()),
                }
            }
        }
        Some(Here { file: module.path.clone(), dir, modules, functions, params: HashMap::new() })
    }
}

/// What a name or path the code reads (`process.env[name]`, a file's path)
/// is, without running the code.
enum Known {
    /// One text, read by the unit holding the read.
    Here(String),
    /// Inside a module-level function every use of which is a call with
    /// arguments known without running (`load('c.json')`, `num('PORT', 80)`):
    /// one text per call, read by the unit holding that call.
    PerCall(Vec<(usize, String)>),
    Unknown,
}

/// [`Known`] for `expression`, read by the node `at`.
fn known_text(
    semantic: &Semantic<'_>,
    here: &Here,
    index: &UnitIndex,
    expression: &Expression<'_>,
    at: oxc_semantic::NodeId,
) -> Known {
    if let Some(text) = static_text(semantic, expression, here, 0) {
        return Known::Here(text);
    }
    let nodes = semantic.nodes();
    let scoping = semantic.scoping();
    // The innermost function around the read, and the module-level name it is declared under.
    let Some(function) = nodes
        .ancestors(at)
        .find(|node| matches!(node.kind(), AstKind::Function(_) | AstKind::ArrowFunctionExpression(_)))
    else {
        return Known::Unknown;
    };
    let (symbol, params) = match function.kind() {
        AstKind::Function(declared) => {
            let symbol = match (&declared.id, nodes.parent_kind(function.id())) {
                (Some(id), _) if declared.is_declaration() => id.symbol_id.get(),
                (_, AstKind::VariableDeclarator(declarator)) => {
                    declarator.id.get_binding_identifier().and_then(|id| id.symbol_id.get())
                }
                _ => None,
            };
            (symbol, &declared.params)
        }
        AstKind::ArrowFunctionExpression(arrow) => match nodes.parent_kind(function.id()) {
            AstKind::VariableDeclarator(declarator) => {
                (declarator.id.get_binding_identifier().and_then(|id| id.symbol_id.get()), &arrow.params)
            }
            _ => (None, &arrow.params),
        },
        _ => return Known::Unknown,
    };
    let Some(symbol) = symbol.filter(|&symbol| scoping.symbol_scope_id(symbol) == scoping.root_scope_id()) else {
        return Known::Unknown;
    };
    // Exported (`export function load`, `export const load = …`): other
    // modules may call it with arguments not seen here.
    if nodes
        .ancestor_kinds(function.id())
        .any(|kind| matches!(kind, AstKind::ExportNamedDeclaration(_) | AstKind::ExportDefaultDeclaration(_)))
    {
        return Known::Unknown;
    }
    // A parameter the function assigns holds its argument only until then.
    let parameters: Vec<Option<oxc_semantic::SymbolId>> = params
        .items
        .iter()
        .map(|item| match &item.pattern {
            BindingPattern::BindingIdentifier(id) => id
                .symbol_id
                .get()
                .filter(|&parameter| !scoping.get_resolved_references(parameter).any(|reference| reference.is_write())),
            _ => None,
        })
        .collect();
    let mut calls = Vec::new();
    for reference in scoping.get_resolved_references(symbol) {
        let node = nodes.get_node(reference.node_id());
        let AstKind::CallExpression(call) = nodes.parent_kind(node.id()) else { return Known::Unknown };
        if call.callee.without_parentheses().span() != node.kind().span() {
            return Known::Unknown; // passed on, not called: its arguments are not known
        }
        let mut bound = here.clone();
        for (position, parameter) in parameters.iter().enumerate() {
            let Some(parameter) = parameter else { continue };
            let value = match call.arguments.get(position) {
                Some(argument) => {
                    argument.as_expression().and_then(|argument| static_text(semantic, argument, here, 0))
                }
                // Left out: the parameter's default (`load()` with `load(p = 'w.txt')`).
                None => {
                    params.items[position].initializer.as_ref().and_then(|value| static_text(semantic, value, here, 0))
                }
            };
            if let Some(value) = value {
                bound.params.insert(*parameter, value);
            }
        }
        let (Some(text), Some(user)) = (static_text(semantic, expression, &bound, 0), index.unit_at(call.span)) else {
            return Known::Unknown;
        };
        calls.push((user, text));
    }
    if calls.is_empty() { Known::Unknown } else { Known::PerCall(calls) }
}

/// Which path function a call is: `join`/`resolve` of the `path` module (by
/// any local name, `require('path').join`), or `fileURLToPath`; the name of
/// another member of `path` (the callers match on the ones they read).
fn path_call_name<'a>(here: &'a Here, call: &'a oxc_ast::ast::CallExpression<'_>) -> Option<&'a str> {
    Some(match call.callee.without_parentheses() {
        Expression::Identifier(identifier) if identifier.name == "fileURLToPath" => "fileURLToPath",
        Expression::Identifier(identifier) => here
            .functions
            .iter()
            .find(|(local, _)| local == identifier.name.as_str())
            .map(|(_, function)| function.as_str())?,
        Expression::StaticMemberExpression(member) => match &member.object {
            Expression::Identifier(object) if here.modules.iter().any(|name| name == object.name.as_str()) => {
                member.property.name.as_str()
            }
            // `url.fileURLToPath(…)`, `require('path').join(…)`
            Expression::Identifier(_) if member.property.name == "fileURLToPath" => "fileURLToPath",
            object if require_spec(object).is_some_and(|spec| spec.ends_with("path")) => member.property.name.as_str(),
            _ => return None,
        },
        _ => return None,
    })
}

/// The text a path expression always evaluates to in this module: string
/// literals, templates and `+` of such, `__dirname`/`__filename`,
/// `import.meta.dirname`/`.filename`/`.url`, `path.join`/`path.resolve` of
/// such, `new URL(relative, import.meta.url)` (as a `file://` URL, also its
/// `.pathname`/`.href`), `fileURLToPath(…)` of one, and a `const` bound to one.
fn static_text(semantic: &Semantic<'_>, expression: &Expression<'_>, here: &Here, depth: u32) -> Option<String> {
    if depth > 8 {
        return None;
    }
    let next = |expression: &Expression<'_>| static_text(semantic, expression, here, depth + 1);
    match expression.without_parentheses() {
        Expression::StringLiteral(literal) => Some(literal.value.to_string()),
        Expression::TemplateLiteral(template) => {
            let mut text = String::new();
            for (at, quasi) in template.quasis.iter().enumerate() {
                text.push_str(quasi.value.cooked.as_ref()?.as_str());
                if let Some(expression) = template.expressions.get(at) {
                    text.push_str(&next(expression)?);
                }
            }
            Some(text)
        }
        Expression::BinaryExpression(binary) if binary.operator == oxc_ast::ast::BinaryOperator::Addition => {
            Some(next(&binary.left)? + &next(&binary.right)?)
        }
        Expression::Identifier(identifier) if is_unresolved(semantic, identifier) => match identifier.name.as_str() {
            "__dirname" => Some(here.dir.to_string_lossy().into_owned()),
            "__filename" => Some(here.file.to_string_lossy().into_owned()),
            _ => None,
        },
        Expression::Identifier(identifier) => {
            let scoping = semantic.scoping();
            let symbol = scoping.get_reference(identifier.reference_id()).symbol_id()?;
            if let Some(value) = here.params.get(&symbol) {
                return Some(value.clone());
            }
            next(const_initializer(semantic, identifier)?)
        }
        Expression::NumericLiteral(number) => Some(number.value.to_string()),
        Expression::StaticMemberExpression(member) => match (&member.object, member.property.name.as_str()) {
            (Expression::ImportMeta(_), "dirname") => Some(here.dir.to_string_lossy().into_owned()),
            (Expression::ImportMeta(_), "filename") => Some(here.file.to_string_lossy().into_owned()),
            (Expression::ImportMeta(_), "url") => Some(format!("file://{}", here.file.to_string_lossy())),
            (object, "href") => next(object),
            // A file URL's path (`new URL(import.meta.url).pathname`).
            (object, "pathname") => {
                next(object).map(|text| text.strip_prefix("file://").map_or(text.clone(), str::to_owned))
            }
            _ => None,
        },
        Expression::NewExpression(new) => {
            let Expression::Identifier(callee) = &new.callee else { return None };
            if callee.name != "URL" {
                return None;
            }
            let relative = next(new.arguments.first()?.as_expression()?)?;
            if new.arguments.len() == 1 {
                // `new URL(import.meta.url)`: the URL itself.
                return relative.starts_with("file://").then_some(relative);
            }
            let base = next(new.arguments.get(1)?.as_expression()?)?;
            let base = PathBuf::from(base.strip_prefix("file://")?);
            let joined = match relative.strip_prefix("file://") {
                Some(absolute) => PathBuf::from(absolute),
                None => url_directory(&base)?.join(&relative),
            };
            // A directory URL (`new URL('./data/', import.meta.url)`) keeps its
            // `/`: a name resolves inside it.
            let slash = if relative.ends_with('/') { "/" } else { "" };
            Some(format!("file://{}{slash}", lexical_normal(&joined).to_string_lossy()))
        }
        // `process.cwd()`: the directory relative paths resolve against, as
        // a relative path itself does.
        Expression::CallExpression(call)
            if call.arguments.is_empty()
                && matches!(call.callee.without_parentheses(), Expression::StaticMemberExpression(member)
                    if member.property.name == "cwd"
                        && matches!(&member.object, Expression::Identifier(process)
                            if process.name == "process" && is_unresolved(semantic, process))) =>
        {
            kept::situated();
            Some(std::env::current_dir().ok()?.to_string_lossy().into_owned())
        }
        Expression::CallExpression(call) => {
            let name = path_call_name(here, call)?;
            let parts: Option<Vec<String>> =
                call.arguments.iter().map(|argument| next(argument.as_expression()?)).collect();
            let parts = parts?;
            match name {
                "join" | "resolve" => {
                    let mut path = PathBuf::new();
                    for part in &parts {
                        path.push(part); // an absolute part starts over, as `resolve` does
                    }
                    if name == "resolve" && path.is_relative() {
                        kept::situated();
                        path = std::env::current_dir().ok()?.join(path);
                    }
                    Some(lexical_normal(&path).to_string_lossy().into_owned())
                }
                "fileURLToPath" if parts.len() == 1 => parts[0].strip_prefix("file://").map(str::to_owned),
                // `path.dirname(fileURLToPath(import.meta.url))`: the module's directory.
                "dirname" if parts.len() == 1 => Some(Path::new(&parts[0]).parent()?.to_string_lossy().into_owned()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `a/./b/../c` as `a/c`, without asking the file system (the file may not exist).
fn lexical_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// What a `const x = <expression>` bound to a plain name is initialised
/// with, for a reference to `x`.
fn const_initializer<'a>(
    semantic: &'a Semantic<'_>,
    identifier: &oxc_ast::ast::IdentifierReference<'_>,
) -> Option<&'a Expression<'a>> {
    let scoping = semantic.scoping();
    let symbol = scoping.get_reference(identifier.reference_id()).symbol_id()?;
    if !scoping.symbol_flags(symbol).contains(SymbolFlags::ConstVariable) {
        return None;
    }
    match semantic.nodes().get_node(scoping.symbol_declaration(symbol)).kind() {
        AstKind::VariableDeclarator(declarator) if matches!(declarator.id, BindingPattern::BindingIdentifier(_)) => {
            declarator.init.as_ref()
        }
        _ => None,
    }
}

/// The string an expression always is: a literal, a template without
/// substitutions, or a `const` bound to one (`const name = './u'`).
fn constant_string(semantic: &Semantic<'_>, expression: &Expression<'_>, depth: u32) -> Option<String> {
    match expression.without_parentheses() {
        Expression::StringLiteral(literal) => Some(literal.value.to_string()),
        Expression::TemplateLiteral(template) if template.expressions.is_empty() => {
            template.quasis.first().and_then(|quasi| quasi.value.cooked.as_ref()).map(|text| text.to_string())
        }
        Expression::Identifier(identifier) if depth < 8 => {
            constant_string(semantic, const_initializer(semantic, identifier)?, depth + 1)
        }
        _ => None,
    }
}

/// Whether the reference at `node` may change what its binding holds, not
/// only read it: it is assigned, or a member of it is (`x.k = 1`, `x[k]++`,
/// `delete x.k`, at any depth), a method is called on it or on a member
/// (`x.push(v)`, `x.m.set(k, v)`), it is passed to a call (`init(x)`,
/// `Object.assign(x, …)`), or it is given a local name that is then changed
/// (`const c = x; c.k = 1`). More than needed,
/// never less: a unit wrongly counted as a writer costs a miss, a writer
/// missed costs a wrong result.
fn may_change(semantic: &Semantic<'_>, node: oxc_semantic::NodeId, written: bool) -> bool {
    may_change_at(semantic, node, written, 0)
}

fn may_change_at(semantic: &Semantic<'_>, node: oxc_semantic::NodeId, written: bool, depth: u32) -> bool {
    if written {
        return true;
    }
    let nodes = semantic.nodes();
    if depth == 0 && names_const_primitive(semantic, nodes.get_node(node).kind()) {
        // `const ROOT = '/data'` passed on (`path.join(ROOT, name)`): nothing changes it.
        return false;
    }
    let mut current = node;
    let mut span = nodes.get_node(node).kind().span();
    let mut through_member = false;
    loop {
        let parent = nodes.parent_id(current);
        if parent == current {
            return false;
        }
        match nodes.get_node(parent).kind() {
            AstKind::StaticMemberExpression(member) if member.object.span() == span => through_member = true,
            AstKind::ComputedMemberExpression(member) if member.object.span() == span => through_member = true,
            AstKind::PrivateFieldExpression(member) if member.object.span() == span => through_member = true,
            AstKind::ParenthesizedExpression(_)
            | AstKind::ChainExpression(_)
            | AstKind::TSNonNullExpression(_)
            | AstKind::TSAsExpression(_)
            | AstKind::TSSatisfiesExpression(_)
            | AstKind::TSTypeAssertion(_) => {}
            AstKind::AssignmentExpression(assignment) => return assignment.left.span() == span,
            AstKind::UpdateExpression(_) => return true,
            AstKind::UnaryExpression(unary) => return unary.operator == oxc_ast::ast::UnaryOperator::Delete,
            AstKind::CallExpression(call) => {
                if call.callee.span() == span {
                    // `x.push(v)` changes x; `x.get(k)`, `x.slice()` do not.
                    return through_member && !reads_only_method(&call.callee);
                }
                return call.arguments.iter().any(|argument| argument.span() == span)
                    && !reads_only_callee(semantic, &call.callee);
            }
            AstKind::NewExpression(call) => return call.arguments.iter().any(|argument| argument.span() == span),
            AstKind::VariableDeclarator(declarator) => {
                // `const c = cfg` / `const sub = cfg.nested`: a change only
                // when that name is then changed (`c.k = 3`), not read.
                if depth >= 4 || declarator.init.as_ref().is_none_or(|init| init.span() != span) {
                    return false;
                }
                let BindingPattern::BindingIdentifier(local) = &declarator.id else { return true };
                let Some(symbol) = local.symbol_id.get() else { return true };
                let scoping = semantic.scoping();
                return scoping
                    .get_resolved_references(symbol)
                    .any(|reference| may_change_at(semantic, reference.node_id(), reference.is_write(), depth + 1));
            }
            AstKind::SpreadElement(_) => {
                // `f(...x)`, `[...x]`: a spread into a call passes the elements on.
                return matches!(nodes.parent_kind(parent), AstKind::CallExpression(_) | AstKind::NewExpression(_));
            }
            _ => return false,
        }
        current = parent;
        span = nodes.get_node(current).kind().span();
    }
}

/// Whether a reference in a top-level statement is only called, for a
/// result that is dropped or only shown (`compute(5);`, `await run();`,
/// `console.log(compute(5))`, `console.log(JSON.stringify([f(1), g(2)]))`):
/// not an effect on that binding. Calling a function does not change what
/// its name holds (what its body changes is found in it, `may_change`, and
/// reaches this statement through `Graph::add_changes`), and a result only
/// shown changes nothing. Anything else done with the result
/// (`getConfig().k = 3`, `register(make())`) stays an effect.
fn called_for_a_shown_result(semantic: &Semantic<'_>, node: oxc_semantic::NodeId) -> bool {
    let nodes = semantic.nodes();
    let mut current = node;
    let mut span = nodes.get_node(node).kind().span();
    let mut called = false;
    loop {
        let parent = nodes.parent_id(current);
        if parent == current {
            return false;
        }
        match nodes.get_node(parent).kind() {
            AstKind::ParenthesizedExpression(_)
            | AstKind::TSNonNullExpression(_)
            | AstKind::TSAsExpression(_)
            | AstKind::TSSatisfiesExpression(_) => {}
            AstKind::CallExpression(call) if !called => {
                if call.callee.span() != span {
                    return false;
                }
                called = true;
            }
            AstKind::AwaitExpression(_) | AstKind::ArrayExpression(_) if called => {}
            AstKind::CallExpression(call) => {
                if !call.arguments.iter().any(|argument| argument.span() == span)
                    || !reads_only_callee(semantic, &call.callee)
                {
                    return false;
                }
            }
            AstKind::ExpressionStatement(_) => return called,
            _ => return false,
        }
        current = parent;
        span = nodes.get_node(current).kind().span();
    }
}

/// Methods that never change the object they are called on and take no
/// callback (which could change its elements): `x.get(k)`, `x.slice()`.
const READ_ONLY_METHODS: [&str; 33] = [
    "get",
    "has",
    "at",
    "includes",
    "indexOf",
    "lastIndexOf",
    "slice",
    "concat",
    "join",
    "keys",
    "values",
    "entries",
    "toString",
    "toFixed",
    "toPrecision",
    "valueOf",
    "startsWith",
    "endsWith",
    "trim",
    "split",
    "toUpperCase",
    "toLowerCase",
    "padStart",
    "padEnd",
    "charAt",
    "charCodeAt",
    "codePointAt",
    "substring",
    "repeat",
    "hasOwnProperty",
    "toJSON",
    "toISOString",
    "getTime",
];

fn reads_only_method(callee: &Expression<'_>) -> bool {
    let Expression::StaticMemberExpression(member) = callee.without_parentheses() else { return false };
    READ_ONLY_METHODS.contains(&member.property.name.as_str())
}

/// Built-in functions that never change their arguments (`String(x.k)`,
/// `Math.max(x.a, 1)`, `console.log(x)`, `JSON.stringify(x)`), when their
/// names are the globals (not shadowed by a declaration).
fn reads_only_callee(semantic: &Semantic<'_>, callee: &Expression<'_>) -> bool {
    match callee.without_parentheses() {
        Expression::Identifier(name) => {
            is_unresolved(semantic, name)
                && [
                    "String",
                    "Number",
                    "Boolean",
                    "BigInt",
                    "parseInt",
                    "parseFloat",
                    "isNaN",
                    "isFinite",
                    "encodeURIComponent",
                    "decodeURIComponent",
                    "encodeURI",
                    "decodeURI",
                ]
                .contains(&name.name.as_str())
        }
        Expression::StaticMemberExpression(member) => {
            let Expression::Identifier(object) = &member.object else { return false };
            if !is_unresolved(semantic, object) {
                return false;
            }
            let method = member.property.name.as_str();
            match object.name.as_str() {
                "Math" | "console" => true,
                "JSON" => method == "stringify",
                "Number" => {
                    ["isInteger", "isFinite", "isNaN", "isSafeInteger", "parseFloat", "parseInt"].contains(&method)
                }
                "Array" => method == "isArray",
                "Object" => {
                    ["keys", "values", "entries", "getOwnPropertyNames", "is", "hasOwn", "isFrozen"].contains(&method)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// The names of the global object.
const GLOBAL_OBJECTS: [&str; 4] = ["globalThis", "global", "window", "self"];

/// Whether a node is inside a function or a class: code that runs when it
/// is called (or instantiated), not when its module loads.
fn in_code_run_later(semantic: &Semantic<'_>, id: oxc_semantic::NodeId) -> bool {
    semantic
        .nodes()
        .ancestor_kinds(id)
        .any(|kind| matches!(kind, AstKind::Function(_) | AstKind::ArrowFunctionExpression(_) | AstKind::Class(_)))
}

/// The globals every program starts with (ECMAScript's and Node's): what
/// they hold is the runtime's, not module state. A program that changes one
/// (`Math.clamp = …`) is seen by the builtin-write rule.
const STANDARD_GLOBALS: &[&str] = &[
    "AbortController",
    "AbortSignal",
    "AggregateError",
    "Array",
    "ArrayBuffer",
    "Atomics",
    "BigInt",
    "BigInt64Array",
    "BigUint64Array",
    "Blob",
    "Boolean",
    "Buffer",
    "BroadcastChannel",
    "DataView",
    "Date",
    "DOMException",
    "Error",
    "EvalError",
    "Event",
    "EventTarget",
    "FinalizationRegistry",
    "Float32Array",
    "Float64Array",
    "FormData",
    "Function",
    "Headers",
    "Infinity",
    "Int16Array",
    "Int32Array",
    "Int8Array",
    "Intl",
    "JSON",
    "Map",
    "Math",
    "MessageChannel",
    "NaN",
    "Number",
    "Object",
    "Promise",
    "Proxy",
    "RangeError",
    "ReferenceError",
    "Reflect",
    "RegExp",
    "Request",
    "Response",
    "Set",
    "SharedArrayBuffer",
    "String",
    "Symbol",
    "SyntaxError",
    "TextDecoder",
    "TextEncoder",
    "TypeError",
    "URIError",
    "URL",
    "URLSearchParams",
    "Uint16Array",
    "Uint32Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "WeakMap",
    "WeakRef",
    "WeakSet",
    "WebAssembly",
    "__dirname",
    "__filename",
    "arguments",
    "atob",
    "btoa",
    "clearImmediate",
    "clearInterval",
    "clearTimeout",
    "console",
    "crypto",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "escape",
    "eval",
    "exports",
    "fetch",
    "global",
    "globalThis",
    "isFinite",
    "isNaN",
    "module",
    "parseFloat",
    "parseInt",
    "performance",
    "process",
    "queueMicrotask",
    "require",
    "self",
    "setImmediate",
    "setInterval",
    "setTimeout",
    "structuredClone",
    "undefined",
    "unescape",
    "window",
];

/// Methods that add to (or take from) a collection, returning nothing code
/// uses when called as a statement.
const MUTATORS: &[&str] = &["push", "unshift", "add", "set", "delete", "clear"];

/// Whether a reference to a variable only changes it, its value read by
/// nothing: an assignment (`last = x`), a counter bumped as a statement
/// (`runs++`, `total += x`), a collection added to as a statement
/// (`calls.push(x)`, `seen.add(k)`, `byKey.set(k, v)`). Code that only does
/// that to a variable cannot return something that depends on it (a
/// memoized function counting its runs keeps hitting).
fn write_only(semantic: &Semantic<'_>, id: oxc_semantic::NodeId, read: bool) -> bool {
    let nodes = semantic.nodes();
    if !read {
        return true;
    }
    let discarded = |id: oxc_semantic::NodeId| match nodes.parent_kind(id) {
        AstKind::ExpressionStatement(_) => true,
        AstKind::ForStatement(statement) => {
            statement.update.as_ref().is_some_and(|update| update.span() == nodes.get_node(id).kind().span())
        }
        _ => false,
    };
    let mut here = nodes.get_node(id).kind().span();
    let mut id = id;
    let mut through = false;
    // `stats.calls += 1`, `state.seen.push(x)`: through the members of the
    // variable to what the statement does with them.
    loop {
        let (object, span, method) = match nodes.parent_kind(id) {
            AstKind::StaticMemberExpression(member) => {
                (member.object.span(), member.span, Some(member.property.name.as_str()))
            }
            AstKind::ComputedMemberExpression(member) => (member.object.span(), member.span, None),
            _ => break,
        };
        let member_id = nodes.parent_id(id);
        let called =
            matches!(nodes.parent_kind(member_id), AstKind::CallExpression(call) if call.callee.span() == span);
        if object != here || (called && method.is_some_and(|name| MUTATORS.contains(&name))) {
            break; // a method that adds to it: decided below
        }
        here = span;
        id = member_id;
        through = true;
    }
    match nodes.parent_kind(id) {
        AstKind::UpdateExpression(_) => discarded(nodes.parent_id(id)),
        // `runs += 1`; `stats.by[x] = 1` (through a member, any operator).
        AstKind::AssignmentExpression(assignment) if assignment.left.span() == here => {
            (through || assignment.operator != oxc_ast::ast::AssignmentOperator::Assign)
                && discarded(nodes.parent_id(id))
        }
        AstKind::StaticMemberExpression(member)
            if member.object.span() == here && MUTATORS.contains(&member.property.name.as_str()) =>
        {
            let member_id = nodes.parent_id(id);
            matches!(nodes.parent_kind(member_id), AstKind::CallExpression(call) if call.callee.span() == member.span)
                && discarded(nodes.parent_id(member_id))
        }
        _ => false,
    }
}

/// Whether an exported value is data: not a function, a class, a name (what
/// a name holds counts where it is declared) or a literal.
fn holds_data(expression: &Expression<'_>) -> bool {
    !literal(expression)
        && !matches!(
            expression.without_parentheses(),
            Expression::FunctionExpression(_)
                | Expression::ArrowFunctionExpression(_)
                | Expression::ClassExpression(_)
                | Expression::Identifier(_)
        )
}

/// Whether an initializer is a literal that no code can change (a number,
/// string, boolean, `null`, a template without substitutions, `-1`).
fn literal(expression: &Expression<'_>) -> bool {
    match expression.without_parentheses() {
        Expression::NumericLiteral(_)
        | Expression::StringLiteral(_)
        | Expression::BooleanLiteral(_)
        | Expression::NullLiteral(_)
        | Expression::BigIntLiteral(_) => true,
        Expression::TemplateLiteral(template) => template.expressions.is_empty(),
        Expression::UnaryExpression(unary) => literal(&unary.argument),
        _ => false,
    }
}

/// Whether `text` holds `word` as a whole identifier (not inside a longer one).
fn names_word(text: &str, word: &str) -> bool {
    let is_part = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(is_part)
            && !text[at + word.len()..].chars().next().is_some_and(is_part)
    })
}

/// `Object.defineProperty`, `Object.defineProperties`, `Object.assign`,
/// `Object.setPrototypeOf`, `Reflect.set`, `Reflect.defineProperty`: the
/// method's name, when the callee is one of those (calls that change their
/// first argument's members).
fn defining_call(semantic: &Semantic<'_>, callee: &Expression<'_>) -> Option<&'static str> {
    let Expression::StaticMemberExpression(member) = callee.without_parentheses() else { return None };
    let Expression::Identifier(object) = &member.object else { return None };
    if !is_unresolved(semantic, object) {
        return None;
    }
    match (object.name.as_str(), member.property.name.as_str()) {
        ("Object", "defineProperty") | ("Reflect", "defineProperty") => Some("defineProperty"),
        ("Object", "defineProperties") => Some("defineProperties"),
        ("Object", "assign") => Some("assign"),
        ("Reflect", "set") => Some("set"),
        ("Object" | "Reflect", "setPrototypeOf") => Some("setPrototypeOf"),
        _ => None,
    }
}

/// The global an expression's member chain starts at (`Array` for
/// `Array.prototype`, `globalThis.Math`, `Math`), when it names no binding of
/// the module, and whether the chain goes through a `prototype`.
fn builtin_root(semantic: &Semantic<'_>, expression: &Expression<'_>) -> Option<(String, bool)> {
    let mut properties: Vec<String> = Vec::new();
    let mut current = expression.without_parentheses();
    loop {
        match current {
            Expression::StaticMemberExpression(member) => {
                properties.push(member.property.name.to_string());
                current = member.object.without_parentheses();
            }
            Expression::ComputedMemberExpression(member) => {
                properties.push(match &member.expression {
                    Expression::StringLiteral(literal) => literal.value.to_string(),
                    _ => "*".to_owned(),
                });
                current = member.object.without_parentheses();
            }
            Expression::Identifier(root) if is_unresolved(semantic, root) => {
                let prototype = properties.iter().any(|property| property == "prototype" || property == "*");
                let name = if GLOBAL_OBJECTS.contains(&root.name.as_str()) {
                    // `globalThis.Array.prototype`: the global after it (a
                    // plain `globalThis.RATE` is a global write already).
                    let name = properties.pop()?;
                    if properties.is_empty() && !prototype {
                        return None;
                    }
                    name
                } else {
                    root.name.to_string()
                };
                // CommonJS's own names, and `process` (its environment,
                // arguments and platform count by value where they are read).
                return (!matches!(name.as_str(), "exports" | "module" | "require" | "process"))
                    .then_some((name, prototype));
            }
            _ => return None,
        }
    }
}

/// Whether an identifier refers to no declaration in the file (a global such
/// as CommonJS's `exports` and `module`).
fn is_unresolved(semantic: &Semantic<'_>, identifier: &oxc_ast::ast::IdentifierReference<'_>) -> bool {
    symbol_of(semantic, identifier).is_none()
}

/// The symbol a name refers to; none for a global (or a name never resolved).
fn symbol_of(
    semantic: &Semantic<'_>,
    identifier: &oxc_ast::ast::IdentifierReference<'_>,
) -> Option<oxc_semantic::SymbolId> {
    identifier.reference_id.get().and_then(|reference| semantic.scoping().get_reference(reference).symbol_id())
}

/// Whether a reference is the function given to HitSave's own `memo()`
/// (`memo(work)` with `memo` imported from the SDK, `hitsave.memo(work)`):
/// memo() does not change it, so the call is no writer of it (it made the
/// statement holding the memoized function part of its graph: renaming
/// `const cachedWork = memo(work)` missed).
fn passed_to_sdk_memo(module: &Module, semantic: &Semantic<'_>, node: oxc_semantic::NodeId) -> bool {
    let nodes = semantic.nodes();
    let span = nodes.get_node(node).kind().span();
    let AstKind::CallExpression(call) = nodes.parent_kind(node) else { return false };
    if call.arguments.first().is_none_or(|argument| argument.span() != span) {
        return false;
    }
    let module_level = |name: &oxc_ast::ast::IdentifierReference<'_>| {
        symbol_of(semantic, name)
            .is_some_and(|symbol| semantic.scoping().symbol_scope_id(symbol) == semantic.scoping().root_scope_id())
    };
    let sdk = |spec: &str| matches!(resolve(&module.path, spec), Resolved::Package { name, .. } if name == "hitsave");
    match call.callee.without_parentheses() {
        Expression::Identifier(callee) => {
            module_level(callee)
                && matches!(module.bindings.get(callee.name.as_str()),
                    Some(Binding::Import { spec, imported: Imported::Named(name) }) if name == "memo" && sdk(spec))
        }
        Expression::StaticMemberExpression(member) if member.property.name == "memo" => {
            matches!(&member.object, Expression::Identifier(object) if module_level(object)
                && matches!(module.bindings.get(object.name.as_str()),
                    Some(Binding::Import { spec, imported: Imported::Namespace | Imported::Default }) if sdk(spec)))
        }
        _ => false,
    }
}

/// Whether a reference names a `const` bound to a primitive literal
/// (`const ROOT = '/data'`, `const N = 3`): no code can change what it
/// holds, so no call taking it is a writer of it.
fn names_const_primitive(semantic: &Semantic<'_>, kind: AstKind<'_>) -> bool {
    let AstKind::IdentifierReference(name) = kind else { return false };
    let Some(symbol) = symbol_of(semantic, name) else { return false };
    let declaration = semantic.symbol_declaration(symbol);
    let AstKind::VariableDeclarator(declarator) = declaration.kind() else { return false };
    let constant = matches!(semantic.nodes().parent_kind(declaration.id()),
        AstKind::VariableDeclaration(variables) if variables.kind == oxc_ast::ast::VariableDeclarationKind::Const);
    if !constant || !matches!(&declarator.id, BindingPattern::BindingIdentifier(_)) {
        return false;
    }
    declarator.init.as_ref().is_some_and(literal)
}

/// Whether a callee is a name bound to `createRequire(…)`'s result.
fn made_by_create_require(semantic: &Semantic<'_>, callee: &Expression<'_>) -> bool {
    let Expression::Identifier(name) = callee.without_parentheses() else { return false };
    let Some(symbol) = symbol_of(semantic, name) else { return false };
    match semantic.symbol_declaration(symbol).kind() {
        AstKind::VariableDeclarator(declarator) => declarator.init.as_ref().is_some_and(|init| {
            matches!(init.without_parentheses(), Expression::CallExpression(call)
                if matches!(&call.callee, Expression::Identifier(f) if f.name == "createRequire"))
        }),
        _ => false,
    }
}

/// Whether a call's callee is a require function by its look: a name with
/// `require` in it, or `createRequire(import.meta.url)` called at once.
fn callee_mentions_require(callee: &Expression<'_>) -> bool {
    match callee.without_parentheses() {
        Expression::Identifier(name) => name.name.to_ascii_lowercase().contains("require"),
        Expression::CallExpression(inner) => callee_mentions_require(&inner.callee),
        Expression::StaticMemberExpression(member) => member.property.name.to_ascii_lowercase().contains("require"),
        _ => false,
    }
}

/// The variables of enclosing functions that the code at `span` uses and
/// whose values only the running program knows: parameters, loop variables,
/// `let`s, `const`s computed at run time or holding an object, an array, a
/// regular expression, a function or a class (code may change what they hold:
/// `cfg.k = 5`, `helper.k = 3`, a regular expression's `lastIndex`), with
/// whether code assigns the variable itself. Static analysis sees their
/// code, not their values: `[2, 3].map((k) => memo((x) => x * k))` makes two
/// functions of one text. Types and `const`s bound to primitive literals
/// (and to other such `const`s) are code, and count as such.
///
/// `functions_as_code`: functions and classes of the surrounding code count
/// by their code alone (for a class found by its text, whose captures cannot
/// be read), not as values.
fn runtime_captures(semantic: &Semantic<'_>, span: Span, functions_as_code: bool) -> Vec<(String, bool)> {
    let scoping = semantic.scoping();
    let nodes = semantic.nodes();
    let root_scope = scoping.root_scope_id();
    let inside = |other: Span| span.start <= other.start && other.end <= span.end;
    let mut names = Vec::new();
    for symbol in scoping.symbol_ids() {
        if scoping.symbol_scope_id(symbol) == root_scope || inside(scoping.symbol_span(symbol)) {
            continue;
        }
        if !scoping
            .get_resolved_references(symbol)
            .any(|reference| inside(nodes.get_node(reference.node_id()).kind().span()))
        {
            continue;
        }
        let flags = scoping.symbol_flags(symbol);
        if functions_as_code && flags.intersects(SymbolFlags::Function | SymbolFlags::Class) {
            continue;
        }
        if flags.intersects(
            SymbolFlags::TypeAlias
                | SymbolFlags::Interface
                | SymbolFlags::TypeParameter
                | SymbolFlags::TypeImport
                | SymbolFlags::Import,
        ) {
            continue;
        }
        if static_const(semantic, symbol, 0) {
            continue;
        }
        let assigned = !scoping.symbol_redeclarations(symbol).is_empty()
            || scoping.get_resolved_references(symbol).any(|reference| reference.is_write());
        names.push((scoping.symbol_name(symbol).to_owned(), assigned));
    }
    // `this` in an arrow function (or an expression) is the surrounding
    // code's: an instance known only at run time. A non-arrow function's own
    // `this` is the call's, part of the key (docs/node.md, methods).
    let functions: Vec<Span> = nodes
        .iter()
        .filter_map(|node| match node.kind() {
            AstKind::Function(function) if inside(function.span) => Some(function.span),
            _ => None,
        })
        .collect();
    let lexical_this = nodes.iter().any(|node| match node.kind() {
        AstKind::ThisExpression(this) => {
            inside(this.span) && !functions.iter().any(|f| f.start <= this.span.start && this.span.end <= f.end)
        }
        _ => false,
    });
    if lexical_this {
        names.push(("this".to_owned(), false));
    }
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    names
}

/// Whether a variable of the surrounding code holds a value its text fixes
/// for good: a `const` bound to an expression of primitive literals and
/// other such `const`s (`const k = 2 * 3`), never an object, an array, a
/// regular expression, a function or a class (what they hold can change), a
/// call, a member, `this`, a parameter or a module-level name (module state
/// may differ by the time the code around runs).
fn static_const(semantic: &Semantic<'_>, symbol: oxc_semantic::SymbolId, depth: u32) -> bool {
    let scoping = semantic.scoping();
    if scoping.symbol_scope_id(symbol) == scoping.root_scope_id()
        || !scoping.symbol_flags(symbol).contains(SymbolFlags::ConstVariable)
        || depth > 8
    {
        return false;
    }
    match semantic.nodes().get_node(scoping.symbol_declaration(symbol)).kind() {
        AstKind::VariableDeclarator(declarator) => {
            matches!(declarator.id, BindingPattern::BindingIdentifier(_))
                && declarator.init.as_ref().is_some_and(|init| static_expression(semantic, init, depth + 1))
        }
        _ => false,
    }
}

/// A primitive the code alone fixes (see [`static_const`]).
fn static_expression(semantic: &Semantic<'_>, expression: &Expression<'_>, depth: u32) -> bool {
    let fixed = |inner: &Expression<'_>| static_expression(semantic, inner, depth);
    match expression.without_parentheses() {
        Expression::StringLiteral(_)
        | Expression::NumericLiteral(_)
        | Expression::BooleanLiteral(_)
        | Expression::NullLiteral(_)
        | Expression::BigIntLiteral(_) => true,
        Expression::TemplateLiteral(template) => template.expressions.iter().all(fixed),
        Expression::Identifier(identifier) => match symbol_of(semantic, identifier) {
            Some(symbol) => static_const(semantic, symbol, depth),
            None => matches!(identifier.name.as_str(), "undefined" | "NaN" | "Infinity"),
        },
        Expression::UnaryExpression(unary) => fixed(&unary.argument),
        Expression::BinaryExpression(binary) => fixed(&binary.left) && fixed(&binary.right),
        Expression::LogicalExpression(logical) => fixed(&logical.left) && fixed(&logical.right),
        Expression::ConditionalExpression(conditional) => {
            fixed(&conditional.test) && fixed(&conditional.consequent) && fixed(&conditional.alternate)
        }
        _ => false,
    }
}

/// Byte offset of a 1-based line and UTF-16 column (what V8 reports).
fn offset_of(text: &str, line: u32, column: u32) -> Option<usize> {
    let mut start = 0usize;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let mut units = 1u32;
    for (index, ch) in text[start..].char_indices() {
        if units >= column {
            return Some(start + index);
        }
        units += ch.len_utf16() as u32;
    }
    Some(text.len())
}

/// Finds the memoized function in the file `memo()` was called from.
fn find_root(
    builder: &mut Builder<'_>,
    semantic: &Semantic<'_>,
    call_at: Option<usize>,
    source: &str,
) -> Result<Option<Binding>, HitSaveError> {
    let text = builder.text;
    // 1. The innermost call whose callee holds the position V8 reported.
    let mut best: Option<&oxc_ast::ast::CallExpression<'_>> = None;
    if let Some(offset) = call_at {
        let offset = offset as u32;
        for node in semantic.nodes().iter() {
            if let AstKind::CallExpression(call) = node.kind()
                && call.span.start <= offset
                && offset <= call.callee.span().end
                && best.is_none_or(|b| call.span.size() < b.span.size())
            {
                best = Some(call);
            }
        }
    }
    // An argument that is neither a function literal nor a name (`m.predict.bind(m)`,
    // `makeScorer(3)`): the expression that made the function, if its text is not found.
    let mut made_by: Option<(String, Span)> = None;
    if let Some(call) = best
        && let Some(argument) = call.arguments.first().and_then(Argument::as_expression)
    {
        let argument = argument.without_parentheses();
        // Named after the binding the memo() call is assigned to, else by a
        // digest of its argument's text (a count of memo calls would change
        // when one is added above).
        let name = || {
            semantic
                .nodes()
                .iter()
                .find_map(|node| match node.kind() {
                    AstKind::VariableDeclarator(declarator)
                        if declarator.init.as_ref().is_some_and(|init| init.span() == call.span) =>
                    {
                        declarator.id.get_identifier_name().map(|name| name.to_string())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| {
                    builder.text_name(
                        "<memo ",
                        &builder.text[argument.span().start as usize..argument.span().end as usize],
                    ) + ">"
                })
        };
        match argument {
            Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_) => {
                let span = argument.span();
                let body = format!("({})", builder.slice(span));
                let unit_name = builder.unique_name(&format!("{}/memo", name()));
                let unit = builder.unit(unit_name, "function", span, &body)?;
                return Ok(Some(Binding::Unit(unit)));
            }
            Expression::Identifier(identifier) => {
                let scoping = semantic.scoping();
                match symbol_of(semantic, identifier) {
                    // A module-level name: its binding.
                    Some(symbol) if scoping.symbol_scope_id(symbol) == scoping.root_scope_id() => {
                        if let Some(binding) = builder.module.bindings.get(identifier.name.as_str()) {
                            return Ok(Some(binding.clone()));
                        }
                    }
                    // A function declared inside a function, or a const holding a
                    // function literal there: that function, found at its declaration.
                    Some(symbol) if declares_a_function(semantic, symbol) => {
                        let declared = scoping.symbol_span(symbol);
                        if let Some(found) = function_at_text(builder, semantic, declared.start as usize)? {
                            return Ok(Some(found));
                        }
                    }
                    // A parameter (`function cached(fn) { return memo(fn) }`,
                    // `[f, g].map((fn) => memo(fn))`), a `let`, a catch binding:
                    // which function it holds is only known when it runs. Never
                    // the enclosing function: the function's own text, below.
                    _ => {}
                }
            }
            other => made_by = Some((name(), other.span())),
        }
    }
    // 2. The function's own text, found in the file: where `fn.toString()`
    //    says it is. Found twice, the two may read different things around
    //    them: only a function that reads nothing around it is taken then.
    if !source.is_empty()
        && let Some(at) = text.find(source)
    {
        let repeated = text[at + 1..].contains(source);
        if repeated && free_names(source).is_none_or(|names| !names.is_empty()) {
            return Err(unavailable(format!(
                "the function passed to memo() appears more than once in {} with the same text, and reads names \
                 from the code around it: which of them it is cannot be told; give it a name of its own",
                builder.module.path.display()
            )));
        }
        if let Some(found) = function_at_text(builder, semantic, at)? {
            return Ok(Some(found));
        }
    }
    // 3. The expression that made it (a bound method, a factory's result): it and
    //    everything it refers to, as a module-level `const f = <expression>` would count.
    if let Some((name, span)) = made_by {
        let body = format!("({})", builder.slice(span));
        let unit = builder.unit(format!("{name}/memo"), "constant", span, &body)?;
        return Ok(Some(Binding::Unit(unit)));
    }
    Ok(None)
}

/// Whether a symbol is declared as a function: a function declaration, or a
/// `const` whose initial value is a function literal.
fn declares_a_function(semantic: &Semantic<'_>, symbol: oxc_semantic::SymbolId) -> bool {
    match semantic.symbol_declaration(symbol).kind() {
        AstKind::Function(_) | AstKind::Class(_) => true,
        AstKind::VariableDeclarator(declarator) => {
            semantic.scoping().symbol_flags(symbol).contains(SymbolFlags::ConstVariable)
                && declarator.init.as_ref().is_some_and(|init| {
                    matches!(
                        init.without_parentheses(),
                        Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_)
                    )
                })
        }
        _ => false,
    }
}

/// A unit for the function, class or method that starts at (or is named at) `at`.
fn function_at_text(
    builder: &mut Builder<'_>,
    semantic: &Semantic<'_>,
    at: usize,
) -> Result<Option<Binding>, HitSaveError> {
    let at = at as u32;
    let mut best: Option<Span> = None;
    let mut class = false;
    for node in semantic.nodes().iter() {
        let span = match node.kind() {
            AstKind::Function(function) => function.span,
            AstKind::ArrowFunctionExpression(arrow) => arrow.span,
            AstKind::MethodDefinition(method) => method.span,
            AstKind::Class(class) => class.span,
            AstKind::VariableDeclarator(declarator)
                if declarator.init.as_ref().is_some_and(|init| {
                    matches!(
                        init.without_parentheses(),
                        Expression::FunctionExpression(_)
                            | Expression::ArrowFunctionExpression(_)
                            | Expression::ClassExpression(_)
                    )
                }) =>
            {
                declarator.span
            }
            _ => continue,
        };
        if span.start <= at && at < span.end && best.is_none_or(|b| span.size() < b.size()) {
            best = Some(span);
            // A class outside every function: a module-level declaration may hold it.
            class = matches!(node.kind(), AstKind::Class(_))
                && !semantic.nodes().ancestor_kinds(node.id()).any(|kind| {
                    matches!(kind, AstKind::Function(_) | AstKind::ArrowFunctionExpression(_) | AstKind::Class(_))
                });
        }
    }
    let Some(span) = best else { return Ok(None) };
    if let Some(existing) = builder.module.units.iter().position(|unit| unit.span == span) {
        return Ok(Some(Binding::Unit(existing)));
    }
    // A class held by a module-level declaration (`const P = class {…}`,
    // `export default class P {…}`): that binding, so the statements that
    // change it (`P.prototype.val = …`) count with it.
    if class
        && let Some(holder) = builder
            .module
            .bindings
            .values()
            .filter_map(|binding| match binding {
                Binding::Unit(unit) => Some(*unit),
                _ => None,
            })
            .filter(|&unit| {
                let held = builder.module.units[unit].span;
                held.start <= span.start && span.end <= held.end
            })
            .min_by_key(|&unit| builder.module.units[unit].span.size())
    {
        return Ok(Some(Binding::Unit(holder)));
    }
    let text = builder.slice(span).to_owned();
    let wrapped = format!("({text})");
    let body = if normalize(&wrapped, builder.source_type).is_some() { wrapped } else { format!("({{{text}}})") };
    let line = builder.text[..span.start as usize].matches('\n').count() + 1;
    let name = text.split(['(', '=', ' ']).find(|part| !part.is_empty()).unwrap_or("function").to_owned();
    let unit = builder.unit(format!("{name}@{line}"), "function", span, &body)?;
    Ok(Some(Binding::Unit(unit)))
}

/// A JSON text without the whitespace between its tokens (insignificant in
/// JSON), so reformatting an imported `.json` file changes nothing; strings,
/// numbers and key order are kept exactly as written.
fn json_without_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{feff}') {
            out.push(c);
        }
    }
    out
}

/// Forgets the module summaries this process made or read (as a fresh
/// process starts): for tests of the summaries kept across processes.
#[doc(hidden)]
pub fn forget_process_summaries() {
    *cache() = None;
    kept::forget();
}

/// The files this process parsed and summarised (rather than reading a kept
/// summary, `kept`), in order: what tests and the benchmark count.
static SUMMARIZED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// [`SUMMARIZED`].
pub fn summarized_files() -> Vec<PathBuf> {
    SUMMARIZED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

fn summarize(
    core: &Core,
    path: &Path,
    rel: String,
    call_at: Option<(u32, u32)>,
    source: &str,
    script: Option<&str>,
    what: &str,
) -> Result<Module, HitSaveError> {
    SUMMARIZED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(path.to_path_buf());
    // Its state before it is read (a worker's module is read again when it changed: `Graph::runs`).
    let read_state = hitsave_host::files::FileState::of(path);
    if script.is_none() && path.extension().is_some_and(|ext| ext == "node") {
        return addon_module(core, path, rel, read_state);
    }
    let text = match script {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(path)
            .map_err(|err| unavailable(format!("cannot read {}: {err}", path.display())))?,
    };
    let module = Module::empty(path, rel, read_state);
    if path.extension().is_some_and(|ext| ext == "json") {
        let mut stream = StreamWriter::new();
        stream.list(2).str("json").str(&json_without_whitespace(&text));
        return Ok(module.with_only_unit("json", core.value_digest(stream.as_bytes())?));
    }
    let source_type = source_type_of(path);
    let allocator = Allocator::default();
    let mut parsed = Parser::new(&allocator, &text, source_type).parse();
    if (!parsed.diagnostics.is_empty() || parsed.panicked) && !source_type.is_typescript() {
        // A CommonJS file may not parse as a module (or the reverse): try a script.
        let retry = Parser::new(&allocator, &text, SourceType::cjs()).parse();
        if retry.diagnostics.is_empty() && !retry.panicked {
            parsed = retry;
        }
    }
    if parsed.panicked || !parsed.diagnostics.is_empty() {
        return Err(unavailable(format!("{} does not parse as JavaScript or TypeScript", path.display())));
    }
    let program = parsed.program;
    let semantic = SemanticBuilder::new().with_build_nodes(true).build(&program).semantic;
    let mut builder = Builder { text: &text, source_type, module, assignments: Vec::new(), export_writers: Vec::new() };
    for statement in &program.body {
        let before = builder.module.units.len();
        builder.statement(statement)?;
        // A top-level statement that declares nothing module-level (an async
        // IIFE, a block, a loop) may still hold the memo() call and the
        // locals its function reads: it is a unit of its own, so those locals
        // count (coarsely: through the statement's whole text).
        if builder.module.units.len() == before
            && matches!(
                statement,
                Statement::ExpressionStatement(_)
                    | Statement::BlockStatement(_)
                    | Statement::IfStatement(_)
                    | Statement::ForStatement(_)
                    | Statement::ForInStatement(_)
                    | Statement::ForOfStatement(_)
                    | Statement::WhileStatement(_)
                    | Statement::DoWhileStatement(_)
                    | Statement::TryStatement(_)
                    | Statement::SwitchStatement(_)
                    | Statement::LabeledStatement(_)
            )
        {
            // Named by its text (not its line or its place among such
            // statements), so an edit elsewhere in the file renames nothing.
            let span = statement.span();
            let body = builder.slice(span).to_owned();
            let name = builder.text_name("<statement ", &body) + ">";
            let unit = builder.unit(name, "constant", span, &body)?;
            builder.module.units[unit].effect = true;
        }
    }
    if call_at.is_some() || !source.is_empty() {
        let offset = call_at.and_then(|(line, column)| offset_of(&text, line, column));
        builder.module.root = find_root(&mut builder, &semantic, offset, source)?;
        if let Some(Binding::Unit(unit)) = &builder.module.root {
            let captured = runtime_captures(&semantic, builder.module.units[*unit].span, what != MEMOIZED);
            // A memoized function's are read in the running program, from its
            // closure (`AnalyzedGraph::captures`). Not a lexical `this`, nor
            // what a class found by its text captures, nor the variables of an
            // expression that made the function (`memo(makeScaler(k))` with the
            // factory elsewhere: that `k` is the caller's, not the closure's).
            let own_function = builder.module.units[*unit].kind == "function";
            if !captured.is_empty()
                && (what != MEMOIZED || !own_function || captured.iter().any(|(name, _)| name == "this"))
            {
                let line = text[..builder.module.units[*unit].span.start as usize].matches('\n').count() + 1;
                let names: Vec<&str> = captured.iter().map(|(name, _)| name.as_str()).collect();
                return Err(unavailable(format!(
                    "the {} at {}:{line} uses {} from the code around it, whose values are \
                     only known when it runs, so results for different values could not be told apart; pass them \
                     as arguments",
                    what,
                    path.display(),
                    names.join(", ")
                )));
            }
            builder.module.root_captures = captured;
        }
    }
    let assignments = std::mem::take(&mut builder.assignments);
    let export_writers = std::mem::take(&mut builder.export_writers);
    let mut module = builder.module;
    module.declared_scopes = declared::scopes_of(&semantic);
    for (_, unit) in &assignments {
        module.units[*unit].effect = true;
    }
    link(&mut module, &semantic);
    if !export_writers.is_empty() {
        let mut exported: Vec<usize> = module
            .exports
            .values()
            .filter_map(|export| match export {
                Export::Unit(unit) => Some(*unit),
                _ => None,
            })
            .chain(module.cjs_exports)
            .collect();
        exported.sort_unstable();
        exported.dedup();
        for unit in exported {
            for &writer in &export_writers {
                if writer != unit {
                    module.units[unit].deps.push(Dep::Unit(writer));
                }
            }
        }
    }
    for (target, unit) in assignments {
        if let Some(Binding::Unit(owner)) = module.bindings.get(&target).cloned() {
            module.effect_edges.insert((owner, unit));
            module.units[owner].deps.push(Dep::Unit(unit));
        }
    }
    Ok(module)
}

/// A native addon the project built (`require('./build/Release/addon.node')`,
/// node-gyp or napi-rs output): machine code no source shows, so the module
/// is one unit whose content is the digest of the file (its exports are
/// that unit). Rebuilding it with other behaviour is an edit.
fn addon_module(
    core: &Core,
    path: &Path,
    rel: String,
    read_state: hitsave_host::files::FileState,
) -> Result<Module, HitSaveError> {
    let bytes = std::fs::read(path).map_err(|err| unavailable(format!("cannot read {}: {err}", path.display())))?;
    let mut stream = StreamWriter::new();
    stream.list(2).str("addon").str(&hitsave_host::hash::blob_digest(&bytes).to_string());
    let content = core.value_digest(stream.as_bytes())?;
    Ok(Module::empty(path, rel, read_state).with_only_unit("addon", content))
}

/// Assembles the graph across modules.
struct Graph<'c> {
    core: &'c Core,
    project: PathBuf,
    modules: HashMap<PathBuf, Arc<Module>>,
    nodes: Vec<GraphNode>,
    index: HashMap<String, u32>,
    /// The modules this graph reached, in order (for their effects).
    used: Vec<Arc<Module>>,
    /// The paths of `used`, to find one without comparing paths one by one.
    used_paths: std::collections::HashSet<PathBuf>,
    /// Units reached, with their nodes (for `files_named_for_readers`).
    reached: Vec<(Arc<Module>, usize, u32)>,
    /// The command-line arguments (`Program::argv`).
    argv: Vec<String>,
    /// What the graph read besides code ([`AnalyzedGraph::watched`]).
    watched: Watched,
    /// Module-level variables the running program decides ([`AnalyzedGraph::state`]).
    state: Vec<StateModule>,
    /// The nodes of module-level variables (`Unit::declared`), with their units.
    variables: HashMap<u32, (Arc<Module>, usize)>,
    /// `(unit node, node)`: reads inside a function or class ([`Graph::collect_state`]).
    run_time_reads: Vec<(u32, u32)>,
    /// `(unit node, node, importing module, local name)`: imports read
    /// inside a function or class ([`Graph::collect_state`]).
    import_reads: Vec<(u32, u32, Arc<Module>, String)>,
    /// The nodes of exports holding data ([`Unit::exported_data`]).
    exported_data: std::collections::HashSet<u32>,
    /// [`AnalyzedGraph::state_globals`], found by [`Graph::collect_state`].
    state_globals: Vec<String>,
    /// `(from, to)` edges to what may change `from` (writers, effects).
    effect_links: std::collections::HashSet<(u32, u32)>,
    /// The project's summaries kept across processes (`Program::summaries`).
    kept: Option<Arc<Mutex<kept::Kept>>>,
    /// A kept summary was added or a unit digest computed for one: the file
    /// is written when the graph is done.
    kept_changed: bool,
}

/// The program around a call to analyse: what its code reads besides the
/// function's own module.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// The files of the calls that led there and the entry script: searched
    /// for the function's text when `memo()` was called by a helper, and read
    /// for their effects (top-level statements that change what it reads).
    pub files: Vec<PathBuf>,
    /// The command-line arguments after the script's path
    /// (`process.argv.slice(2)`), counted by value where code reads them.
    pub argv: Vec<String>,
    /// The store's analysis directory, where module summaries are kept
    /// across processes (`kept`); `None`: kept for the process only.
    pub summaries: Option<PathBuf>,
}

impl<'c> Graph<'c> {
    /// A graph of the project at `project`, starting from the module
    /// summaries this process already made.
    fn new(core: &'c Core, project: PathBuf, program: &Program) -> Self {
        Graph {
            argv: program.argv.clone(),
            watched: Watched::default(),
            state: Vec::new(),
            variables: HashMap::new(),
            run_time_reads: Vec::new(),
            import_reads: Vec::new(),
            state_globals: Vec::new(),
            exported_data: std::collections::HashSet::new(),
            effect_links: std::collections::HashSet::new(),
            kept: program.summaries.as_deref().map(|directory| kept::for_project(directory, &project)),
            kept_changed: false,
            core,
            project,
            modules: cache().clone().unwrap_or_default(),
            nodes: Vec::new(),
            index: HashMap::new(),
            used: Vec::new(),
            used_paths: std::collections::HashSet::new(),
            reached: Vec::new(),
        }
    }

    fn rel(&self, path: &Path) -> String {
        match path.strip_prefix(&self.project) {
            Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
            Err(_) => {
                // Outside the project root: relative with `..`, still machine-independent.
                let mut up = PathBuf::new();
                let mut base = self.project.as_path();
                loop {
                    if let Ok(rel) = path.strip_prefix(base) {
                        return format!("{}{}", up.to_string_lossy(), rel.to_string_lossy());
                    }
                    match base.parent() {
                        Some(parent) => {
                            base = parent;
                            up.push("..");
                            up.push("");
                        }
                        None => return path.to_string_lossy().into_owned(),
                    }
                }
            }
        }
    }

    fn module(&mut self, path: &Path) -> Result<Arc<Module>, HitSaveError> {
        let module = match self.modules.get(path) {
            Some(module) => module.clone(),
            None => {
                let rel = self.rel(path);
                let module = self.kept_summary(path, "", |core| summarize(core, path, rel, None, "", None, ""))?;
                self.modules.insert(path.to_path_buf(), module.clone());
                module
            }
        };
        self.mark_used(&module);
        Ok(module)
    }

    /// The summary `summarize` makes of `path` for `root` (empty: the
    /// module's own; [`kept::rooted`]: one made around a class), from the
    /// kept summaries while its file is as it was, else made and kept when
    /// it may be (`kept::situated`).
    fn kept_summary(
        &mut self,
        path: &Path,
        root: &str,
        summarize: impl FnOnce(&Core) -> Result<Module, HitSaveError>,
    ) -> Result<Arc<Module>, HitSaveError> {
        let kept = self.kept.clone();
        let mut kept = kept.as_ref().map(|kept| kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if let Some(module) = kept.as_mut().and_then(|kept| kept.get(path, root)) {
            return Ok(module);
        }
        // The state before the read: a summary is kept under it (an edit
        // while it is read is another state).
        let stamp = kept.as_ref().and_then(|_| kept::Stamp::of(path));
        let core = self.core;
        let (module, situated) = kept::watching(|| summarize(core));
        let mut module = module?;
        match (kept.as_mut(), stamp) {
            (Some(kept), Some(stamp)) if !situated => {
                module.kept = true;
                let module = Arc::new(module);
                kept.put(stamp, root, module.clone());
                self.kept_changed = true;
                Ok(module)
            }
            _ => Ok(Arc::new(module)),
        }
    }

    /// The summary of `path` made around the class whose text is `text` (its root), kept like a module's.
    fn class_summary(&mut self, path: &Path, text: &str) -> Result<Arc<Module>, HitSaveError> {
        let rel = self.rel(path);
        self.kept_summary(path, &kept::rooted("class", text), |core| {
            summarize(core, path, rel, None, text, None, "class")
        })
    }

    fn mark_used(&mut self, module: &Arc<Module>) {
        if self.used_paths.insert(module.path.clone()) {
            self.used.push(module.clone());
        }
    }

    /// Marks the project modules of `files`, and every project module they
    /// import, transitively, as reached for their effects ([`Graph::add_effects`]).
    fn seed_effects(&mut self, files: &[PathBuf]) -> Result<(), HitSaveError> {
        self.project_modules(files, false, |_, _| Ok(false)).map(|_| ())
    }

    /// Reads the project modules of `files` and the project modules they
    /// import (top-level imports, or with `all` every static import and
    /// `require` of any function too), transitively, each once, handing each
    /// to `visit` until it says to stop; returns whether it did.
    fn project_modules(
        &mut self,
        files: &[PathBuf],
        all: bool,
        mut visit: impl FnMut(&mut Self, &Arc<Module>) -> Result<bool, HitSaveError>,
    ) -> Result<bool, HitSaveError> {
        let mut queue: Vec<PathBuf> = files
            .iter()
            .filter_map(|file| file.canonicalize().ok())
            .filter(|file| file.starts_with(&self.project))
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(path) = queue.pop() {
            if path.components().any(|c| c.as_os_str() == "node_modules") || !seen.insert(path.clone()) {
                continue;
            }
            let module = self.module(&path)?;
            if visit(self, &module)? {
                return Ok(true);
            }
            let specs: Vec<&String> = if all { module.all_specs().collect() } else { module.import_specs().collect() };
            for spec in specs {
                if let Resolved::File(file) = resolve(&module.path, spec) {
                    queue.push(file);
                }
            }
        }
        Ok(false)
    }

    /// Statements in the modules reached (and in the modules they import for
    /// their effects) that change an export the graph holds: the export's
    /// node depends on them. Repeated until nothing is added, since a
    /// statement may bring in more modules.
    fn add_effects(&mut self) -> Result<(), HitSaveError> {
        let mut done = 0;
        loop {
            let mut changed = false;
            while done < self.used.len() {
                let module = self.used[done].clone();
                done += 1;
                for spec in module.effect_specs() {
                    if let Resolved::File(path) = resolve(&module.path, spec) {
                        self.module(&path)?;
                    }
                }
            }
            for module in self.used.clone() {
                for (spec, imported, unit) in &module.import_effects {
                    let Resolved::File(path) = resolve(&module.path, spec) else { continue };
                    let target = self.module(&path)?;
                    let Some(export) = self.existing_export(&target, imported) else { continue };
                    let statement = self.unit(&module, *unit)?;
                    changed |= self.add_dep(export, statement);
                }
            }
            changed |= self.add_changes()?;
            // A read of a global depends on every write of it in the modules reached.
            let writes: Vec<(Arc<Module>, String, usize)> = self
                .used
                .iter()
                .flat_map(|module| {
                    module.global_writes.iter().map(move |(name, unit)| (module.clone(), name.clone(), *unit))
                })
                .collect();
            if !writes.is_empty() {
                for module in self.used.clone() {
                    for (name, unit) in &module.global_reads {
                        let Some(&reader) = self.index.get(&unit_node_name(&module, *unit)) else { continue };
                        for (writer_module, written, writer_unit) in &writes {
                            if written == name || (name == "*" && !written.starts_with('.')) {
                                let writer = self.unit(writer_module, *writer_unit)?;
                                changed |= self.add_dep(reader, writer);
                            }
                        }
                    }
                }
            }
            // A prototype's member written (`Array.prototype.total = …`): every
            // unit reached whose text names the member may call it.
            let members: Vec<&(Arc<Module>, String, usize)> =
                writes.iter().filter(|(_, written, _)| written.starts_with('.')).collect();
            if !members.is_empty() {
                for module in self.used.clone() {
                    for (unit, data) in module.units.iter().enumerate() {
                        let Some(&reader) = self.index.get(&unit_node_name(&module, unit)) else { continue };
                        for (writer_module, written, writer_unit) in &members {
                            let member = &written[1..];
                            if member == "*" || names_word(&data.text, member) {
                                let writer = self.unit(writer_module, *writer_unit)?;
                                changed |= self.add_dep(reader, writer);
                            }
                        }
                    }
                }
            }
            if !changed && done == self.used.len() {
                return Ok(());
            }
        }
    }

    /// Units that may change a module-level binding: its writers (`link`), a
    /// function that writes an imported binding (`cfg.k = 3`), and every unit
    /// that calls one of those, directly or through others, in its module or
    /// another (`setRate(2)` at the top, `init()` calling an imported
    /// `setRate`). The binding's node, when the graph holds it, depends on
    /// each of them. Only modules the graph already reached are looked at.
    fn add_changes(&mut self) -> Result<bool, HitSaveError> {
        // Units are (module, unit) pairs, modules by their place in `used`.
        type Id = (usize, usize);
        let used = self.used.clone();
        let position: HashMap<&Path, usize> =
            used.iter().enumerate().map(|(index, module)| (module.path.as_path(), index)).collect();
        let target_of = |from: &Module, spec: &str, imported: &Imported| -> Option<Id> {
            let Resolved::File(path) = resolve(&from.path, spec) else { return None };
            let &index = position.get(path.as_path())?;
            Some((index, export_unit(&used[index], imported)?))
        };
        // Who refers to each unit: its module's units and other modules' imports of it.
        let mut users: HashMap<Id, Vec<Id>> = HashMap::new();
        // What each unit may change, seeded by the writers `link` found.
        let mut changes: HashMap<Id, std::collections::BTreeSet<Id>> = HashMap::new();
        let mut queue: Vec<Id> = Vec::new();
        for (index, module) in used.iter().enumerate() {
            for (user, unit) in module.units.iter().enumerate() {
                for dep in &unit.deps {
                    let used_unit = match dep {
                        // A binding's edge to what changes it is not a use of that.
                        Dep::Unit(callee) if *callee != user && !module.effect_edges.contains(&(user, *callee)) => {
                            Some((index, *callee))
                        }
                        Dep::Import { spec, imported } => target_of(module, spec, imported),
                        _ => None,
                    };
                    if let Some(used_unit) = used_unit {
                        users.entry(used_unit).or_default().push((index, user));
                    }
                }
            }
            for &(owner, unit) in &module.changes {
                changes.entry((index, unit)).or_default().insert((index, owner));
                queue.push((index, unit));
            }
            for (spec, imported, unit) in &module.import_effects {
                if let Some(owner) = target_of(module, spec, imported) {
                    changes.entry((index, *unit)).or_default().insert(owner);
                    queue.push((index, *unit));
                }
            }
        }
        // A unit that refers to one that may change a binding may change it too.
        while let Some(unit) = queue.pop() {
            let Some(unit_users) = users.get(&unit) else { continue };
            let targets = changes[&unit].clone();
            for &user in unit_users {
                let set = changes.entry(user).or_default();
                let before = set.len();
                set.extend(targets.iter().copied());
                if set.len() > before {
                    queue.push(user);
                }
            }
        }
        let mut added = false;
        for ((index, unit), targets) in changes {
            for (target, owner) in targets {
                let Some(&binding) = self.index.get(&unit_node_name(&used[target], owner)) else { continue };
                let changer = self.unit(&used[index], unit)?;
                added |= self.add_dep(binding, changer);
            }
        }
        Ok(added)
    }

    /// Makes node `from` depend on `to`, what may change it (a writer, a
    /// statement run for its effects: not code the node runs,
    /// [`Graph::effect_links`]); whether that is new.
    fn add_dep(&mut self, from: u32, to: u32) -> bool {
        let deps = &mut self.nodes[from as usize].deps;
        if from == to || deps.contains(&to) {
            return false;
        }
        deps.push(to);
        self.effect_links.insert((from, to));
        true
    }

    /// The module-level variables read at run time by code the memoized
    /// function runs: the units `root` reaches by what they call and read,
    /// not through what may change a binding (a writer's own reads decide
    /// what it wrote, which is counted where it is read).
    fn collect_state(&mut self, root: u32) {
        let mut called = vec![false; self.nodes.len()];
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            if std::mem::replace(&mut called[node as usize], true) {
                continue;
            }
            for &dep in &self.nodes[node as usize].deps {
                if !called[dep as usize] && !self.effect_links.contains(&(node, dep)) {
                    stack.push(dep);
                }
            }
        }
        for (reader, variable) in std::mem::take(&mut self.run_time_reads) {
            if called[reader as usize] {
                self.read_at_run_time(variable);
            }
        }
        let mut globals: Vec<String> = Vec::new();
        for module in &self.used {
            for (name, unit) in &module.global_reads_at_run_time {
                if self.index.get(&unit_node_name(module, *unit)).is_some_and(|&node| called[node as usize]) {
                    globals.push(name.clone());
                }
            }
        }
        globals.sort();
        globals.dedup();
        self.state_globals = globals;
        let mut imports = std::mem::take(&mut self.import_reads);
        imports.sort_by(|a, b| (a.1, &a.2.path, &a.3).cmp(&(b.1, &b.2.path, &b.3)));
        imports.dedup_by(|a, b| a.1 == b.1 && a.2.path == b.2.path && a.3 == b.3);
        for (reader, target, module, local) in imports {
            // Data an import binding holds: a variable, an export made by
            // an assignment (`module.exports = {…}`), a module read whole;
            // never a function, a class or a package.
            // Or an export other than a function that some statement
            // changes (`Config.k = 3` on an imported class: an effect edge
            // into its node; a function's edges come from calls on it).
            // A member of a module bound whole (`text.rate`): any export,
            // since code may replace it (`exports.rate = r`) while it runs.
            let member = local.contains('.') && self.nodes[target as usize].kind != "package";
            let data = member
                || self.variables.contains_key(&target)
                || self.nodes[target as usize].kind == "module"
                || self.exported_data.contains(&target)
                || (self.nodes[target as usize].kind != "function"
                    && self.effect_links.iter().any(|&(from, _)| from == target));
            if !called[reader as usize] || !data {
                continue;
            }
            let reassigned = self.variables.get(&target).is_some_and(|(owner, unit)| owner.assigned(*unit));
            let at = self.state_module(&module);
            if !self.state[at].variables.iter().any(|(node, name, _)| *node == target && *name == local) {
                self.state[at].variables.push((target, local, reassigned));
            }
        }
    }

    /// The place of `module` in `state`, added when it has none.
    fn state_module(&mut self, module: &Arc<Module>) -> usize {
        match self.state.iter().position(|state| state.file == module.path) {
            Some(at) => at,
            None => {
                let mut bindings: Vec<String> = module.bindings.keys().cloned().collect();
                bindings.sort();
                self.state.push(StateModule { file: module.path.clone(), bindings, variables: Vec::new() });
                self.state.len() - 1
            }
        }
    }

    /// The node of an export when the graph already holds it (an export the
    /// function does not reach is not added for a statement that changes it).
    fn existing_export(&self, module: &Arc<Module>, imported: &Imported) -> Option<u32> {
        let unit = match imported {
            Imported::Namespace => return self.index.get(&module.rel).copied(),
            // A default export the module does not have is not its `module.exports` here.
            Imported::Default if !module.exports.contains_key("default") => return None,
            _ => export_unit(module, imported)?,
        };
        self.index.get(&unit_node_name(module, unit)).copied()
    }

    fn add(&mut self, kind: &str, name: String, content: Digest) -> (u32, bool) {
        if let Some(&index) = self.index.get(&name) {
            return (index, false);
        }
        let index = self.nodes.len() as u32;
        self.nodes.push(GraphNode {
            kind: kind.to_owned(),
            name: name.clone(),
            content: content.to_string(),
            deps: Vec::new(),
        });
        self.index.insert(name, index);
        (index, true)
    }

    fn package(&mut self, name: &str, version: &str) -> Result<u32, HitSaveError> {
        let mut stream = StreamWriter::new();
        stream.str(&format!("{name}=={version}"));
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("package", format!("package:{name}"), content).0)
    }

    /// An environment variable the code reads, by its value now (the
    /// process's environment: what `process.env` holds, assignments to it
    /// included), or as unset.
    fn environment(&mut self, name: &str) -> Result<u32, HitSaveError> {
        let mut stream = StreamWriter::new();
        stream.list(3).str("env").str(name);
        // A name no environment can hold (empty, with `=` or NUL: `var_os`
        // may panic on it) is unset.
        let valid = !name.is_empty() && !name.contains(['=', '\0']);
        let value = if valid { std::env::var_os(name) } else { None };
        if valid && !self.watched.environment.iter().any(|(seen, _)| seen == name) {
            self.watched.environment.push((name.to_owned(), value.clone()));
        }
        match value {
            Some(value) => stream.bytes(value.as_encoded_bytes()),
            None => stream.null(),
        };
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", format!("env:{name}"), content).0)
    }

    /// The command-line arguments the code reads, by their values now
    /// (`process.argv` after the script's path).
    fn arguments(&mut self) -> Result<u32, HitSaveError> {
        let mut stream = StreamWriter::new();
        stream.list(2).str("argv").list(self.argv.len());
        for argument in &self.argv {
            stream.str(argument);
        }
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", "process:argv".to_owned(), content).0)
    }

    /// A program the code runs in a worker or another process: a project
    /// JavaScript or TypeScript module as a node whose dependencies are every
    /// unit of it (its top-level code runs), any other file by its contents.
    fn runs(&mut self, path: &Path) -> Result<u32, HitSaveError> {
        let script = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "js" | "mjs" | "cjs" | "jsx" | "ts" | "mts" | "cts" | "tsx"));
        if !script || path.components().any(|c| c.as_os_str() == "node_modules") {
            return self.file(path, true);
        }
        let name = format!("runs:{}", self.rel(path));
        if let Some(&index) = self.index.get(&name) {
            return Ok(index);
        }
        // A worker or a child reads its file each time it starts, not from this
        // process's module cache: read it again, and watch it, so an edit while
        // the process runs is seen at the next call.
        self.watched.file(path);
        if self.modules.get(path).is_some_and(|module| !module.read_state.still(path)) {
            self.modules.remove(path);
            if let Some(cache) = cache().as_mut() {
                cache.remove(path);
            }
        }
        let module = self.module(path)?;
        let mut stream = StreamWriter::new();
        stream.str(&name);
        let content = self.core.value_digest(stream.as_bytes())?;
        let (index, _) = self.add("module", name, content);
        let mut deps = Vec::new();
        for unit in 0..module.units.len() {
            let node = self.unit(&module, unit)?;
            if node != index && !deps.contains(&node) {
                deps.push(node);
            }
        }
        self.nodes[index as usize].deps = deps;
        Ok(index)
    }

    /// The operating system and architecture, for code that reads which it runs on.
    fn platform(&mut self) -> Result<u32, HitSaveError> {
        let mut stream = StreamWriter::new();
        stream.list(3).str("platform").str(std::env::consts::OS).str(std::env::consts::ARCH);
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", "process:platform".to_owned(), content).0)
    }

    /// The local time zone and locale, by what V8 (through ICU) takes them
    /// from: the variables [`LOCAL_TIME_VARIABLES`] and the zone file
    /// `/etc/localtime` (its contents), watched in the process
    /// (`process.env.TZ = 'UTC'` changes the zone of a running Node).
    fn local_time(&mut self) -> Result<u32, HitSaveError> {
        if let Some(&index) = self.index.get("process:local-time") {
            return Ok(index);
        }
        let mut stream = StreamWriter::new();
        stream.list(3).str("local-time").list(LOCAL_TIME_VARIABLES.len());
        for name in LOCAL_TIME_VARIABLES {
            let value = std::env::var_os(name);
            if !self.watched.environment.iter().any(|(seen, _)| seen == name) {
                self.watched.environment.push((name.to_owned(), value.clone()));
            }
            match value {
                Some(value) => stream.bytes(value.as_encoded_bytes()),
                None => stream.null(),
            };
        }
        let zone = Path::new("/etc/localtime");
        self.watched.file(zone);
        match std::fs::read(zone) {
            Ok(bytes) => stream.bytes(&bytes),
            Err(_) => stream.null(),
        };
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", "process:local-time".to_owned(), content).0)
    }

    /// A file the code reads by a path known without running it, by its
    /// contents now (a missing file as such), or, for `existsSync`, by
    /// whether it exists.
    fn file(&mut self, path: &Path, contents: bool) -> Result<u32, HitSaveError> {
        let rel = self.rel(path);
        let name = if contents { format!("file:{rel}") } else { format!("exists:{rel}") };
        if let Some(&index) = self.index.get(&name) {
            return Ok(index);
        }
        // Its state before it is read: an edit during the read is seen at the next check.
        self.watched.file(path);
        let mut stream = StreamWriter::new();
        stream.list(3).str("file").str(&rel);
        if !contents {
            stream.bool(path.exists());
            let content = self.core.value_digest(stream.as_bytes())?;
            return Ok(self.add("constant", name, content).0);
        }
        match std::fs::read(path) {
            Ok(bytes) => stream.bytes(&bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => stream.null(),
            // A directory (`existsSync(dir)`): that it is one. Unreadable:
            // the code fails reading it too, so what is counted is why.
            Err(_) if path.is_dir() => stream.str("directory"),
            Err(err) => stream.str(&format!("unreadable: {:?}", err.kind())),
        };
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", name, content).0)
    }

    /// Every file under a directory the code reads from at names only known
    /// when it runs, by contents (`dir:<path>`); a path that is not a
    /// directory counts as what it is (missing, a file).
    fn directory(&mut self, path: &Path, reader: &str) -> Result<u32, HitSaveError> {
        let rel = self.rel(path);
        let name = format!("dir:{rel}");
        if let Some(&index) = self.index.get(&name) {
            return Ok(index);
        }
        let mut stream = StreamWriter::new();
        stream.list(3).str("directory").str(&rel);
        self.watched.file(path);
        if path.is_dir() {
            let (files, directories) = hitsave_host::files::directory_files(path, reader)?;
            for watched in directories.iter().chain(&files) {
                self.watched.file(watched);
            }
            stream.list(files.len());
            for file in &files {
                let inside = file.strip_prefix(path).unwrap_or(file).to_string_lossy().replace('\\', "/");
                stream.list(2).str(&inside);
                match hitsave_host::hash::file_digest(file) {
                    Ok((len, digest)) => stream.bytes_digest(len, &digest.bytes),
                    Err(HitSaveError::Io { source, .. }) => stream.str(&format!("unreadable: {:?}", source.kind())),
                    Err(error) => return Err(error),
                };
            }
        } else {
            stream.str(if path.exists() { "not a directory" } else { "missing" });
        }
        let content = self.core.value_digest(stream.as_bytes())?;
        Ok(self.add("constant", name, content).0)
    }

    fn unit(&mut self, module: &Arc<Module>, unit: usize) -> Result<u32, HitSaveError> {
        let data = &module.units[unit];
        let content = match data.content.get() {
            Some(content) => *content,
            None => {
                let content = content_digest(self.core, data.kind, &data.text, module.source_type)?;
                self.kept_changed |= module.kept;
                *data.content.get_or_init(|| content)
            }
        };
        let (index, new) = self.add(data.kind, unit_node_name(module, unit), content);
        if !new {
            return Ok(index);
        }
        if data.reads_unknown || data.writes_files || !data.named_paths.is_empty() {
            self.reached.push((module.clone(), unit, index));
        }
        // A variable; or a class or function some code changes
        // (`Config.k = 3`, `helper.factor = 2`): its value is module state.
        if data.exported_data {
            self.exported_data.insert(index);
        }
        if data.declared.is_some()
            || (matches!(data.kind, "class" | "function")
                && module
                    .bindings
                    .get(&data.name)
                    .is_some_and(|binding| matches!(binding, Binding::Unit(u) if *u == unit))
                && module.changed(unit))
        {
            self.variables.insert(index, (module.clone(), unit));
        }

        let mut deps = Vec::new();
        for (at, dep) in data.deps.iter().enumerate() {
            let target = match dep {
                Dep::Unit(other) => Some(self.unit(module, *other)?),
                Dep::Import { spec, imported } => self.import(module, spec, imported)?,
                Dep::Dynamic(what) => return Err(unavailable(what.clone())),
                Dep::Env(name) => Some(self.environment(name)?),
                Dep::Argv => Some(self.arguments()?),
                Dep::Platform => Some(self.platform()?),
                Dep::LocalTime => Some(self.local_time()?),
                Dep::Runs(path) => Some(self.runs(path)?),
                Dep::File { path, contents } => Some(self.file(path, *contents)?),
                Dep::Directory(path) => Some(self.directory(path, &unit_node_name(module, unit))?),
            };
            if let Some(target) = target
                && target != index
                && !deps.contains(&target)
            {
                deps.push(target);
            }
            // Code that runs when the function is called (inside a function
            // or a class) reads the variables it refers to then: their values
            // count (`state`).
            if let Some(target) = target {
                if matches!(dep, Dep::Unit(other) if module.effect_edges.contains(&(unit, *other))) {
                    self.effect_links.insert((index, target));
                } else if data.at_run_time.binary_search(&(at as u32)).is_ok() {
                    self.run_time_reads.push((index, target));
                    // What an import binding holds is read where it is bound
                    // too (an ESM binding is live; a `require` result is the
                    // exports object): the importer's local names for it.
                    if let Dep::Import { spec, imported } = dep {
                        for (local, binding) in &module.bindings {
                            if let Binding::Import { spec: bound, imported: what } = binding
                                && bound == spec
                                && (*what == imported.base() || *what == Imported::Namespace)
                            {
                                // `text.fmt` on a whole module (`const text =
                                // require('./text')`, `import * as text`): that
                                // member, not every function the module holds.
                                let read = match (what, imported) {
                                    (Imported::Namespace, Imported::Named(member)) => format!("{local}.{member}"),
                                    _ => local.clone(),
                                };
                                self.import_reads.push((index, target, module.clone(), read));
                            }
                        }
                    }
                }
            }
        }
        self.nodes[index as usize].deps = deps;
        Ok(index)
    }

    /// `target`, a node code of the graph reads when it runs: a module-level
    /// variable (or each variable of a module read whole) counts by its value
    /// in the running program ([`AnalyzedGraph::state`]).
    fn read_at_run_time(&mut self, target: u32) {
        let variables: Vec<u32> = if self.variables.contains_key(&target) {
            vec![target]
        } else if self.nodes[target as usize].kind == "module" {
            let name = &self.nodes[target as usize].name;
            let mut all: Vec<u32> =
                self.variables.iter().filter(|(_, (module, _))| &module.rel == name).map(|(&node, _)| node).collect();
            all.sort_unstable();
            all
        } else {
            return;
        };
        for node in variables {
            let (module, unit) = self.variables[&node].clone();
            if self
                .state
                .iter()
                .any(|state| state.file == module.path && state.variables.iter().any(|&(known, _, _)| known == node))
            {
                continue;
            }
            let reassigned = module.assigned(unit);
            let at = self.state_module(&module);
            for name in module.units[unit].name.split(',') {
                self.state[at].variables.push((node, name.to_owned(), reassigned));
            }
        }
    }

    fn binding(&mut self, module: &Arc<Module>, binding: &Binding) -> Result<Option<u32>, HitSaveError> {
        match binding {
            Binding::Unit(unit) => Ok(Some(self.unit(module, *unit)?)),
            Binding::Import { spec, imported } => self.import(module, spec, imported),
        }
    }

    fn import(&mut self, from: &Arc<Module>, spec: &str, imported: &Imported) -> Result<Option<u32>, HitSaveError> {
        match resolve(&from.path, spec) {
            Resolved::Package { name, version } => Ok(Some(self.package(&name, &version)?)),
            Resolved::File(path) => {
                let module = self.module(&path)?;
                self.export(&module, imported, 0)
            }
        }
    }

    fn export(&mut self, module: &Arc<Module>, imported: &Imported, depth: usize) -> Result<Option<u32>, HitSaveError> {
        if depth > 64 {
            return Ok(None);
        }
        let name = match imported {
            Imported::Namespace => return Ok(Some(self.whole(module)?)),
            Imported::Default => "default",
            Imported::Named(name) => name.as_str(),
            Imported::Member(name, property) => {
                let namespace = match module.exports.get(name) {
                    Some(Export::From { spec, imported: Imported::Namespace }) => Some(spec.clone()),
                    Some(Export::Local(local)) => match module.bindings.get(local) {
                        Some(Binding::Import { spec, imported: Imported::Namespace }) => Some(spec.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                return match namespace {
                    Some(spec) => self.import(module, &spec, &Imported::Named(property.clone())),
                    None => self.export(module, &Imported::Named(name.clone()), depth),
                };
            }
        };
        if let Some(export) = module.exports.get(name).cloned() {
            return match export {
                Export::Unit(unit) => Ok(Some(self.unit(module, unit)?)),
                Export::Local(local) => match module.bindings.get(&local).cloned() {
                    Some(binding) => self.binding(module, &binding),
                    None => Ok(Some(self.whole(module)?)),
                },
                Export::From { spec, imported } => self.import(module, &spec, &imported),
            };
        }
        for spec in module.star_exports.clone() {
            if let Resolved::File(path) = resolve(&module.path, &spec) {
                let target = self.module(&path)?;
                if target.exports.contains_key(name) {
                    return self.export(&target, imported, depth + 1);
                }
            }
        }
        if let Some(unit) = module.cjs_exports {
            return Ok(Some(self.unit(module, unit)?));
        }
        Ok(Some(self.whole(module)?))
    }

    /// A module used as a whole: every unit and re-export.
    fn whole(&mut self, module: &Arc<Module>) -> Result<u32, HitSaveError> {
        let mut stream = StreamWriter::new();
        stream.str(&module.rel);
        let content = self.core.value_digest(stream.as_bytes())?;
        let (index, new) = self.add("module", module.rel.clone(), content);
        if !new {
            return Ok(index);
        }
        let mut deps = Vec::new();
        for unit in 0..module.units.len() {
            deps.push(self.unit(module, unit)?);
        }
        let mut reexports: Vec<(String, Imported)> = module
            .exports
            .values()
            .filter_map(|export| match export {
                Export::From { spec, imported } => Some((spec.clone(), imported.clone())),
                _ => None,
            })
            .collect();
        reexports.extend(module.star_exports.iter().map(|spec| (spec.clone(), Imported::Namespace)));
        for (spec, imported) in reexports {
            if let Some(target) = self.import(module, &spec, &imported)? {
                deps.push(target);
            }
        }
        deps.sort_unstable();
        deps.dedup();
        deps.retain(|&dep| dep != index);
        self.nodes[index as usize].deps = deps;
        Ok(index)
    }
}

/// The unit of this module an import of it names, when it is one here
/// (not re-exported from elsewhere).
fn export_unit(module: &Module, imported: &Imported) -> Option<usize> {
    let export = match imported {
        Imported::Namespace => return None,
        Imported::Default => module.exports.get("default"),
        Imported::Named(name) | Imported::Member(name, _) => module.exports.get(name.as_str()),
    };
    match export {
        Some(Export::Unit(unit)) => Some(*unit),
        Some(Export::Local(local)) => match module.bindings.get(local)? {
            Binding::Unit(unit) => Some(*unit),
            Binding::Import { .. } => None,
        },
        Some(Export::From { .. }) => None,
        None => module.cjs_exports,
    }
}

/// The graph node name of a module's unit: `path/relative/to/project.js:unit`.
fn unit_node_name(module: &Module, unit: usize) -> String {
    format!("{}:{}", module.rel, module.units[unit].name)
}

/// Module summaries of this process (sources do not change under a running
/// program), shared by the JS thread and the libuv workers that analyse for
/// async functions.
static CACHE: Mutex<Option<HashMap<PathBuf, Arc<Module>>>> = Mutex::new(None);

fn cache() -> std::sync::MutexGuard<'static, Option<HashMap<PathBuf, Arc<Module>>>> {
    CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The dependency graph of the function `memo()` was called with at
/// `file:line:column`, in `program`.
/// `script` is the text of a program that has no file (`node -e`, a script
/// piped to `node -`): `file` is then where it runs (`<cwd>/[eval]`), which
/// places it in a project and resolves its relative imports.
pub fn analyze(
    core: &Core,
    file: &Path,
    line: u32,
    column: u32,
    source: &str,
    script: Option<&str>,
    program: &Program,
) -> Result<AnalyzedGraph, HitSaveError> {
    let others = &program.files;
    let file = match script {
        Some(_) => file.to_path_buf(),
        None => file.canonicalize().map_err(|err| unavailable(format!("cannot find {}: {err}", file.display())))?,
    };
    let graph = Graph::new(core, project_root(&file), program);
    let rel = graph.rel(&file);
    let at = if line > 0 { Some((line, column)) } else { None };
    let mut module = Arc::new(summarize(core, &file, rel, at, source, script, MEMOIZED)?);
    // memo() called by the project's own helper (`cached(fn)` in another
    // file): the function is where its text is, in a file of the callers.
    if module.root.is_none() && !source.is_empty() {
        for other in others {
            let Ok(other) = other.canonicalize() else { continue };
            if other == file
                || !other.starts_with(&graph.project)
                || other.components().any(|c| c.as_os_str() == "node_modules")
            {
                continue;
            }
            let rel = graph.rel(&other);
            let candidate = Arc::new(summarize(core, &other, rel, None, source, None, MEMOIZED)?);
            if candidate.root.is_some() {
                module = candidate;
                break;
            }
        }
    }
    let Some(root) = module.root.clone() else {
        return Err(unavailable(format!(
            "the function passed to memo() at {}:{line}:{column} was not found in the source of that file or of \
             its callers (a function made at run time: new Function, eval); give it an explicit name and version",
            file.display()
        )));
    };
    graph.finish(&module, &root, others)
}

impl Graph<'_> {
    /// When a unit of the graph reads a file at a path known only when it
    /// runs (a helper reading its parameter, a method reading `this.file`),
    /// the existing files other units of the graph name as a call's first
    /// argument (`parse('table.csv')`, `new Table('table.csv')`) count, by
    /// contents: the helper may read them. More misses at worst.
    fn files_named_for_readers(&mut self, reads_unknown: bool) -> Result<(), HitSaveError> {
        if !reads_unknown {
            return Ok(());
        }
        // The files the command-line arguments name (`node main.js
        // data.csv`, `--config cfg.json`): read by `readFileSync(process.argv[2])`
        // or through a package that parses the arguments itself.
        let argv: Vec<String> = self
            .argv
            .iter()
            .flat_map(|argument| {
                let value = argument.split_once('=').map(|(_, value)| value.to_owned());
                std::iter::once(argument.clone()).chain(value)
            })
            .collect();
        for (module, unit, node) in std::mem::take(&mut self.reached) {
            let unknown = module.units[unit].reads_unknown;
            let named = module.units[unit].named_paths.iter();
            for text in named.chain(argv.iter().filter(|_| unknown)) {
                let Some(path) = absolute(Path::new(text)) else { continue };
                let path = lexical_normal(&path);
                if path.is_file() {
                    let file = self.file(&path, true)?;
                    let deps = &mut self.nodes[node as usize].deps;
                    if file != node && !deps.contains(&file) {
                        deps.push(file);
                    }
                }
            }
        }
        Ok(())
    }
}

/// How `summarize`'s refusals name the code it was asked to find.
const MEMOIZED: &str = "function passed to memo()";

impl Graph<'_> {
    /// The graph rooted at `root` of `module`, with the effects of the
    /// program around it; the modules read are kept for the process.
    fn finish(
        mut self,
        module: &Arc<Module>,
        root: &Binding,
        others: &[PathBuf],
    ) -> Result<AnalyzedGraph, HitSaveError> {
        self.mark_used(module);
        let root =
            self.binding(module, root)?.ok_or_else(|| unavailable("the memoized function could not be resolved"))?;
        // The program around the call ran too: the files of the calls that led
        // to memo() and the entry script (in `others`), with every project module
        // they import. Their top-level statements may change what the function
        // reads (`import './setup.mjs'` in the entry, which sets `config.k`), so
        // they count for those effects; they add no node otherwise.
        self.seed_effects(others)?;
        self.add_effects()?;
        let reads_unknown = self.reached.iter().any(|(module, unit, _)| module.units[*unit].reads_unknown);
        let files_in_key =
            reads_unknown || self.reached.iter().any(|(module, unit, _)| module.units[*unit].writes_files);
        self.files_named_for_readers(reads_unknown)?;
        self.collect_state(root);
        if self.kept_changed
            && let Some(kept) = &self.kept
        {
            kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).save();
        }
        {
            let mut cache = cache();
            let cache = cache.get_or_insert_with(HashMap::new);
            for (path, module) in &self.modules {
                cache.entry(path.clone()).or_insert_with(|| module.clone());
            }
        }
        let root_name = self.nodes[root as usize].name.clone();
        let mut state_names: Vec<String> = Vec::new();
        if !self.state.is_empty() {
            for module in &self.used {
                for (name, binding) in &module.bindings {
                    // Its own code, or an import of a project module (a
                    // relative path, a workspace package): never a package's.
                    let project = match binding {
                        Binding::Unit(_) => true,
                        Binding::Import { spec, .. } => matches!(resolve(&module.path, spec), Resolved::File(_)),
                    };
                    if project {
                        state_names.push(name.clone());
                    }
                }
            }
            state_names.sort();
            state_names.dedup();
        }
        let state_globals = std::mem::take(&mut self.state_globals);
        Ok(AnalyzedGraph {
            root: root_name,
            nodes: self.nodes,
            watched: self.watched,
            state: self.state,
            state_names,
            state_globals,
            reads_unknown,
            files_in_key,
            captures: module.root_captures.clone(),
        })
    }
}

/// The dependency graphs of the class (or constructor function) named
/// `name` whose text is `source`, for an instance passed as an argument: its
/// methods, what they read, its base classes and the statements that change
/// it (`P.prototype.val = …`, `Object.assign(P.prototype, mixin)`), as a
/// memoized function's graph counts them. It is looked for in the project
/// modules `files` (the files of the calls that led to the call, and the
/// entry script) import, transitively: by its text, else (code transpiled as
/// it loaded, such as TypeScript through tsx, runs a text the file does not
/// hold) every class or function declared under its name, each a graph.
/// Empty: not defined in the project (a package's class).
pub fn analyze_class(
    core: &Core,
    source: &str,
    name: &str,
    program: &Program,
) -> Result<Vec<AnalyzedGraph>, HitSaveError> {
    let files = &program.files;
    let Some(first) = files.iter().find_map(|file| file.canonicalize().ok()) else { return Ok(Vec::new()) };
    let project = project_root(&first);
    let mut graph = Graph::new(core, project.clone(), program);
    let mut found = None;
    let mut named: Vec<(PathBuf, String)> = Vec::new();
    let declared = declared_as(source, name);
    graph.project_modules(files, true, |graph, summary| {
        // Top-level units hold the text of everything in the module (a
        // class declared inside a function is in that function's text).
        if summary.units.iter().any(|unit| unit.text.contains(source)) {
            let module = graph.class_summary(&summary.path, source)?;
            if let Some(root) = module.root.clone() {
                found = Some((module, root));
                return Ok(true);
            }
        }
        if !name.is_empty()
            && let Some(needle) = summary.units.iter().find_map(|unit| declaration_text(&unit.text, &declared))
        {
            named.push((summary.path.clone(), needle));
        }
        Ok(false)
    })?;
    if let Some((module, root)) = found {
        return Ok(vec![graph.finish(&module, &root, files)?]);
    }
    let mut graphs = Vec::new();
    for (path, needle) in named {
        let mut graph = Graph::new(core, project.clone(), program);
        let module = graph.class_summary(&path, &needle)?;
        if let Some(root) = module.root.clone() {
            graph.modules.insert(path.clone(), module.clone());
            graphs.push(graph.finish(&module, &root, files)?);
        }
    }
    Ok(graphs)
}

/// Whether the class (or constructor function) named `name` whose text is
/// `source` is one the project defines: [`analyze_class`] would find it
/// (its text in a project module, or a declaration of its name there),
/// answered from the modules' summaries without analysing it. With no name,
/// whether a function's text as it runs (`Function.prototype.toString`) is
/// written in a project module, not a package's or Node's: the project's
/// closures held in module state count by the variables they captured
/// (`const rand = mulberry32(1)`), a package's (a debounced function, a
/// limiter) by identity, since their variables are its bookkeeping.
pub fn project_class(core: &Core, source: &str, name: &str, program: &Program) -> Result<bool, HitSaveError> {
    let files = &program.files;
    let Some(first) = files.iter().find_map(|file| file.canonicalize().ok()) else { return Ok(false) };
    let mut graph = Graph::new(core, project_root(&first), program);
    let declared = declared_as(source, name);
    graph.project_modules(files, true, |_, summary| {
        Ok(summary.units.iter().any(|unit| {
            unit.text.contains(source) || (!name.is_empty() && declaration_text(&unit.text, &declared).is_some())
        }))
    })
}

/// How a class (or constructor function) whose text is `source` is declared
/// under `name`: `class Name` or `function Name`.
fn declared_as(source: &str, name: &str) -> String {
    let keyword = if source.trim_start().starts_with("class") { "class" } else { "function" };
    format!("{keyword} {name}")
}

/// `class Name` (or `function Name`) in `text` as a whole name, with the
/// character after it (`class Model ` but not `class Modeler`): the text to
/// look for in the file.
fn declaration_text(text: &str, declared: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = text[from..].find(declared) {
        let start = from + at;
        let end = start + declared.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'))
            && let Some(after) = after
            && !(after.is_alphanumeric() || after == '_' || after == '$')
        {
            return Some(format!("{declared}{after}"));
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::json_without_whitespace;

    #[test]
    fn json_whitespace_is_dropped_outside_strings_only() {
        let pretty = "{\n  \"k\": [1, 2],\r\n  \"s\": \"a b\\\" c\"\n}\n";
        let compact = "{\"k\":[1,2],\"s\":\"a b\\\" c\"}";
        assert_eq!(json_without_whitespace(pretty), json_without_whitespace(compact));
        assert_eq!(json_without_whitespace(compact), compact);
        assert_ne!(json_without_whitespace(r#"{"s":"a b"}"#), json_without_whitespace(r#"{"s":"ab"}"#));
        assert_ne!(json_without_whitespace(r#"{"a":1,"b":2}"#), json_without_whitespace(r#"{"b":2,"a":1}"#));
    }
}
