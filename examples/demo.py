"""The HitSave demo: a hit, a miss after an edit, a hit after reverting it,
in fresh Python processes sharing one store (the embedded defaults: a local
store in a fresh directory, no server).

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
        print("\nNode shares this store once the Node SDK lands (issue 5); the Rust host demo")
        print("shows the shared key derivation: cargo run -p hitsave-host --example demo")


if __name__ == "__main__":
    main()
