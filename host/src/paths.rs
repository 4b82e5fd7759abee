//! Where HitSave keeps its files.

use std::path::PathBuf;

/// `$HITSAVE_CACHE_DIR`, else `$XDG_CACHE_HOME/hitsave`, else
/// `~/.cache/hitsave`; `None` when none of these can be determined.
pub fn cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    non_empty("HITSAVE_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|dir| dir.join("hitsave")))
        .or_else(|| non_empty("HOME").map(|home| home.join(".cache").join("hitsave")))
}
