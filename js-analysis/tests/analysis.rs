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
fn function_info_names_parameters_and_sees_this() {
    let (params, uses_this) = function_info("function f(a, { b }, ...rest) { return a + b + rest.length; }");
    assert_eq!(params, [Some("a".to_owned()), None, Some("rest".to_owned())]);
    assert!(!uses_this);
    let (_, uses_this) = function_info("function g() { return this.x; }");
    assert!(uses_this);
    // `this` inside a nested ordinary function is that function's own.
    let (_, uses_this) = function_info("(x) => [x].map(function () { return x; })");
    assert!(!uses_this);
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The graph of the function passed to the `memo(` in `main.mjs`.
fn graph_of(root: &Path) -> hitsave_js_analysis::AnalyzedGraph {
    let file = root.join("main.mjs");
    let text = std::fs::read_to_string(&file).unwrap();
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(index, line)| line.find("memo(").map(|at| (index as u32 + 1, at as u32 + 1)))
        .unwrap();
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
