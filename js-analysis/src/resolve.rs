//! Where an import leads: the project's own file (followed by its source)
//! or a package (by name and version), as Node resolves it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where an import specifier leads.
#[derive(Clone)]
pub(crate) enum Resolved {
    File(PathBuf),
    Package { name: String, version: String },
}

pub(crate) const BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

/// Node's resolution for the analysis (oxc's resolver: CommonJS and ESM,
/// `exports` and `imports` with their conditions, `main`, directory
/// indexes, symlinks to their real paths, and `tsconfig.json` `paths` as tsx
/// applies them), with TypeScript's extensions and its `./x.js` meaning
/// `./x.ts`. One per process: it caches what it reads of the file system,
/// and sources do not change under a running program. The second one
/// ignores `tsconfig.json`: a broken one (invalid JSON, an `extends` of a
/// package not installed) fails every resolution of the first.
pub(crate) fn resolvers() -> &'static [oxc_resolver::Resolver; 2] {
    static RESOLVERS: OnceLock<[oxc_resolver::Resolver; 2]> = OnceLock::new();
    RESOLVERS.get_or_init(|| [resolver(true), resolver(false)])
}

pub(crate) fn resolver(tsconfig: bool) -> oxc_resolver::Resolver {
    let strings = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
    oxc_resolver::Resolver::new(oxc_resolver::ResolveOptions {
        tsconfig: tsconfig.then_some(oxc_resolver::TsconfigDiscovery::Auto),
        // The first of these an `exports` object lists wins; `types` (declarations) is not code.
        condition_names: strings(&["node", "require", "import", "default"]),
        extensions: strings(&[".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".json"]),
        extension_alias: vec![
            (".js".to_owned(), strings(&[".ts", ".tsx", ".js"])),
            (".mjs".to_owned(), strings(&[".mts", ".mjs"])),
            (".cjs".to_owned(), strings(&[".cts", ".cjs"])),
        ],
        ..oxc_resolver::ResolveOptions::default()
    })
}

/// The package a file under `node_modules` belongs to: the directory after
/// the last `node_modules` (two for a `@scope`), with its name and version.
pub(crate) fn installed_package(file: &Path) -> Option<(String, String)> {
    let components: Vec<_> = file.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let at = components.iter().rposition(|c| c == "node_modules")?;
    let first = components.get(at + 1)?;
    let name = if first.starts_with('@') { format!("{first}/{}", components.get(at + 2)?) } else { first.clone() };
    let dir: PathBuf = components[..=at].iter().collect::<PathBuf>().join(&name);
    let version = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| json_string_field(&text, "version"))
        .unwrap_or_else(|| "unversioned".to_owned());
    // What was installed at that version: a package rebuilt and installed
    // again at the same version (`npm install ./lib-1.0.0.tgz` after an
    // edit, a git dependency at a new commit) is another package.
    let first = components.iter().position(|c| c == "node_modules")?;
    let root: PathBuf = components[..first].iter().collect();
    let key = components[first..at]
        .iter()
        .cloned()
        .chain(["node_modules".to_owned(), name.clone()])
        .collect::<Vec<_>>()
        .join("/");
    match installed_as(&root, &key) {
        Some(installed) => Some((name, format!("{version} {installed}"))),
        None => Some((name, version)),
    }
}

/// What npm's record of the installed tree (`node_modules/.package-lock.json`
/// under `root`, which npm rewrites at every install) says the package at
/// `key` (`node_modules/a/node_modules/b`) was installed from: its
/// `integrity` (the digest of the tarball: machine-independent), else its
/// `resolved` (a git dependency's commit). The record is read once per
/// process; only the package's own entry is parsed.
fn installed_as(root: &Path, key: &str) -> Option<String> {
    type Records = std::collections::HashMap<PathBuf, Option<std::sync::Arc<String>>>;
    static RECORDS: OnceLock<std::sync::Mutex<Records>> = OnceLock::new();
    let record = root.join("node_modules").join(".package-lock.json");
    let text = RECORDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(record.clone())
        .or_insert_with(|| std::fs::read_to_string(&record).ok().map(std::sync::Arc::new))
        .clone()?;
    let needle = format!("{}:", serde_json::to_string(key).ok()?);
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let at = from + found + needle.len();
        from = at;
        // The entry's object, parsed alone (a large record costs a search, not a parse).
        let mut entry = serde_json::Deserializer::from_str(&text[at..]).into_iter::<serde_json::Value>();
        let Some(Ok(serde_json::Value::Object(entry))) = entry.next() else { continue };
        let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        if let Some(found) = field("integrity").or_else(|| field("resolved")) {
            return Some(found);
        }
        return None;
    }
    None
}

/// HitSave's own package, when a file belongs to it although it is not
/// under `node_modules` (installed by link: `npm install ../hitsave`,
/// `file:`): it counts as the package `hitsave` by its version, never as the
/// project's code, so a fingerprint never depends on where the SDK lives.
pub(crate) fn sdk_package(file: &Path) -> Option<(String, String)> {
    let manifest = file.ancestors().skip(1).take(8).map(|dir| dir.join("package.json")).find(|path| path.is_file())?;
    let text = std::fs::read_to_string(manifest).ok()?;
    (json_string_field(&text, "name").as_deref() == Some("hitsave")).then(|| {
        ("hitsave".to_owned(), json_string_field(&text, "version").unwrap_or_else(|| "unversioned".to_owned()))
    })
}

