//! Code fingerprints: a Merkle hash over a dependency graph, cycles included.
//!
//! Nodes on one strongly connected component (a cycle of mutual references)
//! are hashed together; everything else bottom-up. Names, not input positions,
//! order everything, so the input order of nodes and edges does not matter,
//! and editing one node changes the fingerprints of exactly that node and the
//! nodes that reach it. `docs/spec/keys.md` gives the byte layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::digest::{CODE_CONTEXT, Digest, DigestKind, hasher};
use crate::error::{CoreError, ErrorCode};

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// Function, method, lambda, closure.
    Function,
    /// Class with its bases.
    Class,
    /// Global constant or module-level value.
    Constant,
    /// External package by name and version.
    Package,
    /// A module.
    Module,
}

impl NodeKind {
    /// Every kind, in WIT order.
    pub const ALL: [NodeKind; 5] = [Self::Function, Self::Class, Self::Constant, Self::Package, Self::Module];

    /// The byte that stands for the kind in fingerprint material.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Function => 1,
            Self::Class => 2,
            Self::Constant => 3,
            Self::Package => 4,
            Self::Module => 5,
        }
    }

    /// Lowercase name, as in WIT and the vectors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Class => "class",
            Self::Constant => "constant",
            Self::Package => "package",
            Self::Module => "module",
        }
    }
}

/// One node of a dependency graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Kind.
    pub kind: NodeKind,
    /// Unique name within the graph.
    pub name: String,
    /// Digest of the node's own content.
    pub content: Digest,
    /// Indices of the nodes it depends on.
    pub deps: Vec<u32>,
}

/// How a node differs between two graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Only in the new graph.
    Added,
    /// Only in the old graph.
    Removed,
    /// Own digest differs.
    Modified,
    /// Kind differs.
    KindChanged,
}

impl ChangeKind {
    /// Lowercase name, as in WIT and the vectors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
            Self::KindChanged => "kind-changed",
        }
    }
}

/// One difference between two graphs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Node name.
    pub name: String,
    /// What happened.
    pub change: ChangeKind,
}

fn validate(nodes: &[Node]) -> Result<HashMap<&str, usize>, CoreError> {
    let mut by_name = HashMap::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        if by_name.insert(node.name.as_str(), index).is_some() {
            return Err(CoreError::new(ErrorCode::InvalidGraph, format!("two nodes are named {:?}", node.name)));
        }
        if let Some(&dep) = node.deps.iter().find(|&&dep| dep as usize >= nodes.len()) {
            return Err(CoreError::new(
                ErrorCode::InvalidGraph,
                format!("node {:?} depends on node {dep}, but the graph has {} nodes", node.name, nodes.len()),
            ));
        }
    }
    Ok(by_name)
}

/// Strongly connected components in reverse topological order (dependencies
/// first), by an iterative Tarjan so deep graphs cannot overflow the stack.
fn components(nodes: &[Node]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let count = nodes.len();
    let mut index = vec![UNSEEN; count];
    let mut low = vec![0usize; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut result = Vec::new();
    let mut next = 0usize;
    for start in 0..count {
        if index[start] != UNSEEN {
            continue;
        }
        // (node, position of the next edge to look at)
        let mut work = vec![(start, 0usize)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if let Some(&dep) = nodes[node].deps.get(*edge) {
                *edge += 1;
                let dep = dep as usize;
                if index[dep] == UNSEEN {
                    index[dep] = next;
                    low[dep] = next;
                    next += 1;
                    stack.push(dep);
                    on_stack[dep] = true;
                    work.push((dep, 0));
                } else if on_stack[dep] {
                    low[node] = low[node].min(index[dep]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                loop {
                    let member = stack.pop().expect("Tarjan stack holds the component");
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                result.push(component);
            }
        }
    }
    result
}

fn write_str(hasher: &mut blake3::Hasher, text: &str) {
    hasher.update(&(text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
}

/// The `code2` fingerprint of every node, in input order.
pub fn fingerprints(nodes: &[Node]) -> Result<Vec<Digest>, CoreError> {
    validate(nodes)?;
    let mut component_of = vec![0usize; nodes.len()];
    let components = components(nodes);
    for (number, component) in components.iter().enumerate() {
        for &member in component {
            component_of[member] = number;
        }
    }
    let mut result: Vec<Option<Digest>> = vec![None; nodes.len()];
    for (number, component) in components.iter().enumerate() {
        let mut members = component.clone();
        members.sort_unstable_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        let mut scc = hasher(CODE_CONTEXT);
        scc.update(b"scc");
        scc.update(&(members.len() as u64).to_be_bytes());
        for &member in &members {
            let node = &nodes[member];
            scc.update(&[node.kind.tag()]);
            write_str(&mut scc, &node.name);
            scc.update(&[node.content.kind.tag(), node.content.version]);
            scc.update(&node.content.bytes);
            let mut internal = BTreeSet::new();
            let mut external = BTreeSet::new();
            for &dep in &node.deps {
                let dep = dep as usize;
                if component_of[dep] == number {
                    internal.insert(nodes[dep].name.as_str());
                } else {
                    external.insert(result[dep].expect("dependencies are fingerprinted first").bytes);
                }
            }
            scc.update(&(internal.len() as u64).to_be_bytes());
            for name in internal {
                write_str(&mut scc, name);
            }
            scc.update(&(external.len() as u64).to_be_bytes());
            for fingerprint in external {
                scc.update(&fingerprint);
            }
        }
        let scc = scc.finalize();
        for &member in &members {
            let mut node_hasher = hasher(CODE_CONTEXT);
            node_hasher.update(b"node");
            node_hasher.update(scc.as_bytes());
            write_str(&mut node_hasher, &nodes[member].name);
            result[member] = Some(Digest::new(DigestKind::Code, *node_hasher.finalize().as_bytes()));
        }
    }
    Ok(result.into_iter().map(|digest| digest.expect("every node is in one component")).collect())
}

fn reachable<'a>(nodes: &'a [Node], by_name: &HashMap<&str, usize>, root: &str) -> BTreeMap<&'a str, &'a Node> {
    let mut seen = BTreeMap::new();
    let Some(&start) = by_name.get(root) else {
        return seen;
    };
    let mut work = vec![start];
    while let Some(index) = work.pop() {
        let node = &nodes[index];
        if seen.insert(node.name.as_str(), node).is_none() {
            work.extend(node.deps.iter().map(|&dep| dep as usize));
        }
    }
    seen
}

/// What changed between two graphs among the nodes reachable from `root`.
pub fn diff(old: &[Node], new: &[Node], root: &str) -> Result<Vec<Change>, CoreError> {
    let old_names = validate(old)?;
    let new_names = validate(new)?;
    if !old_names.contains_key(root) && !new_names.contains_key(root) {
        return Err(CoreError::new(ErrorCode::InvalidGraph, format!("neither graph has the root {root:?}")));
    }
    let before = reachable(old, &old_names, root);
    let after = reachable(new, &new_names, root);
    let names: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let mut changes = Vec::new();
    for name in names {
        let change = match (before.get(name), after.get(name)) {
            (Some(_), None) => Some(ChangeKind::Removed),
            (None, Some(_)) => Some(ChangeKind::Added),
            (Some(old), Some(new)) if old.kind != new.kind => Some(ChangeKind::KindChanged),
            (Some(old), Some(new)) if old.content != new.content => Some(ChangeKind::Modified),
            _ => None,
        };
        if let Some(change) = change {
            changes.push(Change { name: name.to_owned(), change });
        }
    }
    Ok(changes)
}
