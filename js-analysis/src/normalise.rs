//! Normalised source: a declaration parsed on its own and printed back by
//! oxc's code generator without comments or formatting, so neither counts;
//! and what `memo()` reads from a function's own source (its free names, its
//! parameters, whether it uses `this`).

use std::path::Path;

use hitsave_core::Digest;
use hitsave_core::stream::StreamWriter;
use hitsave_host::{Core, HitSaveError};
use oxc_allocator::Allocator;
use oxc_ast::AstKind;
use oxc_codegen::{Codegen, CodegenOptions, CommentOptions};
use oxc_parser::Parser;
use oxc_semantic::SemanticBuilder;
use oxc_span::SourceType;
use oxc_transformer::{TransformOptions, Transformer};

/// Normalised source: parse `text` on its own and print it without comments or formatting.
///
/// TypeScript is first compiled to the JavaScript that runs (oxc's
/// transformer, as tsx and ts-node do): annotations, interfaces, type
/// aliases, `satisfies`, `as`, generics and accessibility modifiers do not
/// count; what they compile to (enums, namespaces, parameter properties)
/// does.
pub(crate) fn normalize(text: &str, source_type: SourceType) -> Option<String> {
    let allocator = Allocator::default();
    let mut parsed = Parser::new(&allocator, text, source_type).parse();
    if !parsed.diagnostics.is_empty() || parsed.panicked {
        return None;
    }
    if source_type.is_typescript() {
        let program = &mut parsed.program;
        // A transform that fails (or panics, on a construct it does not
        // support) leaves the unit to be counted by its exact text: nothing
        // is missed.
        let transformed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let scoping = SemanticBuilder::new().with_enum_eval(true).build(program).semantic.into_scoping();
            Transformer::new(&allocator, Path::new("unit.ts"), &TransformOptions::default())
                .build_with_scoping(scoping, program)
                .diagnostics
                .is_empty()
        }));
        if !matches!(transformed, Ok(true)) {
            return None;
        }
    }
    let options = CodegenOptions { minify: true, comments: CommentOptions::disabled(), ..CodegenOptions::default() };
    Some(Codegen::new().with_options(options).build(&parsed.program).code)
}

pub(crate) fn content_digest(
    core: &Core,
    kind: &str,
    text: &str,
    source_type: SourceType,
) -> Result<Digest, HitSaveError> {
    let normalized = normalize(text, source_type);
    let mut stream = StreamWriter::new();
    match &normalized {
        Some(code) => stream.list(3).str("js").str(kind).str(code),
        // Not parseable alone (a method's text): its exact text, so nothing is missed.
        None => stream.list(3).str("js-text").str(kind).str(text),
    };
    core.value_digest(stream.as_bytes())
}

/// The content digest of a function's own source (for functions passed as arguments).
pub fn normalized_function(core: &Core, source: &str) -> Result<Digest, HitSaveError> {
    let wrapped = format!("({source})");
    let text = if normalize(&wrapped, SourceType::mjs()).is_some() { wrapped } else { format!("({{{source}}})") };
    content_digest(core, "function", &text, SourceType::mjs())
}

pub(crate) fn source_type_of(path: &Path) -> SourceType {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "ts" | "mts" | "cts" | "tsx" => SourceType::from_path(path).unwrap_or(SourceType::ts()),
        "cjs" => SourceType::cjs(),
        "mjs" => SourceType::mjs(),
        "jsx" => SourceType::from_path(path).unwrap_or(SourceType::unambiguous()).with_unambiguous(true),
        _ => SourceType::unambiguous(),
    }
}

/// The names a function's own source reads but does not declare (its free
/// variables: module-level bindings, closure variables, globals), sorted; or
/// `None` when the source does not parse alone.
pub fn free_names(source: &str) -> Option<Vec<String>> {
    let allocator = Allocator::default();
    for text in [format!("({source})"), format!("({{{source}}})")] {
        let parsed = Parser::new(&allocator, &text, SourceType::mjs()).parse();
        if !parsed.diagnostics.is_empty() || parsed.panicked {
            continue;
        }
        let semantic = SemanticBuilder::new().build(&parsed.program).semantic;
        let mut names: Vec<String> =
            semantic.scoping().root_unresolved_references().keys().map(|name| name.to_string()).collect();
        names.sort();
        return Some(names);
    }
    None
}

