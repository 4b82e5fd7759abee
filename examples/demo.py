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


def run(root: Path, env: dict[str, str]) -> None:
    code = "import time, train; t = time.time(); r = train.train(10); print(f'  train(10) = {r:.2f} in {time.time() - t:.2f}s')"
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        for name, text in PROJECT.items():
            (root / name).write_text(textwrap.dedent(text))
        env = dict(os.environ, HITSAVE_CACHE_DIR=str(Path(tmp) / "cache"))

        print("1. first run computes:")
        run(root, env)
        print("2. a new process hits the stored result:")
        run(root, env)
        print("3. edit features.py (a dependency of train) -> miss, recompute:")
        (root / "features.py").write_text(textwrap.dedent(PROJECT["features.py"]).replace("x * x", "x * x * x"))
        run(root, env)
        print("4. revert the edit -> the old result hits again:")
        (root / "features.py").write_text(textwrap.dedent(PROJECT["features.py"]))
        run(root, env)
        print("5. add a comment and a docstring -> still a hit (they do not count):")
        (root / "features.py").write_text('"""Features."""\n' + textwrap.dedent(PROJECT["features.py"]).replace("def featurize(x):", "def featurize(x):  # square it"))
        run(root, env)
        print("6. what the store holds (`hitsave ls`, the same CLI for every language):")
        subprocess.run([sys.executable, "-m", "hitsave", "ls"], env=env, check=True)
        print("7. why would train miss now? (`hitsave why`):")
        subprocess.run([sys.executable, "-m", "hitsave", "why", "train:train"], env=env, check=True)
        node_env = dict(env, HITSAVE_NODE_PACKAGE=str(Path(__file__).resolve().parents[1] / "bindings" / "node"))
        py_embed = "import sys, embed; print(f'  python: embed({sys.argv[1]!r}) = {embed.embed(sys.argv[1])}')"
        print("8. Python computes embed('hello') (explicit name and version, shared across languages):")
        subprocess.run([sys.executable, "-c", py_embed, "hello"], cwd=root, env=env, check=True)
        print("9. Node calls embed('hello') with the same name and version -> a hit on Python's result:")
        subprocess.run(["node", str(root / "embed.js"), "hello"], cwd=root, env=node_env, check=True)
        print("10. Node computes embed('world'); Python then hits on Node's result:")
        subprocess.run(["node", str(root / "embed.js"), "world"], cwd=root, env=node_env, check=True)
        subprocess.run([sys.executable, "-c", py_embed, "world"], cwd=root, env=env, check=True)
        print("11. one store, both languages (`hitsave ls`):")
        subprocess.run([sys.executable, "-m", "hitsave", "ls"], env=env, check=True)


if __name__ == "__main__":
    main()
