//! Random packet loss with nftables inside a node's namespace.
//!
//! netem is not available on these machines, but `numgen random` is: each
//! IP packet the node sends (loopback excepted) is dropped with
//! probability `percent`/100. Only the output hook drops: with the same
//! loss set on every node, a packet between two nodes meets exactly one
//! draw, so the loss is `percent` per packet in each direction (dropping on
//! input too would make it about twice that). A "packet" is what the
//! stack hands to the output hook: a TCP burst sent as one GSO packet is
//! one draw. ARP is not touched, so with
//! 100 % loss neighbours still resolve but no IP packet gets out. The table
//! lives in the node's namespace and disappears with it.

use crate::Skip;
use anyhow::{bail, ensure, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};

const TABLE: &str = "keyward_lab_loss";

/// The nft script that sets loss to `percent` (0 removes the table).
fn script(percent: u8) -> String {
    // "add table" then "delete table" makes the delete succeed whether or
    // not a previous call created the table.
    let mut s = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    if percent > 0 {
        // numgen's `mod 100` values are 0..=99, so "< 100" is rejected.
        let verdict = if percent == 100 {
            "drop".to_string()
        } else {
            format!("numgen random mod 100 < {percent} drop")
        };
        s += &format!(
            "table inet {TABLE} {{\n\
             \tchain output {{\n\
             \t\ttype filter hook output priority -300; policy accept;\n\
             \t\toifname != \"lo\" {verdict}\n\
             \t}}\n\
             }}\n"
        );
    }
    s
}

/// Runs `nft -f -` through `cmd` (already set to enter the node namespace).
pub(crate) fn set_loss(mut cmd: Command, percent: u8) -> Result<()> {
    ensure!(percent <= 100, "loss {percent}% is not a percentage");
    let mut child = match cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Skip("`nft` (nftables) not found".into()).into())
        }
        Err(e) => return Err(e).context("running nft"),
    };
    let mut stdin = child.stdin.take().context("nft stdin")?;
    stdin.write_all(script(percent).as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_only_removes() {
        let s = super::script(0);
        assert!(s.contains("delete table") && !s.contains("numgen"));
        assert!(super::script(30).contains("numgen random mod 100 < 30 drop"));
        assert!(super::script(100).contains("\"lo\" drop"));
        // one draw per packet and direction: only on the way out
        assert!(!super::script(1).contains("hook input"));
        assert!(super::script(1).contains("hook output"));
    }
}
