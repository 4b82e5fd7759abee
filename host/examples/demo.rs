//! What the foundation does, end to end, through the embedded core component:
//! equal arguments written differently share one key, a code edit changes the
//! key and `diff` says why, reverting the edit brings the old key back, and a
//! value that cannot be hashed faithfully is a typed error with its path.
//!
//! `cargo run -p hitsave-host --example demo`

use hitsave_core::graph::{Node, NodeKind};
use hitsave_core::keys::FunctionIdentity;
use hitsave_core::stream::StreamWriter;
use hitsave_core::{Digest, DigestKind};
use hitsave_host::{Core, HitSaveError, LoadSource};

/// A content digest standing in for a binding's normalised source.
fn source(core: &Core, text: &str) -> Result<Digest, HitSaveError> {
    let mut stream = StreamWriter::new();
    stream.str(text);
    core.value_digest(stream.as_bytes())
}

/// `train -> load_data`, `train -> SCALE`, `load_data -> pandas`.
fn project(core: &Core, load_data_source: &str) -> Result<Vec<Node>, HitSaveError> {
    Ok(vec![
        Node {
            kind: NodeKind::Function,
            name: "app:train".into(),
            content: source(core, "def train(cfg): return fit(load_data(), cfg) * SCALE")?,
            deps: vec![1, 2],
        },
        Node {
            kind: NodeKind::Function,
            name: "app:load_data".into(),
            content: source(core, load_data_source)?,
            deps: vec![3],
        },
        Node { kind: NodeKind::Constant, name: "app:SCALE".into(), content: source(core, "2")?, deps: vec![] },
        Node { kind: NodeKind::Package, name: "pandas".into(), content: source(core, "pandas==2.2.3")?, deps: vec![] },
    ])
}

fn key_for(core: &Core, graph: &[Node], arguments: &Digest) -> Result<Digest, HitSaveError> {
    let fingerprint = core.fingerprints(graph)?[0];
    core.derive_key(&FunctionIdentity::Fingerprint(fingerprint), arguments)
}

fn main() -> Result<(), HitSaveError> {
    let core = Core::shared()?;
    println!(
        "core component loaded ({})",
        match core.source() {
            LoadSource::Cached => "from the compile cache",
            LoadSource::CompiledAndCached => "compiled once and cached for the next run",
            LoadSource::Compiled => "compiled in memory",
        }
    );

    // train({"epochs": 10, "lr": 0.01}) as Python would write it ...
    let mut python = StreamWriter::new();
    python.list(1).map(2).str("epochs").int(10).str("lr").float(0.01);
    // ... and as Node would: keys in another order, 10 as a float.
    let mut node = StreamWriter::new();
    node.list(1).map(2).str("lr").float(0.01).str("epochs").float(10.0);
    let arguments = core.value_digest(python.as_bytes())?;
    assert_eq!(arguments, core.value_digest(node.as_bytes())?);
    println!("arguments  {arguments}  (same for both spellings)");

    let original = "def load_data(): return pandas.read_csv('train.csv')";
    let graph = project(core, original)?;
    let key = key_for(core, &graph, &arguments)?;
    println!("key        {key}");
    let again = key_for(core, &project(core, original)?, &arguments)?;
    println!("hit:  same code, same arguments -> same key: {}", again == key);

    let edited = "def load_data(): return pandas.read_csv('train.csv').dropna()";
    let edited_graph = project(core, edited)?;
    let edited_key = key_for(core, &edited_graph, &arguments)?;
    println!("miss: load_data edited -> new key {edited_key}");
    for change in core.diff(&graph, &edited_graph, "app:train")? {
        println!("      why: {} {}", change.name, change.change.as_str());
    }
    let reverted = key_for(core, &project(core, original)?, &arguments)?;
    println!("hit:  edit reverted -> old key again: {}", reverted == key);

    let mut bad = StreamWriter::new();
    bad.list(2).int(1).map(1).str("x").list(4).int(0).int(0).int(0).unhashable("threading.Lock");
    let error = core.value_digest(bad.as_bytes()).expect_err("a lock cannot be hashed");
    println!("error: code={} at args{}: {error}", error.code(), error.path().unwrap_or(""));

    let blob = hitsave_host::hash::blob_digest(b"result bytes");
    assert_eq!(blob.kind, DigestKind::Blob);
    println!("blob       {blob}");
    Ok(())
}
