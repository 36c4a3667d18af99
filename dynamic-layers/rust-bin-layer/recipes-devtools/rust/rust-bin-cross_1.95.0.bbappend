# The x86_64 guest (supermachine-x86-64 multiconfig) links static musl binaries: with
# SUPERMACHINE_RUST_TOOLCHAIN = "rust-bin", give rust-bin-cross the standard library of
# x86_64-unknown-linux-musl, which it has no checksum for. Nothing changes otherwise.
require ${@oe.utils.conditional('SUPERMACHINE_RUST_TOOLCHAIN', 'rust-bin', 'rust-bin-cross-x86-64-musl.inc', '', d)}
