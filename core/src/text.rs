//! Cutting text from peers to a bound without splitting a character.

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary (`str::floor_char_boundary` is newer than the
/// workspace's minimum Rust).
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(prefix("abc", 5), "abc");
        assert_eq!(prefix("abc", 2), "ab");
        assert_eq!(prefix("aé", 2), "a", "é is two bytes");
        assert_eq!(prefix("é", 0), "");
    }
}
