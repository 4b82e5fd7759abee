//! The Node SDK's code analysis, tested in Rust on real files (the SDK's own
//! tests run it through `memo()` in Node: bindings/node/test).

use std::path::Path;
use std::sync::OnceLock;

use hitsave_host::{Core, LoadOptions};
use hitsave_js_analysis::{analyze, free_names, function_info, normalized_function};

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| {
        let dir = std::env::temp_dir().join("hitsave-test-compiled");
        Core::load(&LoadOptions { compiled_dir: Some(dir) }).expect("core loads")
    })
}

#[test]
fn a_function_counts_by_its_code_not_its_comments_or_layout() {
    let plain = normalized_function(core(), "(x) => x + 1").unwrap();
    let commented = normalized_function(core(), "(x) =>  /* one more */\n  x + 1").unwrap();
    let edited = normalized_function(core(), "(x) => x + 2").unwrap();
    assert_eq!(plain, commented);
    assert_ne!(plain, edited);
    // A method's text does not parse alone: it counts by its exact text.
    let method = normalized_function(core(), "scale(x) { return x * 2 }").unwrap();
    assert_ne!(method, normalized_function(core(), "scale(x) { return x * 3 }").unwrap());
}

#[test]
fn free_names_are_what_a_function_reads_from_around_it() {
    let names = free_names("function f(x) { const y = x * RATE; return Math.max(y, limit(x)); }").unwrap();
    assert_eq!(names, ["Math", "RATE", "limit"]);
    assert_eq!(free_names("(a, b) => a + b").unwrap(), Vec::<String>::new());
    assert_eq!(free_names("this is not code"), None);
}

