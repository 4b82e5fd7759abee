//! Which functions of a scope are the scope's own, for good: its function
//! declarations that nothing reassigns.
//!
//! The live checks (`bindings/node/live.js`) read what a project closure
//! captures through the inspector, and the closures of the functions it can
//! call, one read each (a third of a millisecond: lodash's `_.sortBy` reaches
//! ~110 of them). A function declared in a scope and never reassigned was
//! made by that scope: its own scopes are that scope and those around it,
//! already read. Given a function the live checks read (its text, and where
//! V8 says it is), this finds the file and the scopes around it, and names
//! the declarations of each scope the running program shows; the live checks
//! take those functions' scopes from the one they read.
//!
//! Only what the file's text proves is given: a file with a direct `eval` or
//! a `with` statement (which add or change bindings no text shows) gives
//! nothing; nor does a name a declaration in a block also binds (sloppy code
//! assigns the enclosing function's binding when it runs), nor a function
//! the running program's scopes cannot be matched to one each.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oxc_ast::AstKind;
use oxc_ast::ast::Expression;
use oxc_semantic::{Semantic, SymbolFlags};
use oxc_span::GetSpan;
use serde::{Deserialize, Serialize};

/// A scope of a file (a function's, a block's, a class's…) that binds names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct DeclaredScope {
    /// The span of the scope's node, in bytes.
    start: u32,
    end: u32,
    /// Every name it binds, sorted.
    bindings: Vec<String>,
    /// `(name, start, end)`: the function declarations directly in its body
    /// that nothing reassigns or declares again.
    declared: Vec<(String, u32, u32)>,
}

/// The scopes of a parsed file, or none when its text cannot prove which
/// functions are a scope's own (a direct `eval`, a `with`), or none of its
/// scopes declares one.
pub(crate) fn scopes_of(semantic: &Semantic<'_>) -> Vec<DeclaredScope> {
    let scoping = semantic.scoping();
    let nodes = semantic.nodes();
    let mut in_blocks: HashSet<&str> = HashSet::new();
    for node in nodes.iter() {
        match node.kind() {
            AstKind::WithStatement(_) => return Vec::new(),
            AstKind::CallExpression(call) if matches!(call.callee.without_parentheses(), Expression::Identifier(name) if name.name == "eval") =>
            {
                return Vec::new();
            }
            AstKind::Function(function) if function.is_declaration() => {
                if let Some(id) = &function.id
                    && !matches!(nodes.parent_kind(node.id()), AstKind::FunctionBody(_) | AstKind::Program(_))
                {
                    in_blocks.insert(id.name.as_str());
                }
            }
            _ => {}
        }
    }
    let mut scopes = Vec::new();
    let mut any_declared = false;
    for scope in scoping.scope_descendants_from_root() {
        let bindings = scoping.get_bindings(scope);
        if bindings.is_empty() {
            continue;
        }
        let span = nodes.get_node(scoping.get_node_id(scope)).kind().span();
        let mut names = Vec::with_capacity(bindings.len());
        let mut declared = Vec::new();
        for (name, &symbol) in bindings {
            let name = name.as_str();
            names.push(name.to_owned());
            if !scoping.symbol_flags(symbol).contains(SymbolFlags::Function)
                || in_blocks.contains(name)
                || !scoping.symbol_redeclarations(symbol).is_empty()
                || scoping.get_resolved_references(symbol).any(|reference| reference.is_write())
            {
                continue;
            }
            let declaration = scoping.symbol_declaration(symbol);
            let AstKind::Function(function) = nodes.get_node(declaration).kind() else { continue };
            if function.is_declaration()
                && function.body.is_some()
                && matches!(nodes.parent_kind(declaration), AstKind::FunctionBody(_) | AstKind::Program(_))
            {
                declared.push((name.to_owned(), function.span.start, function.span.end));
            }
        }
        names.sort_unstable();
        declared.sort_unstable();
        any_declared |= !declared.is_empty();
        scopes.push(DeclaredScope { start: span.start, end: span.end, bindings: names, declared });
    }
    if any_declared { scopes } else { Vec::new() }
}

/// The texts of files [`declared_functions`] looked in, as this process read them.
static TEXTS: Mutex<Option<HashMap<PathBuf, Option<Arc<str>>>>> = Mutex::new(None);

fn text_of(path: &Path) -> Option<Arc<str>> {
    let mut texts = TEXTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    texts
        .get_or_insert_with(HashMap::new)
        .entry(path.to_path_buf())
        .or_insert_with(|| std::fs::read_to_string(path).ok().map(Arc::from))
        .clone()
}

/// The function declarations the running program's scopes hold for good.
///
/// `text` is a function's text (`Function.prototype.toString`), `line` and
/// `column` where V8 places it (`[[FunctionLocation]]`, 0-based), `scopes`
/// the names of the scopes the inspector shows it captures, innermost first
/// (those a call made: not the module's or the global one). The function is
/// looked for in the files this process summarised; when exactly one has
/// that text there, each of `scopes` is matched, in order, to the one scope
/// around the function that binds all its names, and its never-reassigned
/// function declarations among those names are given as `(name, text)`.
/// None when the function or a scope cannot be placed that way.
pub fn declared_functions(
    text: &str,
    line: u32,
    column: u32,
    scopes: &[Vec<String>],
) -> Option<Vec<Vec<(String, String)>>> {
    let modules: Vec<Arc<crate::Module>> =
        crate::cache().as_ref()?.values().filter(|module| !module.declared_scopes.is_empty()).cloned().collect();
    let mut found = None;
    for module in modules {
        let Some(source) = text_of(&module.path) else { continue };
        let Some(at) = crate::offset_of(&source, line + 1, column + 1) else { continue };
        // V8 places a function at its parameters: its text starts at most its length before.
        let Some(start) = (at.saturating_sub(text.len())..=at)
            .find(|&start| source.is_char_boundary(start) && source[start..].starts_with(text))
        else {
            continue;
        };
        if found.is_some() {
            return None; // In two files: which one is not known.
        }
        found = Some((module, source, start));
    }
    let (module, source, start) = found?;
    let end = start + text.len();
    let mut around: Vec<&DeclaredScope> = module
        .declared_scopes
        .iter()
        .filter(|scope| scope.start as usize <= start && end <= scope.end as usize)
        .collect();
    // Innermost first: nested spans start later, or end sooner.
    around.sort_by_key(|scope| (std::cmp::Reverse(scope.start), scope.end));
    let mut next = 0;
    let mut out = Vec::with_capacity(scopes.len());
    for names in scopes {
        let fits = |scope: &&DeclaredScope| names.iter().all(|name| scope.bindings.binary_search(name).is_ok());
        let mut candidates = around.iter().enumerate().skip(next).filter(|(_, scope)| fits(scope));
        let (index, scope) = candidates.next()?;
        if candidates.next().is_some() {
            return None; // Two scopes around it could be this one.
        }
        next = index + 1;
        let held: HashSet<&str> = names.iter().map(String::as_str).collect();
        out.push(
            scope
                .declared
                .iter()
                .filter(|(name, _, _)| held.contains(name.as_str()))
                .filter_map(|(name, from, to)| {
                    Some((name.clone(), source.get(*from as usize..*to as usize)?.to_owned()))
                })
                .collect(),
        );
    }
    Some(out)
}