/// A top-level string field of a package.json, read with a real JSON parser.
pub(crate) fn json_string_field(manifest: &str, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

/// Where `spec`, imported by the file `from`, leads. A file that resolves
/// outside any `node_modules` is the project's code (relative imports,
/// `tsconfig.json` paths, `imports` aliases, and packages linked into
/// `node_modules` from elsewhere: npm, yarn and pnpm workspaces, `npm link`),
/// followed by its source; one inside counts as its package, by name and
/// version (pnpm's store is under `node_modules` too).
pub(crate) fn resolve(from: &Path, spec: &str) -> Resolved {
    // Kept per process, by the importing file's directory and the specifier
    // (all a resolution depends on): a graph resolves every import of every
    // module it reaches, and a fresh resolution reads package.json files on
    // the way up. The file-system facts the resolver caches are kept per
    // process just the same.
    type Key = (PathBuf, String);
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<Key, Resolved>>> = OnceLock::new();
    let key = (from.parent().unwrap_or(from).to_path_buf(), spec.to_owned());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
        return found.clone();
    }
    let found = resolve_uncached(from, spec);
    cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, found.clone());
    found
}

fn resolve_uncached(from: &Path, spec: &str) -> Resolved {
    let builtin = spec.strip_prefix("node:").unwrap_or(spec);
    if spec.starts_with("node:") || BUILTINS.contains(&builtin.split('/').next().unwrap_or(builtin)) {
        return Resolved::Package { name: format!("node:{builtin}"), version: "builtin".to_owned() };
    }
    let [with_tsconfig, without] = resolvers();
    if let Ok(resolution) = with_tsconfig.resolve_file(from, spec).or_else(|_| without.resolve_file(from, spec)) {
        let file = resolution.into_path_buf();
        if let Some((name, version)) = installed_package(&file).or_else(|| sdk_package(&file)) {
            return Resolved::Package { name, version };
        }
        return Resolved::File(file);
    }
    if spec.starts_with('.') || spec.starts_with('/') || spec.starts_with("file:") {
        return Resolved::Package { name: format!("unresolved:{spec}"), version: "missing".to_owned() };
    }
    let mut parts = spec.split('/');
    let first = parts.next().unwrap_or(spec);
    let name =
        if first.starts_with('@') { format!("{first}/{}", parts.next().unwrap_or("")) } else { first.to_owned() };
    Resolved::Package { name, version: "not-installed".to_owned() }
}

/// The project a file belongs to: the nearest directory above it with a
/// `package.json` (outside `node_modules`), else the file's directory.
pub(crate) fn project_root(file: &Path) -> PathBuf {
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current.join("package.json").is_file() && !current.components().any(|c| c.as_os_str() == "node_modules") {
            return current.to_path_buf();
        }
        dir = current.parent();
    }
    file.parent().unwrap_or(Path::new("/")).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn imports_lead_to_project_files_packages_builtins_or_say_what_is_missing() {
        let project = tempfile::tempdir().unwrap();
        let root = project.path();
        write(root, "package.json", r#"{ "name": "app" }"#);
        write(root, "src/main.js", "");
        write(root, "src/util.ts", "");
        write(
            root,
            "node_modules/@scope/pkg/package.json",
            r#"{ "name": "@scope/pkg", "version": "1.2.3", "main": "index.js" }"#,
        );
        write(root, "node_modules/@scope/pkg/index.js", "");
        let from = root.join("src/main.js");
        // TypeScript's `./x.js` meaning `./x.ts`.
        match resolve(&from, "./util.js") {
            Resolved::File(file) => assert!(file.ends_with("src/util.ts"), "{file:?}"),
            Resolved::Package { name, .. } => panic!("a project file, not {name}"),
        }
        let package = |spec: &str| match resolve(&from, spec) {
            Resolved::Package { name, version } => (name, version),
            Resolved::File(file) => panic!("{spec}: a package, not {file:?}"),
        };
        assert_eq!(package("@scope/pkg"), ("@scope/pkg".to_owned(), "1.2.3".to_owned()));
        assert_eq!(package("fs"), ("node:fs".to_owned(), "builtin".to_owned()));
        assert_eq!(package("node:fs/promises"), ("node:fs/promises".to_owned(), "builtin".to_owned()));
        assert_eq!(package("./gone.js"), ("unresolved:./gone.js".to_owned(), "missing".to_owned()));
        assert_eq!(package("left-pad/lib"), ("left-pad".to_owned(), "not-installed".to_owned()));
        assert_eq!(project_root(&from), root.to_path_buf());
        // A package's file belongs to the project that installed it.
        assert_eq!(project_root(&root.join("node_modules/@scope/pkg/index.js")), root.to_path_buf());
    }
}
