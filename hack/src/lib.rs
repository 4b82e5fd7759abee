//! No code. Depending on this crate unifies dependency features across the
//! workspace's builds; see `scripts/workspace_hack.py`.
