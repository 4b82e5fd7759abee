//! Results that hold where they were computed: the working directory or the
//! user's home directory as text (`os.path.abspath("data")`,
//! `process.cwd()`, `Path.home() / "runs"`). Such a result is not what
//! the same call computes in another directory, for another user or on a
//! teammate's machine, and the key cannot say so (counting the working
//! directory in every graph that resolves a path would end sharing for all
//! data-loading code, whose results hold no path). So it is returned and
//! not stored ([`held_place`]), like a result the policy declines.

/// Payload parts larger than this are not searched (array data, a large
/// blob): a path is text, in the small parts around them.
const SEARCHED_PART: usize = 16 << 20;

/// The directories a result must not hold, without a trailing separator:
/// the working directory and the home directory, each when it says
/// something (not `/`, at least two components), longest first.
fn places() -> Vec<(&'static str, String)> {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        found.push(("working directory", cwd.to_string_lossy().into_owned()));
    }
    if let Some(home) = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")) {
        found.push(("home directory", home.to_string_lossy().into_owned()));
    }
    for (_, path) in &mut found {
        path.truncate(path.trim_end_matches(['/', '\\']).len());
    }
    found.retain(|(_, path)| path.len() >= 4 && path.split(['/', '\\']).filter(|part| !part.is_empty()).count() >= 2);
    found.sort_by_key(|(_, path)| std::cmp::Reverse(path.len()));
    found
}

/// The place a stored form of a result holds as text, named for a warning
/// (`the working directory /home/a/proj`), or `None`.
pub fn held_place(parts: &[&[u8]]) -> Option<String> {
    let places = places();
    if places.is_empty() {
        return None;
    }
    for part in parts.iter().filter(|part| part.len() <= SEARCHED_PART) {
        for (what, path) in &places {
            if memchr::memmem::find(part, path.as_bytes()).is_some() {
                return Some(format!("the {what} {path}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_holding_the_working_directory_is_found() {
        let cwd = std::env::current_dir().unwrap().to_string_lossy().into_owned();
        let text = format!("\u{8c}\u{1}{cwd}/data/x.csv");
        assert_eq!(held_place(&[b"head", text.as_bytes()]), Some(format!("the working directory {cwd}")));
        assert_eq!(held_place(&[b"data/x.csv", b"relative paths are fine"]), None);
        let large = vec![b'a'; SEARCHED_PART + 1];
        assert_eq!(held_place(&[&large]), None);
    }
}