/// What `memo()` needs to know about a function from its own source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its parameter names (`None` for a destructured one).
    pub params: Vec<Option<String>>,
    /// Whether it refers to `this` (or `super`, which calls with it).
    pub uses_this: bool,
    /// Whether it can see how many arguments it was given: a rest parameter,
    /// or `arguments` anywhere in it. Then `f(1)` and `f(1, undefined)` are
    /// different calls (`(...xs) => xs.length` is 1 and 2); otherwise
    /// trailing `undefined`s are the same as missing arguments.
    pub counts_arguments: bool,
}

/// [`FunctionInfo`] of a function's source; a source that does not parse
/// gets the cautious answers (`this` used, arguments counted).
pub fn function_info(source: &str) -> FunctionInfo {
    let allocator = Allocator::default();
    for text in [format!("({source})"), format!("({{{source}}})")] {
        let parsed = Parser::new(&allocator, &text, SourceType::mjs()).parse();
        if !parsed.diagnostics.is_empty() || parsed.panicked {
            continue;
        }
        let semantic = SemanticBuilder::new().with_build_nodes(true).build(&parsed.program).semantic;
        let mut params: Option<Vec<Option<String>>> = None;
        let mut uses_this = false;
        let mut counts_arguments = false;
        for node in semantic.nodes().iter() {
            match node.kind() {
                AstKind::Function(function) if params.is_none() => {
                    counts_arguments |= function.params.rest.is_some();
                    params = Some(
                        function
                            .params
                            .items
                            .iter()
                            .map(|p| p.pattern.get_identifier_name().map(|n| n.to_string()))
                            .chain(
                                function
                                    .params
                                    .rest
                                    .iter()
                                    .map(|r| r.rest.argument.get_identifier_name().map(|n| n.to_string())),
                            )
                            .collect(),
                    );
                }
                AstKind::ArrowFunctionExpression(arrow) if params.is_none() => {
                    counts_arguments |= arrow.params.rest.is_some();
                    params = Some(
                        arrow
                            .params
                            .items
                            .iter()
                            .map(|p| p.pattern.get_identifier_name().map(|n| n.to_string()))
                            .chain(
                                arrow
                                    .params
                                    .rest
                                    .iter()
                                    .map(|r| r.rest.argument.get_identifier_name().map(|n| n.to_string())),
                            )
                            .collect(),
                    );
                }
                // `super.calc(x)` calls with this `this`: the instance counts.
                AstKind::ThisExpression(_) | AstKind::Super(_) => uses_this = true,
                AstKind::IdentifierReference(reference) if reference.name == "arguments" => counts_arguments = true,
                _ => {}
            }
        }
        return FunctionInfo { params: params.unwrap_or_default(), uses_this, counts_arguments };
    }
    FunctionInfo { params: Vec::new(), uses_this: true, counts_arguments: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> String {
        normalize(text, SourceType::ts()).expect("parses")
    }

    #[test]
    fn type_only_edits_of_typescript_do_not_count_and_runtime_ones_do() {
        let plain = ts("function f(x: number): number { return x + 1; }");
        assert_eq!(plain, ts("function f(x: number | bigint): string { return x + 1; }"));
        assert_eq!(plain, ts("function f<T extends object>(x: any) { return (x as number) + 1; }"));
        assert_ne!(plain, ts("function f(x: number): number { return x + 2; }"));
        let class = ts("class C { private rate = 2; scale(x: number) { return x * this.rate; } }");
        assert_eq!(
            class,
            ts("class C { protected rate: number = 2; scale(x: number): number { return x * this.rate; } }")
        );
        // A parameter property assigns at run time: it is code.
        assert_ne!(
            ts("class D { constructor(private rate: number) {} }"),
            ts("class D { constructor(rate: number) {} }")
        );
        // An enum is code; an interface is not.
        assert_ne!(ts("enum E { A = 1 }"), ts("enum E { A = 2 }"));
        assert_eq!(ts("interface I { a: number }"), ts("interface I { a: string; b: boolean }"));
        assert_eq!(
            ts("const config = { k: 3 } satisfies Record<string, number>;"),
            ts("const config = { k: 3 } as const;")
        );
    }
}
