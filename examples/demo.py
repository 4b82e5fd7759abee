"""The HitSave demo: a hit, a miss after an edit, a hit after reverting it,
in fresh Python processes sharing one store (the embedded defaults: a local
store in a fresh directory, no server); then Python and Node sharing results
through that store.

Run by `bash scripts/demo.sh`.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT = {
    "features.py": """
        def featurize(x):
            return [x, x * x]
    """,
    "embed.py": """
        from hitsave import memo

        @memo(name="embed", version="1")
        def embed(text):
            print("  (python computes embed)")
            return {"text": text, "vector": [len(text), text.count("l")]}
    """,
    "embed.js": """
        const { memo } = require(process.env.HITSAVE_NODE_PACKAGE);
        const embed = memo((text) => {
          console.log('  (node computes embed)');
          return { text, vector: [text.length, text.split('l').length - 1] };
        }, { name: 'embed', version: '1' });
        const text = process.argv[2];
        console.log(`  node: embed(${JSON.stringify(text)}) = ${JSON.stringify(embed(text))}`);
    """,
    "train.py": """
        import time
        from hitsave import memo
        from features import featurize

        @memo
        def train(epochs, lr=0.01):
            print("  (training: this takes a second)")
            time.sleep(1)
            return sum(featurize(epochs)) * lr
    """,
}


def show(command: list[str], root: Path | None, env: dict[str, str]) -> str:
    """Runs one command, echoes its output, and returns it."""
    out = subprocess.run(command, cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    return out


def expect(out: str, marker: str, computed: bool) -> None:
    """The demo checks itself: a hit must not compute and a miss must."""
    if (marker in out) != computed:
        sys.exit(f"demo: expected a {'miss' if computed else 'hit'} here, got the opposite")
    print("     -> " + ("miss: computed and stored" if computed else "hit: nothing computed"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        for name, text in PROJECT.items():
            (root / name).write_text(textwrap.dedent(text))
        env = dict(os.environ, HITSAVE_CACHE_DIR=str(Path(tmp) / "cache"))
        train = [sys.executable, "-c", "import time, train; t = time.time(); r = train.train(10); print(f'  train(10) = {r:.2f} in {time.time() - t:.2f}s')"]

        print("1. first run computes:")
        expect(show(train, root, env), "(training", computed=True)
        print("2. a new process hits the stored result:")
        expect(show(train, root, env), "(training", computed=False)
        print("3. edit features.py (a dependency of train) -> miss, recompute:")
        (root / "features.py").write_text(textwrap.dedent(PROJECT["features.py"]).replace("x * x", "x * x * x"))
        expect(show(train, root, env), "(training", computed=True)
        print("4. revert the edit -> the old result hits again:")
        (root / "features.py").write_text(textwrap.dedent(PROJECT["features.py"]))
        expect(show(train, root, env), "(training", computed=False)
        print("5. add a comment and a docstring -> still a hit (they do not count):")
        (root / "features.py").write_text('"""Features."""\n' + textwrap.dedent(PROJECT["features.py"]).replace("def featurize(x):", "def featurize(x):  # square it"))
        expect(show(train, root, env), "(training", computed=False)
        print("6. what the store holds (`hitsave ls`, the same CLI for every language):")
        show([sys.executable, "-m", "hitsave", "ls"], None, env)
        print("7. why would train miss now? (`hitsave why`):")
        show([sys.executable, "-m", "hitsave", "why", "train:train"], None, env)
        node_env = dict(env, HITSAVE_NODE_PACKAGE=str(Path(__file__).resolve().parents[1] / "bindings" / "node"))
        py_embed = "import sys, embed; print(f'  python: embed({sys.argv[1]!r}) = {embed.embed(sys.argv[1])}')"
        print("8. Python computes embed('hello') (explicit name and version, shared across languages):")
        expect(show([sys.executable, "-c", py_embed, "hello"], root, env), "(python computes", computed=True)
        print("9. Node calls embed('hello') with the same name and version -> a hit on Python's result:")
        expect(show(["node", str(root / "embed.js"), "hello"], root, node_env), "(node computes", computed=False)
        print("10. Node computes embed('world'); Python then hits on Node's result:")
        expect(show(["node", str(root / "embed.js"), "world"], root, node_env), "(node computes", computed=True)
        expect(show([sys.executable, "-c", py_embed, "world"], root, env), "(python computes", computed=False)
        print("11. one store, both languages (`hitsave ls`):")
        listing = show([sys.executable, "-m", "hitsave", "ls"], None, env)
        if "python" not in listing or "node" not in listing:
            sys.exit("demo: `hitsave ls` should list results of both languages")
        print("The demo checked every step: hits, misses after an edit, and one cache for Python and Node.")


if __name__ == "__main__":
    main()