#[test]
fn function_info_names_parameters_and_sees_this_and_argument_counts() {
    let info = function_info("function f(a, { b }, ...rest) { return a + b + rest.length; }");
    assert_eq!(info.params, [Some("a".to_owned()), None, Some("rest".to_owned())]);
    assert!(!info.uses_this);
    assert!(info.counts_arguments, "a rest parameter sees how many arguments were given");
    let info = function_info("function g() { return this.x; }");
    assert!(info.uses_this);
    assert!(!info.counts_arguments);
    assert!(function_info("function h(a) { return arguments.length; }").counts_arguments);
    assert!(function_info("(a, b = 5) => [a, b]").params.len() == 2);
    assert!(!function_info("(a, b = 5) => [a, b]").counts_arguments);
    assert!(!function_info("(x) => [x].map(function () { return x; })").uses_this);
    assert!(function_info("calc2(x) { return super.calc(x); }").uses_this, "super calls with this");
    // Cautious when the source does not parse.
    assert!(function_info("not a function (").counts_arguments);
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Where `memo(` is called in `file`: line and column, from 1.
fn memo_call(file: &Path) -> (u32, u32) {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .find_map(|(index, line)| line.find("memo(").map(|at| (index as u32 + 1, at as u32 + 1)))
        .unwrap()
}

/// The graph of the function passed to the `memo(` in `main.mjs`.
fn graph_of(root: &Path) -> hitsave_js_analysis::AnalyzedGraph {
    let file = root.join("main.mjs");
    let (line, column) = memo_call(&file);
    analyze(core(), &file, line, column, "", None, &Default::default()).unwrap()
}

fn fingerprint(graph: &hitsave_js_analysis::AnalyzedGraph) -> String {
    let nodes = hitsave_js_analysis::core_nodes(&graph.nodes).unwrap();
    let root = graph.nodes.iter().position(|node| node.name == graph.root).unwrap();
    core().fingerprints(&nodes).unwrap()[root].to_string()
}

#[test]
fn the_graph_follows_imports_into_the_project_and_counts_packages_by_version() {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    write(root, "package.json", r#"{ "name": "app", "type": "module" }"#);
    write(root, "node_modules/lodash/package.json", r#"{ "name": "lodash", "version": "4.17.21" }"#);
    write(root, "node_modules/lodash/index.js", "exports.sum = (xs) => xs.reduce((a, b) => a + b, 0);");
    write(root, "helper.mjs", "export const SCALE = 3;\nexport function helper(x) {\n  return x * SCALE;\n}\n");
    write(
        root,
        "main.mjs",
        "import { memo } from 'hitsave';\nimport { helper } from './helper.mjs';\nimport lodash from 'lodash';\n\
         export const f = memo((x) => lodash.sum([helper(x), 1]));\n",
    );
    let graph = graph_of(root);
    let names: Vec<&str> = graph.nodes.iter().map(|node| node.name.as_str()).collect();
    assert!(names.contains(&"helper.mjs:helper"), "{names:?}");
    assert!(names.contains(&"helper.mjs:SCALE"), "{names:?}");
    assert!(names.iter().any(|name| name.starts_with("package:lodash")), "{names:?}");
    let before = fingerprint(&graph);

    // A comment changes nothing; the helper's constant does; so does the package's version.
    write(
        root,
        "helper.mjs",
        "export const SCALE = 3; // the scale\nexport function helper(x) {\n  return x * SCALE;\n}\n",
    );
    assert_eq!(fingerprint(&graph_of_fresh(root)), before);
    write(root, "helper.mjs", "export const SCALE = 4;\nexport function helper(x) {\n  return x * SCALE;\n}\n");
    let edited = fingerprint(&graph_of_fresh(root));
    assert_ne!(edited, before);
    write(root, "node_modules/lodash/package.json", r#"{ "name": "lodash", "version": "4.17.22" }"#);
    assert_ne!(fingerprint(&graph_of_fresh(root)), edited);
}

/// Module summaries are kept per process (sources do not change under a
/// running program): an edit is seen through a copy of the project at a new
/// path, as a fresh process would see it.
fn graph_of_fresh(root: &Path) -> hitsave_js_analysis::AnalyzedGraph {
    let copy = tempfile::tempdir().unwrap().keep();
    copy_dir(root, &copy);
    graph_of(&copy)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The graph of `main.mjs`'s memoized function with module summaries kept
/// in `kept` (as the Node SDK runs it), each time as a fresh process would.
/// A graph's nodes as `(kind, name, content, dependency names)`, sorted.
type Nodes = Vec<(String, String, String, Vec<String>)>;

fn graph_kept(root: &Path, kept: &Path) -> (Nodes, String) {
    hitsave_js_analysis::forget_process_summaries();
    let file = root.join("main.mjs");
    let (line, column) = memo_call(&file);
    let program = hitsave_js_analysis::Program { summaries: Some(kept.to_path_buf()), ..Default::default() };
    let graph = analyze(core(), &file, line, column, "", None, &program).unwrap();
    let mut nodes: Vec<_> = graph
        .nodes
        .iter()
        .map(|node| {
            let mut deps: Vec<String> = node.deps.iter().map(|&dep| graph.nodes[dep as usize].name.clone()).collect();
            deps.sort();
            (node.kind.clone(), node.name.clone(), node.content.clone(), deps)
        })
        .collect();
    nodes.sort();
    // What the binding reads in the running program, by node name (node
    // numbers follow the order modules were reached).
    let mut state: Vec<String> = graph
        .state
        .iter()
        .map(|module| {
            let mut variables: Vec<String> = module
                .variables
                .iter()
                .map(|(node, name, assigned)| format!("{}={name}:{assigned}", graph.nodes[*node as usize].name))
                .collect();
            variables.sort();
            let mut bindings = module.bindings.clone();
            bindings.sort();
            format!("{}{bindings:?}{variables:?}", module.file.display())
        })
        .collect();
    state.sort();
    let rest = format!(
        "{state:?} {:?} {:?} {} {} {:?}",
        graph.state_names, graph.state_globals, graph.reads_unknown, graph.files_in_key, graph.watched.files
    );
    (nodes, rest)
}

#[test]
fn a_graph_from_kept_module_summaries_is_the_graph_from_the_sources() {
    // Every kind of unit a summary holds: functions, classes (with statics and
    // methods changed at the top level), `let`/`var`/`const` state, CommonJS
    // exports, a JSON module, TypeScript, re-exports, effects on an import,
    // side-effect imports, globals written and read.
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    write(root, "package.json", r#"{ "name": "app", "type": "module" }"#);
    write(root, "data.json", r#"{ "rate": 3 }"#);
    write(
        root,
        "shapes.ts",
        "export interface Shape { area(): number }\nexport class Square implements Shape {\n  constructor(private side: number) {}\n  \
         area(): number { return this.side * this.side; }\n}\nexport enum Unit { Cm, In }\n",
    );
    write(
        root,
        "config.mjs",
        "import data from './data.json' with { type: 'json' };\nexport const settings = { k: 2, rate: data.rate };\n\
         export let counter = 0;\nexport var legacy = [1, 2];\nexport function bump() { counter += 1; }\n\
         export let level = 1;\nlevel = 2;\n",
    );
    write(root, "setup.mjs", "import { settings } from './config.mjs';\nsettings.k = 5;\nglobalThis.RATE = 7;\n");
    write(
        root,
        "lib.cjs",
        "const helper = (x) => x + 1;\nmodule.exports = { helper, table: [1, 2, 3] };\nexports.extra = () => 4;\n",
    );
    write(
        root,
        "calc.mjs",
        "import { settings, legacy, level, counter } from './config.mjs';\nimport lib from './lib.cjs';\nimport { Square } from './shapes.ts';\n\
         export * from './config.mjs';\nexport class Calc {\n  static base = 10;\n  run(x) { return new Square(x).area() * settings.k + \
         lib.helper(x) + legacy.length + RATE + level + counter; }\n}\nCalc.prototype.scale = 2;\nObject.assign(Calc, { extra: 1 });\n",
    );
    write(
        root,
        "main.mjs",
        "import { memo } from 'hitsave';\nimport './setup.mjs';\nimport { Calc } from './calc.mjs';\n\
         export const f = memo((x) => new Calc().run(x));\n",
    );
    // Files modified in the last two seconds are never kept.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let kept = tempfile::tempdir().unwrap();
    let parsed = graph_kept(root, kept.path());
    let files: Vec<_> = std::fs::read_dir(kept.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "one kept file for the project: {files:?}");
    let before = hitsave_js_analysis::summarized_files().len();
    let from_kept = graph_kept(root, kept.path());
    // (Other tests of this process parse their own projects meanwhile.)
    let root = root.canonicalize().unwrap();
    let again: Vec<_> = hitsave_js_analysis::summarized_files()[before..]
        .iter()
        .filter(|file| file.starts_with(&root))
        .cloned()
        .collect();
    assert_eq!(again, [root.join("main.mjs")], "only the memo() caller is parsed again");
    assert_eq!(from_kept, parsed);
    assert!(parsed.0.iter().any(|node| node.1.contains("shapes.ts")), "{parsed:?}");
    assert!(parsed.0.iter().any(|node| node.1.contains("data.json")), "{parsed:?}");
    assert!(parsed.1.contains("level:true"), "a top-level assignment makes `level` state read again: {}", parsed.1);
}
