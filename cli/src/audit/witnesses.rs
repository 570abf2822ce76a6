//! Witness cosignatures on a checkpoint note: every signature line whose
//! key name is `keyward/witness/<id>` is checked with
//! `witness::cosign::verify`; the valid ones say who pinned this history,
//! an invalid one is a finding (someone forged or altered it).

use keyward_node::identity::NodeId;
use keyward_node::log::witness::cosign;

/// Key-name prefix of a keyward witness's cosignature.
const WITNESS_PREFIX: &str = "keyward/witness/";

/// What the cosignature lines of one note say.
#[derive(Debug, Default)]
pub struct Cosigned {
    /// Witnesses whose cosignature verifies, with its time (POSIX s).
    pub valid: Vec<(NodeId, u64)>,
    /// Lines naming a witness whose cosignature does not verify.
    pub invalid: Vec<String>,
}

/// The key names of a note's signature lines (`— <name> <base64>`), read
/// after the blank line that ends the text. A note is at most
/// [`keyward_node::log::checkpoint::MAX_NOTE`] bytes, bounded by its reader.
fn signature_names(note: &str) -> Vec<&str> {
    let Some((_, sigs)) = note.split_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// Checks every witness cosignature line of `note`.
pub fn check(note: &[u8]) -> Cosigned {
    let mut out = Cosigned::default();
    let text = String::from_utf8_lossy(note);
    let mut seen = std::collections::BTreeSet::new();
    for name in signature_names(&text) {
        let Some(id) = name.strip_prefix(WITNESS_PREFIX) else {
            continue;
        };
        if !seen.insert(id.to_string()) {
            continue;
        }
        let Ok(witness) = id.parse::<NodeId>() else {
            out.invalid.push(format!(
                "cosignature line names `{}`, which is not a witness node id",
                name.chars().take(100).collect::<String>()
            ));
            continue;
        };
        match cosign::verify(note, &witness) {
            Ok(t) => out.valid.push((witness, t)),
            Err(e) => out
                .invalid
                .push(format!("cosignature by witness {witness}: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_signature_lines_only() {
        let note = "keyward/log/x\n1\nAAAA\n\n\u{2014} keyward/log/x abc\n\u{2014} keyward/witness/y def\nnot a line\n";
        assert_eq!(
            signature_names(note),
            vec!["keyward/log/x", "keyward/witness/y"]
        );
        assert!(signature_names("no blank line\n").is_empty());
    }

    #[test]
    fn garbage_is_never_a_panic() {
        for n in [
            "",
            "\n\n",
            "\n\n\u{2014} keyward/witness/",
            "\n\n\u{2014} keyward/witness/zz x",
        ] {
            let c = check(n.as_bytes());
            assert!(c.valid.is_empty());
        }
    }
}
