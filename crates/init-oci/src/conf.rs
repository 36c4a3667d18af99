//! The init parameters of `files/init/init.conf`, turned into constants by `build.rs`.
//!
//! The x86_64 shell `/init` is rendered from the same file, so both guest inits agree on
//! the kernel command line keys, the mount points and where the agent lives.

include!(concat!(env!("OUT_DIR"), "/init_conf.rs"));
