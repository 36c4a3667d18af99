//! Which virtio disks are image layers, which is the delta and which are volumes.
//!
//! The VMM attaches one read-only squashfs disk per OCI layer (bottom layer first), then
//! the delta squashfs, then the ext4 volumes (supermachine `bake/mod.rs`). So the
//! leading run of squashfs disks is the image: all but its last are the layers, the last
//! is the delta; the disks after it are the volumes, in `/.supermachine-volumes` order.

use std::fmt;

/// The first bytes of a squashfs image ("hsqs", little-endian magic).
pub const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

/// A block device and what its first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    pub squashfs: bool,
}

/// The disks sorted into their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Layer disks, bottom first.
    pub layers: Vec<String>,
    pub delta: String,
    /// Disks after the delta, in order.
    pub volumes: Vec<String>,
}

/// Why the disks do not form an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    NoDisks,
    NoSquashfs {
        first: String,
    },
    /// A non-squashfs disk sits between squashfs disks: a layer is missing or damaged.
    Gap {
        bad: String,
        later: String,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisks => f.write_str(
                "no virtio disks: the VMM attaches one read-only squashfs disk per image layer, then the delta disk",
            ),
            Self::NoSquashfs { first } => write!(
                f,
                "missing layer: the first disk /dev/{first} is not a squashfs image (the image layers and the delta must come first, before any volume)"
            ),
            Self::Gap { bad, later } => write!(
                f,
                "missing layer: /dev/{bad} is not a squashfs image but /dev/{later} after it is (a layer disk is missing or damaged; re-create it from the image)"
            ),
        }
    }
}

/// Orders kernel disk names as the kernel hands them out: vda..vdz, vdaa, ...
pub fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
}

/// True for the names of whole virtio disks (`vda`, `vdab`), not partitions.
pub fn is_virtio_disk(name: &str) -> bool {
    name.len() > 2 && name.starts_with("vd") && name[2..].bytes().all(|b| b.is_ascii_lowercase())
}

/// Sorts the disks (already in kernel order) into layers, delta and volumes.
pub fn classify(disks: &[Disk]) -> Result<Layout, LayoutError> {
    let first = disks.first().ok_or(LayoutError::NoDisks)?;
    let run = disks.iter().take_while(|d| d.squashfs).count();
    if run == 0 {
        return Err(LayoutError::NoSquashfs {
            first: first.name.clone(),
        });
    }
    if let Some(later) = disks[run..].iter().find(|d| d.squashfs) {
        return Err(LayoutError::Gap {
            bad: disks[run].name.clone(),
            later: later.name.clone(),
        });
    }
    let names: Vec<String> = disks.iter().map(|d| d.name.clone()).collect();
    Ok(Layout {
        layers: names[..run - 1].to_vec(),
        delta: names[run - 1].clone(),
        volumes: names[run..].to_vec(),
    })
}

/// overlayfs `lowerdir=`: the topmost layer first, so the delta wins over every layer
/// and each layer over the ones below it.
pub fn lowerdir(mounts: &[String]) -> String {
    mounts.iter().rev().cloned().collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks(spec: &[(&str, bool)]) -> Vec<Disk> {
        spec.iter()
            .map(|&(name, squashfs)| Disk {
                name: name.into(),
                squashfs,
            })
            .collect()
    }

    #[test]
    fn layers_then_delta_then_volumes() {
        let layout = classify(&disks(&[
            ("vda", true),
            ("vdb", true),
            ("vdc", true),
            ("vdd", false),
            ("vde", false),
        ]))
        .unwrap();
        assert_eq!(layout.layers, ["vda", "vdb"]);
        assert_eq!(layout.delta, "vdc");
        assert_eq!(layout.volumes, ["vdd", "vde"]);
    }

    #[test]
    fn a_lone_squashfs_is_the_delta() {
        let layout = classify(&disks(&[("vda", true)])).unwrap();
        assert!(layout.layers.is_empty());
        assert_eq!(layout.delta, "vda");
    }

    #[test]
    fn gaps_and_absence_are_missing_layers() {
        assert_eq!(classify(&[]), Err(LayoutError::NoDisks));
        let err = classify(&disks(&[("vda", true), ("vdb", false), ("vdc", true)])).unwrap_err();
        assert_eq!(
            err,
            LayoutError::Gap {
                bad: "vdb".into(),
                later: "vdc".into()
            }
        );
        assert!(err
            .to_string()
            .starts_with("missing layer: /dev/vdb is not a squashfs image"));
        let err = classify(&disks(&[("vda", false)])).unwrap_err();
        assert!(err.to_string().contains("first disk /dev/vda"));
    }

    #[test]
    fn kernel_name_order() {
        let mut names: Vec<String> = ["vdab", "vdb", "vdaa", "vda", "vdz"]
            .map(String::from)
            .to_vec();
        sort_names(&mut names);
        assert_eq!(names, ["vda", "vdb", "vdz", "vdaa", "vdab"]);
        assert!(is_virtio_disk("vda") && is_virtio_disk("vdaa"));
        assert!(!is_virtio_disk("vda1") && !is_virtio_disk("vd") && !is_virtio_disk("sda"));
    }

    #[test]
    fn lowerdir_puts_the_delta_on_top() {
        let mounts: Vec<String> = ["/lower-0", "/lower-1", "/lower-2"]
            .map(String::from)
            .to_vec();
        assert_eq!(lowerdir(&mounts), "/lower-2:/lower-1:/lower-0");
    }
}
