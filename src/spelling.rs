//! Which known word a misspelt one meant: `comand` → `command`, for the
//! errors of the config file and the command line.
//!
//! Owns: nothing but the comparison. Must never: decide what is known (the
//! parsers do), or suggest a word more than two edits away.

/// The word of `known` (words separated by whitespace) closest to `word`,
/// if it is at most two edits away.
pub fn nearest<'k>(word: &str, known: &'k str) -> Option<&'k str> {
    known
        .split_whitespace()
        .map(|k| (edits(word, k), k))
        .filter(|&(n, _)| n <= 2)
        .min_by_key(|&(n, _)| n)
        .map(|(_, k)| k)
}

/// The Levenshtein distance between two words, in bytes.
fn edits(a: &str, b: &str) -> usize {
    let mut above: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.bytes().enumerate() {
        let mut row = vec![i + 1];
        for ((&diagonal, &up), y) in above.iter().zip(above.iter().skip(1)).zip(b.bytes()) {
            let left = row.last().copied().unwrap_or(0);
            row.push((diagonal + usize::from(x != y)).min(up + 1).min(left + 1));
        }
        above = row;
    }
    above.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_edits() {
        assert_eq!(edits("comand", "command"), 1);
        assert_eq!(edits("queu", "queue"), 1);
        assert_eq!(edits("listen", "lisetn"), 2);
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("abc", "abc"), 0);
        assert_eq!(edits("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_what_is_close() {
        let known = "listen admin queue max_body";
        assert_eq!(nearest("queu", known), Some("queue"));
        assert_eq!(nearest("max-body", known), Some("max_body"));
        assert_eq!(nearest("shell", known), None);
    }
}
