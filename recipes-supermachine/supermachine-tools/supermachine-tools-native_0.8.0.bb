SUMMARY = "Build-host tools of supermachine: initramfs writer and crate packer"
DESCRIPTION = "supermachine-initramfs renders the guest /init and writes deterministic \
cpio archives; supermachine-packer turns the guest blobs into the three kernel crates. \
The same binaries the host build runs."

require recipes-supermachine/supermachine-workspace.inc

inherit_defer native

CARGO_BUILD_FLAGS += "--package supermachine-initramfs --package supermachine-packer"
