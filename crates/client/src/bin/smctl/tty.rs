//! The local terminal for `smctl exec -t`: raw mode, window size, SIGWINCH.

use std::sync::atomic::{AtomicI32, Ordering};

/// Saved terminal settings, restored by [`RawMode::restore`].
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal.
    pub fn enter() -> RawMode {
        // SAFETY: termios is plain data, filled in by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is writable; fd 0 may or may not be a tty (then it fails).
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return RawMode { saved: None };
        }
        let saved = t;
        // SAFETY: cfmakeraw edits `t` in place; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        RawMode { saved: Some(saved) }
    }

    /// Restores the saved settings (call before exiting).
    pub fn restore(&self) {
        if let Some(t) = &self.saved {
            // SAFETY: `t` came from tcgetattr.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// The local terminal size (rows, cols), if stdout or stdin is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        // SAFETY: winsize is plain data, filled in by TIOCGWINSZ.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize to the valid pointer.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the wake-up.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Calls `resize(rows, cols)` from a background thread whenever the local terminal is
/// resized (SIGWINCH, through a self-pipe).
pub fn forward_winch(resize: impl Fn(u16, u16) + Send + 'static) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return;
    }
    let [read_fd, write_fd] = fds;
    // The reading end must block; only the handler's end stays non-blocking.
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(read_fd, libc::F_SETFL, 0) };
    WINCH_PIPE.store(write_fd, Ordering::Relaxed);
    // SAFETY: installs an async-signal-safe handler.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    let _ = std::thread::Builder::new()
        .name("winch".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                // SAFETY: `buf` is writable for its length.
                let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if let Some((rows, cols)) = window_size() {
                    resize(rows, cols);
                }
            }
        });
}
